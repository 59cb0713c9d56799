package capture

import "net/netip"

// maxReassembled is the largest payload an IP datagram reassembles to, in
// bytes: the 16-bit length field of IPv4 and of IPv6 (RFC 8200 section 4.5;
// jumbograms are never fragmented).
const maxReassembled = 65535

// fragmentUnit is the granularity of IPv4 and IPv6 fragment offsets, in bytes.
const fragmentUnit = 8

// maxSpansPerDatagram caps the number of disjoint byte ranges held for one
// datagram under reassembly; adjacent fragments merge into one range, so only
// out-of-order arrival makes this grow. A 65535-byte datagram cut at the
// 576-byte minimum MTU has 120 fragments.
const maxSpansPerDatagram = 128

// fragKey identifies the datagram a fragment belongs to: source, destination
// and identification, plus the protocol for IPv4 (RFC 791 section 2.3; RFC
// 8200 section 4.5 keys IPv6 on addresses and identification only).
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
}

// span is a half-open byte range [start, end) of a datagram's payload.
type span struct{ start, end int }

// fragSlot holds one datagram under reassembly. Its buf and spans keep their
// capacity when the slot is reused, so steady-state reassembly does not
// allocate.
type fragSlot struct {
	key        fragKey
	used       bool
	firstNanos int64  // capture time of the first fragment seen
	total      int    // payload length once the final fragment is in, else -1
	nextHeader uint8  // IPv6: the fragment header's next header
	buf        []byte // payload bytes, valid where spans say
	spans      []span // sorted, disjoint, non-adjacent
}

// fragOutcome is what the reassembler did with one fragment.
type fragOutcome uint8

const (
	// fragHeld: the fragment is stored, the datagram is not complete yet.
	fragHeld fragOutcome = iota
	// fragDone: the fragment completed its datagram.
	fragDone
	// fragDuplicate: every byte of the fragment was already held.
	fragDuplicate
	// fragInvalid: the fragment contradicts its datagram (overlap with
	// different extent, beyond the end, too large, too many pieces); the
	// whole datagram was dropped, as RFC 5722 asks.
	fragInvalid
)

// reassembler rebuilds fragmented IP datagrams with a fixed number of slots.
// When every slot is busy the oldest datagram is evicted; a datagram whose
// first fragment is older than the timeout (in capture time) expires. Memory
// is therefore bounded by slots × 64 KiB. Not safe for concurrent use.
type reassembler struct {
	slots        []fragSlot
	timeoutNanos int64
	expired      uint64 // datagrams dropped incomplete: timeout, eviction, flush
}

func newReassembler(slots int, timeoutNanos int64) *reassembler {
	return &reassembler{slots: make([]fragSlot, slots), timeoutNanos: timeoutNanos}
}

// add stores one fragment whose payload data starts at byte offset off of the
// datagram; more is the more-fragments flag. On fragDone it returns the
// reassembled payload, valid until the next call to add, and the next header
// recorded for the datagram.
func (r *reassembler) add(key fragKey, off int, more bool, data []byte, nextHeader uint8, nowNanos int64) ([]byte, uint8, fragOutcome) {
	r.expire(nowNanos)
	end := off + len(data)
	if more {
		// Only whole 8-byte units of a non-final fragment count (Linux
		// trims the rest the same way).
		end = off + len(data)&^(fragmentUnit-1)
	}
	s := r.find(key)
	if end <= off || end > maxReassembled {
		if s != nil {
			r.free(s)
		}
		return nil, 0, fragInvalid
	}
	if s == nil {
		s = r.alloc(key, nowNanos)
	}
	if !more {
		if s.total >= 0 && s.total != end {
			r.free(s)
			return nil, 0, fragInvalid
		}
		if n := len(s.spans); n > 0 && s.spans[n-1].end > end {
			r.free(s)
			return nil, 0, fragInvalid
		}
		s.total = end
	} else if s.total >= 0 && end > s.total {
		r.free(s)
		return nil, 0, fragInvalid
	}
	if off == 0 {
		s.nextHeader = nextHeader
	}
	switch s.insert(off, end) {
	case insertDuplicate:
		return nil, 0, fragDuplicate
	case insertConflict:
		r.free(s)
		return nil, 0, fragInvalid
	}
	if cap(s.buf) < end {
		grown := make([]byte, end, max(end, min(2*cap(s.buf), maxReassembled)))
		copy(grown, s.buf)
		s.buf = grown
	} else if len(s.buf) < end {
		s.buf = s.buf[:end]
	}
	copy(s.buf[off:end], data)
	if s.total >= 0 && len(s.spans) == 1 && s.spans[0].start == 0 && s.spans[0].end == s.total {
		payload, nh := s.buf[:s.total], s.nextHeader
		s.used = false // keep buf: payload aliases it until the next add
		return payload, nh, fragDone
	}
	return nil, 0, fragHeld
}

