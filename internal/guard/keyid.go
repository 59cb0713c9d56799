package guard

// MismatchRun is how many sealed datagrams in a row must carry the same
// foreign key id before [ForeignKeys] calls it a key mismatch.
const MismatchRun = 3

// ForeignKeys tells a peer sealing under another key from datagrams whose
// key id was damaged on the way. A peer with another key stamps every
// datagram with that key's id, so the same foreign id comes back again and
// again; corruption of the key-id bytes gives a different id each time
// (or, rarely, the same one twice). So a foreign id is a key mismatch once
// MismatchRun foreign-key datagrams in a row have carried it, and
// corruption until then. A real mismatch costs its first MismatchRun-1
// datagrams being counted as corrupted; a corrupted link needs MismatchRun
// identical corruptions in a row to be called mismatched.
//
// The zero value is ready for use. It is not safe for concurrent use.
type ForeignKeys struct {
	id  uint32
	run int
}

// Observe records a datagram sealed under foreign key id and reports
// whether it is a key mismatch (true) or corruption (false).
func (f *ForeignKeys) Observe(id uint32) bool {
	if f.run > 0 && f.id == id {
		f.run = min(f.run+1, MismatchRun)
	} else {
		f.id, f.run = id, 1
	}
	return f.run >= MismatchRun
}
