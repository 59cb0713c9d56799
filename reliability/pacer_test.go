package reliability

import (
	"math"
	"testing"
)

// pacerPath drives a Pacer against a bottleneck of capacity bytes/s with a
// queue in front of it, one REPORT per step: the sender sends what the
// pacer allows, the bottleneck drains, loss removes a share of what it
// delivers, and the RTT is base plus the queue's delay.
type pacerPath struct {
	p         *Pacer
	now       int64
	capacity  float64 // bytes/s
	queue     float64 // bytes waiting at the bottleneck
	maxQueue  float64 // bytes; beyond this the bottleneck drops
	loss      float64 // random loss share after the bottleneck
	base      int64   // RTT without queueing, ns
	delivered float64
	sent      float64
	dropped   float64
}

// step advances dt with a greedy sender (always limited by the pacer)
// and feeds one REPORT.
func (pp *pacerPath) step(dt int64) {
	const slice = 100_000 // 0.1 ms
	for t := int64(0); t < dt; t += slice {
		pp.now += slice
		for pp.p.Delay(pp.now) == 0 {
			pp.p.OnSend(200)
			pp.sent += 200
			pp.queue += 200
		}
		out := min(pp.queue, pp.capacity*slice/1e9)
		pp.queue -= out
		pp.delivered += out * (1 - pp.loss)
		if pp.queue > pp.maxQueue {
			pp.dropped += pp.queue - pp.maxQueue
			pp.queue = pp.maxQueue
		}
	}
	rtt := pp.base + int64(pp.queue/pp.capacity*1e9)
	pp.p.OnFeedback(pp.now, Feedback{RTT: rtt, Delivered: uint64(pp.delivered), Echo: pp.now - rtt})
}

func newPath(capacity, loss float64) *pacerPath {
	return &pacerPath{
		p: NewPacer(PacerConfig{}), now: 1_000 * ms, capacity: capacity,
		maxQueue: capacity * 0.020, loss: loss, base: ms,
	}
}

// TestPacerFindsTheBottleneck: startup climbs to the bottleneck, a
// standing queue cuts the rate, and over the next seconds the rate stays
// near the capacity with a short queue, whether or not the path also
// loses 5% at random (random loss is not congestion).
func TestPacerFindsTheBottleneck(t *testing.T) {
	for _, loss := range []float64{0, 0.05, 0.20} {
		pp := newPath(40e6, loss) // 40 MB/s, 8x the initial rate
		for range 100 {           // 0.5 s of 5 ms reports
			pp.step(5 * ms)
		}
		st := pp.p.Stats()
		if st.Startup || st.Cuts == 0 {
			t.Fatalf("loss %v: never left startup (cuts %d)", loss, st.Cuts)
		}
		sent0, dropped0, at0 := pp.sent, pp.dropped, pp.now
		var maxQueue float64
		for range 400 { // 2 s more
			pp.step(5 * ms)
			maxQueue = max(maxQueue, pp.queue)
		}
		rate := (pp.sent - sent0) / (float64(pp.now-at0) / 1e9)
		t.Logf("loss %v: steady %.1f MB/s of %.1f, dropped %.2f%%, max queue %.2f ms, cuts %d", loss, rate/1e6, pp.capacity/1e6, 100*(pp.dropped-dropped0)/(pp.sent-sent0), 1e3*maxQueue/pp.capacity, pp.p.Stats().Cuts)
		if rate < 0.75*pp.capacity || rate > 1.05*pp.capacity {
			t.Errorf("loss %v: steady send rate %.1f MB/s, capacity %.1f", loss, rate/1e6, pp.capacity/1e6)
		}
		if d := pp.dropped - dropped0; d > 0.02*(pp.sent-sent0) {
			t.Errorf("loss %v: the bottleneck dropped %.1f%% of the steady sends", loss, 100*d/(pp.sent-sent0))
		}
		if delay := maxQueue / pp.capacity; delay > 0.010 {
			t.Errorf("loss %v: queue reached %.1f ms", loss, delay*1e3)
		}
	}
}

