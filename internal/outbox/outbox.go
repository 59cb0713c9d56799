// Package outbox holds encoded datagrams waiting for a batched write.
//
// A sender or receiver core encodes packets straight into a [Batch] (one
// contiguous slab, no allocation per packet); the socket goroutine takes the
// filled batch, writes it with one sendmmsg per udpio batch, and hands it
// back. The capacity of a Batch is the bound on what can be queued.
package outbox

import (
	"errors"
	"net/netip"

	"github.com/telewire/telewire/internal/udpio"
	"github.com/telewire/telewire/packet"
)

// ErrFull is returned when a Batch has no room for another datagram.
var ErrFull = errors.New("outbox: batch full")

// ErrEmpty is returned by SealLast when the batch holds no datagram.
var ErrEmpty = errors.New("outbox: batch empty")

// Batch is a bounded list of encoded datagrams and their destinations. The
// zero value has no capacity; use [New]. A Batch is not safe for concurrent
// use; its owner hands it between goroutines under its own lock.
type Batch struct {
	slab []byte
	dgs  []udpio.Datagram
}

// New returns a Batch holding up to maxDatagrams datagrams and maxBytes
// bytes in all. Both are allocated now, once.
func New(maxDatagrams, maxBytes int) *Batch {
	return &Batch{
		slab: make([]byte, 0, maxBytes),
		dgs:  make([]udpio.Datagram, 0, maxDatagrams),
	}
}

// Room reports whether a datagram of n bytes fits.
func (b *Batch) Room(n int) bool {
	return len(b.dgs) < cap(b.dgs) && cap(b.slab)-len(b.slab) >= n
}

// Append encodes p into the batch, addressed to to. It returns ErrFull when
// there is no room and the packet's encoding error when p is invalid; in
// both cases the batch is unchanged.
func (b *Batch) Append(p *packet.Packet, to netip.AddrPort) error {
	n := p.EncodedLen()
	if !b.Room(n) {
		return ErrFull
	}
	start := len(b.slab)
	slab, err := p.AppendTo(b.slab)
	if err != nil {
		return err
	}
	b.slab = slab
	b.dgs = append(b.dgs, udpio.Datagram{Data: slab[start:len(slab):len(slab)], Addr: to})
	return nil
}

// AppendRaw copies an already encoded datagram into the batch.
func (b *Batch) AppendRaw(data []byte, to netip.AddrPort) error {
	if !b.Room(len(data)) {
		return ErrFull
	}
	start := len(b.slab)
	b.slab = append(b.slab, data...)
	b.dgs = append(b.dgs, udpio.Datagram{Data: b.slab[start:len(b.slab):len(b.slab)], Addr: to})
	return nil
}

// InPlaceSealer encrypts an encoded packet in its own storage, growing it
// by a fixed overhead ([seal.Sealer] is one).
type InPlaceSealer interface {
	SealInPlace(pkt []byte) ([]byte, error)
}

// SealLast seals the most recently queued datagram in place with s; the
// datagram grows by up to grow bytes, which the batch must have room for.
// On error (ErrFull when there is no room, or the sealer's error) the
// datagram is removed from the batch, so nothing unsealed is ever sent.
func (b *Batch) SealLast(s InPlaceSealer, grow int) error {
	n := len(b.dgs)
	if n == 0 {
		return ErrEmpty
	}
	d := &b.dgs[n-1]
	start := len(b.slab) - len(d.Data)
	if cap(b.slab)-len(b.slab) < grow {
		b.dropLast(start)
		return ErrFull
	}
	sealed, err := s.SealInPlace(b.slab[start : len(b.slab) : len(b.slab)+grow])
	if err != nil {
		b.dropLast(start)
		return err
	}
	b.slab = b.slab[:start+len(sealed)]
	d.Data = b.slab[start:len(b.slab):len(b.slab)]
	return nil
}

func (b *Batch) dropLast(start int) {
	b.slab = b.slab[:start]
	b.dgs = b.dgs[:len(b.dgs)-1]
}

// Datagrams returns the queued datagrams; they alias the batch until Reset.
func (b *Batch) Datagrams() []udpio.Datagram { return b.dgs }

// Len returns the number of queued datagrams.
func (b *Batch) Len() int { return len(b.dgs) }

// Bytes returns the number of queued bytes.
func (b *Batch) Bytes() int { return len(b.slab) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	clear(b.dgs) // drop references to addresses
	b.dgs = b.dgs[:0]
	b.slab = b.slab[:0]
}

// Pair is double buffering for one writer: a core fills Current while the
// socket goroutine writes the batch it took with Take.
type Pair struct {
	cur, spare *Batch
	taken      bool
}

// NewPair returns two batches of the given capacities.
func NewPair(maxDatagrams, maxBytes int) *Pair {
	return &Pair{cur: New(maxDatagrams, maxBytes), spare: New(maxDatagrams, maxBytes)}
}

// Current returns the batch being filled.
func (p *Pair) Current() *Batch { return p.cur }

// Take returns the filled batch and starts filling the other one. It
// returns nil when the current batch is empty or the other batch has not
// been given back yet.
func (p *Pair) Take() *Batch {
	if p.taken || p.cur.Len() == 0 {
		return nil
	}
	b := p.cur
	p.cur, p.spare = p.spare, nil
	p.taken = true
	return b
}

// Give hands back a batch returned by Take once it has been written.
func (p *Pair) Give(b *Batch) {
	b.Reset()
	p.spare = b
	p.taken = false
}
