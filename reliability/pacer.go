package reliability

import "math"

// Pacer defaults.
const (
	// DefaultInitialRate is the pacing rate before any feedback, bytes/s
	// (about 5 000 messages of 200 bytes a second). Startup doubles it
	// every startupDoubling while the path keeps up.
	DefaultInitialRate = 1 << 20
	// DefaultMinRate is the rate no congestion signal pushes the pacer
	// below, bytes/s: a telemetry stream of about a thousand 200-byte
	// messages a second keeps flowing on a congested path.
	DefaultMinRate = 256 << 10
	// DefaultQueueDelayTarget is the standing queue, as RTT above the
	// path's minimum, that counts as congestion, in ns. It is raised to
	// half the minimum RTT on long paths, which also clears their jitter.
	DefaultQueueDelayTarget = 1_500_000
)

// Timing of the controller, ns.
const (
	startupDoubling = 20_000_000     // startup doubles the rate this often
	probeStep       = 20_000_000     // after startup the rate grows probeGain per step
	minRTTWindow    = 10_000_000_000 // a minimum RTT older than this is forgotten
	deliverySpan    = 10_000_000     // delivery rate measured over at least this
	deliveryWindow  = 500_000_000    // the delivery-rate maximum covers this much
	maxGrowthStep   = 100_000_000    // feedback gaps longer than this grow as this
	burstTime       = 2_000_000      // bucket depth in time at the current rate
	waitQuantum     = 250_000        // a paced send waits for at least this much credit
	resendBurst     = 100_000_000    // the retransmission allowance's depth in time at its rate
	maxResendDebt   = 20_000_000     // retransmissions put the credit at most this far in debt, in time at the rate
)

// Controller gains.
const (
	probeGain    = 0.10       // growth per probeStep once the path's limit was found
	cutToDeliver = 0.85       // on congestion the rate drops to this share of what arrived
	drainGain    = 0.5        // and, until the queue is gone, to this share
	maxDrain     = 50_000_000 // ns; a drain ends after this (or 4 minimum RTTs) even if the RTT stays high
	startupCap   = 3.0        // startup runs at most this far ahead of the best delivery rate
	probeCap     = 1.5        // and probing this far

	resendShare     = 0.5         // retransmissions spend at most this share of the rate
	bystanderQuiet  = 100_000_000 // ns without waiting for credit: the application sets the pace
	bystanderMargin = 1.05        // and everything sent arrives, within this
	minBurst        = 64 << 10    // bytes; the bucket is never shallower than this

	// The queue-delay target is widened to this many times the RTT's
	// mean sample-to-sample variation, so a jittery path's noise is not
	// read as a queue. A queue builds smoothly (each report's RTT a little
	// above the last), so it barely moves the estimate. The widening stops
	// at twice the path's minimum RTT (a buffer is typically about one
	// BDP deep, and beyond that a shallow one drops before its delay
	// shows): on loopback and LANs, where host scheduling makes the RTT
	// vary by more than the path's own delay, the target stays put.
	jitterAllowance = 4
	jitterGain      = 1.0 / 16   // EWMA gain of that variation (RFC 3550's)
	maxJitterTarget = 50_000_000 // ns; the widening never exceeds this, however long the path

	histSpacing = 1_000_000   // ns between points of the feedback history
	histLen     = 256         // points in it: at least 256 ms of feedback
	maxRateSpan = 200_000_000 // ns; rates are never read over a longer span
)

// PacerConfig configures a Pacer. Zero fields take the defaults above.
type PacerConfig struct {
	// InitialRate is the rate before feedback, bytes/s.
	InitialRate float64
	// MinRate is the least rate congestion can bring, bytes/s.
	MinRate float64
	// MaxRate caps the rate, bytes/s; 0 for no cap.
	MaxRate float64
	// QueueDelayTarget is the queueing delay, in ns, read as congestion.
	QueueDelayTarget int64
}

