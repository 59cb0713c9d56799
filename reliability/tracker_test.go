package reliability

import (
	"fmt"
	"testing"
	"unsafe"

	"github.com/telewire/telewire/packet"
)

// wrapStarts are the stream starts every tracker scenario runs from: the
// bottom, the 2^31 and 2^32 boundaries a 32-bit sequence would trip on, and
// just below the 2^64 wrap.
var wrapStarts = []uint64{0, 1, 1 << 31, 1<<32 - 5000, 1<<64 - 5000}

// ev is one step of a tracker scenario. Sequences are offsets from the
// scenario's start.
type ev struct {
	hb       bool   // heartbeat instead of DATA
	seq      uint64 // DATA sequence, or heartbeat next
	hbStart  uint64 // heartbeat start
	at       int64  // time, ns (0: the step's index in ms)
	want     Arrival
	newMiss  uint64
	wasMiss  bool
	reorder  bool
	repeat   int // DATA only: also send seq+1 .. seq+repeat-1, each expected new with no gap
	giveUpTo uint64
}

func data(seq uint64, want Arrival, newMiss uint64) ev {
	return ev{seq: seq, want: want, newMiss: newMiss}
}

func recovered(seq uint64) ev { return ev{seq: seq, want: ArrivalNew, wasMiss: true, reorder: true} }

func run(seq, n uint64) ev { return ev{seq: seq, want: ArrivalNew, repeat: int(n)} }

func hb(start, next, newMiss uint64) ev {
	return ev{hb: true, hbStart: start, seq: next, newMiss: newMiss}
}

type trackerCase struct {
	name   string
	cfg    TrackerConfig
	events []ev
	want   TrackerStats
}

