package receiver

import (
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"
	"time"

	"github.com/telewire/telewire/reliability"
)

// Repair in a multicast group. Every receiver of a group that lost a
// packet could NACK it, and the sender would get a request from each.
// Instead, with Config.NACKGroupSize above one, a receiver waits a random
// time before each request (reliability.GroupBackoff: few receivers draw
// a short wait, most a long one). The sender sends the repair to the
// whole group, so the first request's repair reaches the other receivers
// that lost the packet while they are still waiting: its arrival fills
// their gap and cancels their request. The repair is the echo of the
// request: receivers need not see each other's NACKs (as NORM's receivers
// do, by the sender's echo or by multicasting them), because the sender
// answers at once and at most once per round trip however many ask
// (reliability.SendBuffer suppresses repeats), and a receiver whose
// request went unanswered asks again after its retry timeout, with a new
// random wait.

// DefaultGroupSize is Config.NACKGroupSize for a multicast Listen.
const DefaultGroupSize = 64

// defaultBackoffRTTs is Config.NACKBackoffRTTs's default: in tools/sim's
// group scenarios (5% loss per receiver, 2% shared, 10 ms round trip,
// retransmission only) a window of ten round trips keeps the requests per
// lost sequence near 2 at 100 receivers, where eight gives 2.3; the
// window is capped at half the latency budget whatever the round trip.
const defaultBackoffRTTs = 10

// groupBackoff returns the NACK back-off of the stream *st of session s
// for its tracker, or nil for a receiver alone (NACKGroupSize 1). The
// first request of a gap waits within a window of NACKBackoffRTTs round
// trips of the stream (the latency budget's eighth before one is
// measured), at most half the latency budget, drawn for the number of
// receivers likely to share the loss (sharers). A retry (the repair was
// lost on the way to this receiver, which few receivers share) waits
// within retryBackoffRTTs round trips, so that the retry still fits the
// budget.
func (c *Core) groupBackoff(s *session, st **stream) func(retry bool) int64 {
	if c.cfg.NACKGroupSize <= 1 {
		return nil
	}
	return func(retry bool) int64 {
		n := c.groupSizeOf(s)
		if n <= 1 {
			return 0 // the sender hears this receiver alone
		}
		st := *st
		if st != nil && st.joining {
			return 0 // a late joiner's history: nobody else asks for it
		}
		rtt := int64(c.cfg.Latency) / 8 / defaultBackoffRTTs
		if st != nil && st.rtt.Samples() > 0 {
			rtt = st.rtt.Smoothed()
		}
		rtts, size := c.cfg.NACKBackoffRTTs, n
		if retry {
			rtts, size = min(rtts, retryBackoffRTTs), max(2, n/retryShare)
		} else if st != nil && st.tracker != nil {
			size = sharers(st.tracker.Stats(), n)
		}
		window := min(max(int64(float64(rtt)*rtts), minBackoffWindow), int64(c.cfg.Latency)/2)
		u := float64(c.cfg.Rand.Uint64()>>11) / (1 << 53)
		return reliability.GroupBackoff(window, size, u)
	}
}

// groupSizeOf returns the group size the back-off of session s assumes:
// the one the sender advertised, unless NACKGroupSize was set (or the
// sender has not said yet).
func (c *Core) groupSizeOf(s *session) int {
	if c.cfg.observeGroup && s.groupSize > 0 {
		return s.groupSize
	}
	return c.cfg.NACKGroupSize
}

// observeGroup records the group size a HEARTBEAT of session s advertised
// (packet.FlagGroup; Parse bounds it to 1..packet.MaxGroupReceivers).
func (c *Core) observeGroup(s *session, n uint32) {
	if c.cfg.NACKGroupSize > 1 { // a group receiver: others ignore it
		s.groupSize = int(n)
		c.stats.GroupSize = uint64(n)
	}
}

// sharers estimates how many receivers of a group of n share this
// receiver's losses, from how it has fared: of k receivers that lost a
// packet, each asks for about requestsPerLoss/k of the requests, and the
// others' repair cancels the rest of their gaps. So the share of its own
// gaps a receiver had to request, f, gives k ≈ requestsPerLoss/f. Losses
// shared by the whole group (upstream of it) give k near n and the
// back-off of the whole group; losses of each receiver's own (its last
// hop) give few sharers, for whom a back-off shaped for n would bunch
// the requests at the end of the window, where several fall within the
// round trip before the repair arrives. Until minSharersSample gaps were
// seen, n. Gaps FEC repaired count as not requested: the estimate errs
// toward more sharers, a longer wait, not toward more requests.
func sharers(ts reliability.TrackerStats, n int) int {
	if ts.Missing < minSharersSample {
		return n
	}
	f := float64(ts.NACKed+1) / float64(ts.Missing+1)
	return min(n, max(2, int(requestsPerLoss/f)))
}

// minSharersSample is the number of gaps sharers waits for.
const minSharersSample = 20

// requestsPerLoss is the number of requests per lost packet the back-off
// achieves when shaped for the right number of sharers (tools/sim's group
// scenarios: 1.2 to 1.9).
const requestsPerLoss = 1.5

// minBackoffWindow is the least back-off window, ns, when the round trip
// is short (a LAN's, a fraction of a millisecond): the receivers' timers
// and loops are late by about a millisecond, so over ten such round
// trips the waits would be no wider than the lateness, and every
// receiver would ask.
const minBackoffWindow = int64(10 * time.Millisecond)

// retryBackoffRTTs is the back-off window of retries, in round trips: one
// keeps a receiver that loses the repair twice within the latency budget
// (tools/sim, 100 receivers at 7% loss: the worst latency falls from
// about 200 ms with two to about 160 ms) for a few more requests (1.86
// per lost sequence rather than 1.84).
const retryBackoffRTTs = 1

// retryShare: a retry's back-off assumes one receiver in retryShare of the
// group lost the repair too (at least two).
const retryShare = 10

// newRand returns a PCG seeded from crypto/rand.
func newRand() mrand.Source {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return mrand.NewPCG(binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:]))
}

// nackCopies is how many copies of each NACK packet the stream sends: one
// in a group, where the other receivers that lost the packet stand in for
// a lost request (and a copy would be one more request per loss at the
// sender); else stream.nackCopies.
func (c *Core) nackCopies(st *stream) int {
	if c.cfg.NACKGroupSize > 1 {
		return 1
	}
	return st.nackCopies()
}
