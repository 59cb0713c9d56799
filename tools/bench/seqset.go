package bench

// SeqSet records which sequence numbers in [0, Cap) have been seen, in a
// bitmap allocated once (Cap/8 bytes), so that a receiver can count
// distinct deliveries and duplicates without memory growing with what a
// peer sends. It is not safe for concurrent use.
type SeqSet struct {
	bits []uint64
	cap  uint64
}

// NewSeqSet returns a set for sequence numbers below capacity.
func NewSeqSet(capacity uint64) *SeqSet {
	return &SeqSet{bits: make([]uint64, (capacity+63)/64), cap: capacity}
}

// Add marks seq as seen. It reports whether seq was new, and ok = false
// (nothing marked) when seq is not below the capacity.
func (s *SeqSet) Add(seq uint64) (isNew, ok bool) {
	if seq >= s.cap {
		return false, false
	}
	w, b := seq/64, uint64(1)<<(seq%64)
	if s.bits[w]&b != 0 {
		return false, true
	}
	s.bits[w] |= b
	return true, true
}

// Cap returns the capacity.
func (s *SeqSet) Cap() uint64 { return s.cap }
