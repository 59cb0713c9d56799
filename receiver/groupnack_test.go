package receiver

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/reliability"
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
// waits stay within NACKBackoffRTTs round trips (a retry's within one),
// at least minBackoffWindow, capped at half the latency budget, and vary.
func TestGroupBackoffWindow(t *testing.T) {
	alone, err := NewCore(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var st *stream
	if alone.groupBackoff(&session{}, &st) != nil {
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
	f := c.groupBackoff(&session{}, &st)
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
	check(true, minBackoffWindow) // one round trip (4 ms) is under the floor
	st = &stream{}
	st.rtt.Observe(int64(50 * time.Millisecond)) // 10 round trips would pass the budget
	check(false, int64(100*time.Millisecond))
}

// groupHeartbeat is a HEARTBEAT of session 0x77 advertising a group of n.
func groupHeartbeat(t *testing.T, n uint32) []byte {
	t.Helper()
	p := packet.Packet{
		Header:    packet.Header{Kind: packet.KindHeartbeat, Flags: packet.FlagGroup, Session: 0x77},
		Heartbeat: packet.Heartbeat{Start: 1, Next: 1, Timestamp: 5, Receivers: n},
	}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGroupSizeObserved: a group's receiver takes the group size the
// sender advertises (DefaultGroupSize until it does), a configured one
// keeps its own, a unicast receiver ignores it, and a group of one does
// not back off.
func TestGroupSizeObserved(t *testing.T) {
	from := netip.MustParseAddrPort("10.0.0.1:5000")
	for _, tc := range []struct {
		name      string
		cfg       Config
		advertise uint32
		want      int // groupSizeOf after the HEARTBEAT
		wantStat  uint64
	}{
		{"group, observed", Config{Group: true}, 100, 100, 100},
		{"multicast listen, observed", Config{Listen: "239.1.2.3:9000"}, 7, 7, 7},
		{"group, configured", Config{Group: true, NACKGroupSize: 30}, 100, 30, 100},
		{"unicast", Config{}, 100, 1, 0},
		{"group of one", Config{Group: true}, 1, 1, 1},
	} {
		c, err := NewCore(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var s *session
		before := c.groupSizeOf(&session{})
		c.Handle(groupHeartbeat(t, tc.advertise), from, int64(time.Millisecond))
		for _, x := range c.sessions {
			s = x
		}
		if s == nil {
			t.Fatalf("%s: no session", tc.name)
		}
		if got := c.groupSizeOf(s); got != tc.want || c.Stats().GroupSize != tc.wantStat {
			t.Errorf("%s: group size %d (stat %d), want %d (%d)", tc.name, got, c.Stats().GroupSize, tc.want, tc.wantStat)
		}
		if tc.cfg.Group && tc.cfg.NACKGroupSize == 0 && before != DefaultGroupSize {
			t.Errorf("%s: %d before the sender said, want DefaultGroupSize", tc.name, before)
		}
		if tc.name == "group of one" {
			st := &stream{}
			st.rtt.Observe(int64(10 * time.Millisecond))
			if w := c.groupBackoff(s, &st)(false); w != 0 {
				t.Errorf("a receiver its sender hears alone waits %d ns", w)
			}
		}
	}
}

// TestSharers: the sharers of a loss follow the share of its gaps a
// receiver had to request itself, within [2, n], and n before there is
// a sample.
func TestSharers(t *testing.T) {
	for _, tc := range []struct {
		missing, nacked uint64
		n, want         int
	}{
		{10, 10, 100, 100},   // too few gaps: the group's size
		{1000, 1000, 100, 2}, // asked for every gap itself: alone with its losses (at least 2)
		{1000, 200, 100, 7},  // a fifth: 1.5 / 0.2
		{1000, 10, 100, 100}, // almost never: the whole group shares them (at most n)
		{1000, 10, 64, 64},
		{1000, 0, 100, 100},
	} {
		if got := sharers(reliability.TrackerStats{Missing: tc.missing, NACKed: tc.nacked}, tc.n); got != tc.want {
			t.Errorf("missing %d, NACKed %d, n %d: %d sharers, want %d", tc.missing, tc.nacked, tc.n, got, tc.want)
		}
	}
}
