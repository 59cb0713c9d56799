package packet

import (
	"encoding/binary"
	"errors"
)

// The message map: how the payload of a DATA packet flagged FlagMessages
// carries messages. See "Messages and datagrams" in the package
// documentation.
const (
	// MapMessages starts a payload carrying one or more whole messages.
	MapMessages byte = 0
	// MapFragment starts a payload carrying one piece of a message.
	MapFragment byte = 1

	// MessagesHeaderLen is the size of a MapMessages payload before its
	// first entry: the map byte and the message count.
	MessagesHeaderLen = 3
	// FragmentHeaderLen is the size of a MapFragment payload before the
	// piece: the map byte, the message length, the piece's offset in the
	// message and the fragment index.
	FragmentHeaderLen = 13
	// MaxEntryHeaderLen is the most bytes an entry header takes: a 3-byte
	// varint length (a single datagram's entry is below 2^16 bytes, so
	// length<<1|delta fits in 17 bits) and a varint send-time delta.
	MaxEntryHeaderLen = 3 + binary.MaxVarintLen64
	// MaxMessageLimit is the largest message the format carries: 16 MiB.
	MaxMessageLimit = 16 << 20
	// MaxMessagesPerDatagram bounds the count of a MapMessages payload.
	MaxMessagesPerDatagram = 1<<16 - 1
)

// ErrBadMap is returned for a FlagMessages payload whose message map is
// malformed: an unknown map byte, a count or length that disagrees with
// the payload, a fragment outside its message.
var ErrBadMap = errors.New("packet: DATA message map malformed")

// Fragment is the header of a MapFragment payload and the piece it
// carries. Data aliases the parsed payload.
type Fragment struct {
	Length uint32 // length of the whole message, 1..MaxMessageLimit
	Offset uint32 // where Data starts in the message
	Index  uint32 // fragment number: the message's first fragment has sequence Seq-Index
	Data   []byte // the piece, at least 1 byte
}

// First reports whether f is the message's first fragment.
func (f *Fragment) First() bool { return f.Index == 0 }

// Last reports whether f ends the message.
func (f *Fragment) Last() bool { return uint64(f.Offset)+uint64(len(f.Data)) == uint64(f.Length) }

// AppendFragment appends the MapFragment payload for f to b.
func AppendFragment(b []byte, f *Fragment) []byte {
	b = append(b, MapFragment)
	b = binary.BigEndian.AppendUint32(b, f.Length)
	b = binary.BigEndian.AppendUint32(b, f.Offset)
	b = binary.BigEndian.AppendUint32(b, f.Index)
	return append(b, f.Data...)
}

// ParseFragment decodes a MapFragment payload into f (Data aliasing
// payload) and validates it: the piece non-empty and inside the message,
// the message at most MaxMessageLimit, offset 0 exactly for index 0, and
// no more fragments before it than bytes.
func ParseFragment(payload []byte, f *Fragment) error {
	if len(payload) < FragmentHeaderLen+1 || payload[0] != MapFragment {
		return ErrBadMap
	}
	*f = Fragment{
		Length: binary.BigEndian.Uint32(payload[1:]),
		Offset: binary.BigEndian.Uint32(payload[5:]),
		Index:  binary.BigEndian.Uint32(payload[9:]),
		Data:   payload[FragmentHeaderLen:],
	}
	switch {
	case f.Length == 0 || f.Length > MaxMessageLimit:
		return ErrBadMap
	case uint64(f.Offset)+uint64(len(f.Data)) > uint64(f.Length):
		return ErrBadMap
	case (f.Index == 0) != (f.Offset == 0), f.Index > f.Offset:
		return ErrBadMap
	}
	return nil
}

// AppendMessagesHeader appends the header of a MapMessages payload of
// count entries to b. Entries follow (AppendEntry); a packer that does not
// know the count yet writes 0 and patches it with SetMessageCount.
func AppendMessagesHeader(b []byte, count uint16) []byte {
	return binary.BigEndian.AppendUint16(append(b, MapMessages), count)
}

// SetMessageCount overwrites the count of the MapMessages payload that
// starts payload.
func SetMessageCount(payload []byte, count uint16) {
	binary.BigEndian.PutUint16(payload[1:], count)
}

