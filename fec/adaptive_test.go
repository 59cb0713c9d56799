package fec

import (
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/packet"
)

// bruteResidual enumerates every loss pattern of a block's n = k+m packets
// under a two-state chain (independent loss when lambda = 0) and returns
// E[data lost · 1{more than m lost}] / k exactly. Data shard i is at packet
// position i·d, parity t at (k-1)·d+1+t.
func bruteResidual(k, m, d int, p, meanBurst float64) float64 {
	meanBurst = math.Max(meanBurst, 1/(1-p))
	r := 1 / meanBurst
	q := p * r / (1 - p)
	lambda := 1 - q - r
	n := k + m
	total := 0.0
	for mask := 0; mask < 1<<n; mask++ {
		pr := p
		if mask&1 == 0 {
			pr = 1 - p
		}
		for pos := 1; pos < n; pos++ {
			gap := 1
			if pos < k {
				gap = d
			}
			lg := math.Pow(lambda, float64(gap))
			var toBad float64
			if mask&(1<<(pos-1)) != 0 {
				toBad = p + (1-p)*lg
			} else {
				toBad = p * (1 - lg)
			}
			if mask&(1<<pos) != 0 {
				pr *= toBad
			} else {
				pr *= 1 - toBad
			}
		}
		if bits.OnesCount(uint(mask)) > m {
			total += pr * float64(bits.OnesCount(uint(mask&(1<<k-1))))
		}
	}
	return total / float64(k)
}

func TestResidualLossModels(t *testing.T) {
	for _, c := range []struct {
		k, m, d int
		p, b    float64
	}{
		{10, 3, 1, 0.05, 0}, {4, 2, 1, 0.2, 0}, {6, 1, 1, 0.01, 0},
		{5, 2, 1, 0.05, 4}, {4, 3, 3, 0.1, 3}, {8, 2, 2, 0.02, 10}, {3, 3, 5, 0.3, 2},
	} {
		brute := bruteResidual(c.k, c.m, c.d, c.p, c.b)
		dp := ResidualLossBurst(c.k, c.m, c.d, c.p, c.b)
		if math.Abs(dp-brute) > 1e-12+1e-9*brute {
			t.Errorf("%+v: ResidualLossBurst %.6e, enumeration %.6e", c, dp, brute)
		}
		if c.b == 0 { // independent loss: the binomial closed form agrees
			if bin := ResidualLoss(c.k, c.m, c.p); math.Abs(bin-brute) > 1e-12+1e-9*brute {
				t.Errorf("%+v: ResidualLoss %.6e, enumeration %.6e", c, bin, brute)
			}
		}
	}
	if r := ResidualLoss(10, 3, 0.05); math.Abs(r-9.78e-4) > 0.01e-4 {
		t.Errorf("ResidualLoss(10,3,5%%) = %.4e, want 9.78e-4", r)
	}
	// Bursts hurt; interleaving them away helps.
	iid := ResidualLossBurst(10, 3, 1, 0.05, 0)
	bursty := ResidualLossBurst(10, 3, 1, 0.05, 4)
	spread := ResidualLossBurst(10, 3, 8, 0.05, 4)
	if !(bursty > 3*iid && spread < bursty/3) {
		t.Errorf("iid %.2e, bursts of 4 %.2e, interleaved 8 %.2e", iid, bursty, spread)
	}
	for _, f := range []func() float64{
		func() float64 { return ResidualLoss(4, 2, 0) },
		func() float64 { return ResidualLossBurst(4, 2, 1, -1, 3) },
	} {
		if f() != 0 {
			t.Error("no loss, yet residual loss")
		}
	}
	if ResidualLoss(4, 2, 1) != 1 || ResidualLossBurst(4, 2, 2, 1, 5) != 1 {
		t.Error("total loss not residual 1")
	}
}

func TestAdaptiveConfigValidation(t *testing.T) {
	for _, cfg := range []AdaptiveConfig{
		{TargetResidual: 1}, {TargetResidual: -1}, {MaxOverhead: -1}, {MaxK: 1, MaxOverhead: 0.5},
		{MinK: 10, MaxK: 5}, {MaxK: 256}, {MaxM: 256}, {MaxInterleave: 256}, {HoldNanos: -1}, {DecayWeight: 2},
	} {
		if _, err := NewAdaptive(cfg); !errors.Is(err, ErrBadParams) {
			t.Errorf("%+v: err = %v", cfg, err)
		}
	}
}

