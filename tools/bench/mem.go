package bench

import (
	"errors"
	"io"
	"os"
	"runtime/metrics"
	"sync"
	"time"
)

// FlatRSSRatio defines "flat" memory for a case: a worker's resident set
// is flat when its size at the end of the case is at most FlatRSSRatio
// times its size half-way through (MemSummary.Flat): no growth to speak
// of over the second half. Not against the size just after the warm-up,
// because a transport's fixed buffers, allocated whole up front (rings,
// queues, socket batches), become resident only as they are first
// written, which at a moderate load takes seconds; over a long case that
// is done by half-way, while anything that grows with the number of
// messages still grows in the second half. 10% leaves room for the Go
// heap's breathing between collections. The size after the warm-up is
// reported too.
const FlatRSSRatio = 1.10

// memInterval is how often a worker samples its memory during a case.
const memInterval = 20 * time.Millisecond

// MemSummary is how a worker process's memory went through one case:
// the resident set size (RSS, from /proc/self/statm) and the Go heap in
// use (bytes in heap objects, live or not yet swept: runtime/metrics
// "/memory/classes/heap/objects:bytes"), sampled every 20 ms from the end
// of the warm-up to the end of the case. Start is the first sample, Mid
// the one nearest half-way in time, End the last, Max the largest of all.
// Bytes throughout. All zero when the platform has no /proc (Samples 0).
//
// The heap may exceed the RSS: a buffer allocated up front counts whole
// in the heap at once, but only its pages written so far are resident.
// The heap in use also counts garbage not yet collected, so it (and with
// it the RSS) climbs between collections; EndLiveHeapBytes (the live heap
// as the last collection found it) and GCCycles tell garbage from growth.
type MemSummary struct {
	Samples        int    `json:"samples"`
	StartRSSBytes  uint64 `json:"start_rss_bytes"`
	MidRSSBytes    uint64 `json:"mid_rss_bytes"`
	EndRSSBytes    uint64 `json:"end_rss_bytes"`
	MaxRSSBytes    uint64 `json:"max_rss_bytes"`
	StartHeapBytes uint64 `json:"start_heap_bytes"`
	MidHeapBytes   uint64 `json:"mid_heap_bytes"`
	EndHeapBytes   uint64 `json:"end_heap_bytes"`
	MaxHeapBytes   uint64 `json:"max_heap_bytes"`
	// EndLiveHeapBytes is the live heap marked by the last garbage
	// collection before the last sample (runtime/metrics
	// /gc/heap/live:bytes), and GCCycles the collections between the
	// first sample and the last.
	EndLiveHeapBytes uint64 `json:"end_live_heap_bytes"`
	GCCycles         uint64 `json:"gc_cycles"`
}

// RSSGrowth is End RSS over Mid RSS: the growth over the second half of
// the case (0 without samples).
func (m MemSummary) RSSGrowth() float64 {
	if m.Samples == 0 || m.MidRSSBytes == 0 {
		return 0
	}
	return float64(m.EndRSSBytes) / float64(m.MidRSSBytes)
}

// Flat reports whether the RSS stayed flat through the case: End at most
// FlatRSSRatio × Mid (see FlatRSSRatio). False without samples.
func (m MemSummary) Flat() bool {
	g := m.RSSGrowth()
	return g > 0 && g <= FlatRSSRatio
}

// memPoint is one sample: when (Nanotime) and what.
type memPoint struct {
	at              int64
	rss, heap, live uint64
	gcs             uint64 // collections since the process started
}

// maxMemPoints bounds the samples a memSeries keeps to find the middle.
const maxMemPoints = 128

// memSeries accumulates samples into a MemSummary. It keeps at most
// maxMemPoints of them, evenly spread: when full it drops every other one
// and from then on keeps one in twice as many, so its memory is fixed
// however long the case. The first, the last and the maximum are exact.
type memSeries struct {
	sum         MemSummary
	points      []memPoint
	stride      int
	first, last memPoint
}

func (m *memSeries) add(p memPoint) {
	if m.sum.Samples == 0 {
		m.sum.StartRSSBytes, m.sum.StartHeapBytes = p.rss, p.heap
		m.stride = 1
		m.points = make([]memPoint, 0, maxMemPoints)
		m.first = p
	}
	if m.sum.Samples%m.stride == 0 {
		if len(m.points) == maxMemPoints {
			for i := range maxMemPoints / 2 {
				m.points[i] = m.points[2*i]
			}
			m.points = m.points[:maxMemPoints/2]
			m.stride *= 2
		}
		if m.sum.Samples%m.stride == 0 {
			m.points = append(m.points, p)
		}
	}
	m.sum.Samples++
	m.last = p
	m.sum.EndRSSBytes, m.sum.EndHeapBytes, m.sum.EndLiveHeapBytes = p.rss, p.heap, p.live
	m.sum.GCCycles = p.gcs - m.first.gcs
	m.sum.MaxRSSBytes = max(m.sum.MaxRSSBytes, p.rss)
	m.sum.MaxHeapBytes = max(m.sum.MaxHeapBytes, p.heap)
}

