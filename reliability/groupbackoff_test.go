package reliability

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/telewire/telewire/packet"
)

func TestGroupBackoffBoundsAndShape(t *testing.T) {
	const window = 100 * ms
	for _, n := range []int{-1, 0, 1} {
		if w := GroupBackoff(window, n, 0.5); w != 0 {
			t.Fatalf("group of %d waits %d", n, w)
		}
	}
	if GroupBackoff(0, 100, 0.5) != 0 || GroupBackoff(-5, 100, 0.5) != 0 {
		t.Fatal("an empty window waits")
	}
	for _, n := range []int{2, 10, 100, 1 << 20} {
		if GroupBackoff(window, n, 0) != 0 || GroupBackoff(window, n, 1) != window {
			t.Fatalf("n %d: ends of the window %d %d", n, GroupBackoff(window, n, 0), GroupBackoff(window, n, 1))
		}
		if GroupBackoff(window, n, -3) != 0 || GroupBackoff(window, n, 7) != window || GroupBackoff(window, n, math.NaN()) < 0 {
			t.Fatalf("n %d: out-of-range u not clamped", n)
		}
		prev := int64(0)
		for u := 0.0; u <= 1; u += 1.0 / 64 {
			w := GroupBackoff(window, n, u)
			if w < prev || w > window {
				t.Fatalf("n %d: not monotone within the window at u %v: %d after %d", n, u, w, prev)
			}
			prev = w
		}
	}
	// The larger the group, the later the typical wait: the median of
	// the draws moves towards the end of the window, and the expected
	// first of n draws stays early.
	median := func(n int) int64 { return GroupBackoff(window, n, 0.5) }
	if !(median(2) < median(10) && median(10) < median(100)) {
		t.Fatalf("medians %d %d %d do not grow with the group", median(2), median(10), median(100))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const n, trials = 100, 400
	var firsts []int64
	for range trials {
		first := int64(window)
		for range n {
			first = min(first, GroupBackoff(window, n, rng.Float64()))
		}
		firsts = append(firsts, first)
	}
	slices.Sort(firsts)
	if m := firsts[trials/2]; m < window/10 || m > window/2 {
		t.Fatalf("median first of %d draws %d ms, want within a tenth and half of the window", n, m/ms)
	}
}

// TestNACKBackoffDelaysAndArrivalCancels: with a back-off the first
// request of a gap waits the tolerance plus the back-off; a retransmission
// arriving meanwhile (asked for by another receiver) cancels it; a retry
// waits its RTO plus the retry back-off.
func TestNACKBackoffDelaysAndArrivalCancels(t *testing.T) {
	for _, start := range wrapStarts {
		var calls []bool
		tr := NewTracker(TrackerConfig{ReorderFloor: 2 * ms, NACKInterval: ms, NACKBackoff: func(retry bool) int64 {
			calls = append(calls, retry)
			if retry {
				return 3 * ms
			}
			return 20 * ms
		}})
		tr.OnData(start, 0)
		tr.OnData(start+4, 0) // 1..3 missing: one draw for the gap
		if at, ok := tr.NextNACKAt(); !ok || at != 22*ms {
			t.Fatalf("start %d: first request due at %d %v, want 22 ms", start, at, ok)
		}
		if got := tr.AppendNACK(nil, 21*ms, 10*ms, nil); len(got) != 0 {
			t.Fatalf("start %d: requested %v before the back-off passed", start, got)
		}
		tr.OnArrival(start+2, 21*ms, SourceRetransmit) // another receiver's repair
		got := rel(tr.AppendNACK(nil, 22*ms, 10*ms, nil), start)
		if want := []packet.Range{rg(1, 1), rg(3, 1)}; !slices.Equal(got, want) {
			t.Fatalf("start %d: ranges %v, want %v", start, got, want)
		}
		// Retries: RTO 10 ms after the request, plus 3 ms.
		if got := tr.AppendNACK(nil, 34*ms, 10*ms, nil); len(got) != 0 {
			t.Fatalf("start %d: retried %v before RTO + back-off", start, got)
		}
		got = rel(tr.AppendNACK(nil, 35*ms, 10*ms, nil), start)
		if want := []packet.Range{rg(1, 1), rg(3, 1)}; !slices.Equal(got, want) {
			t.Fatalf("start %d: retry %v, want %v", start, got, want)
		}
		if want := []bool{false, true, true}; !slices.Equal(calls, want) {
			t.Fatalf("start %d: back-off calls %v, want %v (one per gap, one per round)", start, calls, want)
		}
		if s := tr.Stats(); s.NACKed != 2 || s.NACKRetries != 2 || s.RecoveredRTX != 1 {
			t.Fatalf("start %d: stats %+v", start, s)
		}
		checkTrackerInvariants(t, tr)
	}
}

func TestNACKBackoffAllocatesNothing(t *testing.T) {
	tr := NewTracker(TrackerConfig{ReorderFloor: ms, NACKInterval: ms, NACKBackoff: func(bool) int64 { return ms }})
	dst := make([]packet.Range, 0, 256)
	seq, now := uint64(0), int64(0)
	allocs := testing.AllocsPerRun(1000, func() {
		tr.OnData(seq, now)
		tr.OnData(seq+2, now) // one missing
		now += 5 * ms
		dst = tr.AppendNACK(dst[:0], now, 2*ms, nil)
		tr.OnArrival(seq+1, now, SourceRetransmit)
		seq += 3
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per gap with a back-off", allocs)
	}
}
