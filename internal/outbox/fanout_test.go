package outbox

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/telewire/telewire/packet"
)

var fanTo = []netip.AddrPort{
	netip.MustParseAddrPort("127.0.0.1:1001"),
	netip.MustParseAddrPort("127.0.0.1:1002"),
	netip.MustParseAddrPort("127.0.0.1:1003"),
}

// TestFanout: a datagram fanned out to three addresses is queued three
// times over one copy of its bytes, in order or trailing; afterwards it
// cannot be extended, sealed or fanned out again; an empty set removes it;
// a batch without the places refuses and changes nothing.
func TestFanout(t *testing.T) {
	b := New(16, 4000)
	if err := b.Fanout(fanTo); !errors.Is(err, ErrEmpty) {
		t.Fatalf("fanout of an empty batch: %v", err)
	}
	if err := b.Append(data(10), dst); err != nil {
		t.Fatal(err)
	}
	one := b.Bytes()
	if err := b.Fanout(fanTo); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 3 || b.Bytes() != one {
		t.Fatalf("%d datagrams, %d bytes; want 3 over one copy of %d", b.Len(), b.Bytes(), one)
	}
	for i, d := range b.Datagrams() {
		if d.Addr != fanTo[i] || &d.Data[0] != &b.Datagrams()[0].Data[0] || len(d.Data) != one {
			t.Fatalf("datagram %d: to %v, %d bytes, shared %v", i, d.Addr, len(d.Data), &d.Data[0] == &b.Datagrams()[0].Data[0])
		}
		var p packet.Packet
		if err := p.Parse(d.Data); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := b.ExtendLast(1); ok {
		t.Fatal("extended a fanned-out datagram")
	}
	if err := b.Fanout(fanTo); !errors.Is(err, ErrEmpty) {
		t.Fatalf("fanned out twice: %v", err)
	}
	if err := b.SealLast(nopSealer{}, 0); !errors.Is(err, ErrEmpty) {
		t.Fatalf("sealed a fanned-out datagram: %v", err)
	}
	// Trailing: the copies stay trailing, behind what is queued in order.
	par := &packet.Packet{Header: packet.Header{Kind: packet.KindParity}, Parity: packet.Parity{First: 1, K: 1, M: 1, Stride: 1}, Payload: []byte{1, 2}}
	if err := b.AppendTrailing(par, dst); err != nil {
		t.Fatal(err)
	}
	if err := b.Fanout(fanTo[:2]); err != nil || b.Trailing() != 2 {
		t.Fatalf("trailing fanout: %v, %d trailing", err, b.Trailing())
	}
	if err := b.Append(data(5), dst); err != nil {
		t.Fatal(err)
	}
	// The datagram queued after a fanout is a datagram of its own again.
	if _, ok := b.ExtendLast(1); !ok {
		t.Fatal("a new datagram after a fanout cannot be extended")
	}
	b.Settle()
	dgs := b.Datagrams()
	if len(dgs) != 6 || dgs[3].Addr != dst || dgs[4].Addr != fanTo[0] || dgs[5].Addr != fanTo[1] || &dgs[4].Data[0] != &dgs[5].Data[0] {
		t.Fatalf("after settling: %d datagrams, %v %v %v", len(dgs), dgs[3].Addr, dgs[4].Addr, dgs[5].Addr)
	}
	// No subscriber: the datagram goes.
	n, bytes := b.Len(), b.Bytes()
	if err := b.Append(data(7), dst); err != nil {
		t.Fatal(err)
	}
	if err := b.Fanout(nil); err != nil || b.Len() != n || b.Bytes() != bytes {
		t.Fatalf("empty fanout: %v, %d datagrams %d bytes, want %d %d", err, b.Len(), b.Bytes(), n, bytes)
	}
	// Not enough places.
	small := New(2, 4000)
	if err := small.Append(data(1), dst); err != nil {
		t.Fatal(err)
	}
	if err := small.Fanout(fanTo); !errors.Is(err, ErrFull) || small.Len() != 1 || small.Datagrams()[0].Addr != dst {
		t.Fatalf("fanout past the bound: %v, %d datagrams", err, small.Len())
	}
}

// TestFanoutAllocs: fanning out allocates nothing.
func TestFanoutAllocs(t *testing.T) {
	b := New(1024, 1<<20)
	d := data(100)
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		for range 100 {
			_ = b.Append(d, dst)
			_ = b.Fanout(fanTo)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
}

type nopSealer struct{}

func (nopSealer) SealInPlace(p []byte) ([]byte, error) { return p, nil }

// tagSealer appends its tag byte (a stand-in for a per-destination
// sealer: each copy comes out different); fail refuses.
type tagSealer struct {
	tag  byte
	fail bool
}

var errTag = errors.New("tag sealer refuses")

func (s tagSealer) SealInPlace(p []byte) ([]byte, error) {
	if s.fail {
		return p, errTag
	}
	return append(p, s.tag), nil
}

// TestFanoutSealed: the datagram becomes one copy per address, each
// sealed by its own sealer in its own bytes, in order or trailing; a
// copy its sealer refuses is left out (the others go); without room for
// every copy the datagram is removed; an empty set removes it.
func TestFanoutSealed(t *testing.T) {
	sealers := []InPlaceSealer{tagSealer{tag: 1}, tagSealer{tag: 2}, tagSealer{tag: 3}}
	plain := make([]byte, 0, packet.MaxPacketLen)
	b := New(16, 4000)
	if _, err := b.FanoutSealed(fanTo, sealers, 1, plain); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty batch: %v", err)
	}
	_ = b.Append(data(10), dst)
	one := b.Bytes()
	if n, err := b.FanoutSealed(fanTo, sealers, 1, plain); n != 3 || err != nil {
		t.Fatalf("%d copies, %v", n, err)
	}
	if b.Len() != 3 || b.Bytes() != 3*(one+1) {
		t.Fatalf("%d datagrams, %d bytes; want 3 copies of %d+1", b.Len(), b.Bytes(), one)
	}
	for i, d := range b.Datagrams() {
		if d.Addr != fanTo[i] || len(d.Data) != one+1 || d.Data[one] != byte(i+1) {
			t.Fatalf("copy %d: to %v, %d bytes, tag %d", i, d.Addr, len(d.Data), d.Data[len(d.Data)-1])
		}
		var p packet.Packet
		if err := p.Parse(d.Data[:one]); err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
	}

	// Trailing: the copies are trailing too, behind what follows in order.
	b.Reset()
	_ = b.AppendTrailing(data(20), dst)
	if n, err := b.FanoutSealed(fanTo, sealers, 1, plain); n != 3 || err != nil || b.Trailing() != 3 {
		t.Fatalf("trailing: %d copies, %v, %d trailing", n, err, b.Trailing())
	}
	_ = b.Append(data(5), dst)
	b.Settle()
	if d := b.Datagrams(); len(d) != 4 || d[0].Addr != dst || d[1].Addr != fanTo[0] || d[3].Addr != fanTo[2] {
		t.Fatalf("settled order %v", d)
	}

	// A refusing sealer: its copy is left out.
	b.Reset()
	_ = b.Append(data(10), dst)
	if n, err := b.FanoutSealed(fanTo, []InPlaceSealer{sealers[0], tagSealer{fail: true}, sealers[2]}, 1, plain); n != 2 || !errors.Is(err, errTag) || b.Len() != 2 {
		t.Fatalf("refused copy: %d copies, %v, %d queued", n, err, b.Len())
	}

	// No room for every copy: nothing is queued.
	small := New(16, one*3)
	_ = small.Append(data(10), dst)
	if n, err := small.FanoutSealed(fanTo, sealers, 1, plain); n != 0 || !errors.Is(err, ErrFull) || small.Len() != 0 || small.Bytes() != 0 {
		t.Fatalf("without room: %d copies, %v, %d queued", n, err, small.Len())
	}
	_ = small.Append(data(10), dst)
	if n, err := small.FanoutSealed(nil, nil, 1, plain); n != 0 || err != nil || small.Len() != 0 {
		t.Fatalf("empty set: %d, %v, %d queued", n, err, small.Len())
	}
	d := data(10)
	allocs := testing.AllocsPerRun(100, func() {
		b.Reset()
		for range 50 {
			_ = b.Append(d, dst)
			_, _ = b.FanoutSealed(fanTo, sealers, 1, plain)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
}
