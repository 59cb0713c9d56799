package outbox

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/internal/udpio"
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

// TestTrailingSpan checks where a batch settles itself: at the end of a
// run of equal datagrams once settleFrom have overtaken the oldest trailing
// one, so a steady stream of equal DATA settles between whole GSO runs,
// and never later than TrailingSpan (which the run rule alone already
// keeps to: TestTrailingModel checks the bound under random sizes).
func TestTrailingSpan(t *testing.T) {
	for _, c := range []struct {
		name string
		size func(i int) int // payload size of the i-th datagram queued in order
		want int             // datagrams that overtake the trailing one
	}{
		// Runs start at 0, 64 and 128; the third ends at 192, after 191
		// datagrams overtook the trailing one queued after the first.
		{"equal", func(int) int { return 0 }, 3*udpio.MaxGSOSegments - 1},
		// No run longer than one: settles as soon as settleFrom overtook.
		{"alternating", func(i int) int { return i % 2 }, settleFrom},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := New(4*TrailingSpan, 1<<20)
			_ = b.Append(tagged(0, c.size(0)), dst)
			_ = b.AppendTrailing(tagged(1000, 0), dst)
			i := 1
			for ; b.Trailing() == 1; i++ {
				if i > TrailingSpan+1 {
					t.Fatalf("not settled after %d datagrams", i-1)
				}
				if err := b.Append(tagged(uint64(i), c.size(i)), dst); err != nil {
					t.Fatal(err)
				}
			}
			overtook := i - 2 // the last one appended went behind it
			got := seqs(t, b)
			if overtook != c.want || got[overtook+1] != 1000 || len(got) != overtook+3 {
				t.Fatalf("overtaken by %d, want %d: ...%v", overtook, c.want, got[max(overtook-2, 0):])
			}
		})
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
		// The run of equal datagrams the in-order ones end with.
		runLen, runSize := 0, 0
		seq := uint64(0)
		for op := 0; op < 20_000; op++ {
			b := p.Current()
			seq++
			switch r := rng.IntN(100); {
			case r < 45:
				p := tagged(seq, rng.IntN(4))
				err := b.Append(p, dst)
				if full := len(inOrder)+len(trailing) == capDgs; full != errors.Is(err, ErrFull) {
					t.Fatalf("cap %d: Append: %v with %d queued", capDgs, err, len(inOrder)+len(trailing))
				}
				if err == nil {
					joins := runLen > 0 && runLen < udpio.MaxGSOSegments && p.EncodedLen() == runSize
					if over := len(inOrder) - at; len(trailing) > 0 && (over >= TrailingSpan || over >= settleFrom && !joins) {
						if over > TrailingSpan {
							t.Fatalf("cap %d: trailing datagram overtaken by %d", capDgs, over)
						}
						inOrder, trailing = append(inOrder, trailing...), trailing[:0]
						joins = false
					}
					if joins {
						runLen++
					} else {
						runLen, runSize = 1, p.EncodedLen()
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
				if len(trailing) > 0 {
					inOrder, trailing = append(inOrder, trailing...), trailing[:0]
					runLen = 0
				}
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
				runLen = 0
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
