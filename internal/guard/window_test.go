package guard

import (
	"math"
	"math/rand/v2"
	"testing"
)

// starts are where the scenarios begin: counters may start anywhere
// (package seal starts them at a random point below 2^63), including next
// to block and ring boundaries and near the top of the range.
var starts = []uint64{0, 1, 63, 64, 65, 1<<15 - 1, 1 << 40, 1<<63 - 1, math.MaxUint64 - 1<<20}

func TestWindowExactEdges(t *testing.T) {
	for _, size := range []int{MinWindow, 100, 1000, 8128, DefaultWindow} {
		for _, s := range starts {
			w := NewWindow(size)
			W := w.Size()
			if W != uint64(size) {
				t.Fatalf("size %d became %d", size, W)
			}
			top := s + W + 5
			if v := w.Accept(top); v != Fresh {
				t.Fatalf("first counter: %v", v)
			}
			// Duplicate rejected.
			if v := w.Accept(top); v != Replay {
				t.Fatalf("size %d start %d: duplicate %v", size, s, v)
			}
			// Reordered by W-1: accepted, then a replay of it rejected.
			if v := w.Accept(top - (W - 1)); v != Fresh {
				t.Fatalf("size %d start %d: reordered by W-1: %v", size, s, v)
			}
			if v := w.Accept(top - (W - 1)); v != Replay {
				t.Fatalf("size %d start %d: replay of W-1: %v", size, s, v)
			}
			// Older than the window: rejected, whether seen or not.
			for _, back := range []uint64{W, W + 1, 2 * W, top - s} {
				if back > top {
					continue // would be below counter 0
				}
				if v := w.Accept(top - back); v != TooOld {
					t.Fatalf("size %d start %d: reordered by %d: %v", size, s, back, v)
				}
			}
			if h, ok := w.Highest(); !ok || h != top {
				t.Fatalf("highest %d, %v", h, ok)
			}
		}
	}
}

// Every counter in the window is remembered individually: accept all of
// (top-W, top] in a shuffled order, then every one of them is a replay and
// the one below is too old.
func TestWindowRemembersWholeWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range starts {
		w := NewWindow(1000)
		top := s + 5000
		w.Accept(top)
		perm := rng.Perm(999)
		for _, d := range perm {
			if v := w.Accept(top - 1 - uint64(d)); v != Fresh {
				t.Fatalf("start %d: %d below top: %v", s, d+1, v)
			}
		}
		for d := uint64(0); d < 1000; d++ {
			if v := w.Check(top - d); v != Replay {
				t.Fatalf("start %d: %d below top not remembered: %v", s, d, v)
			}
		}
		if v := w.Check(top - 1000); v != TooOld {
			t.Fatalf("start %d: window edge %v", s, v)
		}
	}
}

// Jumps forward of every size clear exactly what left the window.
func TestWindowJumps(t *testing.T) {
	for _, s := range starts {
		for _, jump := range []uint64{1, 63, 64, 65, 999, 1000, 1001, 4095, 4096, 1 << 30} {
			if s+999 > math.MaxUint64-jump {
				continue // past the last counter
			}
			w := NewWindow(1000)
			for c := s; c < s+1000; c++ {
				w.Accept(c)
			}
			top := s + 999 + jump
			if v := w.Accept(top); v != Fresh {
				t.Fatalf("jump %d: %v", jump, v)
			}
			for d := uint64(1); d < 1000; d++ {
				c := top - d
				want := Fresh
				if c < s+1000 {
					want = Replay // accepted before the jump and still in the window
				}
				if v := w.Check(c); v != want {
					t.Fatalf("start %d jump %d: counter top-%d is %v, want %v", s, jump, d, v, want)
				}
			}
		}
	}
}

