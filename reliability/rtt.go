package reliability

// maxRTTSample caps an RTT sample, in nanoseconds (about 73 minutes), so
// that SRTT + 4*RTTVAR cannot overflow whatever a caller feeds in.
const maxRTTSample = 1 << 42

// RTT is a round-trip time estimator after RFC 6298: a smoothed RTT (gain
// 1/8) and a mean deviation (gain 1/4), seeded by the first sample with
// SRTT = R and RTTVAR = R/2. It also keeps the smallest sample seen.
//
// All figures are nanoseconds. The zero value has no samples and is ready
// for use. An RTT is not safe for concurrent use.
type RTT struct {
	srtt    int64
	rttvar  int64
	min     int64
	samples uint64
}

// Observe feeds one RTT sample in nanoseconds. Samples <= 0 are ignored;
// samples above about 73 minutes are clamped to that.
func (r *RTT) Observe(sampleNanos int64) {
	if sampleNanos <= 0 {
		return
	}
	s := min(sampleNanos, maxRTTSample)
	if r.samples == 0 {
		r.srtt = s
		r.rttvar = s / 2
		r.min = s
	} else {
		dev := r.srtt - s
		if dev < 0 {
			dev = -dev
		}
		r.rttvar += (dev - r.rttvar) / 4
		r.srtt += (s - r.srtt) / 8
		r.min = min(r.min, s)
	}
	r.samples++
}

// Smoothed returns the smoothed RTT in nanoseconds, 0 before the first
// sample.
func (r *RTT) Smoothed() int64 { return r.srtt }

// Variance returns the RTT mean deviation (RFC 6298 RTTVAR) in nanoseconds,
// 0 before the first sample.
func (r *RTT) Variance() int64 { return r.rttvar }

// Min returns the smallest sample in nanoseconds, 0 before the first sample.
func (r *RTT) Min() int64 { return r.min }

// Samples returns the number of samples observed.
func (r *RTT) Samples() uint64 { return r.samples }

// RTO returns the retransmission timeout SRTT + 4*RTTVAR in nanoseconds,
// clamped to [floor, ceiling]. Before any sample it returns ceiling: with no
// measurement the conservative choice is the longest wait. If floor exceeds
// ceiling, ceiling wins.
func (r *RTT) RTO(floor, ceiling int64) int64 {
	if r.samples == 0 {
		return ceiling
	}
	rto := r.srtt + 4*r.rttvar
	return min(max(rto, floor), ceiling)
}
