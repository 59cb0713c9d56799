package reliability

import (
	"fmt"
	"slices"
	"testing"

	"github.com/telewire/telewire/packet"
)

// recoverFunc adapts a function to Recoverer.
type recoverFunc func(seq uint64, now int64) bool

func (f recoverFunc) CanRecover(seq uint64, now int64) bool { return f(seq, now) }

// rg is a packet.Range literal.
func rg(first uint64, n uint32) packet.Range { return packet.Range{First: first, Len: n} }

// rel returns rs with every First made relative to start, for comparison.
func rel(rs []packet.Range, start uint64) []packet.Range {
	out := make([]packet.Range, len(rs))
	for i, r := range rs {
		out[i] = packet.Range{First: r.First - start, Len: r.Len}
	}
	return out
}

// nackStep is one AppendNACK call in a timing scenario and what it must
// produce; nextAt is NextNACKAt afterwards (-1: nothing pending).
type nackStep struct {
	now    int64
	rto    int64
	want   []packet.Range // relative to the start
	after  []uint64       // DATA offsets arriving at now, after AppendNACK
	nextAt int64
}

func TestNACKTiming(t *testing.T) {
	cfg := TrackerConfig{ReorderFloor: 2 * ms, NACKInterval: 5 * ms, MaxNACKRetries: 3, RetrySpan: 1}
	cases := []struct {
		name  string
		setup func(tr *Tracker, s uint64) // runs at t=10ms
		steps []nackStep
		check func(t *testing.T, s TrackerStats)
	}{
		{
			name: "reorder tolerance then backoff then give up",
			setup: func(tr *Tracker, s uint64) {
				tr.OnData(s, 10*ms)
				tr.OnData(s+2, 10*ms) // 1 missing at 10ms
			},
			steps: []nackStep{
				{now: 11 * ms, rto: 20 * ms, want: nil, nextAt: 12 * ms},
				{now: 12 * ms, rto: 20 * ms, want: []packet.Range{{First: 1, Len: 1}}, nextAt: 32 * ms},
				{now: 31 * ms, rto: 20 * ms, want: nil, nextAt: 32 * ms},
				{now: 32 * ms, rto: 20 * ms, want: []packet.Range{{First: 1, Len: 1}}, nextAt: 52 * ms},
				{now: 52 * ms, rto: 20 * ms, want: []packet.Range{{First: 1, Len: 1}}, nextAt: 72 * ms},
				{now: 72 * ms, rto: 20 * ms, want: nil, nextAt: -1},
			},
			check: func(t *testing.T, s TrackerStats) {
				if s.NACKed != 1 || s.NACKRetries != 2 || s.GivenUpRetries != 1 || s.NACKRounds != 3 || s.NACKPackets != 3 {
					t.Fatalf("stats %+v", s)
				}
			},
		},
		{
			name: "due gaps coalesce into ranges in one round",
			setup: func(tr *Tracker, s uint64) {
				for _, o := range []uint64{0, 4, 6, 10, 11, 15} {
					tr.OnData(s+o, 10*ms)
				}
			},
			steps: []nackStep{
				{now: 12 * ms, rto: 20 * ms, want: []packet.Range{rg(1, 3), rg(5, 1), rg(7, 3), rg(12, 3)}, nextAt: 32 * ms},
			},
			check: func(t *testing.T, s TrackerStats) {
				if s.NACKed != 10 || s.NACKPackets != 1 {
					t.Fatalf("stats %+v", s)
				}
			},
		},
		{
			name: "the interval does not hold a new gap back",
			setup: func(tr *Tracker, s uint64) {
				tr.OnData(s, 10*ms)
				tr.OnData(s+2, 10*ms)
			},
			steps: []nackStep{
				// DATA 5 at 12ms reveals 3 and 4, due at 14ms: a first
				// request goes out when due, 2ms after the last round.
				{now: 12 * ms, rto: 50 * ms, want: []packet.Range{rg(1, 1)}, after: []uint64{5}, nextAt: 14 * ms},
				{now: 14 * ms, rto: 50 * ms, want: []packet.Range{rg(3, 2)}, nextAt: 62 * ms},
			},
		},
		{
			name: "the interval paces repeated requests",
			setup: func(tr *Tracker, s uint64) {
				tr.OnData(s, 10*ms)
				tr.OnData(s+2, 10*ms)
			},
			steps: []nackStep{
				// 1 is requested at 12ms and 3 at 14ms; 1 is repeated at
				// 15ms, so the repeat of 3, due at 17ms, waits for 20ms,
				// and 1's next (due at 18ms) joins it.
				{now: 12 * ms, rto: 3 * ms, want: []packet.Range{rg(1, 1)}, after: []uint64{4}, nextAt: 14 * ms},
				{now: 14 * ms, rto: 3 * ms, want: []packet.Range{rg(3, 1)}, nextAt: 15 * ms},
				{now: 15 * ms, rto: 3 * ms, want: []packet.Range{rg(1, 1)}, nextAt: 20 * ms},
				{now: 17 * ms, rto: 3 * ms, want: nil, nextAt: 20 * ms},
				{now: 20 * ms, rto: 3 * ms, want: []packet.Range{rg(1, 1), rg(3, 1)}, nextAt: 25 * ms}, // due at 23ms, paced
			},
		},
		{
			name: "a run of missing sequences is one range",
			setup: func(tr *Tracker, s uint64) {
				tr.OnData(s, 10*ms)
				tr.OnData(s+10, 10*ms) // 1..9 missing
			},
			steps: []nackStep{
				{now: 12 * ms, rto: 20 * ms, want: []packet.Range{rg(1, 9)}, nextAt: 32 * ms},
			},
		},
		{
			name: "non-positive rto falls back to 100ms",
			setup: func(tr *Tracker, s uint64) {
				tr.OnData(s, 10*ms)
				tr.OnData(s+2, 10*ms)
			},
			steps: []nackStep{
				{now: 12 * ms, rto: 0, want: []packet.Range{rg(1, 1)}, nextAt: 112 * ms},
				{now: 112 * ms, rto: -5, want: []packet.Range{rg(1, 1)}, nextAt: 212 * ms},
			},
		},
	}
	for _, c := range cases {
		for _, start := range wrapStarts {
			t.Run(fmt.Sprintf("%s/start=%d", c.name, start), func(t *testing.T) {
				tr := NewTracker(cfg)
				c.setup(tr, start)
				if at, ok := tr.NextNACKAt(); !ok || at != 12*ms {
					t.Fatalf("NextNACKAt after setup = %d %v, want 12ms", at, ok)
				}
				var buf []packet.Range
				for i, st := range c.steps {
					buf = tr.AppendNACK(buf[:0], st.now, st.rto, nil)
					if got := rel(buf, start); !slices.Equal(got, st.want) && len(got)+len(st.want) > 0 {
						t.Fatalf("step %d at %dms: ranges %v, want %v", i, st.now/ms, got, st.want)
					}
					for _, o := range st.after {
						tr.OnData(start+o, st.now)
					}
					at, ok := tr.NextNACKAt()
					if st.nextAt < 0 {
						if ok {
							t.Fatalf("step %d: NextNACKAt = %d, want none", i, at)
						}
					} else if !ok || at != st.nextAt {
						t.Fatalf("step %d: NextNACKAt = %dns %v, want %dms", i, at, ok, st.nextAt/ms)
					}
					checkTrackerInvariants(t, tr)
				}
				if c.check != nil {
					c.check(t, tr.Stats())
				}
			})
		}
	}
}

