package receiver

import (
	"crypto/rand"
	"encoding/binary"
	mrand "math/rand/v2"

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

// groupBackoff returns the NACK back-off of the stream *st for its
// tracker, or nil for a receiver alone (NACKGroupSize 1). The first
// request of a gap waits within a window of NACKBackoffRTTs round trips
// of the stream (the latency budget's eighth before one is measured), at
// most half the latency budget. A retry (the repair was lost on
// the way to this receiver, which few receivers share) waits within
// retryBackoffRTTs round trips, so that the retry still fits the budget.
func (c *Core) groupBackoff(st **stream) func(retry bool) int64 {
	n := c.cfg.NACKGroupSize
	if n <= 1 {
		return nil
	}
	return func(retry bool) int64 {
		s := *st
		rtt := int64(c.cfg.Latency) / 8 / defaultBackoffRTTs
		if s != nil && s.rtt.Samples() > 0 {
			rtt = s.rtt.Smoothed()
		}
		rtts, size := c.cfg.NACKBackoffRTTs, n
		if retry {
			rtts, size = min(rtts, retryBackoffRTTs), max(2, n/retryShare)
		}
		window := min(int64(float64(rtt)*rtts), int64(c.cfg.Latency)/2)
		u := float64(c.cfg.Rand.Uint64()>>11) / (1 << 53)
		return reliability.GroupBackoff(window, size, u)
	}
}

// retryBackoffRTTs is the back-off window of retries, in round trips.
const retryBackoffRTTs = 2

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
