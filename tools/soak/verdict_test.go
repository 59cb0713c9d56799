package soak

import (
	"testing"
	"time"
)

// series builds load samples one second apart with the given heap sizes
// (MiB) and goroutine counts, and a GC cycle completed in every interval.
func series(heapMiB []uint64, goroutines []uint64) []Sample {
	out := make([]Sample, len(heapMiB))
	for i := range heapMiB {
		out[i] = Sample{ElapsedNanos: int64(time.Duration(i+1) * time.Second), Load: true}
		out[i].HeapInuseBytes = heapMiB[i] << 20
		out[i].Goroutines = goroutines[i]
		out[i].GCCycles = uint64(10 + i)
	}
	return out
}

func TestJudge(t *testing.T) {
	same := func(n int, g uint64) []uint64 {
		s := make([]uint64, n)
		for i := range s {
			s[i] = g
		}
		return s
	}
	cases := []struct {
		name   string
		heap   []uint64
		gor    []uint64
		warmup time.Duration
		want   string
		judged int
		first  uint64 // MiB
		second uint64 // MiB
	}{
		{"flat", []uint64{40, 44, 42, 45, 43, 41}, same(6, 20), 0, VerdictFlat, 6, 44, 45},
		{"at the limit", []uint64{40, 40, 50, 50}, same(4, 20), 0, VerdictFlat, 4, 40, 50},
		{"over the limit", []uint64{40, 40, 51, 40}, same(4, 20), 0, VerdictGrowing, 4, 40, 51},
		{"steady growth", []uint64{10, 20, 30, 40, 50, 60}, same(6, 20), 0, VerdictGrowing, 6, 30, 60},
		{"goroutine leak", []uint64{40, 40, 40, 40}, []uint64{20, 20, 21, 21}, 0, VerdictGrowing, 4, 40, 40},
		{"odd count: the middle goes second", []uint64{40, 40, 60, 40, 40}, same(5, 20), 0, VerdictGrowing, 5, 40, 60},
		{"warm-up left out", []uint64{200, 40, 40, 40, 40}, same(5, 20), 2 * time.Second, VerdictFlat, 4, 40, 40},
		{"too few", []uint64{40, 40, 40}, same(3, 20), 0, VerdictInconclusive, 3, 0, 0},
		{"too few after warm-up", []uint64{40, 40, 40, 40}, same(4, 20), 2 * time.Second, VerdictInconclusive, 3, 0, 0},
	}
	for _, c := range cases {
		v := Judge(series(c.heap, c.gor), c.warmup)
		if v.Status != c.want || v.Judged != c.judged || v.FirstMaxHeap != c.first<<20 || v.SecondMaxHeap != c.second<<20 {
			t.Errorf("%s: %+v; want %s, %d judged, peaks %d/%d MiB", c.name, v, c.want, c.judged, c.first, c.second)
		}
		if v.Reason == "" {
			t.Errorf("%s: no reason", c.name)
		}
	}
}

// A half without a completed GC cycle makes the heap peaks meaningless:
// inconclusive, unless goroutines already show a leak.
func TestJudgeNeedsGCCycles(t *testing.T) {
	heap := []uint64{40, 45, 50, 55, 60, 65}
	for _, c := range []struct {
		name       string
		gcs        []uint64
		goroutines uint64
		want       string
	}{
		{"no GC at all", []uint64{3, 3, 3, 3, 3, 3}, 20, VerdictInconclusive},
		{"none in the second half", []uint64{3, 4, 5, 5, 5, 5}, 20, VerdictInconclusive},
		{"none in the first half", []uint64{3, 3, 3, 4, 4, 4}, 20, VerdictInconclusive},
		{"one in each", []uint64{3, 3, 4, 4, 4, 5}, 20, VerdictGrowing},
		{"goroutines changed", []uint64{3, 3, 3, 3, 3, 3}, 0, VerdictGrowing},
	} {
		s := series(heap, []uint64{20, 20, 20, 20, 20, 20})
		for i := range s {
			s[i].GCCycles = c.gcs[i]
		}
		if c.goroutines == 0 {
			s[5].Goroutines = 21
		}
		if v := Judge(s, 0); v.Status != c.want {
			t.Errorf("%s: %+v, want %s", c.name, v, c.want)
		}
	}
}

// Samples taken after the load (the drained one) are not judged.
func TestJudgeSkipsDrainSample(t *testing.T) {
	s := series([]uint64{40, 40, 40, 40, 500}, []uint64{9, 9, 9, 9, 3})
	s[4].Load = false
	if v := Judge(s, 0); v.Status != VerdictFlat || v.Judged != 4 {
		t.Fatalf("%+v", v)
	}
}
