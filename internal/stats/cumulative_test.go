package stats

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestCumulativeMatchesExact compares Cumulative with exact counts over
// delays spread across many octaves: each count may differ only by samples
// within the histogram's precision of the bound.
func TestCumulativeMatchesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h DelayHistogram
	const offset = 1_000_000_007 // clocks with unrelated epochs
	var rel []uint64
	for range 20000 {
		v := uint64(rng.ExpFloat64() * 5e6) // mean 5 ms
		rel = append(rel, v)
		h.Observe(int64(offset + v))
	}
	minV := slices.Min(rel)
	bounds := []uint64{100, 1e5, 1e6, 5e6, 1e7, 5e7, 1e9}
	cum := make([]uint64, len(bounds))
	sum := h.Cumulative(bounds, cum)
	var exactSum float64
	for _, v := range rel {
		exactSum += float64(v - minV)
	}
	for i, b := range bounds {
		var lo, hi uint64 // exact counts at b*(1-e) and b*(1+e)
		for _, v := range rel {
			r := v - minV
			if r <= b-b/RelativeErrorDivisor {
				lo++
			}
			if r <= b+b/RelativeErrorDivisor {
				hi++
			}
		}
		if cum[i] < lo || cum[i] > hi {
			t.Errorf("bound %d: cumulative %d, exact between %d and %d", b, cum[i], lo, hi)
		}
	}
	if d := sum/exactSum - 1; d > 1.0/RelativeErrorDivisor || d < -1.0/RelativeErrorDivisor {
		t.Errorf("sum %.0f, exact %.0f", sum, exactSum)
	}
	if cum[len(cum)-1] != h.Count() {
		t.Errorf("last bucket %d, count %d", cum[len(cum)-1], h.Count())
	}
	if a := testing.AllocsPerRun(10, func() { h.Cumulative(bounds, cum) }); a != 0 {
		t.Errorf("Cumulative allocates %.0f times", a)
	}
	var empty DelayHistogram
	if s := empty.Cumulative(bounds, cum); s != 0 || slices.Max(cum) != 0 {
		t.Errorf("empty histogram: sum %v counts %v", s, cum)
	}
}

// BenchmarkCumulative is the cost a receiver's Stats pays per stream for
// the Prometheus histogram, against Summary, which it paid already.
func BenchmarkCumulative(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	var h DelayHistogram
	for range 100000 {
		h.Observe(int64(rng.ExpFloat64() * 5e6))
	}
	bounds := []uint64{50e3, 100e3, 250e3, 500e3, 1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6, 1e9, 2.5e9, 5e9, 10e9}
	cum := make([]uint64, len(bounds))
	b.Run("Cumulative", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.Cumulative(bounds, cum)
		}
	})
	b.Run("Summary", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.Summary()
		}
	})
}
