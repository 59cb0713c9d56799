package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestJitterHandComputed checks the estimator step by step against values
// worked out by hand from the A.8 recurrence J16 += |D| - (J16+8)>>4.
func TestJitterHandComputed(t *testing.T) {
	steps := []struct {
		sent, recv int64
		want       uint64
	}{
		// transit 1000: first packet, no difference yet.
		{0, 1000, 0},
		// transit 2600, |D| = 1600: J16 = 0 + 1600 - 0 = 1600; J = 1608>>4 = 100.
		{20_000, 22_600, 100},
		// transit 1000, |D| = 1600: J16 = 1600 + 1600 - 100 = 3100; J = 3108>>4 = 194.
		{40_000, 41_000, 194},
		// transit 1000, |D| = 0: J16 = 3100 - 194 = 2906; J = 2914>>4 = 182.
		{60_000, 61_000, 182},
		// transit 4200, |D| = 3200: J16 = 2906 + 3200 - 182 = 5924; J = 5932>>4 = 370.
		{80_000, 84_200, 370},
	}
	// The same sequence under several unrelated epoch pairs, including ones
	// where recv - sent wraps around the int64 range.
	epochs := [][2]int64{
		{0, 0},
		{1 << 60, -(1 << 60)},
		{-(1 << 62), 1 << 62},
		{math.MinInt64 + 5, math.MaxInt64 - 100_000},
		{math.MaxInt64 - 100_000, math.MinInt64},
	}
	for _, ep := range epochs {
		var j Jitter
		for i, s := range steps {
			j.Observe(s.sent+ep[0], s.recv+ep[1])
			if got := j.Nanos(); got != s.want {
				t.Fatalf("epochs %v, packet %d: Nanos() = %d, want %d", ep, i, got, s.want)
			}
		}
	}
}

func TestJitterZeroValue(t *testing.T) {
	var j Jitter
	if j.Nanos() != 0 {
		t.Fatalf("zero Jitter reports %d", j.Nanos())
	}
	j.Observe(5, 1_000_000)
	if j.Nanos() != 0 {
		t.Fatalf("after one packet Nanos() = %d, want 0", j.Nanos())
	}
}

// TestJitterConstantDelay: a constant transit time gives 0 from the start,
// and after a disturbance the estimate decays back to exactly 0.
func TestJitterConstantDelay(t *testing.T) {
	var j Jitter
	const delay = 7_654_321
	for i := int64(0); i < 1000; i++ {
		j.Observe(i*20_000_000, i*20_000_000+delay)
		if j.Nanos() != 0 {
			t.Fatalf("packet %d: constant delay gave jitter %d", i, j.Nanos())
		}
	}
	// One packet 50 ms late, then constant again.
	j.Observe(1000*20_000_000, 1000*20_000_000+delay+50_000_000)
	if j.Nanos() == 0 {
		t.Fatal("a 50 ms step left the jitter at 0")
	}
	prev := j.Nanos()
	for i := int64(1001); i < 2000; i++ {
		j.Observe(i*20_000_000, i*20_000_000+delay)
		got := j.Nanos()
		if got > prev && i > 1001 {
			t.Fatalf("packet %d: jitter rose from %d to %d under constant delay", i, prev, got)
		}
		prev = got
	}
	if prev != 0 {
		t.Fatalf("jitter did not decay to 0 under constant delay: %d", prev)
	}
}

// TestJitterAlternatingDelay: transit times alternating between two values
// Δ apart give |D| = Δ on every packet, and J converges to exactly Δ.
func TestJitterAlternatingDelay(t *testing.T) {
	for _, delta := range []int64{1, 7, 16, 12_345, 1_000_000, 250_000_000} {
		var j Jitter
		base := int64(-3_000_000_000)
		for i := int64(0); i < 2000; i++ {
			recv := i*10_000_000 + base
			if i%2 == 1 {
				recv += delta
			}
			j.Observe(i*10_000_000, recv)
		}
		if got := j.Nanos(); got != uint64(delta) {
			t.Fatalf("Δ = %d: jitter converged to %d", delta, got)
		}
		// Converged means it stays there.
		for i := int64(2000); i < 2100; i++ {
			recv := i*10_000_000 + base
			if i%2 == 1 {
				recv += delta
			}
			j.Observe(i*10_000_000, recv)
			if got := j.Nanos(); got != uint64(delta) {
				t.Fatalf("Δ = %d: jitter left %d for %d", delta, delta, got)
			}
		}
	}
}

// TestJitterMatchesRealRecurrence compares against the real-valued RFC 3550
// recurrence J += (|D| - J)/16 in float64 on seeded random delays: the
// scaled integer state stays within half a nanosecond of it, and rounding
// adds at most another half.
func TestJitterMatchesRealRecurrence(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		var j Jitter
		var ref float64
		var prevTransit int64
		scale := []int64{10, 1000, 100_000, 10_000_000, 1_000_000_000}[seed-1]
		for i := 0; i < 20_000; i++ {
			sent := int64(i) * 5_000_000
			transit := 40_000_000 + rng.Int64N(scale)
			j.Observe(sent, sent+transit)
			if i > 0 {
				d := float64(transit - prevTransit)
				ref += (math.Abs(d) - ref) / 16
			}
			prevTransit = transit
			if diff := math.Abs(float64(j.Nanos()) - ref); diff > 1 {
				t.Fatalf("seed %d packet %d: Nanos() = %d, real recurrence %.3f", seed, i, j.Nanos(), ref)
			}
		}
	}
}

// TestJitterHostileTimestamps: extreme timestamps must neither panic nor
// overflow the estimate.
func TestJitterHostileTimestamps(t *testing.T) {
	var j Jitter
	vals := []int64{math.MinInt64, math.MaxInt64, 0, -1, math.MinInt64, math.MaxInt64}
	for i := 0; i < 10_000; i++ {
		j.Observe(vals[i%len(vals)], vals[(i*7+3)%len(vals)])
		if got := j.Nanos(); got > maxTransitStepNanos+1 {
			t.Fatalf("packet %d: jitter %d exceeds the step cap %d", i, got, uint64(maxTransitStepNanos))
		}
	}
	if j.Nanos() == 0 {
		t.Fatal("hostile timestamps produced zero jitter")
	}
}

func TestJitterReset(t *testing.T) {
	var j Jitter
	j.Observe(0, 0)
	j.Observe(10, 5000)
	if j.Nanos() == 0 {
		t.Fatal("setup: expected nonzero jitter")
	}
	j.Reset()
	if j != (Jitter{}) {
		t.Fatalf("Reset left state %+v", j)
	}
	// After Reset the next packet is a first packet again.
	j.Observe(0, 1_000_000_000)
	if j.Nanos() != 0 {
		t.Fatalf("first packet after Reset gave %d", j.Nanos())
	}
}

func TestJitterObserveDoesNotAllocate(t *testing.T) {
	var j Jitter
	var i int64
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		j.Observe(i*1000, i*1000+i%17)
		_ = j.Nanos()
	})
	if allocs != 0 {
		t.Fatalf("Observe allocates %.1f times per call", allocs)
	}
}

func BenchmarkJitterObserve(b *testing.B) {
	var j Jitter
	b.ReportAllocs()
	for i := int64(0); b.Loop(); i++ {
		j.Observe(i*1000, i*1000+(i*7919)%1013)
	}
	_ = j.Nanos()
}
