package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHistogramExactSmall(t *testing.T) {
	var h Histogram
	for v := int64(1); v <= 200; v++ {
		h.Record(v)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0.5, 100}, {0.99, 198}, {0.999, 200}, {1, 200}, {0.001, 1}} {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("Quantile(%v) = %d, want %d", c.q, got, c.want)
		}
	}
	s := h.Summary()
	if s.Count != 200 || s.MinNanos != 1 || s.MaxNanos != 200 || s.MeanNanos != 100 {
		t.Errorf("summary %+v", s)
	}
}

// TestHistogramPrecision compares quantiles with the exact nearest-rank
// ones over log-uniform samples from 100 ns to 10 s.
func TestHistogramPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(math.Exp(math.Log(100) + rng.Float64()*math.Log(1e8)))
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		rank := int(math.Ceil(q * float64(len(vals))))
		exact := vals[rank-1]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/subBuckets {
			t.Errorf("Quantile(%v) = %d, exact %d: outside [exact, exact·(1+1/%d)]", q, got, exact, subBuckets)
		}
	}
	if h.Summary().MaxNanos != vals[len(vals)-1] || h.Summary().MinNanos != vals[0] {
		t.Errorf("min/max %d/%d, want %d/%d", h.Summary().MinNanos, h.Summary().MaxNanos, vals[0], vals[len(vals)-1])
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Buckets are contiguous and ordered, each edge value lies in its
	// bucket, and the last one ends at MaxInt64 within the array.
	prevHigh := int64(-1)
	for i := range histBuckets {
		hi := bucketHigh(i)
		if hi <= prevHigh {
			t.Fatalf("bucket %d ends at %d, not after %d", i, hi, prevHigh)
		}
		if b := bucketOf(prevHigh + 1); b != i {
			t.Fatalf("value %d in bucket %d, want %d", prevHigh+1, b, i)
		}
		if b := bucketOf(hi); b != i {
			t.Fatalf("value %d in bucket %d, want %d", hi, b, i)
		}
		prevHigh = hi
		if hi == math.MaxInt64 {
			return // the last bucket in use; the array has room to spare
		}
	}
	t.Fatalf("buckets end at %d, before MaxInt64", prevHigh)
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Summary().Count != 0 {
		t.Error("empty histogram not zero")
	}
	h.Record(-5)
	h.Record(math.MaxInt64)
	s := h.Summary()
	if s.Negative != 1 || s.MinNanos != 0 || s.MaxNanos != math.MaxInt64 || h.Quantile(1) != math.MaxInt64 {
		t.Errorf("summary %+v", s)
	}
	h.Reset()
	if h.Count() != 0 {
		t.Error("Reset kept samples")
	}
}

func TestHistogramRecordAllocs(t *testing.T) {
	h := new(Histogram)
	v := int64(1)
	if n := testing.AllocsPerRun(1000, func() { v = v*3 + 1; h.Record(v & (1<<40 - 1)) }); n != 0 {
		t.Errorf("Record: %v allocations, want 0", n)
	}
}

func TestSeqSet(t *testing.T) {
	s := NewSeqSet(130)
	for _, c := range []struct {
		seq         uint64
		isNew, inOK bool
	}{{0, true, true}, {0, false, true}, {129, true, true}, {129, false, true}, {130, false, false}, {64, true, true}, {^uint64(0), false, false}} {
		if n, ok := s.Add(c.seq); n != c.isNew || ok != c.inOK {
			t.Errorf("Add(%d) = %v, %v, want %v, %v", c.seq, n, ok, c.isNew, c.inOK)
		}
	}
	if s.Cap() != 130 {
		t.Errorf("Cap %d", s.Cap())
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := range b.N {
		h.Record(int64(i) * 977)
	}
}