// TestPacerRandomLossIsNotCongestion: with a flat RTT the rate only grows,
// however much is lost.
func TestPacerRandomLossIsNotCongestion(t *testing.T) {
	pp := newPath(1e12, 0.30) // no bottleneck in reach
	prev := pp.p.Rate()
	for range 20 {
		pp.step(5 * ms)
		if r := pp.p.Rate(); r < prev {
			t.Fatalf("rate fell from %.0f to %.0f with no queue", prev, r)
		}
		prev = pp.p.Rate()
	}
	if st := pp.p.Stats(); st.Cuts != 0 || prev < 8*DefaultInitialRate {
		t.Fatalf("cuts %d, rate %.1f MB/s after 100 ms of startup", st.Cuts, prev/1e6)
	}
}

// TestPacerIdleDoesNotGrow: a sender that never waits for credit keeps
// the rate it has: growth needs evidence that the rate was the limit.
func TestPacerIdleDoesNotGrow(t *testing.T) {
	p := NewPacer(PacerConfig{})
	now := int64(1_000 * ms)
	var delivered uint64
	for range 100 {
		now += 10 * ms
		if p.Delay(now) != 0 {
			t.Fatal("a sparse sender had to wait")
		}
		p.OnSend(200)
		delivered += 200
		p.OnFeedback(now, Feedback{RTT: ms, Delivered: delivered, Echo: now - ms})
	}
	if p.Rate() != DefaultInitialRate {
		t.Fatalf("rate %.0f, want the initial %d", p.Rate(), DefaultInitialRate)
	}
}

// TestPacerCutNeedsTwoReportsAndFreshFeedback: one high RTT sample is
// noise; two in a row cut once, to a drain rate until fresh feedback shows
// the queue gone, then to just under the delivery rate; feedback on data
// sent before a cut never cuts again.
func TestPacerCutNeedsTwoReportsAndFreshFeedback(t *testing.T) {
	p := NewPacer(PacerConfig{InitialRate: 8e6})
	now := int64(1_000 * ms)
	var delivered uint64
	// Isolated noisy samples, and a queue's RTT: high enough to stand
	// out of the variation the noise gives the path.
	const noise, high = 5 * ms, 50 * ms
	feed := func(rtt, echo int64) {
		now += 5 * ms
		p.OnSend(25_000)    // 5 MB/s sent,
		delivered += 15_000 // 3 MB/s arriving
		p.OnFeedback(now, Feedback{RTT: rtt, Delivered: delivered, Echo: echo})
	}
	for range 5 {
		feed(ms, now)
	}
	feed(noise, now)
	if p.Rate() != 8e6 || p.Stats().Cuts != 0 {
		t.Fatal("one high sample cut the rate")
	}
	feed(ms, now)
	feed(noise, now)
	feed(ms, now)
	feed(high, now)
	if p.Stats().Cuts != 0 {
		t.Fatal("high samples apart cut the rate")
	}
	feed(high, now)
	if p.Stats().Cuts != 1 {
		t.Fatal("two high samples in a row did not cut")
	}
	near := func(what string, want float64) {
		t.Helper()
		if math.Abs(p.Rate()-want) > 0.01*want {
			t.Fatalf("%s: rate %.0f, want %.0f", what, p.Rate(), want)
		}
	}
	near("draining", drainGain*3e6)
	cutAt := now
	feed(ms, cutAt-ms) // feedback on data sent before the cut
	near("stale feedback", drainGain*3e6)
	feed(ms, cutAt+ms)
	near("drained", cutToDeliver*3e6)
	for range 16 { // let the variation the steps above gave the RTT fade
		feed(ms, now)
	}
	feed(high, cutAt-ms)
	feed(high, cutAt-ms)
	if p.Stats().Cuts != 1 {
		t.Fatal("cut again on feedback older than the cut")
	}
	feed(high, now)
	feed(high, now)
	if p.Stats().Cuts != 2 {
		t.Fatal("no second cut on fresh feedback showing a queue")
	}
}

