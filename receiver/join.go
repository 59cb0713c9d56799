package receiver

import (
	"github.com/telewire/telewire/packet"
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

// join makes the history request of stream st, once, after its first
// DATA arrived.
func (c *Core) join(st *stream, now int64) {
	st.joined = true
	first := st.firstSeq
	from := first - uint64(c.cfg.JoinHistory)
	if c.cfg.Mode == ModeOrdered && !st.delivery.StartAt(from) {
		// Delivery cannot start that early (it has begun, or the held
		// messages would not fit): history would only be dropped as
		// old.
		return
	}
	next, _ := st.tracker.Next()
	st.history, st.historyEnd = true, first
	st.historyDeadline = now + int64(c.cfg.Latency) // the first live message arrived now
	st.joining = true                               // the group back-off skips these gaps
	if n := st.tracker.OnHeartbeat(from, next, now); n > 0 {
		c.stats.HistoryRequested += n
		st.historyMissing += n
	}
	st.joining = false
}

// historyRanges returns how many of the NACK ranges rs (in increasing
// order) ask for history: those before the first live sequence.
func (st *stream) historyRanges(rs []packet.Range) int {
	if !st.history {
		return 0
	}
	h := 0
	for h < len(rs) && packet.SeqLess(rs[h].Last(), st.historyEnd) {
		h++
	}
	return h
}
