// Package outbox holds encoded datagrams waiting for a batched write.
//
// A sender or receiver core encodes packets straight into a [Batch] (one
// contiguous slab, no allocation per packet); the socket goroutine takes the
// filled batch, writes it with one sendmmsg per udpio batch, and hands it
// back. The capacity of a Batch is the bound on what can be queued.
//
// # Trailing datagrams
//
// With UDP GSO (see udpio) a run of consecutive datagrams of one size to one
// destination leaves in one message, and a datagram of another size ends the
// run. The sender's PARITY packets are a few bytes longer than the DATA
// they protect, so queued in completion order (ten DATA, three PARITY, ten
// DATA, …) they cut every run at about ten datagrams and multiply the
// messages the kernel handles on both ends by six. [Batch.AppendTrailing]
// queues a datagram to be written after those appended in order
// ([Batch.Append], [Batch.AppendRaw]): [Batch.Settle] (called by [Pair.Take])
// moves the trailing datagrams behind the others, so DATA goes out in long
// runs and the PARITY after it in runs of its own. A trailing datagram is
// never overtaken by more than [TrailingSpan] datagrams queued in order:
// past that the batch settles itself, which bounds how far behind its block
// a parity shard can arrive (far within the FEC decoder's default ring of
// 1024 sequences). Once TrailingSpan - [udpio.MaxGSOSegments] have
// overtaken it, the batch settles where the run the in-order datagrams end
// with is complete (64 datagrams, or the next one cannot join it), so that
// settling does not cut a run of DATA short: a sender with FEC 10,3 then
// writes three full runs of DATA and one run of the PARITY they produced.
package outbox

import (
	"errors"
	"net/netip"
	"slices"

	"github.com/telewire/telewire/internal/udpio"
	"github.com/telewire/telewire/packet"
)

// ErrFull is returned when a Batch has no room for another datagram.
var ErrFull = errors.New("outbox: batch full")

// ErrEmpty is returned by SealLast when the batch holds no datagram.
var ErrEmpty = errors.New("outbox: batch empty")

// TrailingSpan is the most datagrams queued in order that may overtake a
// trailing datagram (see [Batch.AppendTrailing]): three full GSO runs of
// [udpio.MaxGSOSegments]. From settleFrom on, the batch settles at the end
// of a run, so in a steady stream of equal DATA it settles between whole
// runs.
const TrailingSpan = 3 * udpio.MaxGSOSegments

// settleFrom is how many datagrams queued in order must overtake the
// oldest trailing one before the batch settles at the end of a run.
const settleFrom = TrailingSpan - udpio.MaxGSOSegments

