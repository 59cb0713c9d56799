package bench

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestParseStatm(t *testing.T) {
	for _, tc := range []struct {
		in        string
		size, res uint64
	}{
		{"5631 1277 1003 223 0 494 0\n", 5631, 1277},
		{"1 2", 1, 2},
		{"  12  34 \n", 12, 34},
		{"18446744073709551615 0\n", 1<<64 - 1, 0},
	} {
		size, res, err := ParseStatm([]byte(tc.in))
		if err != nil || size != tc.size || res != tc.res {
			t.Errorf("ParseStatm(%q) = %d, %d, %v; want %d, %d", tc.in, size, res, err, tc.size, tc.res)
		}
	}
	for _, bad := range []string{"", "\n", "12", "12\n34", "12 x", "-1 2", "1 2x 3", "18446744073709551616 1", "1\t2"} {
		if _, _, err := ParseStatm([]byte(bad)); !errors.Is(err, ErrStatm) {
			t.Errorf("ParseStatm(%q): %v, want ErrStatm", bad, err)
		}
	}
	b := []byte("5631 1277 1003 223 0 494 0\n")
	if a := testing.AllocsPerRun(100, func() { _, _, _ = ParseStatm(b) }); a != 0 {
		t.Errorf("ParseStatm: %v allocations, want 0", a)
	}
}

// FuzzParseStatm: no input panics, and what parses prints back to the
// same two numbers.
func FuzzParseStatm(f *testing.F) {
	for _, s := range []string{"5631 1277 1003 223 0 494 0\n", "1 2", "", "9999999999999999999999 1", " 7  8", "1 2x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		size, res, err := ParseStatm(b)
		if err != nil {
			if !errors.Is(err, ErrStatm) {
				t.Fatalf("error %v is not ErrStatm", err)
			}
			return
		}
		s2, r2, err := ParseStatm(fmt.Appendf(nil, "%d %d 0\n", size, res))
		if err != nil || s2 != size || r2 != res {
			t.Fatalf("re-parse of %d %d: %d %d %v", size, res, s2, r2, err)
		}
	})
}

func TestMemSummary(t *testing.T) {
	var m memSeries
	if s := m.summary(); s.Flat() || s.RSSGrowth() != 0 || s.Samples != 0 {
		t.Errorf("empty summary %+v is flat", s)
	}
	for i, v := range []uint64{100, 130, 100, 200, 105} {
		m.add(memPoint{at: int64(i) * 10, rss: v, heap: v / 10, live: v / 20, gcs: 7 + uint64(i)})
	}
	// Half-way between 0 and 40 is the third sample (at 20).
	want := MemSummary{Samples: 5, StartRSSBytes: 100, MidRSSBytes: 100, EndRSSBytes: 105, MaxRSSBytes: 200,
		StartHeapBytes: 10, MidHeapBytes: 10, EndHeapBytes: 10, MaxHeapBytes: 20, EndLiveHeapBytes: 5, GCCycles: 4}
	s := m.summary()
	if s != want {
		t.Errorf("summary %+v, want %+v", s, want)
	}
	if !s.Flat() || s.RSSGrowth() != 1.05 {
		t.Errorf("growth %v, flat %v: want 1.05, flat", s.RSSGrowth(), s.Flat())
	}
	// Half-way is now 25, as near the sample at 20 as the one at 30: the
	// earlier wins. 116 over 100 is not flat.
	m.add(memPoint{at: 50, rss: 116, gcs: 12})
	if s := m.summary(); s.MidRSSBytes != 100 || s.Flat() {
		t.Errorf("mid %d, growth %v, flat %v; want 100, 1.16, not flat", s.MidRSSBytes, s.RSSGrowth(), s.Flat())
	}
}

// TestMemSeriesBounded: a long case keeps a bounded, evenly spread set of
// samples, and the middle is still found.
func TestMemSeriesBounded(t *testing.T) {
	var m memSeries
	const n = 10000
	for i := range n {
		m.add(memPoint{at: int64(i), rss: uint64(i + 1), heap: 1})
	}
	if len(m.points) > maxMemPoints || cap(m.points) != maxMemPoints {
		t.Fatalf("%d points kept (cap %d)", len(m.points), cap(m.points))
	}
	for i, p := range m.points {
		if p.at != int64(i*m.stride) {
			t.Fatalf("point %d at %d, want %d (stride %d)", i, p.at, i*m.stride, m.stride)
		}
	}
	s := m.summary()
	if s.Samples != n || s.StartRSSBytes != 1 || s.EndRSSBytes != n || s.MaxRSSBytes != n {
		t.Errorf("summary %+v", s)
	}
	// The kept point nearest n/2 is within one stride of it.
	if mid := int64(s.MidRSSBytes) - 1; absDiff(mid, n/2) > int64(m.stride) {
		t.Errorf("mid sample %d, want within %d of %d", mid, m.stride, n/2)
	}
}

func TestMemReader(t *testing.T) {
	r, err := newMemReader()
	if err != nil {
		if runtime.GOOS == "linux" {
			t.Fatal(err)
		}
		t.Skipf("no /proc/self/statm: %v", err)
	}
	defer r.close()
	// Memory an earlier test (or run, with -count) allocated and freed
	// may still be resident in the heap, and the buffer below would then
	// reuse it without growing the RSS: hand it back to the OS first.
	debug.FreeOSMemory()
	p0, err := r.read()
	if err != nil || p0.rss == 0 || p0.heap == 0 {
		t.Fatalf("read = %+v, %v", p0, err)
	}
	// 16 MiB touched page by page shows in both figures.
	const big = 16 << 20
	buf := make([]byte, big)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	p1, err := r.read()
	if err != nil || p1.rss < p0.rss+big/2 || p1.heap < p0.heap+big/2 {
		t.Errorf("after touching 16 MiB: RSS %d → %d, heap %d → %d, %v", p0.rss, p1.rss, p0.heap, p1.heap, err)
	}
	runtime.KeepAlive(buf)
	// A collection shows in the count, and the live heap it marked
	// holds what is still referenced.
	runtime.GC()
	p2, err := r.read()
	if err != nil || p2.gcs <= p1.gcs || p2.live < big {
		t.Errorf("after GC: cycles %d → %d, live heap %d, %v", p1.gcs, p2.gcs, p2.live, err)
	}
	runtime.KeepAlive(buf)
	if raceEnabled {
		return
	}
	if a := testing.AllocsPerRun(50, func() {
		if _, err := r.read(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("memReader.read: %v allocations, want 0", a)
	}
}

// TestMemWatch: nothing is sampled before ready holds; finish takes the
// last sample and stops the goroutine.
func TestMemWatch(t *testing.T) {
	if _, err := newMemReader(); err != nil {
		t.Skipf("no /proc/self/statm: %v", err)
	}
	never := watchMem(memInterval, func() bool { return false })
	if m := never.finish(); m.Samples != 0 {
		t.Errorf("sampled %d times before ready", m.Samples)
	}
	w := watchMem(memInterval, nil) // first sample at once
	m := w.finish()
	if m.Samples < 2 || m.StartRSSBytes == 0 || m.EndRSSBytes == 0 || m.MaxRSSBytes < m.EndRSSBytes || m.MaxHeapBytes == 0 {
		t.Errorf("summary %+v", m)
	}
}