// summary returns the figures, with Mid the kept sample (or the last)
// nearest in time to half-way between the first and the last.
func (m *memSeries) summary() MemSummary {
	s := m.sum
	if s.Samples == 0 {
		return s
	}
	half := m.points[0].at + (m.last.at-m.points[0].at)/2
	mid := m.last
	for _, p := range m.points {
		if absDiff(p.at, half) < absDiff(mid.at, half) {
			mid = p
		}
	}
	s.MidRSSBytes, s.MidHeapBytes = mid.rss, mid.heap
	return s
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// ErrStatm is returned by ParseStatm for text that is not a statm line.
var ErrStatm = errors.New("bench: malformed /proc/self/statm")

// ParseStatm reads the first two fields of a /proc/PID/statm line, the
// program's total size and its resident set, both in pages. It never
// panics and does not allocate; anything but at least two space-separated
// decimal numbers that fit a uint64 is ErrStatm.
func ParseStatm(b []byte) (sizePages, residentPages uint64, err error) {
	var fields [2]uint64
	i := 0
	for f := range fields {
		for i < len(b) && b[i] == ' ' {
			i++
		}
		start := i
		var v uint64
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			d := uint64(b[i] - '0')
			if v > (1<<64-1-d)/10 {
				return 0, 0, ErrStatm
			}
			v = v*10 + d
		}
		if i == start || (i < len(b) && b[i] != ' ' && b[i] != '\n') {
			return 0, 0, ErrStatm
		}
		fields[f] = v
	}
	return fields[0], fields[1], nil
}

// memReader reads this process's RSS and Go heap in use. It keeps
// /proc/self/statm open and re-reads it from offset 0, so a sample costs
// two system calls and no allocation. Not safe for concurrent use.
type memReader struct {
	f      *os.File
	buf    [256]byte
	page   uint64
	sample [3]metrics.Sample
}

// The runtime/metrics read with each sample: the Go heap in use (bytes in
// heap objects), the live heap at the last collection, the collections
// so far.
var memMetrics = [3]string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes", "/gc/cycles/total:gc-cycles"}

func newMemReader() (*memReader, error) {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		return nil, err
	}
	r := &memReader{f: f, page: uint64(os.Getpagesize())}
	for i, name := range memMetrics {
		r.sample[i].Name = name
	}
	if _, err := r.read(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// read samples the RSS and the heap figures (at is left 0).
func (r *memReader) read() (memPoint, error) {
	n, err := r.f.ReadAt(r.buf[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return memPoint{}, err
	}
	_, res, err := ParseStatm(r.buf[:n])
	if err != nil {
		return memPoint{}, err
	}
	metrics.Read(r.sample[:])
	var v [len(memMetrics)]uint64
	for i := range r.sample {
		if r.sample[i].Value.Kind() == metrics.KindUint64 {
			v[i] = r.sample[i].Value.Uint64()
		}
	}
	return memPoint{rss: res * r.page, heap: v[0], live: v[1], gcs: v[2]}, nil
}

func (r *memReader) close() { r.f.Close() }

// memWatch samples a worker's memory on its own goroutine every interval
// until finish. The first sample is taken once ready reports true (at
// once when ready is nil), so that a receiver starts counting after its
// warm-up.
type memWatch struct {
	r     *memReader // nil: nothing to sample here
	ready func() bool
	stop  chan struct{}
	done  chan struct{}

	mu     sync.Mutex
	series memSeries
}

// watchMem starts sampling; see memWatch. Without /proc it samples
// nothing and finish returns a zero MemSummary.
func watchMem(interval time.Duration, ready func() bool) *memWatch {
	w := &memWatch{ready: ready, stop: make(chan struct{}), done: make(chan struct{})}
	r, err := newMemReader()
	if err != nil {
		close(w.done)
		return w
	}
	w.r = r
	if ready == nil {
		w.take()
	}
	go w.run(interval)
	return w
}

func (w *memWatch) run(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			if w.ready == nil || w.ready() {
				w.take()
			}
		}
	}
}

func (w *memWatch) take() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p, err := w.r.read(); err == nil {
		p.at = Nanotime()
		w.series.add(p)
	}
}

// finish takes the last sample (when the first has been taken), stops
// the goroutine and returns the summary. Call it once.
func (w *memWatch) finish() MemSummary {
	if w.r == nil {
		return MemSummary{}
	}
	close(w.stop)
	<-w.done
	if w.series.sum.Samples > 0 {
		w.take()
	}
	w.r.close()
	return w.series.summary()
}