// Batch is a bounded list of encoded datagrams and their destinations. The
// zero value has no capacity; use [New]. A Batch is not safe for concurrent
// use; its owner hands it between goroutines under its own lock.
type Batch struct {
	slab []byte
	// dgs holds the datagrams in write order. The trailing datagrams not
	// yet settled are kept, last queued first, at the top of the same
	// array: dgs[:cap(dgs)][cap(dgs)-trail:], so both share one bound and
	// no memory is added for them.
	dgs     []udpio.Datagram
	trail   int // trailing datagrams not yet settled
	trailAt int // len(dgs) when the oldest of them was queued

	// The run of equal datagrams to one destination that the in-order ones
	// end with, which udpio would coalesce (runLen 0: none to join). Sizes
	// are those before sealing, which grows every datagram alike.
	runLen  int
	runSize int
	runTo   netip.AddrPort

	// shared is len(slab) after the latest Fanout: the bytes up to it may
	// be referenced by several datagrams, so the datagram ending there is
	// neither extended, sealed nor dropped.
	shared int
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
func (b *Batch) Room(n int) bool { return b.RoomFor(1, n) }

// RoomFor reports whether k datagrams of n bytes in all fit.
func (b *Batch) RoomFor(k, n int) bool {
	return len(b.dgs)+b.trail+k <= cap(b.dgs) && cap(b.slab)-len(b.slab) >= n
}

// Append encodes p into the batch, addressed to to, after the datagrams
// queued in order so far. It returns ErrFull when there is no room and the
// packet's encoding error when p is invalid; in both cases nothing is
// queued. When trailing datagrams have been overtaken by TrailingSpan
// datagrams, the batch is settled first.
func (b *Batch) Append(p *packet.Packet, to netip.AddrPort) error {
	data, err := b.encode(p)
	if err != nil {
		return err
	}
	b.push(data, to)
	return nil
}

// AppendRaw copies an already encoded datagram into the batch, in order as
// Append does.
func (b *Batch) AppendRaw(data []byte, to netip.AddrPort) error {
	if !b.Room(len(data)) {
		return ErrFull
	}
	start := len(b.slab)
	b.slab = append(b.slab, data...)
	b.push(b.slab[start:len(b.slab):len(b.slab)], to)
	return nil
}

// AppendTrailing encodes p into the batch, addressed to to, to be written
// after the datagrams queued in order: it joins them, behind those queued
// until then and in the order trailing datagrams were queued, when the
// batch is settled (see [Batch.Settle] and the package documentation). Until
// then Len and Datagrams do not show it; Room, Bytes and the bounds count
// it. Errors are those of Append.
func (b *Batch) AppendTrailing(p *packet.Packet, to netip.AddrPort) error {
	data, err := b.encode(p)
	if err != nil {
		return err
	}
	if b.trail == 0 {
		b.trailAt = len(b.dgs)
	}
	b.trail++
	b.dgs[:cap(b.dgs)][cap(b.dgs)-b.trail] = udpio.Datagram{Data: data, Addr: to}
	return nil
}

// encode appends p's encoding to the slab and returns it, or ErrFull.
func (b *Batch) encode(p *packet.Packet) ([]byte, error) {
	if !b.Room(p.EncodedLen()) {
		return nil, ErrFull
	}
	start := len(b.slab)
	slab, err := p.AppendTo(b.slab)
	if err != nil {
		return nil, err
	}
	b.slab = slab
	return slab[start:len(slab):len(slab)], nil
}

// push queues data in order. It settles first if the oldest trailing
// datagram has been overtaken by TrailingSpan datagrams, or by settleFrom
// and data does not continue the run the in-order datagrams end with.
func (b *Batch) push(data []byte, to netip.AddrPort) {
	joins := b.runLen > 0 && b.runLen < udpio.MaxGSOSegments && len(data) == b.runSize && to == b.runTo
	if b.trail > 0 {
		if over := len(b.dgs) - b.trailAt; over >= TrailingSpan || (over >= settleFrom && !joins) {
			b.Settle()
			joins = false
		}
	}
	if joins {
		b.runLen++
	} else {
		b.runLen, b.runSize, b.runTo = 1, len(data), to
	}
	b.dgs = append(b.dgs, udpio.Datagram{Data: data, Addr: to})
}

// Settle moves the trailing datagrams behind those queued in order, in the
// order they were queued; they become ordinary datagrams, so whatever is
// queued afterwards goes behind them. [Pair.Take] settles the batch it
// returns. Settling a batch without trailing datagrams does nothing.
func (b *Batch) Settle() {
	if b.trail == 0 {
		return
	}
	full := b.dgs[:cap(b.dgs)]
	top := full[len(full)-b.trail:]
	slices.Reverse(top) // stored last queued first
	n := len(b.dgs)
	b.dgs = full[:n+b.trail]
	copy(b.dgs[n:], top) // the ranges may overlap; copy moves correctly
	// Drop the references left in the top slots the move vacated (the
	// slots below them have not been used since Reset).
	clear(full[max(len(b.dgs), len(full)-b.trail):])
	b.trail = 0
	b.runLen = 0 // the next datagram queued in order starts a run
}

// InPlaceSealer encrypts an encoded packet in its own storage, growing it
// by a fixed overhead ([seal.Sealer] is one).
type InPlaceSealer interface {
	SealInPlace(pkt []byte) ([]byte, error)
}

// SealLast encrypts with s the datagram queued last (by Append, AppendRaw
// or AppendTrailing), in place; it grows by up to grow bytes, which the
// batch must have room for. On error (ErrFull when there is no room, or
// the sealer's error) the datagram is removed from the batch, so nothing
// unsealed is ever written.
func (b *Batch) SealLast(s InPlaceSealer, grow int) error {
	d, trailing := b.lastQueued()
	if d == nil {
		return ErrEmpty
	}
	start := len(b.slab) - len(d.Data)
	if cap(b.slab)-len(b.slab) < grow {
		b.dropLast(start, trailing)
		return ErrFull
	}
	sealed, err := s.SealInPlace(b.slab[start : len(b.slab) : len(b.slab)+grow])
	if err != nil {
		b.dropLast(start, trailing)
		return err
	}
	b.slab = b.slab[:start+len(sealed)]
	d.Data = b.slab[start:len(b.slab):len(b.slab)]
	return nil
}

// lastQueued returns the datagram whose bytes end the slab (the one
// queued last) and whether it is trailing.
func (b *Batch) lastQueued() (*udpio.Datagram, bool) {
	if len(b.slab) == b.shared && b.shared > 0 {
		return nil, false // fanned out: several datagrams share its bytes
	}
	if b.trail > 0 {
		if t := &b.dgs[:cap(b.dgs)][cap(b.dgs)-b.trail]; endsSlab(b.slab, t.Data) {
			return t, true
		}
	}
	if n := len(b.dgs); n > 0 && endsSlab(b.slab, b.dgs[n-1].Data) {
		return &b.dgs[n-1], false
	}
	return nil, false
}

// endsSlab reports whether d is the last len(d) bytes of slab.
func endsSlab(slab, d []byte) bool {
	return len(d) > 0 && len(d) <= len(slab) && &slab[len(slab)-len(d)] == &d[0]
}

// Fanout sends the datagram queued last (by Append, AppendRaw or
// AppendTrailing) to every address of to: it is readdressed to to[0] and,
// for each further address, a datagram referencing the same bytes is
// queued behind it (among the trailing ones if it is trailing). The slab
// holds the bytes once: each further address takes one place among the
// datagrams and no bytes. With to empty the datagram is removed. It
// returns ErrFull, changing nothing, when len(to)-1 more places are
// lacking, and ErrEmpty when no datagram can be fanned out (none queued,
// or the last was fanned out already). The datagram cannot be extended,
// sealed or fanned out again afterwards.
func (b *Batch) Fanout(to []netip.AddrPort) error {
	d, trailing := b.lastQueued()
	if d == nil {
		return ErrEmpty
	}
	if len(to) == 0 {
		b.dropLast(len(b.slab)-len(d.Data), trailing)
		return nil
	}
	if !b.RoomFor(len(to)-1, 0) {
		return ErrFull
	}
	data := d.Data
	if !trailing && d.Addr != to[0] {
		b.runLen = 0 // the run it joined was judged by its old address
	}
	d.Addr = to[0]
	for _, a := range to[1:] {
		if trailing {
			b.trail++
			b.dgs[:cap(b.dgs)][cap(b.dgs)-b.trail] = udpio.Datagram{Data: data, Addr: a}
			continue
		}
		b.push(data, a)
	}
	b.shared = len(b.slab)
	return nil
}

// FanoutSealed replaces the datagram queued last (by Append, AppendRaw or
// AppendTrailing; not fanned out) with one copy for each address of to,
// in order, copy i sealed in place by sealers[i] and grown by up to grow
// bytes: a sender with a key sends each packet to every receiver under
// that receiver's own keys. Unlike Fanout's, the copies differ, so the
// slab holds each. A trailing datagram's copies are trailing. plain is
// scratch for the plain bytes meanwhile (give it the capacity of the
// largest datagram, so that nothing allocates). It returns how many copies
// were queued. When the copies do not all fit, the datagram is removed and
// ErrFull returned; a copy its sealer refuses is left out and the first
// such error returned with the count of the others. With to empty the
// datagram is removed. ErrEmpty: no datagram can be fanned out.
func (b *Batch) FanoutSealed(to []netip.AddrPort, sealers []InPlaceSealer, grow int, plain []byte) (int, error) {
	d, trailing := b.lastQueued()
	if d == nil {
		return 0, ErrEmpty
	}
	n := len(d.Data)
	plain = append(plain[:0], d.Data...)
	b.dropLast(len(b.slab)-n, trailing)
	if len(to) == 0 {
		return 0, nil
	}
	if !b.RoomFor(len(to), len(to)*(n+grow)) {
		return 0, ErrFull
	}
	var first error
	k := 0
	for i, a := range to {
		start := len(b.slab)
		b.slab = append(b.slab, plain...)
		data := b.slab[start:len(b.slab):len(b.slab)]
		if trailing {
			if b.trail == 0 {
				b.trailAt = len(b.dgs)
			}
			b.trail++
			b.dgs[:cap(b.dgs)][cap(b.dgs)-b.trail] = udpio.Datagram{Data: data, Addr: a}
		} else {
			b.push(data, a)
		}
		if err := b.SealLast(sealers[i], grow); err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		k++
	}
	return k, first
}

// ExtendLast grows the datagram queued last in order by n bytes, in
// place, and returns it; ok is false (and nothing changes) when that
// datagram does not end the slab (a trailing one was queued after it),
// when there is none, or when n more bytes do not fit. The caller writes
// the new bytes and fixes the datagram's length and checksum
// (packet.Refinish). A sender packs messages into a queued DATA datagram
// so.
func (b *Batch) ExtendLast(n int) (data []byte, ok bool) {
	k := len(b.dgs)
	if k == 0 || !endsSlab(b.slab, b.dgs[k-1].Data) || cap(b.slab)-len(b.slab) < n || len(b.slab) == b.shared {
		return nil, false
	}
	start := len(b.slab) - len(b.dgs[k-1].Data)
	b.slab = b.slab[:len(b.slab)+n]
	b.dgs[k-1].Data = b.slab[start:len(b.slab):len(b.slab)]
	// The datagram no longer matches the run it may have joined.
	if b.runLen > 1 {
		b.runLen = 0
	} else {
		b.runSize = len(b.dgs[k-1].Data)
	}
	return b.dgs[k-1].Data, true
}

func (b *Batch) dropLast(start int, trailing bool) {
	b.slab = b.slab[:start]
	if trailing {
		b.dgs[:cap(b.dgs)][cap(b.dgs)-b.trail] = udpio.Datagram{}
		b.trail--
		return
	}
	b.dgs[len(b.dgs)-1] = udpio.Datagram{}
	b.dgs = b.dgs[:len(b.dgs)-1]
	b.runLen = max(b.runLen-1, 0)
}

// Datagrams returns the datagrams queued in order, and the trailing ones
// once settled, in write order; they alias the batch until Reset.
func (b *Batch) Datagrams() []udpio.Datagram { return b.dgs }

// Len returns the number of datagrams Datagrams returns.
func (b *Batch) Len() int { return len(b.dgs) }

// Trailing returns the number of trailing datagrams not yet settled.
func (b *Batch) Trailing() int { return b.trail }

// Bytes returns the number of queued bytes, trailing datagrams included.
func (b *Batch) Bytes() int { return len(b.slab) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	clear(b.dgs) // drop references to addresses
	full := b.dgs[:cap(b.dgs)]
	clear(full[len(full)-b.trail:])
	b.dgs = b.dgs[:0]
	b.slab = b.slab[:0]
	b.trail = 0
	b.runLen = 0
	b.shared = 0
}

// Pair is double buffering for one writer: a core fills Current while the
// socket goroutine writes the batch it took with Take.
type Pair struct {
	cur, spare *Batch
	taken      bool
	// BeforeTake, if set, is called by Take when the other batch is
	// free, before it takes the current one: a core
	// that keeps the batch's last datagram open (a sender packing
	// messages into it) finishes it there.
	BeforeTake func()
}

// NewPair returns two batches of the given capacities.
func NewPair(maxDatagrams, maxBytes int) *Pair {
	return &Pair{cur: New(maxDatagrams, maxBytes), spare: New(maxDatagrams, maxBytes)}
}

// Current returns the batch being filled.
func (p *Pair) Current() *Batch { return p.cur }

// Take settles the filled batch, returns it and starts filling the other
// one. It returns nil when the current batch is empty (trailing datagrams
// included) or the other batch has not been given back yet.
func (p *Pair) Take() *Batch {
	if p.taken {
		return nil // the batch goes on filling: what it holds stays open
	}
	if p.BeforeTake != nil {
		p.BeforeTake()
	}
	if p.taken || p.cur.Len()+p.cur.Trailing() == 0 {
		return nil
	}
	b := p.cur
	b.Settle()
	p.cur, p.spare = p.spare, nil
	p.taken = true
	return b
}

// Idle reports whether nothing is queued and no batch is out with the
// writer: everything ever queued has been given back written.
func (p *Pair) Idle() bool { return !p.taken && p.cur.Len()+p.cur.Trailing() == 0 }

// Give hands back a batch returned by Take once it has been written.
func (p *Pair) Give(b *Batch) {
	b.Reset()
	p.spare = b
	p.taken = false
}
