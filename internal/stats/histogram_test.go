package stats

import (
	"encoding/json"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactQuantile is the reference: the nearest-rank q-quantile of the
// relative delays, computed from all raw samples with a sort.
func exactQuantile(sorted []int64, q float64) uint64 {
	n := len(sorted)
	rank := 1
	switch {
	case q >= 1:
		rank = n
	case q > 0:
		rank = int(math.Ceil(q * float64(n)))
		rank = max(1, min(rank, n))
	}
	return uint64(sorted[rank-1]) - uint64(sorted[0])
}

// quantilesToCheck covers the tails densely as well as the body.
var quantilesToCheck = []float64{
	0, 0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.333, 0.5, 0.6, 0.75, 0.9, 0.95,
	0.99, 0.995, 0.999, 0.9999, 1,
}

// withinPrecision reports whether got is within the documented error of
// the exact value want (a relative delay below RangeNanos).
func withinPrecision(got, want uint64) bool {
	var diff uint64
	if got > want {
		diff = got - want
	} else {
		diff = want - got
	}
	// diff <= want/125, without rounding the bound down.
	hi, lo := bits.Mul64(diff, RelativeErrorDivisor)
	return hi == 0 && lo <= want
}

// checkAgainstExact compares every checked quantile, Count and Max of h
// against a sorted copy of the raw samples.
func checkAgainstExact(t *testing.T, name string, h *DelayHistogram, raw []int64) {
	t.Helper()
	sorted := slices.Clone(raw)
	slices.Sort(sorted)
	if h.Count() != uint64(len(raw)) {
		t.Fatalf("%s: Count() = %d, want %d", name, h.Count(), len(raw))
	}
	wantMax := uint64(sorted[len(sorted)-1]) - uint64(sorted[0])
	if h.Max() != wantMax {
		t.Fatalf("%s: Max() = %d, want %d", name, h.Max(), wantMax)
	}
	var prev uint64
	for _, q := range quantilesToCheck {
		got, want := h.Quantile(q), exactQuantile(sorted, q)
		if want < RangeNanos && !withinPrecision(got, want) {
			t.Fatalf("%s: Quantile(%v) = %d, exact %d (error %.4f%%, allowed %.2f%%)",
				name, q, got, want, 100*math.Abs(float64(got)-float64(want))/float64(want),
				100.0/RelativeErrorDivisor)
		}
		if got < prev {
			t.Fatalf("%s: Quantile(%v) = %d is below a smaller quantile's %d", name, q, got, prev)
		}
		if got > wantMax {
			t.Fatalf("%s: Quantile(%v) = %d exceeds Max %d", name, q, got, wantMax)
		}
		prev = got
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h DelayHistogram
	if h.Count() != 0 || h.Max() != 0 || h.Quantile(0.5) != 0 || h.Quantile(1) != 0 {
		t.Fatalf("empty histogram: Count %d Max %d P50 %d P100 %d",
			h.Count(), h.Max(), h.Quantile(0.5), h.Quantile(1))
	}
	if s := h.Summary(); s != (Summary{}) {
		t.Fatalf("empty Summary() = %+v", s)
	}
}

func TestHistogramSingleSample(t *testing.T) {
	for _, raw := range []int64{0, -1, math.MinInt64, math.MaxInt64, 123_456_789} {
		var h DelayHistogram
		h.Observe(raw)
		for _, q := range quantilesToCheck {
			if got := h.Quantile(q); got != 0 {
				t.Fatalf("raw %d: Quantile(%v) = %d, want 0", raw, q, got)
			}
		}
		if h.Count() != 1 || h.Max() != 0 {
			t.Fatalf("raw %d: Count %d Max %d", raw, h.Count(), h.Max())
		}
	}
}

// TestHistogramSmallDelaysExact: relative delays below 126 ns are kept at
// 1 ns resolution, so every quantile is exact.
func TestHistogramSmallDelaysExact(t *testing.T) {
	for _, off := range []int64{0, 1 << 60, -(1 << 60), math.MinInt64, math.MaxInt64 - 125} {
		rng := rand.New(rand.NewPCG(uint64(off), 3))
		var h DelayHistogram
		raw := make([]int64, 0, 5000)
		for range 5000 {
			v := off + rng.Int64N(126)
			raw = append(raw, v)
			h.Observe(v)
		}
		sorted := slices.Clone(raw)
		slices.Sort(sorted)
		for _, q := range quantilesToCheck {
			if got, want := h.Quantile(q), exactQuantile(sorted, q); got != want {
				t.Fatalf("offset %d: Quantile(%v) = %d, want exactly %d", off, q, got, want)
			}
		}
	}
}

// TestHistogramMinimumArrivesLast feeds delays from the largest down, so
// the minimum falls on every sample and arrives last, and also a queue that
// drains: high delays first, a single low one at the very end.
func TestHistogramMinimumArrivesLast(t *testing.T) {
	var raw []int64
	for i := int64(0); i < 20_000; i++ {
		raw = append(raw, 5_000_000_000-i*i*10) // 5 s falling quadratically to 1 s
	}
	var h DelayHistogram
	for _, v := range raw {
		h.Observe(v)
	}
	checkAgainstExact(t, "descending", &h, raw)

	// 10 000 samples between 40 and 60 ms, then one at 0: every recorded
	// relative delay grows by 40 ms at the last sample.
	rng := rand.New(rand.NewPCG(7, 7))
	raw = raw[:0]
	h.Reset()
	for range 10_000 {
		v := int64(40_000_000) + rng.Int64N(20_000_000)
		raw = append(raw, v)
		h.Observe(v)
	}
	raw = append(raw, 0)
	h.Observe(0)
	checkAgainstExact(t, "late minimum", &h, raw)
	if got := h.Quantile(0); got != 0 {
		t.Fatalf("Quantile(0) = %d after the minimum arrived, want 0", got)
	}
}

// TestHistogramOrderIndependent: the state depends only on the multiset of
// samples, so the minimum falling (gradually or at once) costs nothing
// relative to knowing it from the start.
func TestHistogramOrderIndependent(t *testing.T) {
	gens := map[string]func(*rand.Rand) int64{
		"narrow":   func(r *rand.Rand) int64 { return r.Int64N(5_000) },
		"wide":     func(r *rand.Rand) int64 { return r.Int64N(200_000_000_000) },
		"log":      func(r *rand.Rand) int64 { return int64(math.Exp(r.Float64() * 26)) },
		"anything": func(r *rand.Rand) int64 { return int64(r.Uint64()) },
	}
	for name, gen := range gens {
		rng := rand.New(rand.NewPCG(11, uint64(len(name))))
		raw := make([]int64, 30_000)
		off := int64(rng.Uint64() >> 2)
		for i := range raw {
			raw[i] = gen(rng)
			if name != "anything" {
				raw[i] += off
			}
		}
		var ref DelayHistogram
		sorted := slices.Clone(raw)
		slices.Sort(sorted)
		for _, v := range sorted { // minimum first: no migration at all
			ref.Observe(v)
		}
		orders := map[string][]int64{"shuffled": slices.Clone(raw), "descending": slices.Clone(sorted)}
		rng.Shuffle(len(orders["shuffled"]), func(i, j int) {
			s := orders["shuffled"]
			s[i], s[j] = s[j], s[i]
		})
		slices.Reverse(orders["descending"])
		for oname, seq := range orders {
			h := new(DelayHistogram)
			for _, v := range seq {
				h.Observe(v)
			}
			if *h != ref {
				t.Fatalf("%s/%s: state differs from the ascending-order histogram", name, oname)
			}
		}
	}
}

// TestHistogramProperty checks quantiles against the exact sorted-slice
// computation for several distributions, offsets near ±2^60 and the ends
// of the int64 range, and orders that make the minimum fall.
func TestHistogramProperty(t *testing.T) {
	type dist struct {
		name string
		gen  func(r *rand.Rand, i int) int64
	}
	dists := []dist{
		{"uniform-100us", func(r *rand.Rand, _ int) int64 { return r.Int64N(100_000) }},
		{"exponential-5ms", func(r *rand.Rand, _ int) int64 { return int64(r.ExpFloat64() * 5e6) }},
		{"lognormal", func(r *rand.Rand, _ int) int64 { return int64(math.Exp(10 + 2.5*r.NormFloat64())) }},
		{"bimodal", func(r *rand.Rand, _ int) int64 {
			if r.IntN(10) == 0 {
				return 80_000_000 + r.Int64N(1_000_000)
			}
			return 2_000_000 + r.Int64N(50_000)
		}},
		// Receiver clock slower than the sender's by 50 ppm (one sample per
		// ms): the minimum falls by about 50 ns on every packet.
		{"clock-drift", func(r *rand.Rand, i int) int64 { return -int64(i)*50 + r.Int64N(300_000) }},
		// Queue draining: the first samples carry up to a second of delay.
		{"draining-queue", func(r *rand.Rand, i int) int64 {
			return max(0, 1_000_000_000-int64(i)*100_000) + r.Int64N(200_000)
		}},
		{"up-to-100s", func(r *rand.Rand, _ int) int64 { return r.Int64N(100_000_000_000) }},
		{"integers-near-level-edges", func(r *rand.Rand, _ int) int64 {
			l := r.IntN(30)
			return 126<<l + r.Int64N(5) - 2
		}},
	}
	offsets := []int64{0, 1 << 60, -(1 << 60), 1<<60 + 12_345, math.MaxInt64 - 200_000_000_000, math.MinInt64 + 200_000_000_000}
	seed := uint64(1)
	for _, d := range dists {
		for _, off := range offsets {
			seed++
			rng := rand.New(rand.NewPCG(seed, 42))
			n := 1 + rng.IntN(50_000)
			raw := make([]int64, n)
			for i := range raw {
				raw[i] = off + d.gen(rng, i)
			}
			var h DelayHistogram
			for _, v := range raw {
				h.Observe(v)
			}
			checkAgainstExact(t, d.name, &h, raw)
		}
	}
}

// TestHistogramClampsBeyondRange: delays beyond RangeNanos go to the top
// bucket; Max stays exact and no quantile exceeds it.
func TestHistogramClampsBeyondRange(t *testing.T) {
	var h DelayHistogram
	raw := []int64{math.MaxInt64, 0, math.MinInt64, 1 << 40, 5, math.MaxInt64 - 1}
	for _, v := range raw {
		h.Observe(v)
	}
	if h.Max() != math.MaxUint64 {
		t.Fatalf("Max() = %d, want %d", h.Max(), uint64(math.MaxUint64))
	}
	if got := h.Quantile(1.0 / 6); got != 0 {
		t.Fatalf("lowest sample reads %d, want 0", got)
	}
	for _, q := range []float64{0.2, 0.4, 0.5, 0.8} { // ranks 2 to 5 of 6
		got := h.Quantile(q)
		if got < RangeNanos-RangeNanos/60 || got > RangeNanos {
			t.Fatalf("Quantile(%v) = %d, want the top bucket near %d", q, got, RangeNanos)
		}
	}
	if got := h.Quantile(1); got != math.MaxUint64 {
		t.Fatalf("Quantile(1) = %d, want the exact maximum", got)
	}
	// A delay just inside the range is not clamped.
	h.Reset()
	h.Observe(0)
	h.Observe(int64(RangeNanos - 1))
	if got := h.Quantile(0.5); got != 0 {
		t.Fatalf("Quantile(0.5) = %d, want 0", got)
	}
	h.Observe(int64(RangeNanos - 1))
	if got, want := h.Quantile(0.5), RangeNanos-1; !withinPrecision(got, want) {
		t.Fatalf("Quantile(0.5) = %d, want about %d", got, want)
	}
}

func TestHistogramQuantileArgument(t *testing.T) {
	var h DelayHistogram
	for i := int64(0); i < 1000; i++ {
		h.Observe(1_000_000 + i*1000)
	}
	cases := []struct {
		q    float64
		want uint64
	}{
		{math.NaN(), 0},
		{math.Inf(-1), 0},
		{-3, 0},
		{0, 0},
		{1, 999_000},
		{7, 999_000},
		{math.Inf(1), 999_000},
		{1e-300, 0}, // rank 1
	}
	for _, c := range cases {
		if got := h.Quantile(c.q); got != c.want {
			t.Fatalf("Quantile(%v) = %d, want %d", c.q, got, c.want)
		}
	}
}

func TestHistogramSummary(t *testing.T) {
	var h DelayHistogram
	raw := make([]int64, 0, 10_000)
	for i := int64(1); i <= 10_000; i++ {
		v := -7_000_000_000 + i*1000
		raw = append(raw, v)
		h.Observe(v)
	}
	s := h.Summary()
	sorted := slices.Clone(raw)
	slices.Sort(sorted)
	for _, c := range []struct {
		name string
		got  uint64
		q    float64
	}{{"P50", s.P50, 0.5}, {"P90", s.P90, 0.9}, {"P99", s.P99, 0.99}} {
		if want := exactQuantile(sorted, c.q); !withinPrecision(c.got, want) {
			t.Fatalf("%s = %d, exact %d", c.name, c.got, want)
		}
		if c.got != h.Quantile(c.q) {
			t.Fatalf("%s = %d differs from Quantile(%v) = %d", c.name, c.got, c.q, h.Quantile(c.q))
		}
	}
	if s.Max != 9_999_000 {
		t.Fatalf("Max = %d, want 9999000", s.Max)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]uint64
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"p50_ns": s.P50, "p90_ns": s.P90, "p99_ns": s.P99, "max_ns": s.Max}
	if len(fields) != len(want) {
		t.Fatalf("JSON %s has fields %v", b, fields)
	}
	for k, v := range want {
		if got, ok := fields[k]; !ok || got != v {
			t.Fatalf("JSON %s: field %q = %d (present %v), want %d", b, k, got, ok, v)
		}
	}
}

func TestHistogramReset(t *testing.T) {
	var h DelayHistogram
	for i := int64(0); i < 1000; i++ {
		h.Observe(-i * 1_000_000)
	}
	h.Reset()
	if h != (DelayHistogram{}) {
		t.Fatal("Reset did not return the histogram to its zero value")
	}
	// A new minimum far above the old one is taken as the minimum again.
	h.Observe(1 << 50)
	h.Observe(1<<50 + 10)
	if h.Max() != 10 || h.Quantile(1) != 10 || h.Quantile(0) != 0 {
		t.Fatalf("after Reset: Max %d P100 %d P0 %d", h.Max(), h.Quantile(1), h.Quantile(0))
	}
}

func TestHistogramDoesNotAllocate(t *testing.T) {
	var h DelayHistogram
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]int64, 4096)
	for i := range raw {
		raw[i] = rng.Int64N(50_000_000)
	}
	i := 0
	if a := testing.AllocsPerRun(5000, func() {
		h.Observe(raw[i%len(raw)])
		i++
	}); a != 0 {
		t.Fatalf("Observe allocates %.1f times per call", a)
	}
	// The falling-minimum path, small and large falls.
	next := int64(0)
	if a := testing.AllocsPerRun(5000, func() {
		next -= 1 + int64(i%3)*1_000_000_000
		h.Observe(next)
		i++
	}); a != 0 {
		t.Fatalf("Observe with a falling minimum allocates %.1f times per call", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		_ = h.Summary()
		_ = h.Quantile(0.999)
	}); a != 0 {
		t.Fatalf("Summary/Quantile allocate %.1f times per call", a)
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	raw := make([]int64, 4096)
	for i := range raw {
		raw[i] = 1<<60 + rng.Int64N(50_000_000)
	}
	var h DelayHistogram
	h.Observe(1 << 60) // the minimum, so the loop measures the common path
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.Observe(raw[i&4095])
		i++
	}
}