var trackerCases = []trackerCase{
	{
		name:   "in order",
		events: []ev{run(0, 10000)},
		want:   TrackerStats{Received: 10000},
	},
	{
		name: "gap then fill by reordering",
		events: []ev{
			run(0, 3), data(5, ArrivalNew, 2), recovered(3), recovered(4), data(6, ArrivalNew, 0),
		},
		want: TrackerStats{Received: 7, Missing: 2, Recovered: 2, Reordered: 2},
	},
	{
		name: "duplicates",
		events: []ev{
			data(0, ArrivalNew, 0), data(1, ArrivalNew, 0), data(1, ArrivalDuplicate, 0),
			data(0, ArrivalDuplicate, 0), data(2, ArrivalNew, 0), data(2, ArrivalDuplicate, 0),
		},
		want: TrackerStats{Received: 3, Duplicates: 3},
	},
	{
		name: "largest gap inside the window is counted",
		cfg:  TrackerConfig{Window: 1024},
		events: []ev{
			data(0, ArrivalNew, 0), data(1024, ArrivalNew, 1023), recovered(1),
			data(1024, ArrivalDuplicate, 0),
		},
		want: TrackerStats{Received: 3, Missing: 1023, Recovered: 1, Reordered: 1, Duplicates: 1, Pending: 1022},
	},
	{
		name: "jump beyond the window resyncs without NACKing the gap",
		cfg:  TrackerConfig{Window: 1024},
		events: []ev{
			run(0, 10), data(5, ArrivalDuplicate, 0), data(12, ArrivalNew, 2),
			data(12+1025, ArrivalResync, 0), data(12+1026, ArrivalNew, 0),
			data(11, ArrivalStale, 0), data(1_000_000_000, ArrivalResync, 0),
		},
		want: TrackerStats{
			Received: 14, Missing: 2, Duplicates: 1, Stale: 1, Resyncs: 2,
			GivenUp: 2, GivenUpResync: 2,
		},
	},
	{
		name: "heartbeat reveals tail loss",
		events: []ev{
			run(0, 10), hb(0, 15, 5), hb(0, 15, 0), hb(0, 12, 0),
			{seq: 12, want: ArrivalNew, wasMiss: true}, // above the highest: not reordered
			data(15, ArrivalNew, 0), hb(0, 16, 0), hb(0, 17, 1),
		},
		want: TrackerStats{Received: 12, Missing: 6, Recovered: 1, Pending: 5},
	},
	{
		name: "heartbeat on an empty tracker counts from the stream start",
		events: []ev{
			hb(0, 5, 5), data(5, ArrivalNew, 0),
			{seq: 2, want: ArrivalNew, wasMiss: true, reorder: true},
		},
		want: TrackerStats{Received: 2, Missing: 5, Recovered: 1, Reordered: 1, Pending: 4},
	},
	{
		name: "heartbeat before any DATA with nothing sent",
		events: []ev{
			hb(3, 3, 0), data(6, ArrivalNew, 3), recovered(3),
		},
		want: TrackerStats{Received: 2, Missing: 3, Recovered: 1, Reordered: 1, Pending: 2},
	},
	{
		name: "heartbeat start before the first DATA extends the stream down",
		events: []ev{
			data(10, ArrivalNew, 0), hb(4, 11, 6), recovered(4),
			{seq: 3, want: ArrivalNew, reorder: true}, // below the start: new, not a recovery
		},
		want: TrackerStats{Received: 3, Missing: 6, Recovered: 1, Reordered: 2, Pending: 5},
	},
	{
		name: "first DATA reordered: earlier arrival extends the stream",
		events: []ev{
			data(10, ArrivalNew, 0),
			{seq: 7, want: ArrivalNew, newMiss: 2, reorder: true},
			recovered(8), recovered(9), data(7, ArrivalDuplicate, 0),
		},
		want: TrackerStats{Received: 4, Missing: 2, Recovered: 2, Reordered: 3, Duplicates: 1},
	},
	{
		name: "MaxMissing bounds the missing set, oldest given up first",
		cfg:  TrackerConfig{Window: 1024, MaxMissing: 100},
		events: []ev{
			data(0, ArrivalNew, 0), data(500, ArrivalNew, 499),
			recovered(1),   // given up, arrives anyway
			recovered(450), // still pending
			data(600, ArrivalNew, 99),
			recovered(420), // pushed out by the second gap
		},
		want: TrackerStats{
			Received: 6, Missing: 598, Recovered: 1, ArrivedAfterGiveUp: 2, Reordered: 3,
			GivenUp: 497, GivenUpOverflow: 497, Pending: 100,
		},
	},
	{
		name: "stale arrivals",
		cfg:  TrackerConfig{Window: 64},
		events: []ev{
			run(0, 200), data(100, ArrivalStale, 0), data(135, ArrivalStale, 0),
			data(136, ArrivalDuplicate, 0), // the oldest sequence still in the window
		},
		want: TrackerStats{Received: 200, Stale: 2, Duplicates: 1},
	},
	{
		name: "gaps sliding out of the window are given up",
		cfg:  TrackerConfig{Window: 64},
		events: []ev{
			data(0, ArrivalNew, 0), data(2, ArrivalNew, 1), data(60, ArrivalNew, 57),
			data(120, ArrivalNew, 59), recovered(57), recovered(100),
		},
		want: TrackerStats{
			Received: 6, Missing: 117, Recovered: 2, Reordered: 2,
			GivenUp: 55, GivenUpWindow: 55, Pending: 60,
		},
	},
	{
		name: "GiveUpBefore drops pending and future gaps below the floor",
		events: []ev{
			data(0, ArrivalNew, 0), data(10, ArrivalNew, 9),
			{seq: 5, hb: false, want: ArrivalNew, wasMiss: true, reorder: true, giveUpTo: 8},
			data(20, ArrivalNew, 9),
		},
		want: TrackerStats{
			Received: 4, Missing: 18, Recovered: 1, Reordered: 1,
			GivenUp: 6, GivenUpDeadline: 6, Pending: 11,
		},
	},
}

