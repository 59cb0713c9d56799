package receiver

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestGroupSizeDefaults(t *testing.T) {
	for _, tc := range []struct {
		listen string
		set    int
		want   int
	}{
		{"", 0, 1}, {"127.0.0.1:9000", 0, 1}, {":9000", 0, 1},
		{"239.1.2.3:9000", 0, DefaultGroupSize}, {"[ff15::1]:9000", 0, DefaultGroupSize},
		{"239.1.2.3:9000", 1, 1}, {"127.0.0.1:9000", 10, 10},
	} {
		cfg, err := Config{Listen: tc.listen, NACKGroupSize: tc.set}.withDefaults()
		if err != nil || cfg.NACKGroupSize != tc.want || cfg.NACKBackoffRTTs != defaultBackoffRTTs {
			t.Errorf("Listen %q NACKGroupSize %d: %d, %v, %v", tc.listen, tc.set, cfg.NACKGroupSize, cfg.NACKBackoffRTTs, err)
		}
	}
	for _, cfg := range []Config{{NACKGroupSize: -1}, {NACKGroupSize: 1<<20 + 1}, {NACKBackoffRTTs: -1}, {NACKBackoffRTTs: 1001}} {
		if _, err := NewCore(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

// TestGroupBackoffWindow: alone a receiver asks at once; in a group its
// waits stay within NACKBackoffRTTs round trips (a retry's within two),
// capped at half the latency budget, and vary.
func TestGroupBackoffWindow(t *testing.T) {
	alone, err := NewCore(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var st *stream
	if alone.groupBackoff(&st) != nil {
		t.Fatal("a receiver alone backs off")
	}
	if alone.nackCopies(&stream{lossPPM: 50_000, intervalClosed: true}) != 2 {
		t.Fatal("a receiver alone at 5% loss sends one copy of its NACKs")
	}
	c, err := NewCore(Config{NACKGroupSize: 50, Rand: rand.NewPCG(1, 1), Latency: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if c.nackCopies(&stream{lossPPM: 50_000, intervalClosed: true}) != 1 {
		t.Fatal("a group's receiver sends NACK copies")
	}
	st = &stream{}
	f := c.groupBackoff(&st)
	// No RTT yet: a window of an eighth of the budget (25 ms).
	check := func(retry bool, window int64) {
		t.Helper()
		seen := map[int64]bool{}
		for range 200 {
			w := f(retry)
			if w < 0 || w > window {
				t.Fatalf("retry %v: wait %d outside [0, %d]", retry, w, window)
			}
			seen[w] = true
		}
		if len(seen) < 50 {
			t.Fatalf("retry %v: only %d distinct waits in 200", retry, len(seen))
		}
	}
	check(false, int64(25*time.Millisecond))
	st.rtt.Observe(int64(4 * time.Millisecond))
	check(false, int64(40*time.Millisecond))
	check(true, int64(8*time.Millisecond))
	st = &stream{}
	st.rtt.Observe(int64(50 * time.Millisecond)) // 10 round trips would pass the budget
	check(false, int64(100*time.Millisecond))
}
