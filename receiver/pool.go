package receiver

import "math/bits"

// held is a message waiting in ordered delivery, with the pooled buffer
// its payload was copied into (nil while the payload still aliases the
// datagram being handled).
type held struct {
	m    Message
	buf  []byte
	kind heldKind
}

// heldPool recycles held messages and their payload buffers, so that
// steady-state reordering allocates nothing. Buffers come in power-of-two
// size classes from 64 bytes to the largest payload; each class keeps at
// most maxFree buffers, so memory returns to the GC after a burst.
type heldPool struct {
	free    []*held
	classes [11][][]byte // 64 B << i, up to 64 KiB
	// big keeps buffers of reassembled messages, larger than the
	// classes, for the next messages: at most maxBigFree bytes.
	big      [][]byte
	bigBytes int
}

// maxBigFree bounds the bytes of the reassembly buffers kept for reuse.
const maxBigFree = 4 << 20

// getBig returns a buffer of n bytes for a message in reassembly: a kept
// one of capacity n to 2n, or a new one.
func (p *heldPool) getBig(n int) []byte {
	for i, b := range p.big {
		if cap(b) >= n && cap(b) <= 2*n {
			last := len(p.big) - 1
			p.big[i], p.big[last] = p.big[last], nil
			p.big = p.big[:last]
			p.bigBytes -= cap(b)
			return b[:n]
		}
	}
	return make([]byte, n)
}

// putBig keeps b for getBig if there is room.
func (p *heldPool) putBig(b []byte) {
	if b != nil && p.bigBytes+cap(b) <= maxBigFree {
		p.big = append(p.big, b[:0])
		p.bigBytes += cap(b)
	}
}

const (
	minClassShift = 6
	maxFree       = 4096
	// maxFreeBytes bounds the free buffers kept per size class, so that a
	// burst of large held messages returns its memory (64 buffers of the
	// largest class, 4096 of 1 KiB and below).
	maxFreeBytes = 4 << 20
)

func (p *heldPool) get() *held {
	if n := len(p.free); n > 0 {
		h := p.free[n-1]
		p.free = p.free[:n-1]
		return h
	}
	return new(held)
}

// put recycles h and its buffer.
func (p *heldPool) put(h *held) {
	if h.buf != nil && cap(h.buf) > 1<<(len(p.classes)-1+minClassShift) {
		p.putBig(h.buf) // a reassembled message's
	} else if h.buf != nil {
		c := class(cap(h.buf))
		if len(p.classes[c]) < min(maxFree, maxFreeBytes>>(c+minClassShift)) {
			p.classes[c] = append(p.classes[c], h.buf[:0])
		}
	}
	*h = held{}
	if len(p.free) < maxFree {
		p.free = append(p.free, h)
	}
}

// own copies h's payload into a pooled buffer, so that it survives the
// datagram it came in.
func (p *heldPool) own(h *held) {
	n := len(h.m.Payload)
	c := class(n)
	var b []byte
	if k := len(p.classes[c]); k > 0 {
		b = p.classes[c][k-1]
		p.classes[c] = p.classes[c][:k-1]
	} else {
		b = make([]byte, 0, 1<<(c+minClassShift))
	}
	h.buf = append(b, h.m.Payload...)
	h.m.Payload = h.buf
}

// class returns the size class holding n bytes: the smallest c with
// 64<<c >= n, at most the last class.
func class(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	return min(bits.Len(uint(n-1))-minClassShift, len(heldPool{}.classes)-1)
}