// BenchmarkHistogramObserveDrift: the minimum falls by 1 ns on every
// sample, the worst steady state for the migration path.
func BenchmarkHistogramObserveDrift(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	jit := make([]int64, 4096)
	for i := range jit {
		jit[i] = rng.Int64N(50_000_000)
	}
	var h DelayHistogram
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		if i&1 == 0 {
			h.Observe(-i) // a new minimum
		} else {
			h.Observe(-i + jit[i&4095])
		}
		i++
	}
}

// BenchmarkHistogramObserveDescending: every sample is a new minimum
// 10 µs below the last, so every level has blocks to move.
func BenchmarkHistogramObserveDescending(b *testing.B) {
	var h DelayHistogram
	b.ReportAllocs()
	i := int64(0)
	for b.Loop() {
		h.Observe(-i * 10_000)
		i++
	}
}

func BenchmarkHistogramSummary(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h DelayHistogram
	for range 100_000 {
		h.Observe(int64(rng.ExpFloat64() * 5e6))
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Summary()
	}
}

// FuzzDelayHistogram decodes the input as a sequence of raw delays (8
// bytes each, little-endian, optionally narrowed by the first byte so that
// in-range spreads are common) and checks the histogram against the exact
// quantiles and against a histogram fed the same delays in ascending order.
func FuzzDelayHistogram(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	f.Add([]byte{30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x80})
	f.Add([]byte{20, 1, 0, 0, 0, 0, 0, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{63, 9, 9, 9, 9, 9, 9, 9, 9, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		shift := uint(data[0]) % 64 // keep the low 64-shift bits of every value
		data = data[1:]
		var raw []int64
		for len(data) >= 8 && len(raw) < 4096 {
			var u uint64
			for i := 7; i >= 0; i-- {
				u = u<<8 | uint64(data[i])
			}
			data = data[8:]
			raw = append(raw, int64(u<<shift)>>shift)
		}
		if len(raw) == 0 {
			return
		}
		var h DelayHistogram
		for _, v := range raw {
			h.Observe(v)
		}
		sorted := slices.Clone(raw)
		slices.Sort(sorted)
		if h.Count() != uint64(len(raw)) {
			t.Fatalf("Count() = %d, want %d", h.Count(), len(raw))
		}
		wantMax := uint64(sorted[len(sorted)-1]) - uint64(sorted[0])
		if h.Max() != wantMax {
			t.Fatalf("Max() = %d, want %d", h.Max(), wantMax)
		}
		var prev uint64
		for _, q := range quantilesToCheck {
			got, want := h.Quantile(q), exactQuantile(sorted, q)
			// Below the top bucket's lowest possible start the precision bound holds
			// even when some other samples were clamped.
			if want < RangeNanos-(2<<topLevel) && !withinPrecision(got, want) {
				t.Fatalf("Quantile(%v) = %d, exact %d", q, got, want)
			}
			if got < prev || got > wantMax {
				t.Fatalf("Quantile(%v) = %d out of order (previous %d, max %d)", q, got, prev, wantMax)
			}
			prev = got
		}
		var ref DelayHistogram
		for _, v := range sorted {
			ref.Observe(v)
		}
		if ref != h {
			t.Fatal("state depends on arrival order")
		}
	})
}
