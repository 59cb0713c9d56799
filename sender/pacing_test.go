package sender

import (
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/packet"
)

// TestLossyJitteryPathIsNotCongestion drives a Core on a fake clock the
// way a 2 000 messages/s telemetry stream meets a lossy Wi-Fi hop: 20% of
// DATA lost at random, each one-way trip 2–17 ms. Its REPORTs count only
// what arrived (Received) but name the newest sequence seen (HighestSeq),
// from which the sender tells random loss from a sender outrunning the
// path. Nothing is congested, so the stream is never cut or held back.
func TestLossyJitteryPathIsNotCongestion(t *testing.T) {
	const (
		ms       = int64(1_000_000)
		gap      = ms / 2 // 2 000 messages/s
		lossRate = 0.20
	)
	c := newCore(t, Config{})
	rng := rand.New(rand.NewPCG(7, 7))
	payload := make([]byte, 200)
	sentAt := make([]int64, 0, 8000)
	rep := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xabc}}
	nextReport := 10 * ms
	for now := int64(ms); now < 4_000*ms; now += gap {
		if d := c.PaceDelay(now); d > 0 {
			t.Fatalf("at %d ms Send would wait %d µs (pacing %+v)", now/ms, d/1000, c.Stats().Pacing)
		}
		if err := c.Send(0, payload, now); err != nil {
			t.Fatal(err)
		}
		drain(t, c)
		sentAt = append(sentAt, now)
		if now < nextReport {
			continue
		}
		nextReport += 10 * ms
		// The report was written fwd after the newest DATA it saw left,
		// and reaches the sender rev later.
		fwd, rev := 2*ms+rng.Int64N(15*ms), 2*ms+rng.Int64N(15*ms)
		newest := len(sentAt) - 1
		for newest > 0 && sentAt[newest] > now-fwd-rev {
			newest--
		}
		rep.Report = packet.Report{
			EchoTimestamp: sentAt[newest],
			HighestSeq:    uint64(newest),
			Received:      uint64(float64(newest+1) * (1 - lossRate)),
		}
		c.Handle(encode(t, &rep), rcvAddr, now)
	}
	if p := c.Stats().Pacing; p.CongestionEvents != 0 || p.Waits != 0 {
		t.Fatalf("a stream the path carries was cut: %+v", p)
	}
}