func TestNACKStoppedByArrivalUnavailableDeadline(t *testing.T) {
	for _, start := range wrapStarts {
		tr := NewTracker(TrackerConfig{ReorderFloor: 2 * ms, NACKInterval: ms})
		tr.OnData(start, 0)
		tr.OnData(start+10, 0) // 1..9 missing
		tr.AppendNACK(nil, 2*ms, 10*ms, nil)
		tr.OnArrival(start+5, 5*ms, SourceRetransmit)            // arrived
		tr.OnUnavailable(packet.Range{First: start + 7, Len: 2}) // 7, 8 gone at the sender
		tr.GiveUpBefore(start + 3)                               // 1, 2 past their deadline
		got := rel(tr.AppendNACK(nil, 12*ms, 10*ms, nil), start)
		want := []packet.Range{rg(3, 2), rg(6, 1), rg(9, 1)}
		if !slices.Equal(got, want) {
			t.Fatalf("start %d: ranges %v, want %v", start, got, want)
		}
		s := tr.Stats()
		if s.RecoveredRTX != 1 || s.GivenUpUnavailable != 2 || s.GivenUpDeadline != 2 || s.NACKRetries != 4 {
			t.Fatalf("start %d: stats %+v", start, s)
		}
		// A gap found later below the deadline floor is never requested.
		tr.GiveUpBefore(start + 15)
		tr.OnData(start+20, 13*ms) // 11..19 missing, 11..14 below the floor
		got = rel(tr.AppendNACK(nil, 40*ms, 10*ms, nil), start)
		want = []packet.Range{rg(15, 5)}
		if !slices.Equal(got, want) {
			t.Fatalf("start %d: ranges after floor %v, want %v", start, got, want)
		}
		checkTrackerInvariants(t, tr)
	}
}

