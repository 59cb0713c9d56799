package receiver

import (
	"unsafe"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/reliability"
)

// Late joiners (Config.JoinHistory). A receiver that joins a running
// multicast stream starts at the live edge: what was sent before it heard
// the stream is history, not loss, and is not requested. With JoinHistory
// N it asks for the N sequences before the first one it heard, once, as
// soon as it hears it: those sequences become gaps of the tracker (asked
// for at once, without the group's back-off: no other receiver wants them)
// and ordered delivery starts at the first of them, so the live messages
// wait for the history, within the latency budget of the first live one.
// The NACKs for them carry packet.FlagHistory: the sender answers them to
// this receiver alone, unicast to its feedback socket, not to the group,
// under the same proof-of-receipt and amplification rules as any NACK.
// What the sender no longer holds it says is unavailable; what has not
// come by the time the first live message is due is skipped, as any gap.

// historyRangesCap is the room of each of a joiner's two NACK range
// buffers: a round's ranges, one of which may split in three.
const historyRangesCap = reliability.DefaultMaxNACKRanges + 2

// join makes the history request of stream st of session s, once, at its
// first DATA. The history is the JoinHistory sequences before the first
// one this receiver heard of: its first DATA (join is then called after
// the DATA is accepted, which the startup hold keeps from being
// delivered), or, when a HEARTBEAT (periodic, or a group-size
// announcement) came before any DATA, the next sequence that HEARTBEAT
// announced (join is then called before the DATA is accepted: the
// HEARTBEAT anchored ordered delivery there, with no startup hold,
// and the DATA would otherwise be delivered at once, leaving no room
// before it for the history).
func (c *Core) join(s *session, st *stream, now int64) {
	st.joined = true
	first := st.firstSeq
	if st.anchored {
		// Where the tracker started: what came after it (before the first
		// DATA) is loss, asked for as such; what came before is history.
		first = st.anchorSeq
	}
	from := first - uint64(c.cfg.JoinHistory)
	if c.cfg.Mode == ModeOrdered && !st.delivery.StartAt(from) {
		// Delivery cannot start that early (it has begun, or the held
		// messages would not fit): history would only be dropped as
		// old.
		return
	}
	if !c.reserve(s, 2*historyRangesCap*int(unsafe.Sizeof(packet.Range{}))) {
		c.stats.BudgetDenied++
		return
	}
	st.histRanges = make([]packet.Range, 0, historyRangesCap)
	st.liveRanges = make([]packet.Range, 0, historyRangesCap)
	next, _ := st.tracker.Next()
	st.history, st.historyFrom, st.historyEnd = true, from, first
	st.historyDeadline = now + int64(c.cfg.Latency) // the first live message arrived now
	st.joining = true                               // the group back-off skips these gaps
	if n := st.tracker.OnHeartbeat(from, next, now); n > 0 {
		c.stats.HistoryRequested += n
		st.historyMissing += n
	}
	st.joining = false
}

// splitHistory splits the NACK ranges rs (in increasing order) into those
// asking for the history request's sequences, [historyFrom, historyEnd),
// and the rest: other gaps before the first live sequence (a HEARTBEAT
// may reveal that the stream began earlier) are losses like any. Without
// a history request it returns rs whole.
func (st *stream) splitHistory(rs []packet.Range) (live, hist []packet.Range) {
	if !st.history {
		return rs, nil
	}
	live, hist = st.liveRanges[:0], st.histRanges[:0]
	for _, r := range rs {
		first, last := r.First, r.Last()
		if packet.SeqLess(first, st.historyFrom) {
			end := last
			if !packet.SeqLess(last, st.historyFrom) {
				end = st.historyFrom - 1
			}
			live = append(live, packet.Range{First: first, Len: uint32(end - first + 1)})
			if end == last {
				continue
			}
			first = st.historyFrom
		}
		if packet.SeqLess(first, st.historyEnd) {
			end := last
			if !packet.SeqLess(last, st.historyEnd) {
				end = st.historyEnd - 1
			}
			hist = append(hist, packet.Range{First: first, Len: uint32(end - first + 1)})
			if end == last {
				continue
			}
			first = st.historyEnd
		}
		live = append(live, packet.Range{First: first, Len: uint32(last - first + 1)})
	}
	return live, hist
}

// inHistory reports whether seq is one of the history request's.
func (st *stream) inHistory(seq uint64) bool {
	return st.history && !packet.SeqLess(seq, st.historyFrom) && packet.SeqLess(seq, st.historyEnd)
}