// Feedback is what one REPORT tells a Pacer.
type Feedback struct {
	// RTT is the round trip the report gave, ns; 0 for none.
	RTT int64
	// Delivered is the wire bytes the receiver has received on this path,
	// cumulative; a smaller figure than before means it started over.
	Delivered uint64
	// Accounted is the wire bytes of everything the receiver knows was
	// sent, received or not (up to the newest sequence it has seen),
	// cumulative. Unlike Delivered it does not fall short on a lossy
	// path, so comparing its rate with the send rate tells a sender that
	// outruns the path from one whose packets are lost at random. 0 when
	// unknown: Delivered stands in.
	Accounted uint64
	// Echo is the send time of the newest data the receiver had seen.
	Echo int64
}

// PacerStats counts what a Pacer did.
type PacerStats struct {
	RateBytes   float64 // current pacing rate, bytes/s
	Delivery    float64 // latest delivery-rate sample, bytes/s (0 before one)
	MinRTTNanos int64   // the path's minimum RTT as the controller sees it
	JitterNanos int64   // the RTT's mean sample-to-sample variation
	Cuts        uint64  // times congestion lowered the rate
	Waits       uint64  // times a send had to wait for credit
	Startup     bool    // still in startup (no congestion seen yet)
}

// Pacer is a sender's congestion controller and pacer in one: it keeps a
// sending rate in bytes per second and a token bucket that spends it.
//
// The rate follows the receiver's feedback, the way delay- and
// delivery-rate-based controllers (TCP Vegas, BBR) do rather than on loss:
// telemetry links lose packets at random, and a loss-driven controller
// would throttle a 5% lossy link for no reason. Each REPORT gives an RTT
// sample and the receiver's cumulative byte count. An RTT standing above
// the path's minimum by more than the queue-delay target (widened on a
// jittery path to four times the RTT's sample-to-sample variation, up to
// twice the minimum RTT) in two
// reports in a row means a queue is building at the bottleneck (a router,
// a relay, or the receiving process falling behind its socket): the rate
// drops to half what the receiver measured as delivered until fresh
// feedback shows the queue gone (at most 50 ms or four minimum RTTs),
// then resumes at 85% of it; no further cut is made until feedback
// reflects sends made after this one. A sender that has not waited for
// credit lately and whose sends the receiver accounts for is not cut (see
// bystander). Without that signal the rate grows, but only while sends
// were actually held back by it: doubling every 20 ms in startup, 10% per
// 20 ms once a limit was found, never far ahead of the best delivery rate
// measured. Retransmissions, which do not wait, may spend at most half
// the rate (see ResendOK), and a cut does not lengthen the wait for
// credit already spent: however many receivers ask for repairs, the wait
// they add to a send's stays within a few tens of milliseconds.
//
// All times are caller-supplied nanoseconds; a Pacer does not allocate
// and is not safe for concurrent use.
type Pacer struct {
	cfg    PacerConfig
	rate   float64
	tokens float64
	fillAt int64 // when tokens were last topped up; 0 = never
	// resend is the retransmissions' allowance within the credit: it
	// fills at resendShare of the rate, up to resendBurst's worth.
	resend float64

	startup bool
	limited bool // a send waited since the last feedback

	minRTT, minRTTAt int64   // minimum RTT sample of the window that began at minRTTAt
	prevMin          int64   // minimum of the previous window, 0 if none
	highRTT          int     // consecutive feedbacks with a standing queue
	cutEcho          int64   // no cut until feedback echoes a send from this time on
	draining         bool    // after a cut, until the queue it found is gone
	afterDrain       float64 // the rate to take when the drain ends

	hist            history
	delivery        float64 // latest delivery-rate sample
	bestDelivery    float64 // maximum over the current delivery window
	bestAt          int64
	prevBest        float64 // maximum over the previous window
	lastFeedback    int64
	cuts, waitCount uint64
	sent            float64 // bytes charged by OnSend, ever
	waitedAt        int64   // when a send last had to wait for credit

	lastRTT [2]int64 // the previous two RTT samples, newest first
	jitter  float64  // the RTT's variation, ns (see observeRTT)
	jitterN int      // second differences averaged into it, up to 1/jitterGain

	outrun, outrunSet bool // the bystander test's latest verdict, once it has one
}

