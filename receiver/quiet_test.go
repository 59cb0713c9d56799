package receiver

import (
	"slices"
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

// heartbeat is a HEARTBEAT of stream: next is the sequence the next DATA
// will carry.
func heartbeat(t *testing.T, stream uint32, next uint64, ts int64) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: packet.KindHeartbeat, Session: 1, Stream: stream}, Heartbeat: packet.Heartbeat{Start: 0, Next: next, Timestamp: ts}}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reportedStreams drains the outbox and returns the streams it held
// REPORTs for, in order.
func reportedStreams(t *testing.T, c *Core) []uint32 {
	t.Helper()
	b := c.Outbox().Take()
	if b == nil {
		return nil
	}
	defer c.Outbox().Give(b)
	var out []uint32
	var p packet.Packet
	for _, d := range b.Datagrams() {
		if err := p.Parse(d.Data); err != nil || p.Kind != packet.KindReport {
			t.Fatalf("outbox holds %v %v", p.Kind, err)
		}
		out = append(out, p.Stream)
	}
	return out
}

// TestQuietStreamReports: a stream whose sender is idle (its latest
// datagram a HEARTBEAT) and that has no news since its last REPORT is
// reported again after 1, 2, 4, 8, ... intervals, up to half the session
// timeout, instead of every interval; news reports it at the next interval
// and restarts its schedule; a stream whose latest datagram was DATA is
// reported every interval, news or not (its data may be stuck on the
// path: the sender's congestion controller needs to hear that nothing
// arrived); a REPORT the amplification limit blocked is tried again at
// the next interval.
func TestQuietStreamReports(t *testing.T) {
	c := newCore(t, Config{Mode: ModeUnordered, DisableNACK: true, SessionTimeout: 1600 * time.Millisecond})
	now := int64(time.Second)
	c.Tick(now) // starts the report clock
	next := [3]uint64{}
	data := func(id uint32) {
		c.Handle(bigData(t, id, next[id], now), addr(0), now)
		next[id]++
	}
	idle := func(id uint32) { c.Handle(heartbeat(t, id, next[id], now), addr(0), now) }
	for id := range uint32(3) {
		data(id)
	}
	idle(0)
	idle(1) // stream 2 stays "busy": DATA last
	got := map[uint32][]int{}
	for i := 1; i <= 40; i++ {
		if i%5 == 0 { // keep the session alive; nothing new
			idle(0)
			idle(1)
		}
		if i == 20 { // news on stream 1 only
			data(1)
			idle(1)
		}
		now += 100 * ms
		c.Tick(now)
		for _, id := range reportedStreams(t, c) {
			got[id] = append(got[id], i)
		}
	}
	// Both idle streams: news reported at tick 1, repeated at 2, 4, 8,
	// then every 8 (half the 1.6 s session timeout): 16, 24, 32, 40.
	// Stream 1's news before tick 20 is reported at 20 and repeated at 21,
	// 23, 27, 35. (An extra REPORT of news, an early one, shifts the
	// schedule; what matters is its shape, checked by backoff.)
	backoff := func(id uint32, ticks []int, from, to int) {
		t.Helper()
		ticks = slices.Compact(slices.Clone(ticks)) // an early REPORT may share a tick
		var gaps []int
		for k := 1; k < len(ticks); k++ {
			if ticks[k] > from && ticks[k] <= to {
				gaps = append(gaps, ticks[k]-ticks[k-1])
			}
		}
		for k, g := range gaps {
			if g < 1 || g > 8 || (k > 0 && g < gaps[k-1]) || (k > 0 && g > 2*gaps[k-1] && g != 8) {
				t.Errorf("stream %d reported at ticks %v: gaps %v do not double up to 8", id, ticks, gaps)
				return
			}
		}
		if len(gaps) < 3 {
			t.Errorf("stream %d reported at ticks %v: news repeated fewer than 3 times", id, ticks)
		}
	}
	if len(got[0]) == 0 || got[0][0] != 1 || len(got[0]) > 10 {
		t.Errorf("stream 0 reported at ticks %v, want its news at 1 and a few repeats", got[0])
	}
	backoff(0, got[0], 0, 40)
	var before, after []int
	for _, k := range got[1] {
		if k < 20 {
			before = append(before, k)
		} else {
			after = append(after, k)
		}
	}
	backoff(1, before, 0, 19)
	if len(after) == 0 || after[0] != 20 {
		t.Errorf("stream 1 reported at ticks %v: its news at tick 20 not reported at once", got[1])
	}
	backoff(1, after, 20, 40)
	if len(got[2]) != 40 {
		t.Errorf("stream 2 (DATA last) reported at ticks %v, want every tick", got[2])
	}

	// A REPORT over the amplification limit is not recorded as sent.
	s := c.sessions[keyOf{addr: addr(0)}]
	data(0)
	idle(0)
	s.txBytes = amplificationFactor * s.rxBytes
	now += 100 * ms
	if c.Tick(now); len(reportedStreams(t, c)) != 0 {
		t.Fatal("a REPORT went over the amplification limit")
	}
	s.txBytes = 0
	now += 100 * ms
	if c.Tick(now); !slices.Equal(reportedStreams(t, c), []uint32{0, 2}) {
		t.Fatal("a blocked REPORT was not tried again")
	}
}