// lossLink simulates one direction of a link for an Adaptive trace: a
// Gilbert chain (independent loss when burst = 1/(1-p)) over the packet
// stream, data and parity alike.
type lossLink struct {
	rng *rand.Rand
	bad bool
}

func (l *lossLink) lose(p, burst float64) bool {
	burst = math.Max(burst, 1/(1-p))
	r := 1 / burst
	q := p * r / (1 - p)
	if l.bad {
		l.bad = l.rng.Float64() >= r
	} else {
		l.bad = l.rng.Float64() < q
	}
	return l.bad
}

// interval sends rate packets' worth of data in blocks of (k, m) over the
// link and returns the receiver's report figures for it and the data
// packets left lost after FEC. Blocks are counted whole, not interleaved.
func (l *lossLink) interval(k, m int, n int, p, burst float64) (ppm, burstMilli uint32, residual int) {
	lost, bursts, run := 0, 0, 0
	for sent := 0; sent < n; sent += k {
		blockLost, dataLost := 0, 0
		for i := 0; i < k+m; i++ {
			if !l.lose(p, burst) {
				if i < k && run > 0 {
					run = 0
				}
				continue
			}
			blockLost++
			if i < k {
				dataLost++
				lost++
				if run == 0 {
					bursts++
				}
				run++
			}
		}
		if blockLost > m {
			residual += dataLost
		}
	}
	ppm = uint32(int64(lost) * 1e6 / int64(n))
	if bursts > 0 {
		burstMilli = uint32(lost * 1000 / bursts)
	}
	return ppm, burstMilli, residual
}

// TestAdaptiveLossSteps drives Adaptive with reports from a simulated
// 10 000 packet/s stream whose independent loss steps 0% → 10% → 1%, one
// report a second. From the second report after each step the modelled
// residual loss at the true rate must be <= 0.1%, the measured residual over
// each phase (after its first two intervals) close to it, and the overhead
// must fall back once loss drops.
func TestAdaptiveLossSteps(t *testing.T) {
	const rate, sec = 10_000, int64(1e9)
	a, err := NewAdaptive(AdaptiveConfig{})
	if err != nil {
		t.Fatal(err)
	}
	link := &lossLink{rng: rand.New(rand.NewPCG(9, 9))}
	phases := []struct {
		p   float64
		len int
	}{{0, 10}, {0.10, 20}, {0.01, 30}}
	k, m, _ := a.Params()
	seq, now := uint64(0), int64(0)
	var overhead []float64
	for _, ph := range phases {
		residual, sent := 0, 0
		for i := 0; i < ph.len; i++ {
			ppm, burst, res := link.interval(k, m, rate, ph.p, 0)
			if i >= 2 {
				residual += res
				sent += rate
				if model := ResidualLoss(k, m, ph.p); model > DefaultTargetResidual {
					t.Errorf("loss %.0f%%, report %d: K=%d M=%d leaves %.2e", ph.p*100, i, k, m, model)
				}
			}
			seq += rate
			now += sec
			k, m = a.Update(packet.Report{IntervalLossPPM: ppm, BurstMeanMilli: burst, HighestSeq: seq}, now)
			if float64(m)/float64(k) > DefaultMaxOverhead {
				t.Fatalf("K=%d M=%d above the overhead ceiling", k, m)
			}
		}
		frac := float64(residual) / float64(max(sent, 1))
		t.Logf("loss %4.1f%%: ends at K=%d M=%d (overhead %.1f%%), measured residual %.2e, model %.2e",
			ph.p*100, k, m, 100*float64(m)/float64(k), frac, ResidualLoss(k, m, ph.p))
		if frac > 1.5*DefaultTargetResidual {
			t.Errorf("loss %.0f%%: measured residual %.2e", ph.p*100, frac)
		}
		overhead = append(overhead, float64(m)/float64(k))
	}
	if !(overhead[0] < overhead[1] && overhead[2] < overhead[1]/2) {
		t.Errorf("overhead by phase %v: does not rise with loss and fall back", overhead)
	}
}