func TestNACKRecovererVeto(t *testing.T) {
	for _, start := range wrapStarts {
		tr := NewTracker(TrackerConfig{ReorderFloor: 2 * ms, NACKInterval: ms})
		tr.OnData(start, 0)
		tr.OnData(start+4, 0) // 1, 2, 3 missing
		// FEC can rebuild 2 until 20ms.
		rec := recoverFunc(func(seq uint64, now int64) bool { return seq == start+2 && now < 20*ms })
		got := rel(tr.AppendNACK(nil, 2*ms, 100*ms, rec), start)
		if want := []packet.Range{rg(1, 1), rg(3, 1)}; !slices.Equal(got, want) {
			t.Fatalf("start %d: ranges %v, want %v", start, got, want)
		}
		// The vetoed sequence is looked at again one tolerance later.
		if at, _ := tr.NextNACKAt(); at != 4*ms {
			t.Fatalf("start %d: NextNACKAt = %d, want 4ms", start, at)
		}
		if got := tr.AppendNACK(nil, 4*ms, 100*ms, rec); len(got) != 0 {
			t.Fatalf("start %d: vetoed again, got %v", start, got)
		}
		got = rel(tr.AppendNACK(nil, 20*ms, 100*ms, rec), start)
		if want := []packet.Range{rg(2, 1)}; !slices.Equal(got, want) {
			t.Fatalf("start %d: after veto lapses %v, want %v", start, got, want)
		}
		if v := tr.Stats().NACKVetoed; v != 2 {
			t.Fatalf("start %d: vetoed %d, want 2", start, v)
		}
		// FEC rebuilds 1 before its retry: it is not asked for again.
		tr.OnArrival(start+1, 30*ms, SourceFEC)
		got = rel(tr.AppendNACK(nil, 102*ms, 100*ms, rec), start)
		if want := []packet.Range{rg(3, 1)}; !slices.Equal(got, want) {
			t.Fatalf("start %d: retry %v, want %v", start, got, want)
		}
	}
}

