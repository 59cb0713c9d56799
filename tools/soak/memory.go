package soak

import (
	"runtime"
	"runtime/metrics"
)

// Mem is the process's memory and scheduling figures at one instant.
type Mem struct {
	// HeapInuseBytes is the heap in spans in use: live and not yet swept
	// objects plus the free space inside their spans (runtime.MemStats'
	// HeapInuse).
	HeapInuseBytes uint64 `json:"heap_inuse_bytes"`
	// HeapObjects is the number of objects on the heap, live or not yet
	// swept.
	HeapObjects uint64 `json:"heap_objects"`
	// RSSBytes is the resident set size; -1 where it is not available
	// (not Linux).
	RSSBytes int64 `json:"rss_bytes"`
	// Goroutines is runtime.NumGoroutine(): the program's goroutines,
	// without the runtime's own (GC workers start lazily and would look
	// like a leak).
	Goroutines uint64 `json:"goroutines"`
	GCCycles   uint64 `json:"gc_cycles"` // completed since the process started
}

// The runtime/metrics names read by memReader, in the order of its
// samples.
var memMetrics = [...]string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/gc/heap/objects:objects",
	"/gc/cycles/total:gc-cycles",
}

// memReader reads Mem through runtime/metrics, which, unlike
// runtime.ReadMemStats, does not stop the world. Not safe for concurrent
// use.
type memReader struct{ s []metrics.Sample }

func newMemReader() *memReader {
	s := make([]metrics.Sample, len(memMetrics))
	for i, name := range memMetrics {
		s[i].Name = name
	}
	return &memReader{s: s}
}

// read returns the figures now. A metric the runtime does not support
// reads as 0.
func (m *memReader) read() Mem {
	metrics.Read(m.s)
	u := func(i int) uint64 {
		if m.s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return m.s[i].Value.Uint64()
	}
	return Mem{
		HeapInuseBytes: u(0) + u(1),
		HeapObjects:    u(2),
		RSSBytes:       rssBytes(),
		Goroutines:     uint64(runtime.NumGoroutine()),
		GCCycles:       u(3),
	}
}
