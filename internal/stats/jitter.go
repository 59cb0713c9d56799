package stats

// maxTransitStepNanos caps the magnitude of one transit-time difference fed
// into [Jitter]. A difference this large (about nine years) only comes from
// a broken or hostile timestamp; capping it keeps the scaled estimate far
// from overflowing a uint64 (it stays below 16*maxTransitStepNanos + 16).
const maxTransitStepNanos = 1 << 58

// Jitter is the RFC 3550 (section 6.4.1 and appendix A.8) interarrival
// jitter estimator, in nanoseconds, fed with (sender timestamp, receive
// time) pairs of original (non-retransmitted) packets in arrival order.
//
// For consecutive packets i-1 and i the transit-time difference is
// D = (R_i - S_i) - (R_{i-1} - S_{i-1}), and the estimate moves a sixteenth
// of the way towards |D|: J += (|D| - J)/16. As in appendix A.8 the state is
// kept multiplied by 16, so the update is J16 += |D| - round(J16/16): the
// estimate stays within half a nanosecond of the exact real-valued
// recurrence instead of drifting by up to 15 ns as J += (|D|-J)/16 does in
// integer arithmetic. [Jitter.Nanos] rounds J16/16 to the nearest
// nanosecond, so a constant |D| converges to exactly |D| and a constant
// delay to exactly 0.
//
// Timestamps may be any int64: only differences are used, computed with
// wrapping arithmetic, so unrelated sender and receiver epochs (even ones
// near the ends of the int64 range) cancel. A single |D| larger than 2^58 ns
// is capped there.
//
// The zero value is ready to use. A Jitter is not safe for concurrent use.
type Jitter struct {
	transit   int64  // R - S of the previous packet, wrapping
	scaled    uint64 // J * 16
	haveFirst bool   // transit holds a packet's value
}

// Observe feeds the sender timestamp and the local receive time of the next
// original packet, both in nanoseconds on their own clocks. The first call
// only records the transit time; each later one updates the estimate.
func (j *Jitter) Observe(sentNanos, recvNanos int64) {
	transit := recvNanos - sentNanos // wraps; the constant epoch offset cancels below
	if !j.haveFirst {
		j.transit = transit
		j.haveFirst = true
		return
	}
	d := transit - j.transit // wrapping difference is exact while |D| < 2^63
	j.transit = transit
	var ad uint64
	if d < 0 {
		ad = uint64(-d) // for MinInt64, -d wraps to itself and uint64 gives 2^63
	} else {
		ad = uint64(d)
	}
	if ad > maxTransitStepNanos {
		ad = maxTransitStepNanos
	}
	// (scaled+8)>>4 <= scaled for every scaled, so this never wraps below 0.
	j.scaled += ad - (j.scaled+8)>>4
}

// Nanos returns the current jitter estimate J in nanoseconds, rounded to
// the nearest nanosecond; 0 before two packets have been observed.
func (j *Jitter) Nanos() uint64 {
	return (j.scaled + 8) >> 4
}

// Reset forgets all packets, returning j to its zero value.
func (j *Jitter) Reset() {
	*j = Jitter{}
}
