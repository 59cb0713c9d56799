package fec

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/packet"
)

// TestAdaptiveReportFloodSearchesSpaced: REPORTs come from the network and
// each search for parameters costs milliseconds. A flood of reports whose
// figures change every time (absurd ones included: 100% loss, bursts of
// four million packets, a HighestSeq going anywhere) must not start a
// search for each: at most one per minSearchInterval, and the choice stays
// within its ceilings.
func TestAdaptiveReportFloodSearchesSpaced(t *testing.T) {
	a, err := NewAdaptive(AdaptiveConfig{MaxInterleave: 8, AllowOff: true, HoldNanos: 1})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	const reports, span = 10_000, 1_000_000_000 // 10 000 reports in one second
	for i := range reports {
		r := packet.Report{
			IntervalLossPPM: uint32(rng.IntN(packet.MaxLossPPM + 1)),
			BurstMeanMilli:  rng.Uint32(),
			HighestSeq:      rng.Uint64(),
		}
		if i%2 == 0 {
			r.IntervalLossPPM, r.BurstMeanMilli = 0, 0
		}
		k, m := a.Update(r, int64(i)*span/reports)
		if _, _, d := a.Params(); k < 1 || m < 0 || float64(m) > DefaultMaxOverhead*float64(k) || d < 1 || d > 8 {
			t.Fatalf("report %d: K=%d M=%d D=%d beyond the ceilings", i, k, m, d)
		}
	}
	if max := uint64(span/minSearchInterval + 1); a.searches > max {
		t.Fatalf("%d searches for %d reports in %d ns, want at most %d", a.searches, reports, span, max)
	}
	t.Logf("%d reports in 1 s: %d searches", reports, a.searches)
}

// TestAdaptiveThrottledRiseIsApplied: a rise in loss reported within the
// search interval is not lost; the first report after the interval acts on
// it, even if that report shows less loss (the hold keeps the estimate up).
func TestAdaptiveThrottledRiseIsApplied(t *testing.T) {
	a, err := NewAdaptive(AdaptiveConfig{})
	if err != nil {
		t.Fatal(err)
	}
	const ms = 1_000_000
	_, m0 := a.Update(packet.Report{IntervalLossPPM: 1000}, 0) // 0.1%: a search
	_, m1 := a.Update(packet.Report{IntervalLossPPM: 100_000}, 10*ms)
	if m1 != m0 {
		t.Fatalf("searched again 10 ms after the last search: M %d -> %d", m0, m1)
	}
	_, m2 := a.Update(packet.Report{IntervalLossPPM: 1000}, 10*ms+minSearchInterval)
	if m2 <= m0 {
		t.Fatalf("10%% loss reported during the interval not acted on: M %d -> %d", m0, m2)
	}
}

// TestResidualLossBurstUpTo: the one-pass model for every M agrees with
// ResidualLossBurst for each M (to rounding), and with itself at the top.
func TestResidualLossBurstUpTo(t *testing.T) {
	for _, c := range []struct {
		k, d int
		p, b float64
		mMax int
	}{
		{1, 1, 0.1, 1, 5}, {4, 1, 0.05, 3, 4}, {10, 2, 0.2, 2, 12}, {32, 8, 0.9, 4e6, 16}, {200, 1, 0.01, 1, 56}, {1, 1, 0.5, 1, 0},
	} {
		out := make([]float64, c.mMax+1)
		residualLossBurstUpTo(c.k, c.d, c.p, c.b, out)
		for m, got := range out {
			want := ResidualLossBurst(c.k, m, c.d, c.p, c.b)
			if diff := math.Abs(got - want); diff > 1e-12*math.Max(1, want) {
				t.Fatalf("k=%d m=%d d=%d p=%v b=%v: one pass %v, alone %v", c.k, m, c.d, c.p, c.b, got, want)
			}
			if m == c.mMax && got != want {
				t.Fatalf("k=%d m=%d: top differs: %v vs %v", c.k, m, got, want)
			}
		}
	}
}

// absurdReports alternates the worst case for the search (loss so high no
// choice meets the target, so every M is modelled) with almost no loss.
func absurdReports(i int) packet.Report {
	if i%2 == 0 {
		return packet.Report{IntervalLossPPM: 1, BurstMeanMilli: 0}
	}
	return packet.Report{IntervalLossPPM: 900_000, BurstMeanMilli: 4_000_000_000}
}

// TestAdaptiveSearchAllocatesNothing: a search (every report here, 100 ms
// apart) allocates nothing.
func TestAdaptiveSearchAllocatesNothing(t *testing.T) {
	a, err := NewAdaptive(AdaptiveConfig{MaxInterleave: 8, AllowOff: true, HoldNanos: 1})
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	if n := testing.AllocsPerRun(20, func() {
		a.Update(absurdReports(i), int64(i)*100_000_000)
		i++
	}); n != 0 {
		t.Fatalf("Update allocates %.1f times per search", n)
	}
	if a.searches < 20 {
		t.Fatalf("%d searches", a.searches)
	}
}

// BenchmarkAdaptiveSearch measures one report that starts a full search
// over K <= 32, M <= 16, D <= 8 (the sender's FECAuto limits), half of them
// with figures for which no choice meets the target.
func BenchmarkAdaptiveSearch(b *testing.B) {
	a, err := NewAdaptive(AdaptiveConfig{MaxInterleave: 8, AllowOff: true, HoldNanos: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a.Update(absurdReports(i), int64(i)*100_000_000)
	}
}