// TestPacerDrainEnds: a drain whose RTT never comes down (the RTT rose
// for another reason) ends after maxDrain.
func TestPacerDrainEnds(t *testing.T) {
	p := NewPacer(PacerConfig{InitialRate: 8e6})
	now := int64(1_000 * ms)
	var delivered uint64
	for i := range 40 {
		now += 5 * ms
		p.OnSend(25_000)
		delivered += 20_000
		rtt := ms
		if i >= 5 {
			rtt = 10 * ms
		}
		p.OnFeedback(now, Feedback{RTT: rtt, Delivered: delivered, Echo: now - rtt})
	}
	if c := p.Stats().Cuts; c < 2 || c > 4 {
		t.Fatalf("%d cuts over 175 ms of a standing RTT, want one per drain of %d ms", c, maxDrain/ms)
	}
}

// TestPacerBounds: MinRate and MaxRate hold whatever the feedback says.
func TestPacerBounds(t *testing.T) {
	p := NewPacer(PacerConfig{MinRate: 1e6, MaxRate: 2e6})
	now := int64(1_000 * ms)
	for i := range 200 {
		now += 5 * ms
		for p.Delay(now) == 0 {
			p.OnSend(200)
		}
		rtt := ms
		if i%3 != 0 {
			rtt = 50 * ms
		}
		p.OnFeedback(now, Feedback{RTT: rtt, Delivered: uint64(i) * 10, Echo: now})
		if r := p.Rate(); r < 1e6 || r > 2e6 {
			t.Fatalf("rate %.0f outside [1e6, 2e6]", r)
		}
	}
}

// TestPacerLongerPathIsLearnt: when the path's RTT grows for good, the
// old minimum is forgotten within two windows and the rate recovers.
func TestPacerLongerPathIsLearnt(t *testing.T) {
	p := NewPacer(PacerConfig{})
	now := int64(1_000 * ms)
	var delivered uint64
	for range 10 {
		now += 5 * ms
		delivered += 20_000
		p.OnFeedback(now, Feedback{RTT: ms, Delivered: delivered, Echo: now})
	}
	for range int(2*minRTTWindow/(50*ms)) + 2 {
		now += 50 * ms
		delivered += 200_000
		p.OnFeedback(now, Feedback{RTT: 20 * ms, Delivered: delivered, Echo: now})
	}
	cuts := p.Stats().Cuts
	for range 10 {
		now += 50 * ms
		delivered += 200_000
		p.OnFeedback(now, Feedback{RTT: 20 * ms, Delivered: delivered, Echo: now})
	}
	if p.Stats().Cuts != cuts || p.Stats().MinRTTNanos != 20*ms {
		t.Fatalf("still reading a 20 ms path as congested (min RTT %d ns, cuts %d→%d)", p.Stats().MinRTTNanos, cuts, p.Stats().Cuts)
	}
}

// TestPacerCredit: the bucket lets a burst through, then paces at the
// rate, in waits of at least waitQuantum.
func TestPacerCredit(t *testing.T) {
	p := NewPacer(PacerConfig{InitialRate: 10e6})
	now := int64(1_000 * ms)
	var sent float64
	for p.Delay(now) == 0 {
		p.OnSend(1000)
		sent += 1000
	}
	if sent < minBurst || sent > minBurst+1000 {
		t.Fatalf("first burst %.0f bytes, want the bucket's %d", sent, minBurst)
	}
	wait := p.Delay(now)
	if wait < waitQuantum {
		t.Fatalf("wait %d ns, want at least %d", wait, waitQuantum)
	}
	start, sent := now, 0.0
	for now < start+1_000*ms {
		if d := p.Delay(now); d > 0 {
			now += d
			continue
		}
		p.OnSend(1000)
		sent += 1000
	}
	if rate := sent / 1.0; math.Abs(rate-10e6) > 0.02*10e6 {
		t.Fatalf("paced %.0f bytes/s, want 10e6", rate)
	}
}

// TestPacerReceiverRestart: a receiver that starts counting again gives
// no bogus delivery sample.
func TestPacerReceiverRestart(t *testing.T) {
	p := NewPacer(PacerConfig{})
	now := int64(1_000 * ms)
	for i := range 10 {
		now += 5 * ms
		p.OnFeedback(now, Feedback{RTT: ms, Delivered: uint64(1_000_000 + i*20_000), Echo: now})
	}
	for i := range 10 {
		now += 5 * ms
		p.OnFeedback(now, Feedback{RTT: ms, Delivered: uint64(i * 20_000), Echo: now})
		if d := p.Stats().Delivery; d > 5e6 {
			t.Fatalf("delivery sample %.0f after the restart", d)
		}
	}
}

