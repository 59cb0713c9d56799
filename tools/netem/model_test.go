package netem

import (
	"math"
	"testing"
	"time"
)

func mustSpec(t testing.TB, s string) Spec {
	t.Helper()
	sp, err := ParseSpec(s)
	if err != nil {
		t.Fatalf("ParseSpec(%q): %v", s, err)
	}
	return sp
}

func mustModel(t testing.TB, s string, seed int64) *Model {
	t.Helper()
	m, err := NewModel(mustSpec(t, s), seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// lossRun feeds n packets to a model with an empty queue and returns the
// loss flag of each.
func lossRun(m *Model, n int) []bool {
	lost := make([]bool, n)
	for i := range lost {
		d := m.Decide(int64(i)*int64(time.Millisecond), 100, QueueState{})
		lost[i] = d.Copies[0].Verdict == Lost
	}
	return lost
}

func lossStats(lost []bool) (rate, meanBurst float64) {
	var n, bursts int
	for i, l := range lost {
		if l {
			n++
			if i == 0 || !lost[i-1] {
				bursts++
			}
		}
	}
	if bursts == 0 {
		return 0, 0
	}
	return float64(n) / float64(len(lost)), float64(n) / float64(bursts)
}

func within(t *testing.T, what string, got, want, relTol float64) {
	t.Helper()
	if math.Abs(got-want) > relTol*math.Abs(want) {
		t.Errorf("%s = %.6g, want %.6g ± %.1f%%", what, got, want, relTol*100)
	} else {
		t.Logf("%s = %.6g (want %.6g)", what, got, want)
	}
}

func TestRandomLoss(t *testing.T) {
	// 10^5 Bernoulli(P) trials: the standard deviation of the observed
	// rate is sqrt(P(1-P)/n) ≈ 0.044 percentage points at P = 2 %, so
	// ±0.3 points is a wide (≈7σ) band for any seed.
	for _, p := range []float64{0.5, 2, 10} {
		for seed := int64(1); seed <= 3; seed++ {
			sp := Spec{Loss: LossRandom, LossPercent: p}
			m, _ := NewModel(sp, seed)
			rate, _ := lossStats(lossRun(m, 1e5))
			if math.Abs(rate*100-p) > 0.3 {
				t.Errorf("loss %v%% seed %d: observed %.3f%%", p, seed, rate*100)
			}
		}
	}
}

// Gilbert-Elliott, as netem runs it: packet n sees state s_n ∈ {G, B}; it
// is lost with probability 1-k in G and 1-h in B; then s moves G→B with
// probability p and B→G with probability r. The chain's balance equation
// π_G·p = π_B·r gives the stationary distribution
//
//	π_B = p/(p+r),  π_G = r/(p+r),
//
// so the stationary loss rate is π_G(1-k) + π_B(1-h).
//
// For the simple Gilbert case (1-h = 1, 1-k = 0) a packet is lost exactly
// when s_n = B, so a loss burst is a stay in B. Once in B the chain stays
// with probability 1-r per packet, so the burst length L is geometric,
// P(L = j) = (1-r)^(j-1)·r, with mean E[L] = 1/r.
//
// The time spent in B is positively correlated from packet to packet, so
// its estimate converges more slowly than a Bernoulli rate: the asymptotic
// variance of the fraction of packets in B is π_Bπ_G(2-p-r)/(p+r)/n. At
// p = 5 %, r = 50 % and n = 10^5 that is a relative standard deviation of
// 1.6 %, too close to the 5 % bound for a test meant to pass for any seed,
// so these tests use 10^6 packets (0.5 %, a 10σ margin).
func TestGilbertElliott(t *testing.T) {
	const n = 1_000_000
	t.Run("simple-gilbert", func(t *testing.T) {
		p, r := 0.05, 0.5
		m := mustModel(t, "loss gemodel 5% 50% 100% 0%", 11)
		rate, burst := lossStats(lossRun(m, n))
		within(t, "stationary loss", rate, p/(p+r), 0.05)
		within(t, "mean burst length", burst, 1/r, 0.05)
	})
	t.Run("gilbert-elliott", func(t *testing.T) {
		p, r, h1, k1 := 0.05, 0.3, 0.8, 0.01
		m := mustModel(t, "loss gemodel 5% 30% 80% 1%", 12)
		rate, _ := lossStats(lossRun(m, n))
		piB := p / (p + r)
		within(t, "stationary loss", rate, (1-piB)*k1+piB*h1, 0.05)
	})
	t.Run("bernoulli-default", func(t *testing.T) {
		// "gemodel P" alone: r = 1-p, 1-h = 1, 1-k = 0, which is a
		// memoryless loss of P with mean burst 1/(1-P).
		m := mustModel(t, "loss gemodel 3%", 13)
		rate, burst := lossStats(lossRun(m, n))
		within(t, "loss", rate, 0.03, 0.05)
		within(t, "mean burst length", burst, 1/0.97, 0.05)
	})
}

// The 4-state chain of Salsano et al.: a packet is lost when the chain
// steps into state 3 (burst loss) or 4 (isolated loss). Its stationary
// distribution solves π = πT; we compute it by power iteration and compare
// the simulated loss with π3 + π4.
func TestFourStateLoss(t *testing.T) {
	p13, p31, p32, p23, p14 := 0.02, 0.3, 0.2, 0.4, 0.01
	T := [4][4]float64{
		{1 - p13 - p14, 0, p13, p14},
		{0, 1 - p23, p23, 0},
		{p31, p32, 1 - p31 - p32, 0},
		{1, 0, 0, 0},
	}
	pi := [4]float64{1, 0, 0, 0}
	for range 10000 {
		var next [4]float64
		for i := range 4 {
			for j := range 4 {
				next[j] += pi[i] * T[i][j]
			}
		}
		pi = next
	}
	m := mustModel(t, "loss state 2% 30% 20% 40% 1%", 21)
	rate, _ := lossStats(lossRun(m, 1_000_000))
	within(t, "4-state loss", rate, pi[2]+pi[3], 0.05)

	// "state P13" alone is Bernoulli.
	m = mustModel(t, "loss state 4%", 22)
	rate, _ = lossStats(lossRun(m, 100_000))
	if math.Abs(rate-0.04) > 0.003 {
		t.Errorf("state 4%%: loss %.4f", rate)
	}
}

func delays(t *testing.T, spec string, n int) (mean, std float64) {
	m := mustModel(t, spec, 5)
	var s, s2 float64
	for i := range n {
		now := int64(i) * int64(time.Millisecond)
		d := m.Decide(now, 100, QueueState{})
		x := float64(d.Copies[0].At - now)
		s += x
		s2 += x * x
	}
	mean = s / float64(n)
	return mean, math.Sqrt(s2/float64(n) - mean*mean)
}

func TestDelayDistributions(t *testing.T) {
	const n = 100_000
	ms := float64(time.Millisecond)
	// uniform on [50-10, 50+10) ms: σ = 10/√3 ms
	mean, std := delays(t, "delay 50ms 10ms", n)
	within(t, "uniform mean", mean, 50*ms, 0.05)
	within(t, "uniform std", std, 10*ms/math.Sqrt(3), 0.05)
	mean, std = delays(t, "delay 50ms 10ms distribution normal", n)
	within(t, "normal mean", mean, 50*ms, 0.05)
	within(t, "normal std", std, 10*ms, 0.05)
	// pareto: netem's table is centred on the mean (before clipping the
	// far tail), so the mean stays near Delay; it must be right-skewed.
	mean, _ = delays(t, "delay 50ms 5ms distribution pareto", n)
	within(t, "pareto mean", mean, 50*ms, 0.05)
	mean, _ = delays(t, "delay 50ms 5ms distribution paretonormal", n)
	within(t, "paretonormal mean", mean, 50*ms, 0.05)
	if tb := distTables[DistPareto]; tb[0] > -0.66 || tb[0] < -0.67 || tb[len(tb)-1] != distClip {
		t.Errorf("pareto table range [%v, %v]", tb[0], tb[len(tb)-1])
	}
	// fixed delay, no jitter
	mean, std = delays(t, "delay 7ms", 1000)
	if mean != 7*ms || std != 0 {
		t.Errorf("fixed delay: mean %v std %v", mean, std)
	}
	// jitter larger than the delay never schedules into the past
	m := mustModel(t, "delay 1ms 10ms", 1)
	for i := range 10000 {
		if d := m.Decide(int64(i), 1, QueueState{}); d.Copies[0].At < int64(i) {
			t.Fatalf("delivery before arrival")
		}
	}
}

func TestDelayCorrelation(t *testing.T) {
	// netem's correlation pulls successive draws together: the lag-1
	// autocorrelation of the delays must be clearly positive with 75 %
	// and near zero without.
	lag1 := func(spec string) float64 {
		m := mustModel(t, spec, 9)
		xs := make([]float64, 50000)
		for i := range xs {
			xs[i] = float64(m.Decide(int64(i), 1, QueueState{}).Copies[0].At - int64(i))
		}
		var mean float64
		for _, x := range xs {
			mean += x
		}
		mean /= float64(len(xs))
		var num, den float64
		for i := range xs {
			den += (xs[i] - mean) * (xs[i] - mean)
			if i > 0 {
				num += (xs[i] - mean) * (xs[i-1] - mean)
			}
		}
		return num / den
	}
	if c := lag1("delay 50ms 10ms"); math.Abs(c) > 0.02 {
		t.Errorf("uncorrelated lag-1 autocorrelation %.3f", c)
	}
	if c := lag1("delay 50ms 10ms 75%"); c < 0.6 {
		t.Errorf("75%% correlated lag-1 autocorrelation %.3f", c)
	}
}

func TestDeterminism(t *testing.T) {
	spec := "delay 20ms 5ms 25% distribution paretonormal loss gemodel 2% 30% 90% 0.1% duplicate 3% corrupt 2% reorder 10% gap 3 rate 10mbit limit 200"
	run := func(seed int64) []Decision {
		m := mustModel(t, spec, seed)
		out := make([]Decision, 20000)
		for i := range out {
			out[i] = m.Decide(int64(i)*100_000, 200+i%1000, QueueState{Packets: i % 300})
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("decision %d differs with the same seed: %+v vs %+v", i, a[i], b[i])
		}
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Error("different seeds gave identical decisions")
	}
	// a seed in the spec overrides the argument
	m1 := mustModel(t, spec+" seed 7", 1)
	m2 := mustModel(t, spec+" seed 7", 2)
	for i := range 1000 {
		if m1.Decide(int64(i), 100, QueueState{}) != m2.Decide(int64(i), 100, QueueState{}) {
			t.Fatal("spec seed did not override")
		}
	}
}

func TestReorderRates(t *testing.T) {
	const n = 100_000
	count := func(spec string) (reordered int, pattern []bool) {
		m := mustModel(t, spec, 3)
		for i := range n {
			d := m.Decide(int64(i)*int64(time.Millisecond), 100, QueueState{})
			if d.Copies[0].Reordered {
				reordered++
			}
			if i < 20 {
				pattern = append(pattern, d.Copies[0].Reordered)
			}
		}
		return reordered, pattern
	}
	// gap 1: each packet independently sent at once with probability P
	r, _ := count("delay 10ms reorder 25%")
	if f := float64(r) / n; math.Abs(f-0.25) > 0.005 {
		t.Errorf("reorder 25%%: fraction %.4f", f)
	}
	// gap G, probability P: a cycle is G-1 delayed packets then a
	// geometric number of trials (mean 1/P) ending in the reordered one,
	// so the reordered fraction is 1/((G-1) + 1/P); here 1/(2+2) = 25 %.
	r, _ = count("delay 10ms reorder 50% gap 3")
	if f := float64(r) / n; math.Abs(f-0.25) > 0.005 {
		t.Errorf("reorder 50%% gap 3: fraction %.4f", f)
	}
	// "gap 5" (100 %): exactly every 5th packet
	r, pat := count("gap 5 delay 10ms")
	if r != n/5 {
		t.Errorf("gap 5: %d reordered of %d", r, n)
	}
	for i, re := range pat {
		if re != ((i+1)%5 == 0) {
			t.Fatalf("gap 5 pattern %v", pat)
		}
	}
}

func TestDuplicateAndCorruptRates(t *testing.T) {
	const n = 100_000
	m := mustModel(t, "duplicate 5% corrupt 2%", 8)
	dups, corrupt, copies := 0, 0, 0
	for i := range n {
		d := m.Decide(int64(i), 100, QueueState{})
		if d.N == 2 {
			dups++
		}
		for _, c := range d.Copies[:d.N] {
			copies++
			if c.CorruptBit >= 0 {
				corrupt++
				if c.CorruptBit >= 800 {
					t.Fatalf("corrupt bit %d outside a 100-byte packet", c.CorruptBit)
				}
			}
		}
	}
	if f := float64(dups) / n; math.Abs(f-0.05) > 0.003 {
		t.Errorf("duplicate fraction %.4f", f)
	}
	if f := float64(corrupt) / float64(copies); math.Abs(f-0.02) > 0.003 {
		t.Errorf("corrupt fraction %.4f", f)
	}
	// duplicated and lost at once leaves one copy, as in netem
	m = mustModel(t, "duplicate 100% loss 100%", 1)
	if d := m.Decide(0, 10, QueueState{}); d.N != 1 || d.Copies[0].Verdict != Deliver {
		t.Errorf("dup+loss: %+v", d)
	}
}

func TestTxTime(t *testing.T) {
	// tc-netem(8): rate 5kbit, 20 bytes overhead, 100-byte cells with 5
	// bytes each. A 50-byte packet is 70 bytes → 1 cell → 105 bytes →
	// 840 bits at 5000 bit/s = 168 ms.
	m := mustModel(t, "rate 5kbit 20 100 5", 1)
	if got := m.txTime(50); got != 168*int64(time.Millisecond) {
		t.Errorf("txTime(50) = %v", time.Duration(got))
	}
	// 81 bytes + 20 = 101 → 2 cells → 210 bytes → 336 ms
	if got := m.txTime(81); got != 336*int64(time.Millisecond) {
		t.Errorf("txTime(81) = %v", time.Duration(got))
	}
	m = mustModel(t, "rate 1mbit -2000", 1)
	if got := m.txTime(100); got != 0 {
		t.Errorf("negative length tx time %v", got)
	}
}
