package bench

import "math/bits"

// Geometry of Histogram: values below 2^subBits are kept exactly; above,
// each power of two is split into 2^subBits buckets, so a bucket is never
// wider than 1/2^subBits (0.8%) of the values in it.
const (
	subBits    = 7
	subBuckets = 1 << subBits
	// histBuckets covers every non-negative int64: shifts 0..63-subBits.
	histBuckets = subBuckets + (64-subBits)*subBuckets
)

// Histogram records non-negative durations in nanoseconds (latencies) in
// log-linear buckets with a fixed footprint (about 58 KiB), so recording is
// O(1), never allocates, and memory does not grow with the number of
// samples. Quantiles are nearest-rank and read each bucket's upper edge,
// clamped to the exact maximum: a reported quantile is at most 0.8% above
// the exact one, and exact below 128 ns. Count, Min and Max are exact.
// Negative values (a clock step) are recorded as 0 and counted.
//
// The zero value is an empty histogram ready to use. It is not safe for
// concurrent use.
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	min, max int64
	sum      float64
	negative uint64
}

func bucketOf(v int64) int {
	u := uint64(v)
	if u < 2*subBuckets {
		return int(u)
	}
	shift := bits.Len64(u) - subBits - 1 // >= 1
	return subBuckets + shift*subBuckets + int(u>>shift) - subBuckets
}

// bucketHigh is the largest value that falls in bucket i.
func bucketHigh(i int) int64 {
	if i < 2*subBuckets {
		return int64(i)
	}
	shift := (i - subBuckets) / subBuckets
	mant := uint64(subBuckets + (i-subBuckets)%subBuckets)
	return int64((mant+1)<<shift - 1)
}

// Record adds one value.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		h.negative++
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
	h.counts[bucketOf(v)]++
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the nearest-rank q-quantile (0 < q <= 1), within the
// precision stated on Histogram; 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if float64(rank) < q*float64(h.n) {
		rank++ // ceil
	}
	rank = max(1, min(rank, h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return max(h.min, min(bucketHigh(i), h.max))
		}
	}
	return h.max
}

// Summary returns the figures the bench reports.
func (h *Histogram) Summary() LatencySummary {
	s := LatencySummary{
		Count: h.n, MinNanos: h.min, MaxNanos: h.max, Negative: h.negative,
		P50Nanos: h.Quantile(0.50), P90Nanos: h.Quantile(0.90),
		P99Nanos: h.Quantile(0.99), P999Nanos: h.Quantile(0.999),
	}
	if h.n > 0 {
		s.MeanNanos = int64(h.sum / float64(h.n))
	}
	return s
}

// Reset empties the histogram.
func (h *Histogram) Reset() { *h = Histogram{} }

// LatencySummary is a latency distribution as the bench reports it, in
// nanoseconds.
type LatencySummary struct {
	Count     uint64 `json:"count"`
	MinNanos  int64  `json:"min_ns"`
	MeanNanos int64  `json:"mean_ns"`
	P50Nanos  int64  `json:"p50_ns"`
	P90Nanos  int64  `json:"p90_ns"`
	P99Nanos  int64  `json:"p99_ns"`
	P999Nanos int64  `json:"p999_ns"`
	MaxNanos  int64  `json:"max_ns"`
	Negative  uint64 `json:"negative,omitempty"` // samples below zero (clock trouble), counted as 0
}