// insertResult says how a byte range fits the ranges held.
type insertResult uint8

const (
	insertStored insertResult = iota
	insertDuplicate
	insertConflict
)

// insert records [start, end) in s.spans, merging with neighbours it touches.
// A range wholly inside one held range is a duplicate; one that partly
// overlaps held bytes is a conflict.
func (s *fragSlot) insert(start, end int) insertResult {
	i := 0
	for i < len(s.spans) && s.spans[i].end < start {
		i++
	}
	// spans[i] is the first range that ends at or after start.
	if i < len(s.spans) {
		sp := s.spans[i]
		if sp.start <= start && end <= sp.end {
			return insertDuplicate
		}
		if sp.start < end && sp.end > start {
			return insertConflict
		}
	}
	if i+1 < len(s.spans) && s.spans[i+1].start < end {
		return insertConflict
	}
	// Now no held range overlaps [start, end); some may touch it.
	touchLeft := i < len(s.spans) && s.spans[i].end == start
	j := i
	if touchLeft {
		j = i + 1
	}
	touchRight := j < len(s.spans) && s.spans[j].start == end
	switch {
	case touchLeft && touchRight:
		s.spans[i].end = s.spans[j].end
		s.spans = append(s.spans[:j], s.spans[j+1:]...)
	case touchLeft:
		s.spans[i].end = end
	case touchRight:
		s.spans[j].start = start
	default:
		if len(s.spans) >= maxSpansPerDatagram {
			return insertConflict
		}
		s.spans = append(s.spans, span{})
		copy(s.spans[i+1:], s.spans[i:])
		s.spans[i] = span{start, end}
	}
	return insertStored
}

func (r *reassembler) find(key fragKey) *fragSlot {
	for i := range r.slots {
		if r.slots[i].used && r.slots[i].key == key {
			return &r.slots[i]
		}
	}
	return nil
}

// alloc takes a free slot, or evicts the oldest datagram when none is free.
func (r *reassembler) alloc(key fragKey, nowNanos int64) *fragSlot {
	var victim *fragSlot
	for i := range r.slots {
		s := &r.slots[i]
		if !s.used {
			victim = s
			break
		}
		if victim == nil || s.firstNanos < victim.firstNanos {
			victim = s
		}
	}
	if victim.used {
		r.expired++
	}
	victim.key = key
	victim.used = true
	victim.firstNanos = nowNanos
	victim.total = -1
	victim.nextHeader = 0
	victim.buf = victim.buf[:0]
	victim.spans = victim.spans[:0]
	return victim
}

func (r *reassembler) free(s *fragSlot) { s.used = false }

// expire drops datagrams whose first fragment is more than the timeout older
// than now. Capture time may step backwards; such a datagram is kept.
func (r *reassembler) expire(nowNanos int64) {
	for i := range r.slots {
		s := &r.slots[i]
		if s.used && nowNanos-s.firstNanos > r.timeoutNanos {
			s.used = false
			r.expired++
		}
	}
}

// flush drops every datagram still incomplete, counting each as expired.
func (r *reassembler) flush() {
	for i := range r.slots {
		if r.slots[i].used {
			r.slots[i].used = false
			r.expired++
		}
	}
}

// pending returns the number of datagrams under reassembly.
func (r *reassembler) pending() int {
	n := 0
	for i := range r.slots {
		if r.slots[i].used {
			n++
		}
	}
	return n
}
