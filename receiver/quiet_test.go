package receiver

import (
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

// bigData is a DATA packet with 1000 bytes of payload: enough received
// that the amplification limit does not bound the REPORTs of the test.
func bigData(t *testing.T, stream uint32, seq uint64, ts int64) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1, Stream: stream}, Seq: seq, Timestamp: ts, Payload: make([]byte, 1000)}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQuietStreamReports: a stream with no news since its last REPORT is
// not reported every interval — only again after half the session
// timeout — while a stream that received something is; and a REPORT the
// amplification limit blocked is tried again at the next interval.
func TestQuietStreamReports(t *testing.T) {
	c := newCore(t, Config{Mode: ModeUnordered, DisableNACK: true, SessionTimeout: 2 * time.Second})
	now := int64(time.Second)
	c.Tick(now) // starts the report clock
	for id := range uint32(2) {
		c.Handle(bigData(t, id, 0, now), addr(0), now)
	}
	tick := func() int {
		now += 100 * ms
		c.Tick(now)
		return len(reports(t, c)[addr(0)])
	}
	if n := tick(); n != 2 {
		t.Fatalf("first interval: %d REPORTs, want one per stream", n)
	}
	for i := range 8 {
		if n := tick(); n != 0 {
			t.Fatalf("idle interval %d: %d REPORTs, want none", i, n)
		}
	}
	c.Handle(bigData(t, 1, 1, now), addr(0), now) // news on stream 1
	if n := tick(); n != 1 {
		t.Fatalf("after news on one stream: %d REPORTs, want 1", n)
	}
	// Half the session timeout (1 s) after stream 0's last REPORT, it is
	// reported again though nothing changed. Heartbeat-free silence of 1 s
	// is within the session timeout.
	n := 0
	for range 2 {
		n += tick()
	}
	if n != 1 {
		t.Fatalf("at half the session timeout: %d REPORTs, want stream 0's keepalive", n)
	}

	// A REPORT over the amplification limit is not recorded as sent.
	s := c.sessions[keyOf{addr: addr(0)}]
	c.Handle(bigData(t, 0, 1, now), addr(0), now)
	s.txBytes = amplificationFactor * s.rxBytes
	if n := tick(); n != 0 {
		t.Fatalf("over the amplification limit: %d REPORTs", n)
	}
	s.txBytes = 0
	if n := tick(); n != 1 {
		t.Fatalf("after a blocked REPORT: %d REPORTs, want it tried again", n)
	}
}
