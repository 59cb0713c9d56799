package replay

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestBuckets: buckets tile the uint64 range in order, each no wider than
// 1/16 of its smallest value above the linear range.
func TestBuckets(t *testing.T) {
	prevUpper := uint64(0)
	for i := 0; i < numBuckets; i++ {
		up := bucketUpper(i)
		lo := uint64(0)
		if i > 0 {
			lo = prevUpper + 1
		}
		if bucketOf(lo) != i || bucketOf(up) != i {
			t.Fatalf("bucket %d [%d, %d]: bucketOf gives %d, %d", i, lo, up, bucketOf(lo), bucketOf(up))
		}
		if lo >= linearLimit && float64(up-lo+1) > float64(lo)/subBuckets {
			t.Fatalf("bucket %d [%d, %d] too wide", i, lo, up)
		}
		prevUpper = up
	}
	if prevUpper != math.MaxUint64 {
		t.Fatalf("last bucket ends at %d", prevUpper)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 100000 {
		v := rng.Uint64() >> rng.IntN(64)
		if i := bucketOf(v); bucketUpper(i) < v || (i > 0 && bucketUpper(i-1) >= v) {
			t.Fatalf("%d in bucket %d", v, i)
		}
	}
}

func TestAccuracyEdges(t *testing.T) {
	var a Accuracy
	if a.Quantile(0.5) != 0 || a.Summary().Count != 0 {
		t.Fatal("empty recorder")
	}
	a.Record(100, 100)
	a.Record(100, 90)
	a.Record(100, 103)
	s := a.Summary()
	if s.Count != 3 || s.Early != 1 || s.Late != 1 || s.MaxNanos != 10 || s.P50Nanos != 3 {
		t.Fatalf("summary %+v", s)
	}
	if a.Quantile(0) != 0 || a.Quantile(1) != 10 || a.Quantile(math.NaN()) != 0 || a.Quantile(7) != 10 {
		t.Fatal("quantile bounds")
	}
	a.Record(math.MinInt64, math.MaxInt64)
	if a.Summary().MaxNanos != math.MaxInt64 || a.Quantile(1) != math.MaxInt64 {
		t.Fatalf("extreme: %+v", a.Summary())
	}
	a.Reset()
	if a.Summary() != (AccuracySummary{}) {
		t.Fatal("Reset")
	}
}

func TestRecordNoAllocs(t *testing.T) {
	var a Accuracy
	i := int64(0)
	if n := testing.AllocsPerRun(1000, func() { i += 977; a.Record(i, 2*i) }); n != 0 {
		t.Fatalf("%.1f allocations per Record", n)
	}
}

func BenchmarkRecord(b *testing.B) {
	var a Accuracy
	b.ReportAllocs()
	for i := range b.N {
		a.Record(int64(i), int64(i)+int64(i%5000))
	}
}