// runScenario plays c from start and checks every step and the final
// counters.
func runScenario(t *testing.T, c trackerCase, start uint64) *Tracker {
	t.Helper()
	tr := NewTracker(c.cfg)
	for i, e := range c.events {
		now := e.at
		if now == 0 {
			now = int64(i+1) * ms
		}
		if e.hb {
			if got := tr.OnHeartbeat(start+e.hbStart, start+e.seq, now); got != e.newMiss {
				t.Fatalf("step %d: OnHeartbeat(%d, %d) newly missing = %d, want %d", i, e.hbStart, e.seq, got, e.newMiss)
			}
			checkTrackerInvariants(t, tr)
			continue
		}
		n := max(e.repeat, 1)
		for k := range n {
			seq := start + e.seq + uint64(k)
			a, info := tr.OnData(seq, now)
			want := ArrivalInfo{Reordered: e.reorder, WasMissing: e.wasMiss, NewlyMissing: e.newMiss}
			if k > 0 {
				want = ArrivalInfo{}
			}
			if info.SinceDetectedNanos < 0 || !info.WasMissing && info.SinceDetectedNanos != 0 {
				t.Fatalf("step %d: repair time %d for an arrival that repaired nothing", i, info.SinceDetectedNanos)
			}
			info.SinceNACKNanos, info.SinceDetectedNanos = 0, 0 // timed in TestRepairTimes
			if a != e.want || info != want {
				t.Fatalf("step %d: OnData(+%d) = %v %+v, want %v %+v", i, e.seq+uint64(k), a, info, e.want, want)
			}
		}
		if e.giveUpTo != 0 {
			tr.GiveUpBefore(start + e.giveUpTo)
		}
		checkTrackerInvariants(t, tr)
	}
	if got := tr.Stats(); got != c.want {
		t.Fatalf("stats:\n got %+v\nwant %+v", got, c.want)
	}
	return tr
}

func TestTrackerScenarios(t *testing.T) {
	for _, c := range trackerCases {
		for _, start := range wrapStarts {
			t.Run(fmt.Sprintf("%s/start=%d", c.name, start), func(t *testing.T) {
				runScenario(t, c, start)
			})
		}
	}
}

// checkTrackerInvariants checks the tracker's internal consistency: the
// counters reconcile, the missing set is ordered, bounded, inside the
// window and holds no received sequence.
func checkTrackerInvariants(t testing.TB, tr *Tracker) {
	t.Helper()
	s := tr.Stats()
	if s.Missing != s.Recovered+s.GivenUp+s.Pending {
		t.Fatalf("Missing %d != Recovered %d + GivenUp %d + Pending %d", s.Missing, s.Recovered, s.GivenUp, s.Pending)
	}
	reasons := s.GivenUpOverflow + s.GivenUpWindow + s.GivenUpResync + s.GivenUpRetries + s.GivenUpDeadline + s.GivenUpUnavailable
	if s.GivenUp != reasons {
		t.Fatalf("GivenUp %d != sum of reasons %d", s.GivenUp, reasons)
	}
	if s.RecoveredRTX+s.RecoveredFEC > s.Recovered {
		t.Fatalf("recoveries by source exceed Recovered: %+v", s)
	}
	m := &tr.miss
	if m.live > m.maxLive || len(m.buf) > m.maxCap || m.n > len(m.buf) || m.live > m.n {
		t.Fatalf("missing set out of bounds: live %d n %d cap %d (max live %d, max cap %d)", m.live, m.n, len(m.buf), m.maxLive, m.maxCap)
	}
	if m.n > 0 && !m.at(0).live {
		t.Fatal("missing set front is a tombstone")
	}
	live := 0
	for i := range m.n {
		e := m.at(i)
		if i > 0 && !packet.SeqLess(m.at(i-1).seq, e.seq) {
			t.Fatalf("missing set out of order at %d: %d then %d", i, m.at(i-1).seq, e.seq)
		}
		if !e.live {
			continue
		}
		live++
		if d := tr.next - e.seq; d == 0 || d > tr.w {
			t.Fatalf("pending %d outside the window below next %d", e.seq, tr.next)
		}
		if tr.bit(e.seq) {
			t.Fatalf("pending %d is marked received", e.seq)
		}
	}
	if live != m.live {
		t.Fatalf("live count %d, found %d", m.live, live)
	}
	if h, ok := tr.Highest(); ok && !packet.SeqLess(h, tr.next) {
		t.Fatalf("highest %d not below next %d", h, tr.next)
	}
}