func TestAdaptiveRaisesFastLowersSlowly(t *testing.T) {
	a, _ := NewAdaptive(AdaptiveConfig{HoldNanos: 3e9})
	r := packet.Report{IntervalLossPPM: 100_000}
	_, m1 := a.Update(r, 1e9)
	r.IntervalLossPPM = 0
	_, m2 := a.Update(r, 2e9) // within the hold: unchanged
	_, m3 := a.Update(r, 4e9) // after it: one step down
	if m2 != m1 || m3 > m1 {
		t.Fatalf("M after 10%% then 0%%: %d, %d, %d", m1, m2, m3)
	}
	if p, _, _ := a.Estimate(); math.Abs(p-0.075) > 1e-9 {
		t.Fatalf("estimate %.4f after one decay step, want 0.075", p)
	}
}

// TestAdaptiveBursts checks that bursty loss is answered, and more cheaply
// with interleaving allowed.
func TestAdaptiveBursts(t *testing.T) {
	r := packet.Report{IntervalLossPPM: 20_000, BurstMeanMilli: 4_000}
	plain, _ := NewAdaptive(AdaptiveConfig{})
	il, _ := NewAdaptive(AdaptiveConfig{MaxInterleave: 8})
	k1, m1 := plain.Update(r, 1)
	k2, m2 := il.Update(r, 1)
	_, _, d2 := il.Params()
	// Without interleaving the target is out of reach within MaxM: the
	// choice must be the best the limits allow.
	if res := ResidualLossBurst(k1, m1, 1, 0.02, 4); res > DefaultTargetResidual &&
		m1 != min(DefaultAdaptiveMaxM, k1/2) {
		t.Errorf("no interleaving: K=%d M=%d leaves %.2e and is not the strongest allowed", k1, m1, res)
	}
	if res := ResidualLossBurst(k2, m2, d2, 0.02, 4); res > DefaultTargetResidual {
		t.Errorf("interleaving: K=%d M=%d D=%d leaves %.2e", k2, m2, d2, res)
	}
	if d2 < 2 || float64(m2)/float64(k2) >= float64(m1)/float64(k1) {
		t.Errorf("interleaving not used to cut overhead: %d+%d vs %d+%d D=%d", k1, m1, k2, m2, d2)
	}
	t.Logf("2%% loss in bursts of 4: K=%d M=%d without interleaving, K=%d M=%d D=%d with", k1, m1, k2, m2, d2)
}

// TestAdaptiveRateCap checks that K·D stays within what the stream sends
// in one block time limit.
func TestAdaptiveRateCap(t *testing.T) {
	a, _ := NewAdaptive(AdaptiveConfig{MaxInterleave: 4})
	r := packet.Report{IntervalLossPPM: 10_000}
	a.Update(r, 0)
	r.HighestSeq = 200 // 200 packets per second: 10 per 50 ms
	k, m := a.Update(r, 1e9)
	_, _, d := a.Params()
	if k*d > 10 || m < 1 {
		t.Fatalf("200 pkt/s, 50 ms limit: K=%d M=%d D=%d", k, m, d)
	}
	r.HighestSeq += 10 // 10 packets per second: no block fits; ignore the cap
	k, m = a.Update(r, 2e9)
	if k < 2 || m < 1 || float64(m)/float64(k) > DefaultMaxOverhead {
		t.Fatalf("10 pkt/s: K=%d M=%d", k, m)
	}
}

func TestAdaptiveAllowOff(t *testing.T) {
	on, _ := NewAdaptive(AdaptiveConfig{})
	off, _ := NewAdaptive(AdaptiveConfig{AllowOff: true})
	if _, m, _ := on.Params(); m != 1 {
		t.Fatalf("no loss, default: M=%d, want 1", m)
	}
	if _, m, _ := off.Params(); m != 0 {
		t.Fatalf("no loss, AllowOff: M=%d, want 0", m)
	}
	if _, m := off.Update(packet.Report{IntervalLossPPM: 1000}, 1); m == 0 {
		t.Fatal("loss measured, FEC still off")
	}
}
