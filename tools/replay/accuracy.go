package replay

import (
	"math"
	"math/bits"
)

// Histogram layout: values below linearLimit nanoseconds have a bucket each;
// above, every power of two is split into subBuckets buckets, so a bucket's
// width is at most 1/16 of its values (6.25 % relative error).
const (
	subBucketBits = 4
	subBuckets    = 1 << subBucketBits                          // 16
	linearLimit   = 2 * subBuckets                              // 32
	firstLogLen   = subBucketBits + 2                           // bits.Len64(linearLimit)
	numBuckets    = linearLimit + (64-firstLogLen+1)*subBuckets // bit lengths firstLogLen..64
)

// Accuracy records how far actual send times were from scheduled ones, in a
// fixed-size histogram (about 7 KiB, never growing), and reports quantiles of
// |scheduled − actual|. The zero value is ready to use. Record does not
// allocate. Not safe for concurrent use.
type Accuracy struct {
	counts [numBuckets]uint64
	n      uint64
	late   uint64 // actual after scheduled
	early  uint64 // actual before scheduled
	max    uint64
}

// AccuracySummary is a snapshot of an Accuracy.
type AccuracySummary struct {
	// Count is the number of sends recorded.
	Count uint64 `json:"count"`
	// Late and Early count sends after and before their scheduled time.
	Late  uint64 `json:"late"`
	Early uint64 `json:"early"`
	// P50Nanos and P99Nanos are the median and 99th percentile of
	// |scheduled − actual| in nanoseconds, as the upper bound of their
	// histogram bucket (at most 6.25 % above the true value).
	P50Nanos int64 `json:"p50_ns"`
	P99Nanos int64 `json:"p99_ns"`
	// MaxNanos is the largest |scheduled − actual| seen, exact.
	MaxNanos int64 `json:"max_ns"`
}

// Record adds one send scheduled at scheduledNanos that happened at
// actualNanos, both on the same monotonic clock.
func (a *Accuracy) Record(scheduledNanos, actualNanos int64) {
	var d uint64
	switch {
	case actualNanos > scheduledNanos:
		d = uint64(actualNanos) - uint64(scheduledNanos)
		a.late++
	case actualNanos < scheduledNanos:
		d = uint64(scheduledNanos) - uint64(actualNanos)
		a.early++
	}
	a.counts[bucketOf(d)]++
	a.n++
	a.max = max(a.max, d)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of |scheduled − actual| in
// nanoseconds: the upper bound of the bucket holding it, never above the
// largest value seen. It returns 0 when nothing was recorded.
func (a *Accuracy) Quantile(q float64) int64 {
	if a.n == 0 || math.IsNaN(q) {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(a.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range a.counts {
		seen += c
		if seen >= rank {
			return satInt64(min(bucketUpper(i), a.max))
		}
	}
	return satInt64(a.max)
}

// Summary returns the count, direction counts, p50, p99 and maximum.
func (a *Accuracy) Summary() AccuracySummary {
	return AccuracySummary{
		Count: a.n, Late: a.late, Early: a.early,
		P50Nanos: a.Quantile(0.5), P99Nanos: a.Quantile(0.99), MaxNanos: satInt64(a.max),
	}
}

// Reset forgets everything recorded.
func (a *Accuracy) Reset() { *a = Accuracy{} }

// bucketOf returns the histogram bucket of v.
func bucketOf(v uint64) int {
	if v < linearLimit {
		return int(v)
	}
	l := bits.Len64(v)                  // ≥ firstLogLen
	top := v >> (l - subBucketBits - 1) // in [subBuckets, 2*subBuckets)
	return linearLimit + (l-firstLogLen)*subBuckets + int(top-subBuckets)
}

// bucketUpper returns the largest value in bucket i.
func bucketUpper(i int) uint64 {
	if i < linearLimit {
		return uint64(i)
	}
	l := (i-linearLimit)/subBuckets + firstLogLen
	top := uint64((i-linearLimit)%subBuckets + subBuckets)
	shift := l - subBucketBits - 1
	return (top+1)<<shift - 1
}

func satInt64(v uint64) int64 {
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