func TestPacerZeroAllocs(t *testing.T) {
	p := NewPacer(PacerConfig{})
	now := int64(1_000 * ms)
	var delivered uint64
	n := testingAllocs(func() {
		now += 100_000
		if p.Delay(now) == 0 {
			p.OnSend(200)
		}
		if p.ResendOK(now) {
			p.OnResend(200)
		}
		delivered += 200
		p.OnFeedback(now, Feedback{RTT: ms, Delivered: delivered, Echo: now})
	})
	if n != 0 {
		t.Fatalf("%v allocations per send and feedback", n)
	}
}

func testingAllocs(f func()) float64 { return testing.AllocsPerRun(1000, f) }

// TestPacerStalls: short stalls of the receiving host (two reports in a
// row 5 ms late, every 100 ms) cut the rate each time; between them the
// rate recovers, so the sender still averages most of the capacity.
func TestPacerStalls(t *testing.T) {
	pp := newPath(40e6, 0)
	for range 100 { // find the bottleneck: 0.5 s
		pp.step(5 * ms)
	}
	sent0, at0 := pp.sent, pp.now
	for i := range 200 { // 1 s of stalls
		pp.base = ms
		if i%20 < 2 {
			pp.base = 6 * ms
		}
		pp.step(5 * ms)
	}
	rate := (pp.sent - sent0) / (float64(pp.now-at0) / 1e9)
	if st := pp.p.Stats(); st.Cuts < 10 || rate < 0.6*pp.capacity {
		t.Fatalf("after %d cuts the sender averaged %.1f MB/s of %.1f", st.Cuts, rate/1e6, pp.capacity/1e6)
	}
}

// TestPacerCapacityFalls: when the bottleneck drops to a quarter, the
// old best delivery rate ages out of the window and the rate follows
// within about a second, with the queue kept short meanwhile by drains.
func TestPacerCapacityFalls(t *testing.T) {
	pp := newPath(40e6, 0.05)
	for range 200 {
		pp.step(5 * ms)
	}
	pp.capacity, pp.maxQueue = 10e6, 10e6*0.020
	sent0, dropped0 := pp.sent, pp.dropped
	for range 300 { // 1.5 s
		pp.step(5 * ms)
	}
	if r := pp.p.Rate(); r > 1.2*pp.capacity {
		t.Fatalf("rate %.1f MB/s 1.5 s after the capacity fell to %.1f", r/1e6, pp.capacity/1e6)
	}
	if d := pp.dropped - dropped0; d > 0.05*(pp.sent-sent0) {
		t.Fatalf("the bottleneck dropped %.1f%% meanwhile", 100*d/(pp.sent-sent0))
	}
}

// TestPacerBystander: a sender below its rate (the application sets the
// pace) whose data all arrives is not cut by a standing RTT: the queue is
// not its doing. Once it sends more than arrives, it is.
func TestPacerBystander(t *testing.T) {
	p := NewPacer(PacerConfig{})
	now := int64(1_000 * ms)
	var delivered uint64
	step := func(sent, arrived int) {
		for range 10 {
			now += 10 * ms
			if p.Delay(now) != 0 && p.Stats().Cuts == 0 {
				t.Fatal("a sender at a third of its rate had to wait")
			}
			p.OnSend(sent)
			delivered += uint64(arrived)
			p.OnFeedback(now, Feedback{RTT: 20 * ms, Delivered: delivered, Echo: now - 20*ms}) // the minimum stays the first sample
		}
	}
	p.OnFeedback(now, Feedback{RTT: ms, Delivered: 0, Echo: now - ms})
	step(3_000, 3_000) // 300 kB/s, all of it arriving
	if c := p.Stats().Cuts; c != 0 {
		t.Fatalf("%d cuts of a sender whose data all arrives", c)
	}
	step(3_000, 2_000) // a third no longer arrives
	if p.Stats().Cuts == 0 {
		t.Fatal("no cut although the sender outruns the path")
	}
}