func TestTrackerConfigNormalize(t *testing.T) {
	cases := []struct {
		in, window, maxMissing int
	}{
		{0, DefaultWindow, DefaultMaxMissing},
		{-5, DefaultWindow, DefaultMaxMissing},
		{1, MinWindow, DefaultMaxMissing},
		{1000, 1024, DefaultMaxMissing},
		{1024, 1024, DefaultMaxMissing},
		{1 << 30, MaxWindow, DefaultMaxMissing},
	}
	for _, c := range cases {
		got := NewTracker(TrackerConfig{Window: c.in}).Config()
		if got.Window != c.window || got.MaxMissing != c.maxMissing {
			t.Errorf("Window %d: got window %d max missing %d, want %d %d", c.in, got.Window, got.MaxMissing, c.window, c.maxMissing)
		}
	}
	if got := NewTracker(TrackerConfig{MaxMissing: 1 << 30}).Config().MaxMissing; got != MaxMaxMissing {
		t.Errorf("MaxMissing not clamped: %d", got)
	}
	if got := NewTracker(TrackerConfig{ReorderFloor: 50 * ms, ReorderCeiling: 10 * ms}).Config(); got.ReorderCeiling != 50*ms {
		t.Errorf("ceiling below floor not raised: %+v", got)
	}
}

func TestTrackerFreshHeartbeatFarAhead(t *testing.T) {
	// A receiver joining a long-running stream: the heartbeat says the
	// stream started long ago. It must not count millions of losses.
	for _, start := range wrapStarts {
		tr := NewTracker(TrackerConfig{})
		if n := tr.OnHeartbeat(start, start+10_000_000, ms); n != 0 {
			t.Fatalf("start %d: late join counted %d missing", start, n)
		}
		if a, info := tr.OnData(start+10_000_000, 2*ms); a != ArrivalNew || info.NewlyMissing != 0 {
			t.Fatalf("start %d: first DATA after join = %v %+v", start, a, info)
		}
		if tr.Stats().Missing != 0 || tr.Stats().Resyncs != 0 {
			t.Fatalf("start %d: stats %+v", start, tr.Stats())
		}
	}
}

func TestTrackerHeartbeatJumpResyncs(t *testing.T) {
	tr := NewTracker(TrackerConfig{Window: 256})
	tr.OnData(0, ms)
	tr.OnData(5, ms) // 1..4 pending
	if n := tr.OnHeartbeat(0, 6+257, 2*ms); n != 0 {
		t.Fatalf("heartbeat jump counted %d missing", n)
	}
	s := tr.Stats()
	if s.Resyncs != 1 || s.GivenUpResync != 4 || s.Pending != 0 {
		t.Fatalf("stats after heartbeat jump: %+v", s)
	}
	if a, info := tr.OnData(6+257, 3*ms); a != ArrivalNew || info.NewlyMissing != 0 {
		t.Fatalf("DATA after heartbeat resync = %v %+v", a, info)
	}
	checkTrackerInvariants(t, tr)
}

func TestTrackerSources(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	tr.OnData(0, 0)
	tr.OnData(10, 0) // 1..9 pending
	tr.OnArrival(1, ms, SourceFEC)
	tr.OnArrival(2, ms, SourceRetransmit)
	tr.OnArrival(3, ms, SourceOriginal)
	tr.OnArrival(4, ms, SourceUnknown)
	s := tr.Stats()
	if s.Recovered != 4 || s.RecoveredFEC != 1 || s.RecoveredRTX != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Only the two originals fed the reordering estimate.
	if tr.reoSample != 2 {
		t.Fatalf("reorder samples = %d, want 2", tr.reoSample)
	}
	if a := Arrival(9).String(); a != "invalid" || ArrivalResync.String() != "resync" {
		t.Fatalf("Arrival names: %q %q", a, ArrivalResync.String())
	}
}

