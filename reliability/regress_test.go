package reliability

// Regression tests drawn from bugs peer transports shipped: sequence wrap
// patterns counted twice, and NACK ranges (inverted, huge, beyond what was
// sent) answered wrongly or with unbounded work.

import (
	"testing"

	"github.com/telewire/telewire/packet"
)

// TestTrackerWrapPatternCountedOnce: the 16-bit pattern 65535 → 0 → 65534
// that peers counted as a loss and a duplicate (or a new cycle) is, at
// every boundary a narrower format wraps at and at the real 2^64 wrap,
// four distinct sequences with one reordered: one missing, recovered, no
// duplicate, no stale arrival, no resync. Copies of all four are
// duplicates.
func TestTrackerWrapPatternCountedOnce(t *testing.T) {
	for _, top := range []uint64{1<<16 - 1, 1<<31 - 1, 1<<32 - 1, 1<<63 - 1, 1<<64 - 1} {
		tr := NewTracker(TrackerConfig{})
		steps := []struct {
			seq     uint64
			want    Arrival
			newMiss uint64
			wasMiss bool
		}{
			{top - 2, ArrivalNew, 0, false},
			{top, ArrivalNew, 1, false}, // top-1 missing
			{top + 1, ArrivalNew, 0, false},
			{top - 1, ArrivalNew, 0, true}, // the late one
		}
		for i, s := range steps {
			got, info := tr.OnData(s.seq, int64(i))
			if got != s.want || info.NewlyMissing != s.newMiss || info.WasMissing != s.wasMiss {
				t.Fatalf("top %d: seq %d: %v %+v", top, s.seq, got, info)
			}
		}
		for _, s := range steps {
			if got, _ := tr.OnData(s.seq, 10); got != ArrivalDuplicate {
				t.Fatalf("top %d: copy of %d: %v", top, s.seq, got)
			}
		}
		st := tr.Stats()
		want := TrackerStats{Received: 4, Missing: 1, Recovered: 1, Duplicates: 4, Reordered: 1}
		if st != want {
			t.Fatalf("top %d: stats\n got %+v\nwant %+v", top, st, want)
		}
		if h, _ := tr.Highest(); h != top+1 {
			t.Fatalf("top %d: highest %d", top, h)
		}
		checkTrackerInvariants(t, tr)
	}
}

// TestTrackerLiteral16BitWrapIsStale: a sender whose counter really wrapped
// at 16 bits (65535, then 0) is, in 64-bit sequence space, going back
// 65 535 — beyond the window: the 0 is stale, not a new message and not a
// resync, and nothing is counted missing for it.
func TestTrackerLiteral16BitWrapIsStale(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	tr.OnData(65534, 0)
	tr.OnData(65535, 1)
	if got, _ := tr.OnData(0, 2); got != ArrivalStale {
		t.Fatalf("0 after 65535: %v", got)
	}
	if got, _ := tr.OnData(65533, 3); got != ArrivalNew {
		t.Fatalf("65533: %v", got)
	}
	if st := tr.Stats(); st.Received != 3 || st.Stale != 1 || st.Missing != 0 || st.Resyncs != 0 {
		t.Fatalf("stats %+v", st)
	}
	checkTrackerInvariants(t, tr)
}

// TestSendBufferExtremeNACKRanges: OnNACK takes ranges as they come off
// the wire or out of a merge, valid or not. Ranges that are inverted,
// 2^32-1 long, start 2^31 or 2^63 away, wrap past 2^64 or lie beyond what
// was sent resend only retained sequences, each once, answer the rest as
// a valid "unavailable" NACK or count them unknown, and do work bounded by
// the buffer, not by the ranges.
func TestSendBufferExtremeNACKRanges(t *testing.T) {
	for _, start := range wrapStarts {
		sb := NewSendBuffer(SendBufferConfig{Capacity: 64, MinSuppress: 1})
		for i := range uint64(100) {
			sb.Put(start+i, []byte{byte(i)}, int64(i))
		}
		first, next := start+36, start+100 // 64 retained
		cases := [][]packet.Range{
			{{First: start + 90, Len: 5}, {First: start + 40, Len: 3}},      // lo > hi
			{{First: start, Len: 1<<32 - 1}},                                // 2^32-1 long
			{{First: start - 1<<31, Len: packet.MaxRangeLen}},               // 2^31 before
			{{First: start + 1<<63, Len: 1<<32 - 1}},                        // half the space away
			{{First: next, Len: 1000}},                                      // beyond what was sent
			{{First: start + 95, Len: 1<<32 - 1}, {First: start, Len: 200}}, // overlapping, wrapping
		}
		var res NACKResult
		for i, rs := range cases {
			now := int64(1000 + 1000*i)
			sb.OnNACK(rs, now, 0, &res)
			seen := map[uint64]bool{}
			for _, seq := range res.Resend {
				if packet.SeqLess(seq, first) || !packet.SeqLess(seq, next) || seen[seq] {
					t.Fatalf("start %d case %d: resend %d (retained %d..%d), twice: %v", start, i, seq, first, next-1, seen[seq])
				}
				seen[seq] = true
			}
			if len(res.Resend) > 64 {
				t.Fatalf("start %d case %d: %d resends from a 64-packet buffer", start, i, len(res.Resend))
			}
			if len(res.Unavailable) > 0 {
				p := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagUnavailable}, Ranges: res.Unavailable}
				if _, err := p.AppendTo(nil); err != nil {
					t.Fatalf("start %d case %d: unavailable answer %v: %v", start, i, res.Unavailable, err)
				}
				for _, r := range res.Unavailable {
					if !packet.SeqLess(r.Last(), first) {
						t.Fatalf("start %d case %d: retained sequences named unavailable: %+v", start, i, r)
					}
				}
			}
		}
		if st := sb.Stats(); st.Resent+st.Suppressed+st.Throttled+st.Unavailable+st.Unknown != st.Requested {
			t.Fatalf("start %d: answers do not add up to requests: %+v", start, st)
		}
	}
}
