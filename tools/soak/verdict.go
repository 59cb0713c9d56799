package soak

import (
	"fmt"
	"time"
)

// The memory verdict's rule.
const (
	// FlatRatio is how much higher the heap in use may peak in the second
	// half of the judged samples than in the first half.
	FlatRatio = 1.25
	// MinJudgedSamples is the fewest samples after the warm-up that make a
	// verdict; fewer is inconclusive.
	MinJudgedSamples = 4
)

// Memory verdicts.
const (
	VerdictFlat         = "flat"
	VerdictGrowing      = "growing"
	VerdictInconclusive = "inconclusive"
)

// Verdict is the judgement of memory over a run.
type Verdict struct {
	// Status is VerdictFlat, VerdictGrowing or VerdictInconclusive.
	Status string `json:"status"`
	// Reason says why, with the figures.
	Reason string `json:"reason"`
	// Judged is the number of samples judged: taken under load at or
	// after the warm-up. The first Judged/2 form the first half.
	Judged int `json:"judged"`
	// FirstMaxHeap and SecondMaxHeap are the highest heap in use of each
	// half, in bytes; Ratio is SecondMaxHeap / FirstMaxHeap.
	FirstMaxHeap  uint64  `json:"first_max_heap_bytes"`
	SecondMaxHeap uint64  `json:"second_max_heap_bytes"`
	Ratio         float64 `json:"ratio"`
	// GoroutinesMin and GoroutinesMax are the fewest and most goroutines
	// over the judged samples.
	GoroutinesMin uint64 `json:"goroutines_min"`
	GoroutinesMax uint64 `json:"goroutines_max"`
	// FirstGCs and SecondGCs are the GC cycles completed within each
	// half (the second counted from the first half's last sample).
	FirstGCs  uint64 `json:"first_gc_cycles"`
	SecondGCs uint64 `json:"second_gc_cycles"`
}

// Judge applies the flat-memory rule to samples: take the samples with
// Load set and ElapsedNanos >= warmup, in order; split them into a first
// half (the first n/2) and a second half (the rest). Memory is flat when
// the highest heap in use of the second half is at most FlatRatio times
// the highest of the first half, and the goroutine count is the same in
// every judged sample.
//
// Heap in use climbs between collections and drops at each, so a peak
// means something only if the heap went through a collection: each half
// must see at least one GC cycle complete (within the first half, and
// from the first half's last sample to the end), else the verdict is
// inconclusive, as it is with fewer than MinJudgedSamples judged samples.
func Judge(samples []Sample, warmup time.Duration) Verdict {
	var judged []Sample
	for _, s := range samples {
		if s.Load && s.ElapsedNanos >= int64(warmup) {
			judged = append(judged, s)
		}
	}
	v := Verdict{Judged: len(judged)}
	if len(judged) < MinJudgedSamples {
		v.Status = VerdictInconclusive
		v.Reason = fmt.Sprintf("%d samples under load after the %s warm-up, %d needed: run longer or sample more often",
			len(judged), warmup, MinJudgedSamples)
		return v
	}
	half := len(judged) / 2
	v.GoroutinesMin, v.GoroutinesMax = judged[0].Goroutines, judged[0].Goroutines
	for i, s := range judged {
		if i < half {
			v.FirstMaxHeap = max(v.FirstMaxHeap, s.HeapInuseBytes)
		} else {
			v.SecondMaxHeap = max(v.SecondMaxHeap, s.HeapInuseBytes)
		}
		v.GoroutinesMin = min(v.GoroutinesMin, s.Goroutines)
		v.GoroutinesMax = max(v.GoroutinesMax, s.Goroutines)
	}
	v.FirstGCs = judged[half-1].GCCycles - judged[0].GCCycles
	v.SecondGCs = judged[len(judged)-1].GCCycles - judged[half-1].GCCycles
	if v.FirstMaxHeap > 0 {
		v.Ratio = float64(v.SecondMaxHeap) / float64(v.FirstMaxHeap)
	}
	v.Reason = fmt.Sprintf("peak heap in use %s in the second half vs %s in the first (×%.2f, limit ×%.2f); goroutines %d..%d; GC cycles %d and %d",
		mib(v.SecondMaxHeap), mib(v.FirstMaxHeap), v.Ratio, FlatRatio, v.GoroutinesMin, v.GoroutinesMax, v.FirstGCs, v.SecondGCs)
	heapOK := float64(v.SecondMaxHeap) <= FlatRatio*float64(v.FirstMaxHeap)
	goOK := v.GoroutinesMin == v.GoroutinesMax
	switch {
	case !goOK || !heapOK && v.FirstGCs > 0 && v.SecondGCs > 0:
		v.Status = VerdictGrowing
	case v.FirstGCs == 0 || v.SecondGCs == 0:
		v.Status = VerdictInconclusive
		v.Reason += ": a half without a completed GC cycle says nothing about retained memory; run longer or use ForceGC (--gc)"
	case heapOK:
		v.Status = VerdictFlat
	}
	return v
}

// mib formats a byte count in MiB.
func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