func TestWindowCheckDoesNotRecord(t *testing.T) {
	w := NewWindow(0)
	if w.Size() != DefaultWindow {
		t.Fatalf("default size %d", w.Size())
	}
	for range 2 { // checking twice gives the same answer: nothing recorded
		if w.Check(10) != Fresh {
			t.Fatal("Check on an empty window")
		}
	}
	w.Accept(10)
	for range 2 {
		if w.Check(9) != Fresh {
			t.Fatal("Check recorded a counter")
		}
	}
	if w.Accept(9) != Fresh || w.Check(9) != Replay {
		t.Fatal("Accept did not record")
	}
	w.Reset()
	if _, ok := w.Highest(); ok || w.Accept(5) != Fresh || w.Accept(10) != Fresh {
		t.Fatal("Reset did not forget")
	}
}

func TestWindowClamp(t *testing.T) {
	if NewWindow(1).Size() != MinWindow || NewWindow(1<<30).Size() != MaxWindow || NewWindow(-5).Size() != MinWindow {
		t.Fatal("sizes not clamped")
	}
	if Fresh.String() != "fresh" || Replay.String() != "replay" || TooOld.String() != "too-old" || Verdict(9).String() != "unknown" {
		t.Fatal("Verdict.String")
	}
}

func TestWindowZeroAllocs(t *testing.T) {
	w := NewWindow(0)
	c := uint64(1 << 40)
	rng := rand.New(rand.NewPCG(5, 6))
	if a := testing.AllocsPerRun(10000, func() {
		c += uint64(rng.IntN(100))
		w.Accept(c - uint64(rng.IntN(40000)))
	}); a != 0 {
		t.Fatalf("Accept: %v allocs", a)
	}
}

// refWindow is the definition, with a map: what Window must agree with.
type refWindow struct {
	size    uint64
	highest uint64
	started bool
	seen    map[uint64]bool
}

func (r *refWindow) accept(c uint64) Verdict {
	switch {
	case !r.started || c > r.highest:
		r.started, r.highest = true, c
	case r.highest-c >= r.size:
		return TooOld
	case r.seen[c]:
		return Replay
	}
	r.seen[c] = true
	return Fresh
}

// FuzzWindow drives a Window and the reference model with the same
// counters (deltas around a moving top, from a fuzzed start) and checks
// they agree on every verdict, and that the window invariants hold: a
// Fresh counter is a Replay next time, the highest never goes down.
func FuzzWindow(f *testing.F) {
	f.Add(uint64(0), uint16(100), []byte{1, 2, 3, 0x80, 0x81, 0xff, 0x7f})
	f.Add(uint64(1<<63), uint16(64), []byte{0, 0, 0, 0x40, 0x40, 0xc0})
	f.Add(uint64(math.MaxUint64-300), uint16(1000), []byte{0x7f, 0x7f, 0x7f, 0xfe})
	f.Fuzz(func(t *testing.T, start uint64, size uint16, steps []byte) {
		w := NewWindow(int(size))
		ref := &refWindow{size: w.Size(), seen: map[uint64]bool{}}
		cur := start
		for i, s := range steps {
			// Low 7 bits: distance; high bit: backwards (scaled so that
			// jumps cross the window and the ring).
			d := uint64(s&0x7f) * uint64(1+i%37)
			var c uint64
			if s&0x80 != 0 {
				c = cur - min(d, cur) // never below 0
			} else {
				if d > math.MaxUint64-cur {
					d = math.MaxUint64 - cur
				}
				c = cur + d
			}
			before, _ := w.Highest()
			chk := w.Check(c)
			got, want := w.Accept(c), ref.accept(c)
			if got != want || chk != got {
				t.Fatalf("step %d counter %d: Accept %v, Check %v, reference %v", i, c, got, chk, want)
			}
			if got == Fresh && w.Check(c) != Replay {
				t.Fatalf("step %d: accepted %d not remembered", i, c)
			}
			if h, _ := w.Highest(); i > 0 && h < before {
				t.Fatalf("highest went down from %d to %d", before, h)
			}
			cur = c
		}
	})
}