// history is a ring of feedback points at least histSpacing apart, oldest
// first from head: rates are read over a span of it, which is longer on a
// jittery path.
type history struct {
	pts     [histLen]histPoint
	head, n int
}

type histPoint struct {
	at        int64
	delivered uint64  // Feedback.Delivered
	accounted uint64  // Feedback.Accounted
	sent      float64 // bytes charged by OnSend by then
}

func (h *history) reset() { h.head, h.n = 0, 0 }

// at returns the i-th point, oldest first.
func (h *history) at(i int) *histPoint { return &h.pts[(h.head+i)%histLen] }

// add records pt unless the newest point is less than histSpacing older.
func (h *history) add(pt histPoint) {
	if h.n > 0 && pt.at-h.at(h.n-1).at < histSpacing {
		return
	}
	if h.n == histLen {
		h.pts[h.head] = pt
		h.head = (h.head + 1) % histLen
		return
	}
	h.pts[(h.head+h.n)%histLen] = pt
	h.n++
}

// spanStart returns the newest point at least span older than now; if
// none is, the oldest point if it is at least minSpan old; else nil.
func (h *history) spanStart(now, span, minSpan int64) *histPoint {
	// Points are in time order: find the first one younger than span.
	lo, hi := 0, h.n
	for lo < hi {
		mid := (lo + hi) / 2
		if now-h.at(mid).at >= span {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	switch {
	case lo > 0:
		return h.at(lo - 1)
	case h.n > 0 && now-h.at(0).at >= minSpan:
		return h.at(0)
	}
	return nil
}

// rateSpan is how long a span rates are read over: at least floor, and
// 16 RTT variations, so that a jittery path's feedback, which moves each
// endpoint's figure by about one variation, moves the rate by a few
// percent; at most maxRateSpan.
func (p *Pacer) rateSpan(floor int64) int64 {
	return min(max(floor, int64(16*p.jitter)), maxRateSpan)
}

// NewPacer returns a Pacer in startup at cfg.InitialRate.
func NewPacer(cfg PacerConfig) *Pacer {
	if cfg.InitialRate <= 0 {
		cfg.InitialRate = DefaultInitialRate
	}
	if cfg.MinRate <= 0 {
		cfg.MinRate = DefaultMinRate
	}
	if cfg.MaxRate > 0 {
		cfg.MinRate = min(cfg.MinRate, cfg.MaxRate)
		cfg.InitialRate = min(cfg.InitialRate, cfg.MaxRate)
	}
	cfg.InitialRate = max(cfg.InitialRate, cfg.MinRate)
	if cfg.QueueDelayTarget <= 0 {
		cfg.QueueDelayTarget = DefaultQueueDelayTarget
	}
	return &Pacer{cfg: cfg, rate: cfg.InitialRate, startup: true}
}

// burst is the bucket's depth in bytes.
func (p *Pacer) burst() float64 { return max(p.rate*burstTime/1e9, minBurst) }

// resendDepth is the retransmission allowance's depth in bytes: at
// least one largest datagram.
func (p *Pacer) resendDepth() float64 { return max(p.rate*resendShare*resendBurst/1e9, minBurst) }

func (p *Pacer) fill(now int64) {
	if p.fillAt == 0 {
		p.tokens, p.resend, p.fillAt = p.burst(), p.resendDepth(), now
		return
	}
	if dt := now - p.fillAt; dt > 0 {
		p.tokens = min(p.tokens+p.rate*float64(dt)/1e9, p.burst())
		p.resend = min(p.resend+resendShare*p.rate*float64(dt)/1e9, p.resendDepth())
		p.fillAt = now
	}
}

// Delay returns how long, in ns, a send at now must wait for credit: 0
// when it may go at once. Credit may go negative by one send, so a
// waiting sender is let through in bursts of at least waitQuantum's worth
// of bytes rather than one message per timer wake-up.
func (p *Pacer) Delay(now int64) int64 {
	p.fill(now)
	if p.tokens >= 0 {
		return 0
	}
	want := min(p.rate*waitQuantum/1e9, p.burst()/2)
	p.limited = true
	p.waitedAt = now
	p.waitCount++
	return int64(math.Ceil((want - p.tokens) / p.rate * 1e9))
}

// OnSend spends n bytes of credit for a datagram sent after Delay let it:
// data and parity. Credit accrues lazily, at the next Delay.
func (p *Pacer) OnSend(n int) {
	p.tokens -= float64(n)
	p.sent += float64(n)
}

// ResendOK reports whether a retransmission may be sent at now; OnResend
// charges the one that is. Retransmissions answer the receivers' NACKs
// at once, without waiting for credit. Unbounded, they starve the data or
// put the credit so deep in debt that Send waits for seconds; so they
// have an allowance of their own, which fills at resendShare of the rate
// up to resendBurst's worth (at least 64 KiB) and which one datagram may
// overdraw, and they put the shared credit at most maxResendDebt's worth
// in debt. A burst of repairs (a late joiner's history, an outage's
// losses) goes out at once, the data keeps at least the rest of the rate
// however many receivers ask for how much, and the wait repairs add to a
// Send stays within a few tens of milliseconds.
//
// (Before this bound, ten fan-out receivers falling behind at once put
// the credit megabytes in debt, since each stream's retransmit budget
// follows its past send rate and not the pacer's present one, and once a
// congestion cut had brought the rate to its floor Send waited for
// seconds.) A retransmission refused is not sent; the receiver asks again.
func (p *Pacer) ResendOK(now int64) bool {
	p.fill(now)
	return p.resend > 0
}

// OnResend spends n bytes of the retransmissions' allowance, and of the
// credit down to maxResendDebt's worth of debt, for a retransmission
// ResendOK let through.
func (p *Pacer) OnResend(n int) {
	p.resend -= float64(n)
	p.sent += float64(n)
	p.tokens = max(p.tokens-float64(n), min(p.tokens, -p.rate*maxResendDebt/1e9))
}

// setRate changes the rate to r. A debt is a wait: a lower rate scales it
// down with the rate, so that the wait it stands for does not grow (a cut
// to a tenth of the rate would otherwise make the wait for credit already
// spent ten times longer).
func (p *Pacer) setRate(r float64) {
	if r < p.rate {
		if p.tokens < 0 {
			p.tokens *= r / p.rate
		}
		if p.resend < 0 {
			p.resend *= r / p.rate
		}
	}
	p.rate = r
}

// Sent returns the bytes charged by OnSend so far.
func (p *Pacer) Sent() float64 { return p.sent }

// OnFeedback takes one REPORT, received at now.
func (p *Pacer) OnFeedback(now int64, f Feedback) {
	rtt, echo := f.RTT, f.Echo
	dt := min(now-p.lastFeedback, maxGrowthStep)
	if p.lastFeedback == 0 || dt < 0 {
		dt = 0
	}
	p.lastFeedback = now
	if f.Accounted == 0 {
		f.Accounted = f.Delivered
	}
	queued := p.observeRTT(now, rtt)
	p.observe(now, f.Delivered, f.Accounted)
	limited := p.limited
	p.limited = false
	if queued {
		p.highRTT++
	} else if rtt > 0 {
		p.highRTT = 0
	}
	reflectsLastCut := echo >= p.cutEcho
	if p.draining {
		// The queue the cut found drains at the lower rate; once fresh
		// feedback shows it gone (or the drain has lasted long enough:
		// the RTT may have other reasons to stay up), resume just under
		// the delivery rate the cut measured.
		drained := reflectsLastCut && rtt > 0 && !queued
		if !drained && now-p.cutEcho > max(maxDrain, 4*p.baseRTT()) {
			// Even half the rate did not empty the queue: the path's
			// capacity fell. Its best delivery rate is history; resume
			// under what arrives now.
			p.bestDelivery, p.prevBest, p.bestAt = p.delivery, 0, now
			p.afterDrain = p.clamp(min(p.afterDrain, p.delivery*cutToDeliver))
			drained = true
		}
		if drained {
			p.draining = false
			p.setRate(p.clamp(p.afterDrain))
			p.highRTT = 0
		}
		return
	}
	switch {
	case p.highRTT >= 2 && reflectsLastCut && !p.bystander(now):
		p.cut(now)
	case !queued && limited && reflectsLastCut && dt > 0:
		p.grow(dt)
	}
}

// bystander reports whether a standing RTT is better left alone: the
// sender has not been held back by its rate lately (it sends what the
// application offers, say 1 000 messages a second) and the receiver
// accounts for all it sends, lost or not. The queue is then not its doing
// (a busy host, other traffic, a jittery link), and slowing down would
// only delay its own messages. A sender whose offered load overloads the
// path soon sends more than the receiver accounts for, and is cut.
func (p *Pacer) bystander(now int64) bool {
	// Before the first verdict (the first deliverySpan of feedback) a
	// sender that has not waited is given the benefit of the doubt.
	return now-p.waitedAt > bystanderQuiet && (!p.outrunSet || !p.outrun)
}

// outrunning reports whether, over the newest span of at least
// max(bystanderQuiet, 16 RTT variations) (or what history there is, if it
// covers deliverySpan), the sender sent more than the receiver accounted
// for. Both figures are read at the sender's clock over the same span, so
// a constant sender compares equal whatever the path's delay. Jitter
// makes the receiver's figure lag by a varying amount, up to about one
// direction's share of the RTT's allowance: two variations' worth of
// sending.
func (p *Pacer) outrunning(now int64, accounted uint64) (outrun, ok bool) {
	pt := p.hist.spanStart(now, p.rateSpan(bystanderQuiet), deliverySpan)
	if pt == nil || now <= pt.at {
		return false, false
	}
	sent := p.sent - pt.sent
	lag := sent / float64(now-pt.at) * jitterAllowance / 2 * p.jitter
	return sent > bystanderMargin*float64(accounted-pt.accounted)+lag, true
}

func (p *Pacer) cut(now int64) {
	// The reference is the best delivery rate of the last window or two,
	// not the latest sample: a sample taken while draining shows the
	// drain's rate, and cutting below it again and again would spiral
	// the rate down to nothing while the receiver is merely busy.
	// Nor is the current rate: after a drain it is already below that
	// reference. A capacity that really fell is learnt when the old
	// maximum leaves the window (within two deliveryWindows).
	target := p.rate * cutToDeliver
	if best := max(p.delivery, p.bestDelivery, p.prevBest); best > 0 {
		target = best * cutToDeliver
	}
	p.afterDrain = p.clamp(target)
	p.tokens = min(p.tokens, 0)
	p.setRate(p.clamp(target * drainGain / cutToDeliver))
	p.draining = true
	p.startup = false
	p.highRTT = 0
	p.cutEcho = now
	p.cuts++
}

func (p *Pacer) grow(dt int64) {
	var r, ceiling float64
	if p.startup {
		r = p.rate * math.Exp2(float64(dt)/startupDoubling)
		ceiling = startupCap
	} else {
		r = p.rate * (1 + probeGain*float64(dt)/probeStep)
		ceiling = probeCap
	}
	if best := max(p.bestDelivery, p.prevBest); best > 0 {
		r = min(r, max(p.rate, best*ceiling))
	}
	p.setRate(p.clamp(r))
}

func (p *Pacer) clamp(r float64) float64 {
	if p.cfg.MaxRate > 0 {
		r = min(r, p.cfg.MaxRate)
	}
	return max(r, p.cfg.MinRate)
}

// observeRTT keeps the windowed minimum and reports whether the sample
// stands above it by more than the queue-delay target.
func (p *Pacer) observeRTT(now, rtt int64) bool {
	if rtt <= 0 {
		return false
	}
	if p.lastRTT[1] > 0 {
		// The variation is read from second differences, which a queue
		// building or draining at a steady pace leaves at zero: only
		// noise raises it, so a growing queue cannot widen its own
		// target. For independent noise, |second difference| runs
		// about √3 times |first difference|; dividing by it keeps the
		// figure comparable to RFC 3550's.
		// The first ones are averaged evenly, so a jittery path shows as
		// one within a few reports rather than after dozens.
		d2 := float64(rtt - 2*p.lastRTT[0] + p.lastRTT[1])
		p.jitterN = min(p.jitterN+1, int(1/jitterGain))
		p.jitter += (math.Abs(d2)/math.Sqrt(3) - p.jitter) / float64(p.jitterN)
	}
	p.lastRTT[0], p.lastRTT[1] = rtt, p.lastRTT[0]
	if p.minRTT == 0 || now-p.minRTTAt > minRTTWindow {
		// Start a new window, remembering the old one's minimum so that
		// a path that got longer is learnt within two windows.
		p.prevMin, p.minRTT, p.minRTTAt = p.minRTT, rtt, now
	} else {
		p.minRTT = min(p.minRTT, rtt)
	}
	base := p.baseRTT()
	widened := min(int64(jitterAllowance*p.jitter), maxJitterTarget, 2*base)
	target := max(p.cfg.QueueDelayTarget, base/2, widened)
	return rtt-base > target
}

// baseRTT is the path's minimum RTT over the last one or two windows.
func (p *Pacer) baseRTT() int64 {
	if p.prevMin > 0 && p.prevMin < p.minRTT {
		return p.prevMin
	}
	return p.minRTT
}

// observe records a feedback's cumulative counts: it updates the
// delivery rate, over at least deliverySpan (longer on a jittery path),
// and the bystander test's verdict.
func (p *Pacer) observe(now int64, delivered, accounted uint64) {
	if p.hist.n > 0 {
		if last := p.hist.at(p.hist.n - 1); delivered < last.delivered || accounted < last.accounted {
			p.hist.reset() // the receiver started over
			p.outrunSet = false
		}
	}
	if pt := p.hist.spanStart(now, p.rateSpan(deliverySpan), deliverySpan); pt != nil {
		if d := now - pt.at; d > 0 {
			p.delivery = float64(delivered-pt.delivered) * 1e9 / float64(d)
			if now-p.bestAt > deliveryWindow {
				p.prevBest, p.bestDelivery, p.bestAt = p.bestDelivery, 0, now
			}
			p.bestDelivery = max(p.bestDelivery, p.delivery)
		}
	}
	if outrun, ok := p.outrunning(now, accounted); ok {
		p.outrun, p.outrunSet = outrun, true
	}
	p.hist.add(histPoint{at: now, delivered: delivered, accounted: accounted, sent: p.sent})
}

// Rate returns the current pacing rate in bytes/s.
func (p *Pacer) Rate() float64 { return p.rate }

// Stats returns the pacer's figures.
func (p *Pacer) Stats() PacerStats {
	return PacerStats{
		RateBytes: p.rate, Delivery: p.delivery, MinRTTNanos: p.baseRTT(), JitterNanos: int64(p.jitter),
		Cuts: p.cuts, Waits: p.waitCount, Startup: p.startup,
	}
}
