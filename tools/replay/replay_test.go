package replay

import (
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/tools/capture"
)

const (
	ms    = int64(time.Millisecond)
	sec   = int64(time.Second)
	start = int64(1_000_000_000_000) // an arbitrary monotonic start
	// capture0 is the first capture timestamp used: 2015-08-16, in ns.
	capture0 = int64(1439753725_000000000)
)

func mustNew(t *testing.T, cfg Config) *Scheduler {
	t.Helper()
	s, err := New(cfg, start)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// schedule returns the send times, relative to start, of capture offsets.
func schedule(t *testing.T, cfg Config, offsets ...int64) ([]int64, *Scheduler) {
	t.Helper()
	s := mustNew(t, cfg)
	out := make([]int64, len(offsets))
	for i, o := range offsets {
		out[i] = s.Next(capture0+o) - start
	}
	return out, s
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestModes(t *testing.T) {
	offsets := []int64{0, 10 * ms, 30 * ms, 31 * ms}
	tests := []struct {
		name string
		cfg  Config
		want []int64
	}{
		{"original", Config{}, []int64{0, 10 * ms, 30 * ms, 31 * ms}},
		{"double speed", Config{Speed: 2}, []int64{0, 5 * ms, 15 * ms, 15*ms + ms/2}},
		{"half speed", Config{Speed: 0.5}, []int64{0, 20 * ms, 60 * ms, 62 * ms}},
		{"top speed", Config{TopSpeed: true}, []int64{0, 0, 0, 0}},
		{"1000 pps", Config{PPS: 1000}, []int64{0, ms, 2 * ms, 3 * ms}},
		{"3 pps", Config{PPS: 3}, []int64{0, 333333333, 666666667, sec}},
		{"gap cap 15 ms", Config{MaxGapNanos: 15 * ms}, []int64{0, 10 * ms, 25 * ms, 26 * ms}},
	}
	for _, tt := range tests {
		got, _ := schedule(t, tt.cfg, offsets...)
		if !equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestDecadesGapCapped is the trap of ndpi's syslog capture: a 43-year gap
// between joined captures must not make the replay wait 43 years.
func TestDecadesGapCapped(t *testing.T) {
	const gap43y = int64(43 * 365.25 * 24 * float64(time.Hour))
	got, s := schedule(t, Config{}, 0, ms, ms+gap43y, 2*ms+gap43y)
	if want := []int64{0, ms, ms + sec, 2*ms + sec}; !equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	st := s.Stats()
	if st.CappedGaps != 1 || st.CappedNanos != gap43y-sec {
		t.Fatalf("stats %+v", st)
	}
	// Without a cap the wait is the real one; it saturates rather than wraps.
	got, _ = schedule(t, Config{MaxGapNanos: NoGapCap}, 0, gap43y)
	if got[1] != gap43y {
		t.Fatalf("uncapped: %d, want %d", got[1], gap43y)
	}
	s = mustNew(t, Config{MaxGapNanos: NoGapCap})
	s.Next(math.MinInt64)
	if at := s.Next(math.MaxInt64); at != math.MaxInt64 {
		t.Fatalf("overflowing gap: %d, want saturation", at)
	}
}

func TestBackwardSteps(t *testing.T) {
	got, s := schedule(t, Config{}, 0, 10*ms, 7*ms, 9*ms, -3*sec, 20*ms)
	// 10->7 and 9->-3s are steps back: no gap. 7->9 is 2 ms; -3s->20ms is
	// 3.02 s, capped at 1 s.
	if want := []int64{0, 10 * ms, 10 * ms, 12 * ms, 12 * ms, 12*ms + sec}; !equal(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if st := s.Stats(); st.BackwardSteps != 2 || st.CappedGaps != 1 || st.Packets != 6 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLoops(t *testing.T) {
	offs := []int64{0, 5 * ms, 8 * ms}
	for _, tt := range []struct {
		cfg    Config
		passes int
		want   []int64
	}{
		{Config{}, 1, []int64{0, 5 * ms, 8 * ms}},
		{Config{Loops: 3}, 3, []int64{0, 5 * ms, 8 * ms, 8 * ms, 13 * ms, 16 * ms, 16 * ms, 21 * ms, 24 * ms}},
		{Config{Loops: 2, LoopGapNanos: 100 * ms}, 2, []int64{0, 5 * ms, 8 * ms, 108 * ms, 113 * ms, 116 * ms}},
		{Config{Loops: 2, PPS: 100}, 2, []int64{0, 10 * ms, 20 * ms, 30 * ms, 40 * ms, 50 * ms}},
	} {
		s := mustNew(t, tt.cfg)
		var got []int64
		passes := 0
		for {
			passes++
			for _, o := range offs {
				got = append(got, s.Next(capture0+o)-start)
			}
			if !s.NextPass() {
				break
			}
		}
		if passes != tt.passes || !equal(got, tt.want) || s.Stats().Passes != tt.passes {
			t.Errorf("%+v: %d passes %v, want %d %v", tt.cfg, passes, got, tt.passes, tt.want)
		}
	}
	s := mustNew(t, Config{Loops: Forever})
	for range 1000 {
		s.Next(capture0)
		if !s.NextPass() {
			t.Fatal("Forever stopped")
		}
	}
}

// TestNoDrift: a million irregular gaps at a speed whose division is inexact
// end exactly where the total capture time says, and every send time is
// within rounding of its ideal.
func TestNoDrift(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const n = 1_000_000
	s := mustNew(t, Config{Speed: 3})
	ts := capture0
	for i := range n {
		if i > 0 {
			ts += 1 + rng.Int64N(2*ms)
		}
		at := s.Next(ts)
		ideal := float64(ts-capture0) / 3
		if d := math.Abs(float64(at-start) - ideal); d > 1 {
			t.Fatalf("packet %d: %d ns off its ideal time", i, int64(d))
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Speed: -1}, {Speed: math.NaN()}, {Speed: math.Inf(1)}, {PPS: -2}, {PPS: math.Inf(1)},
		{TopSpeed: true, Speed: 2}, {TopSpeed: true, PPS: 10}, {Speed: 2, PPS: 10},
		{Loops: -2}, {MaxGapNanos: -5}, {LoopGapNanos: -1},
	} {
		if _, err := New(cfg, 0); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", cfg, err)
		}
	}
}

// TestReplayLoopWithFakeClock drives a replay loop the way a tool does,
// with a fake clock whose sends land late by a seeded jitter; the accuracy
// recorder reports the jitter's quantiles.
func TestReplayLoopWithFakeClock(t *testing.T) {
	clk := clock.NewFake(start)
	s, err := New(Config{Speed: 1}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	var acc Accuracy
	rng := rand.New(rand.NewPCG(9, 9))
	var jitters []int64
	ts := capture0
	for i := range 10_000 {
		ts += ms
		if i == 5000 {
			ts += 50 * 365 * 24 * int64(time.Hour) // a decades-long gap mid-file
		}
		at := s.Next(ts)
		clk.Advance(time.Duration(Delay(at, clk.Now()))) // the wait
		j := rng.Int64N(200 * int64(time.Microsecond))
		jitters = append(jitters, j)
		clk.Advance(time.Duration(j)) // the send lands late
		acc.Record(at, clk.Now())
	}
	// Total replay time: 9 999 gaps of 1 ms, one capped at 1 s, plus jitter
	// that a later send absorbs when it is smaller than the gap.
	if el := clk.Now() - start; el < 9999*ms+sec-ms || el > 9999*ms+sec+200*int64(time.Microsecond) {
		t.Fatalf("replay took %v", time.Duration(el))
	}
	sort.Slice(jitters, func(i, j int) bool { return jitters[i] < jitters[j] })
	sum := acc.Summary()
	for _, q := range []struct {
		got  int64
		want int64
	}{{sum.P50Nanos, jitters[len(jitters)/2-1]}, {sum.P99Nanos, jitters[len(jitters)*99/100-1]}} {
		if q.got < q.want || float64(q.got) > float64(q.want)*1.0625+1 {
			t.Errorf("quantile %d ns, exact %d ns", q.got, q.want)
		}
	}
	if sum.MaxNanos != jitters[len(jitters)-1] || sum.Count != 10_000 || sum.Early != 0 {
		t.Errorf("summary %+v, max jitter %d", sum, jitters[len(jitters)-1])
	}
}

func TestDelay(t *testing.T) {
	if Delay(10, 3) != 7 || Delay(3, 10) != 0 || Delay(5, 5) != 0 {
		t.Fatal("Delay")
	}
}

func TestSchedulerNoAllocs(t *testing.T) {
	s := mustNew(t, Config{Speed: 1.5})
	ts := capture0
	if a := testing.AllocsPerRun(1000, func() { ts += ms; s.Next(ts) }); a != 0 {
		t.Fatalf("%.1f allocations per Next", a)
	}
}

func BenchmarkNext(b *testing.B) {
	s, _ := New(Config{Speed: 1.5}, start)
	b.ReportAllocs()
	for i := range b.N {
		s.Next(capture0 + int64(i)*ms)
	}
}

// replayCapture schedules every datagram of a testdata capture with cfg and
// returns the last send offset and the scheduler's stats.
func replayCapture(t *testing.T, name string, cfg Config) (int64, Stats) {
	t.Helper()
	r, err := capture.Open(filepath.Join("../../testdata/pcap", name), capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := mustNew(t, cfg)
	last := int64(0)
	for {
		d, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = s.Next(d.Time.UnixNano()) - start
	}
	return last, s.Stats()
}

// TestRealCaptureTraps replays the public captures with traps: ndpi's
// syslog capture joins captures decades apart, many_interfaces steps back in
// time between interfaces.
func TestRealCaptureTraps(t *testing.T) {
	last, st := replayCapture(t, "ndpigit__syslog.pcap", Config{})
	if st.CappedGaps == 0 || st.CappedNanos < 40*365*24*int64(time.Hour) {
		t.Fatalf("syslog: the decades gap was not capped: %+v", st)
	}
	if last > int64(st.Packets)*sec {
		t.Fatalf("syslog: replay lasts %v, more than 1 s per datagram", time.Duration(last))
	}
	_, st = replayCapture(t, "wireshark__many_interfaces.1.pcapng", Config{})
	if st.BackwardSteps == 0 {
		t.Fatalf("many_interfaces: no backward step counted: %+v", st)
	}
}