// EntryLen returns the bytes AppendEntry appends for a message of n bytes
// sent delta nanoseconds after the datagram's timestamp.
func EntryLen(n int, delta int64) int {
	h := uint64(n) << 1
	l := n
	if delta != 0 {
		h |= 1
		l += varintLen(delta)
	}
	return l + uvarintLen(h)
}

// AppendEntry appends one message entry of a MapMessages payload: a
// varint of length<<1 | (delta != 0), the signed varint delta when not 0
// (the message's send time less the datagram's timestamp, ns), and the
// message.
func AppendEntry(b []byte, delta int64, msg []byte) []byte {
	h := uint64(len(msg)) << 1
	if delta != 0 {
		h |= 1
	}
	b = binary.AppendUvarint(b, h)
	if delta != 0 {
		b = binary.AppendVarint(b, delta)
	}
	return append(b, msg...)
}

// Messages walks the entries of a MapMessages payload. The zero value is
// empty; Init validates a payload whole, after which Next cannot fail.
type Messages struct {
	rest  []byte
	left  int
	count int
	base  int64
}

// Init validates payload, the payload of a DATA packet with timestamp ts,
// as a MapMessages payload and readies m to walk it. It never allocates.
func (m *Messages) Init(payload []byte, ts int64) error {
	*m = Messages{}
	if len(payload) < MessagesHeaderLen || payload[0] != MapMessages {
		return ErrBadMap
	}
	n := int(binary.BigEndian.Uint16(payload[1:]))
	if n == 0 {
		return ErrBadMap
	}
	rest := payload[MessagesHeaderLen:]
	for i := 0; i < n; i++ {
		_, l, hn, ok := entry(rest)
		if !ok {
			return ErrBadMap
		}
		rest = rest[hn+l:]
	}
	if len(rest) != 0 {
		return ErrBadMap
	}
	m.rest, m.left, m.count, m.base = payload[MessagesHeaderLen:], n, n, ts
	return nil
}

// Count returns the number of messages of the payload Init accepted.
func (m *Messages) Count() int { return m.count }

// Next returns the next message and its send time; ok is false after the
// last. msg aliases the payload.
func (m *Messages) Next() (ts int64, msg []byte, ok bool) {
	if m.left == 0 {
		return 0, nil, false
	}
	delta, l, hn, _ := entry(m.rest)
	msg = m.rest[hn : hn+l : hn+l]
	m.rest = m.rest[hn+l:]
	m.left--
	return m.base + delta, msg, true
}

// entry decodes the entry header at the start of b: the delta, the
// message length, the header's length, and whether it and the message
// fit in b.
func entry(b []byte) (delta int64, l, hn int, ok bool) {
	h, n := binary.Uvarint(b)
	if n <= 0 || n != uvarintLen(h) || h>>1 > uint64(len(b)) { // one encoding: no overlong varints
		return 0, 0, 0, false
	}
	hn = n
	if h&1 != 0 {
		d, k := binary.Varint(b[hn:])
		if k <= 0 || k != varintLen(d) || d == 0 { // one encoding per entry: a zero delta is left out
			return 0, 0, 0, false
		}
		delta, hn = d, hn+k
	}
	l = int(h >> 1)
	if l > len(b)-hn {
		return 0, 0, 0, false
	}
	return delta, l, hn, true
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	return uvarintLen(u)
}

// validateMap checks the message map of a FlagMessages DATA payload.
func validateMap(payload []byte, ts int64) error {
	if len(payload) == 0 {
		return ErrBadMap
	}
	switch payload[0] {
	case MapMessages:
		var m Messages
		return m.Init(payload, ts)
	case MapFragment:
		var f Fragment
		return ParseFragment(payload, &f)
	}
	return ErrBadMap
}

// ValidateMap checks the message map of payload, the payload of a DATA
// packet flagged FlagMessages with timestamp ts, as Parse does; a
// receiver applies it to payloads FEC rebuilt.
func ValidateMap(payload []byte, ts int64) error { return validateMap(payload, ts) }

// OnlyMessage returns the message of a MapMessages payload carrying
// exactly one message sent at the datagram's timestamp (how a sender that
// is not packing sends a message that fits), and whether payload is one.
func OnlyMessage(payload []byte) ([]byte, bool) {
	var m Messages
	if m.Init(payload, 0) != nil || m.Count() != 1 {
		return nil, false
	}
	ts, msg, _ := m.Next()
	return msg, ts == 0
}