func TestNACKRangeBudgetAndSplit(t *testing.T) {
	for _, start := range wrapStarts {
		tr := NewTracker(TrackerConfig{ReorderFloor: ms, NACKInterval: ms})
		// 300 isolated gaps: every even offset below 600 is missing.
		for o := uint64(1); o <= 601; o += 2 {
			tr.OnData(start+o, 0)
		}
		tr.OnData(start, 0) // extends the stream down: nothing new missing
		first := tr.AppendNACK(nil, ms, 50*ms, nil)
		if len(first) != DefaultMaxNACKRanges {
			t.Fatalf("start %d: first round %d ranges, want %d", start, len(first), DefaultMaxNACKRanges)
		}
		if at, _ := tr.NextNACKAt(); at != 2*ms {
			t.Fatalf("start %d: remaining due gaps should wake the receiver after the interval, got %d", start, at)
		}
		second := tr.AppendNACK(nil, 2*ms, 50*ms, nil)
		if len(second) != 300-DefaultMaxNACKRanges {
			t.Fatalf("start %d: second round %d ranges", start, len(second))
		}
		if second[0].First != start+2*DefaultMaxNACKRanges+2 {
			t.Fatalf("start %d: second round starts at %d", start, second[0].First-start)
		}
		s := tr.Stats()
		if s.NACKPackets != 5 || s.NACKRounds != 2 || s.NACKed != 300 {
			t.Fatalf("start %d: stats %+v", start, s)
		}
		checkNACKPackets(t, first, 4)
		checkNACKPackets(t, second, 1)
	}
}

// checkNACKPackets splits rs with SplitNACK, encodes each packet, parses it
// back and checks that the ranges survive and the packet count is want.
func checkNACKPackets(t *testing.T, rs []packet.Range, want int) {
	t.Helper()
	var all []packet.Range
	n := 0
	for rest := rs; len(rest) > 0; n++ {
		var head []packet.Range
		head, rest = SplitNACK(rest)
		p := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: 1}, Ranges: head}
		b, err := p.AppendTo(nil)
		if err != nil {
			t.Fatalf("NACK packet %d does not encode: %v (%v)", n, err, head)
		}
		var q packet.Packet
		if err := q.Parse(b); err != nil {
			t.Fatalf("NACK packet %d does not parse: %v", n, err)
		}
		all = append(all, q.Ranges...)
	}
	if n != want {
		t.Fatalf("%d packets, want %d", n, want)
	}
	if !slices.Equal(all, rs) {
		t.Fatal("ranges changed through encoding")
	}
}

func TestNACKLongRunSplitsIntoValidPackets(t *testing.T) {
	for _, start := range wrapStarts {
		tr := NewTracker(TrackerConfig{Window: 1 << 17, MaxMissing: 80000, ReorderFloor: ms})
		tr.OnData(start, 0)
		tr.OnData(start+70001, 0) // 70000 missing: longer than one range
		rs := tr.AppendNACK(nil, ms, 50*ms, nil)
		want := []packet.Range{{First: start + 1, Len: packet.MaxRangeLen}, {First: start + 1 + packet.MaxRangeLen, Len: 70000 - packet.MaxRangeLen}}
		if !slices.Equal(rs, want) {
			t.Fatalf("start %d: ranges %v", start, rs)
		}
		// Touching ranges cannot share a packet.
		checkNACKPackets(t, rs, 2)
	}
	if h, r := SplitNACK(nil); len(h) != 0 || len(r) != 0 {
		t.Fatal("SplitNACK(nil) not empty")
	}
	// Span rule: two ranges MaxNACKSpan apart go in two packets.
	top := uint64(1<<64 - 10)
	far := []packet.Range{{First: top, Len: 5}, {First: top + packet.MaxNACKSpan, Len: 1}}
	checkNACKPackets(t, far, 2)
}

