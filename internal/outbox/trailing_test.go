package outbox

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/packet"
)

// tagged returns a DATA packet whose sequence number identifies it.
func tagged(seq uint64, n int) *packet.Packet {
	return &packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Seq: seq, Payload: make([]byte, n)}
}

// seqs returns the sequence numbers of the datagrams Datagrams shows.
func seqs(t *testing.T, b *Batch) []uint64 {
	t.Helper()
	var out []uint64
	var p packet.Packet
	for i, d := range b.Datagrams() {
		if err := p.Parse(d.Data); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		out = append(out, p.Seq)
	}
	return out
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTrailingOrder(t *testing.T) {
	b := New(8, 1<<12)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(b.Append(tagged(1, 1), dst))
	must(b.AppendTrailing(tagged(101, 2), dst))
	must(b.Append(tagged(2, 1), dst))
	must(b.AppendTrailing(tagged(102, 2), dst))
	must(b.AppendRaw(b.Datagrams()[0].Data, dst)) // a copy of 1
	if b.Len() != 3 || b.Trailing() != 2 {
		t.Fatalf("Len %d Trailing %d, want 3 and 2", b.Len(), b.Trailing())
	}
	if got := seqs(t, b); !equal(got, []uint64{1, 2, 1}) {
		t.Fatalf("before Settle: %v", got)
	}
	// The last datagram queued in order is still the last Datagrams shows:
	// the sender keeps it for retransmission.
	var p packet.Packet
	if err := p.Parse(b.Datagrams()[b.Len()-1].Data); err != nil || p.Seq != 1 {
		t.Fatalf("last in order: seq %d, %v", p.Seq, err)
	}
	b.Settle()
	if got := seqs(t, b); !equal(got, []uint64{1, 2, 1, 101, 102}) || b.Trailing() != 0 {
		t.Fatalf("after Settle: %v, %d trailing", got, b.Trailing())
	}
	must(b.Append(tagged(3, 1), dst)) // settled datagrams are ordinary ones
	must(b.AppendTrailing(tagged(103, 2), dst))
	b.Settle()
	b.Settle() // nothing left to settle
	if got := seqs(t, b); !equal(got, []uint64{1, 2, 1, 101, 102, 3, 103}) {
		t.Fatalf("second Settle: %v", got)
	}
	if b.Bytes() != 4*41+3*42 {
		t.Fatalf("Bytes %d", b.Bytes())
	}
}

func TestTrailingBounds(t *testing.T) {
	// Trailing datagrams count against the byte bound ...
	b := New(8, 200)
	if err := b.AppendTrailing(tagged(100, 50), dst); err != nil { // 90 bytes
		t.Fatal(err)
	}
	if err := b.Append(tagged(1, 50), dst); err != nil {
		t.Fatal(err)
	}
	if b.Room(21) || !b.Room(20) {
		t.Fatal("Room ignores the trailing datagram's bytes")
	}
	if err := b.AppendTrailing(tagged(101, 50), dst); !errors.Is(err, ErrFull) {
		t.Fatalf("byte bound: %v", err)
	}
	if err := b.AppendTrailing(&packet.Packet{}, dst); errors.Is(err, ErrFull) || err == nil {
		t.Fatalf("invalid packet: %v", err)
	}
	if b.Len() != 1 || b.Trailing() != 1 || b.Bytes() != 180 {
		t.Fatalf("failed appends changed the batch: Len %d Trailing %d Bytes %d", b.Len(), b.Trailing(), b.Bytes())
	}
	// ... and against the datagram bound.
	b = New(3, 1<<12)
	for _, err := range []error{
		b.AppendTrailing(tagged(100, 0), dst),
		b.Append(tagged(1, 0), dst),
		b.AppendTrailing(tagged(101, 0), dst),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Append(tagged(2, 0), dst); !errors.Is(err, ErrFull) {
		t.Fatalf("count bound, in order: %v", err)
	}
	if err := b.AppendTrailing(tagged(102, 0), dst); !errors.Is(err, ErrFull) {
		t.Fatalf("count bound, trailing: %v", err)
	}
	b.Settle()
	if got := seqs(t, b); !equal(got, []uint64{1, 100, 101}) {
		t.Fatalf("full batch settled: %v", got)
	}
}

// TestTrailingSpan checks that a trailing datagram is overtaken by at most
// TrailingSpan datagrams queued in order: the next one settles the batch
// before it is queued.
func TestTrailingSpan(t *testing.T) {
	b := New(4*TrailingSpan, 1<<20)
	_ = b.Append(tagged(0, 0), dst)
	_ = b.AppendTrailing(tagged(1000, 0), dst)
	for i := 1; i <= TrailingSpan+1; i++ {
		if b.Trailing() != 1 {
			t.Fatalf("settled after %d datagrams", i-1)
		}
		if err := b.Append(tagged(uint64(i), 0), dst); err != nil {
			t.Fatal(err)
		}
	}
	if b.Trailing() != 0 {
		t.Fatalf("not settled after %d datagrams", TrailingSpan+1)
	}
	got := seqs(t, b)
	if len(got) != TrailingSpan+3 || got[TrailingSpan] != TrailingSpan || got[TrailingSpan+1] != 1000 {
		t.Fatalf("trailing datagram at the wrong place: ...%v", got[TrailingSpan-1:])
	}
}

// TestTrailingModel drives batches of several shapes with seeded random
// operations and compares every settled batch with a model: two lists, the
// second moved behind the first at Settle (explicit, by Take, or forced by
// the span). It covers the trailing region meeting the in-order one in
// the shared array.
func TestTrailingModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, capDgs := range []int{1, 2, 3, 7, 64, TrailingSpan + 3, 3 * TrailingSpan} {
		p := NewPair(capDgs, 1<<20)
		var inOrder, trailing []uint64
		at := 0 // len(inOrder) when the oldest trailing one was queued
		seq := uint64(0)
		for op := 0; op < 20_000; op++ {
			b := p.Current()
			seq++
			switch r := rng.IntN(100); {
			case r < 45:
				err := b.Append(tagged(seq, rng.IntN(4)), dst)
				if full := len(inOrder)+len(trailing) == capDgs; full != errors.Is(err, ErrFull) {
					t.Fatalf("cap %d: Append: %v with %d queued", capDgs, err, len(inOrder)+len(trailing))
				}
				if err == nil {
					if len(trailing) > 0 && len(inOrder)-at >= TrailingSpan {
						inOrder, trailing = append(inOrder, trailing...), trailing[:0]
					}
					inOrder = append(inOrder, seq)
				}
			case r < 85:
				err := b.AppendTrailing(tagged(seq, rng.IntN(4)), dst)
				if full := len(inOrder)+len(trailing) == capDgs; full != errors.Is(err, ErrFull) {
					t.Fatalf("cap %d: AppendTrailing: %v", capDgs, err)
				}
				if err == nil {
					if len(trailing) == 0 {
						at = len(inOrder)
					}
					trailing = append(trailing, seq)
				}
			case r < 90:
				b.Settle()
				inOrder, trailing = append(inOrder, trailing...), trailing[:0]
			default:
				tb := p.Take()
				if (tb == nil) != (len(inOrder)+len(trailing) == 0) {
					t.Fatalf("cap %d: Take returned %v with %d queued", capDgs, tb, len(inOrder)+len(trailing))
				}
				if tb == nil {
					continue
				}
				want := append(inOrder, trailing...)
				if got := seqs(t, tb); !equal(got, want) || tb.Trailing() != 0 {
					t.Fatalf("cap %d: taken %v, want %v", capDgs, got, want)
				}
				p.Give(tb)
				for _, d := range tb.dgs[:cap(tb.dgs)] {
					if d.Data != nil || d.Addr.IsValid() {
						t.Fatalf("cap %d: Give left a reference behind", capDgs)
					}
				}
				inOrder, trailing = nil, nil
				continue
			}
			if got := seqs(t, b); !equal(got, inOrder) || b.Trailing() != len(trailing) {
				t.Fatalf("cap %d op %d: in order %v (%d trailing), want %v (%d)", capDgs, op, got, b.Trailing(), inOrder, len(trailing))
			}
		}
	}
}

func TestPairTakesTrailingOnly(t *testing.T) {
	p := NewPair(4, 1<<12)
	if err := p.Current().AppendTrailing(tagged(9, 1), dst); err != nil {
		t.Fatal(err)
	}
	if p.Current().Len() != 0 {
		t.Fatal("trailing datagram shown before Settle")
	}
	b := p.Take()
	if b == nil || b.Len() != 1 || b.Trailing() != 0 {
		t.Fatalf("Take of a trailing-only batch: %v", b)
	}
}

func TestTrailingAllocatesNothing(t *testing.T) {
	b := New(1024, 1<<20)
	data, parity := tagged(1, 200), tagged(2, 210)
	i := 0
	if n := testing.AllocsPerRun(2000, func() {
		var err error
		if i++; i%13 < 10 {
			err = b.Append(data, dst)
		} else {
			err = b.AppendTrailing(parity, dst)
		}
		if err != nil {
			b.Settle()
			b.Reset()
		}
	}); n != 0 {
		t.Fatalf("Append/AppendTrailing/Settle allocate %.1f times", n)
	}
}