// TestPacerResendShare: retransmissions answered as fast as they are
// asked spend at most their share of the rate, so a greedy sender's data
// keeps the rest and no Send waits longer than the debt repairs may
// leave, a datagram and a quantum allow; without the share they took it
// all.
func TestPacerResendShare(t *testing.T) {
	const rate = DefaultMinRate // the floor, where the bench's run stalled
	p := NewPacer(PacerConfig{InitialRate: rate, MaxRate: rate})
	now := int64(1_000 * ms)
	var data, resent float64
	var longest int64
	for end := now + 2_000*ms; now < end; now += 100_000 {
		// NACKs ask for far more than the rate every 0.1 ms.
		for range 10 {
			if !p.ResendOK(now) {
				break
			}
			p.OnResend(1400)
			resent += 1400
		}
		if d := p.Delay(now); d > 0 {
			longest = max(longest, d)
			continue
		}
		p.OnSend(1400)
		data += 1400
	}
	// Both buckets start full.
	resent -= minBurst
	total := (data + resent - minBurst) / 2
	if got := resent / 2; got > resendShare*rate*1.05 || got < resendShare*rate*0.9 {
		t.Fatalf("retransmissions took %.0f bytes/s of %d, want their share %.0f", got, rate, resendShare*rate)
	}
	if total > rate*1.05 {
		t.Fatalf("sent %.0f bytes/s paced at %d", total, rate)
	}
	// The debt a Send can find: what repairs may leave plus a datagram
	// of each kind, refilled at the data's part of the rate.
	bound := int64(math.Ceil((rate*maxResendDebt/1e9 + 2*1400 + rate*waitQuantum/1e9) / ((1 - resendShare) * rate) * 1e9))
	if longest > bound {
		t.Fatalf("a send waited %d µs, want at most %d", longest/1000, bound/1000)
	}
}

// TestPacerCutKeepsTheWait: a cut lowers the rate, not the pace at which
// credit already spent is repaid: the wait for a debt does not grow.
func TestPacerCutKeepsTheWait(t *testing.T) {
	p := NewPacer(PacerConfig{InitialRate: 50e6})
	now := int64(1_000 * ms)
	for range 20 { // a steady 1 ms path
		now += 5 * ms
		p.OnFeedback(now, Feedback{RTT: ms, Delivered: uint64(now / 100), Echo: now})
	}
	p.Delay(now)
	p.OnSend(int(p.Rate() * 0.010)) // 10 ms of debt
	before := p.Delay(now)
	for i := range 2 { // a standing queue: cut
		now += ms
		p.OnFeedback(now, Feedback{RTT: 20 * ms, Delivered: uint64(now/100) + uint64(i), Echo: now})
	}
	if p.Stats().Cuts != 1 {
		t.Fatalf("%d cuts, want 1", p.Stats().Cuts)
	}
	if after := p.Delay(now); after > before {
		t.Fatalf("wait %d µs before the cut, %d µs after", before/1000, after/1000)
	}
}

// TestPacerResendBurst: a burst of repairs (a late joiner's history, an
// outage's losses) goes out at once, up to the allowance, and leaves the
// next send a wait of at most maxResendDebt.
func TestPacerResendBurst(t *testing.T) {
	p := NewPacer(PacerConfig{InitialRate: 10e6})
	now := int64(1_000 * ms)
	p.Delay(now)
	p.OnSend(int(minBurst)) // the bucket spent: the burst is all debt
	var resent float64
	for p.ResendOK(now) {
		p.OnResend(1400)
		resent += 1400
	}
	if want := resendShare * 10e6 * resendBurst / 1e9; resent < want {
		t.Fatalf("a burst of %.0f bytes of repairs went out, want the allowance's %.0f", resent, want)
	}
	if wait, bound := p.Delay(now), int64(maxResendDebt+2*waitQuantum); wait > bound {
		t.Fatalf("the next send waits %d µs, want at most %d", wait/1000, bound/1000)
	}
}