func TestReorderToleranceAdapts(t *testing.T) {
	tr := NewTracker(TrackerConfig{ReorderFloor: ms, ReorderCeiling: 30 * ms})
	if got := tr.ReorderTolerance(); got != ms {
		t.Fatalf("initial tolerance %d, want the floor", got)
	}
	tr.SetJitter(3 * ms)
	if got := tr.ReorderTolerance(); got != 6*ms {
		t.Fatalf("tolerance with 3ms jitter %d, want 6ms", got)
	}
	tr.SetJitter(0)
	// Gaps repeatedly filled 4ms after they were found, by originals.
	now := int64(0)
	seq := uint64(0)
	tr.OnData(seq, now)
	for range 50 {
		tr.OnData(seq+2, now)
		now += 4 * ms
		tr.OnArrival(seq+1, now, SourceOriginal)
		seq += 2
	}
	got := tr.ReorderTolerance()
	if got < 4*ms || got > 5*ms {
		t.Fatalf("tolerance after steady 4ms reordering = %d, want about 4ms", got)
	}
	// A NACKed gap filled by an original counts as a spurious NACK and
	// still teaches the estimator.
	tr.OnData(seq+2, now)
	tr.AppendNACK(nil, now+got, 50*ms, nil)
	tr.OnArrival(seq+1, now+200*ms, SourceOriginal)
	if s := tr.Stats(); s.SpuriousNACKs != 1 {
		t.Fatalf("spurious NACKs %d", s.SpuriousNACKs)
	}
	if got := tr.ReorderTolerance(); got != 30*ms {
		t.Fatalf("tolerance after a 200ms reorder = %d, want the 30ms ceiling", got)
	}
	// SinceNACKNanos reports the time since the last request.
	tr.OnData(seq+4, now)
	tr.AppendNACK(nil, now+100*ms, 50*ms, nil)
	_, info := tr.OnArrival(seq+3, now+130*ms, SourceRetransmit)
	if info.SinceNACKNanos != 30*ms {
		t.Fatalf("SinceNACKNanos = %d, want 30ms", info.SinceNACKNanos)
	}
}

// TestBackoffSchedule pins the retry spacing: one RTO apart for the first
// four requests, then doubling up to 64 RTOs.
func TestBackoffSchedule(t *testing.T) {
	want := []int64{1, 1, 1, 1, 2, 4, 8, 16, 32, 64, 64}
	for i, w := range want {
		if got := backoff(10, uint16(i+1)); got != 10*w {
			t.Errorf("after request %d: wait %d, want %d", i+1, got, 10*w)
		}
	}
}

// TestNACKAtOnceUntilReordered: with the option, a gap is requested when it
// is found, even with jitter seen, until an original fills a NACKed gap;
// from then on the floor and the learned reordering hold gaps back.
func TestNACKAtOnceUntilReordered(t *testing.T) {
	for _, start := range wrapStarts {
		tr := NewTracker(TrackerConfig{ReorderFloor: ms, NACKInterval: ms, NACKAtOnceUntilReordered: true})
		tr.SetJitter(2 * ms)
		tr.OnData(start, 10*ms)
		tr.OnData(start+2, 10*ms) // 1 missing
		if at, ok := tr.NextNACKAt(); !ok || at != 10*ms {
			t.Fatalf("start %d: first gap due at %d %v, want at once (10ms)", start, at, ok)
		}
		if rs := rel(tr.AppendNACK(nil, 10*ms, 50*ms, nil), start); !slices.Equal(rs, []packet.Range{rg(1, 1)}) {
			t.Fatalf("start %d: NACK %v", start, rs)
		}
		// The original arrives 3ms after: reordering, not loss.
		tr.OnArrival(start+1, 13*ms, SourceOriginal)
		if s := tr.Stats(); s.SpuriousNACKs != 1 {
			t.Fatalf("start %d: spurious NACKs %d", start, s.SpuriousNACKs)
		}
		// Now the learned reordering (3ms, plus four deviations) and
		// twice the jitter hold a new gap back.
		tol := tr.ReorderTolerance()
		if tol < 4*ms {
			t.Fatalf("start %d: tolerance %d after a 3ms reordering", start, tol)
		}
		tr.OnData(start+4, 20*ms) // 3 missing
		if at, _ := tr.NextNACKAt(); at != 20*ms+tol {
			t.Fatalf("start %d: second gap due at %d, want %d", start, at, 20*ms+tol)
		}
		if rs := tr.AppendNACK(nil, 20*ms+tol-1, 50*ms, nil); len(rs) != 0 {
			t.Fatalf("start %d: NACK %v before the tolerance passed", start, rs)
		}
	}
	// Without the option the floor applies from the start.
	tr := NewTracker(TrackerConfig{ReorderFloor: ms, NACKInterval: ms})
	tr.OnData(0, 0)
	tr.OnData(2, 0)
	if at, _ := tr.NextNACKAt(); at != ms {
		t.Fatalf("without the option the first gap is due at %d, want the floor", at)
	}
}