func TestTrackerOnUnavailable(t *testing.T) {
	for _, start := range wrapStarts {
		tr := NewTracker(TrackerConfig{})
		tr.OnData(start, 0)
		tr.OnData(start+20, 0) // 1..19 pending
		tr.OnData(start+5, 0)
		if n := tr.OnUnavailable(packet.Range{First: start + 3, Len: 5}); n != 4 { // 3,4,6,7
			t.Fatalf("start %d: OnUnavailable ended %d, want 4", start, n)
		}
		if n := tr.OnUnavailable(packet.Range{First: start + 100, Len: 5}); n != 0 {
			t.Fatalf("start %d: unavailable beyond next ended %d", start, n)
		}
		if n := tr.OnUnavailable(packet.Range{First: start + 1, Len: 0}); n != 0 {
			t.Fatalf("start %d: empty range ended %d", start, n)
		}
		s := tr.Stats()
		if s.GivenUpUnavailable != 4 || s.Pending != 14 {
			t.Fatalf("start %d: stats %+v", start, s)
		}
		checkTrackerInvariants(t, tr)
	}
}

// TestMemoryFigures keeps the per-entry sizes quoted in the documentation
// honest.
func TestMemoryFigures(t *testing.T) {
	if s := unsafe.Sizeof(missEntry{}); s != missEntrySize {
		t.Errorf("missEntry is %d bytes, documented as %d", s, missEntrySize)
	}
	if s := unsafe.Sizeof(sbEntry{}); s != 40 {
		t.Errorf("sbEntry is %d bytes, documented as 40", s)
	}
	tr := NewTracker(TrackerConfig{MaxMissing: 100})
	if tr.miss.maxCap != 150 || len(tr.bits)*8 != DefaultWindow/8 {
		t.Errorf("missing set bound %d, bitmap %d bytes", tr.miss.maxCap, len(tr.bits)*8)
	}
}

// TestRepairTimes checks the times OnArrival gives for a recovery: since
// the gap was found, and since it was last NACKed.
func TestRepairTimes(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	tr.OnArrival(0, 1*ms, SourceOriginal)
	tr.OnArrival(3, 2*ms, SourceOriginal) // 1 and 2 found missing at 2 ms
	rs := tr.AppendNACK(nil, 10*ms, 50*ms, nil)
	if len(rs) != 1 || rs[0] != (packet.Range{First: 1, Len: 2}) {
		t.Fatalf("NACK %+v", rs)
	}
	_, info := tr.OnArrival(1, 14*ms, SourceRetransmit)
	if info.SinceDetectedNanos != 12*ms || info.SinceNACKNanos != 4*ms {
		t.Fatalf("retransmission: %+v", info)
	}
	_, info = tr.OnArrival(2, 15*ms, SourceFEC)
	if info.SinceDetectedNanos != 13*ms || !info.WasMissing {
		t.Fatalf("FEC recovery: %+v", info)
	}
}

func TestMissingSince(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	tr.OnArrival(0, 1*ms, SourceOriginal)
	tr.OnArrival(3, 2*ms, SourceOriginal) // 1, 2 missing since 2 ms
	tr.OnArrival(6, 5*ms, SourceOriginal) // 4, 5 missing since 5 ms
	if got := tr.MissingSince(0); got != 4 {
		t.Fatalf("MissingSince(0) = %d, want 4", got)
	}
	if got := tr.MissingSince(3 * ms); got != 2 {
		t.Fatalf("MissingSince(3ms) = %d, want 2", got)
	}
	tr.OnArrival(5, 6*ms, SourceOriginal) // reordered, no longer missing
	if got := tr.MissingSince(3 * ms); got != 1 {
		t.Fatalf("after 5 arrived: MissingSince(3ms) = %d, want 1", got)
	}
	if got := tr.MissingSince(5 * ms); got != 0 {
		t.Fatalf("MissingSince(5ms) = %d, want 0", got)
	}
}
