package receiver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/reliability"
)

func newCore(t *testing.T, cfg Config) *Core {
	t.Helper()
	c, err := NewCore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func addr(i int) netip.AddrPort {
	return netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 10000+i))
}

func dataPkt(t *testing.T, session uint64, stream uint32, seq uint64, ts int64) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: session, Stream: stream}, Seq: seq, Timestamp: ts, Payload: []byte("x")}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answer validates session id at from as its sender would: a HEARTBEAT
// (start and next as given) answering a challenge issued at now, so that
// FEC and the trusted budget apply to it.
func answer(t *testing.T, c *Core, from netip.AddrPort, id uint64, stream uint32, start, next uint64, now int64) {
	t.Helper()
	p := packet.Packet{
		Header:    packet.Header{Kind: packet.KindHeartbeat, Flags: packet.FlagAnswer, Session: id, Stream: stream},
		Heartbeat: packet.Heartbeat{Start: start, Next: next, Timestamp: now, Answer: c.challenge(from, id, now)},
	}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Stats().Answers
	c.Handle(b, from, now)
	if c.Stats().Answers != before+1 {
		t.Fatalf("answer not taken: %+v", c.Stats())
	}
}

// drainOutbox discards the feedback queued so far, such as the challenge
// that opens every unauthenticated session.
func drainOutbox(c *Core) {
	if b := c.Outbox().Take(); b != nil {
		c.Outbox().Give(b)
	}
}

// reports drains the outbox and returns the REPORTs, by destination.
func reports(t *testing.T, c *Core) map[netip.AddrPort][]packet.Report {
	t.Helper()
	out := map[netip.AddrPort][]packet.Report{}
	b := c.Outbox().Take()
	if b == nil {
		return out
	}
	defer c.Outbox().Give(b)
	var p packet.Packet
	for _, d := range b.Datagrams() {
		if err := p.Parse(d.Data); err != nil || p.Kind != packet.KindReport {
			t.Fatalf("outbox holds %v %v", p.Kind, err)
		}
		out[d.Addr] = append(out[d.Addr], p.Report)
	}
	return out
}

func TestSessionBounds(t *testing.T) {
	c := newCore(t, Config{MaxSessions: 2, MaxStreams: 2, Mode: ModeUnordered})
	for i := range 3 {
		c.Handle(dataPkt(t, uint64(i+1), 0, 0, 1), addr(i), 1)
	}
	if st := c.Stats(); st.Sessions != 2 || st.SessionsRefused != 1 || st.Delivered != 2 {
		t.Fatalf("stats %+v", st)
	}
	for s := range uint32(3) {
		c.Handle(dataPkt(t, 1, s, 0, 1), addr(0), 1)
	}
	if st := c.Stats(); st.StreamsRefused != 1 {
		t.Fatalf("stream bound: %+v", st)
	}
}

func TestSessionExpiryAndReports(t *testing.T) {
	interval := 100 * time.Millisecond
	c := newCore(t, Config{ReportInterval: interval, SessionTimeout: time.Second, DisableNACK: true, Mode: ModeUnordered})
	now := int64(time.Second)
	c.Tick(now) // starts the report clock
	// Sequences 0..9 with 3 and 4 missing: 2 lost of 10 expected.
	for seq := uint64(0); seq < 10; seq++ {
		if seq == 3 || seq == 4 {
			continue
		}
		c.Handle(dataPkt(t, 7, 0, seq, now-int64(time.Millisecond)), addr(1), now)
	}
	drainOutbox(c) // the opening challenge
	at, _ := c.NextTimer()
	c.Tick(at)
	rs := reports(t, c)[addr(1)]
	if len(rs) != 1 {
		t.Fatalf("reports %+v", rs)
	}
	r := rs[0]
	if r.Received != 8 || r.Lost != 2 || r.HighestSeq != 9 || r.IntervalLossPPM != 2*packet.MaxLossPPM/9 || r.BurstMeanMilli != 2000 {
		t.Fatalf("report %+v", r)
	}
	if r.EchoTimestamp != now-int64(time.Millisecond) || r.EchoHoldNanos != at-now {
		t.Fatalf("echo %d hold %d", r.EchoTimestamp, r.EchoHoldNanos)
	}
	// Sequence 3 arrives late: it was reordering, not loss.
	c.Handle(dataPkt(t, 7, 0, 3, now), addr(1), at+1)
	at2, _ := c.NextTimer()
	c.Tick(at2)
	if r := reports(t, c)[addr(1)][0]; r.Lost != 1 || r.Reordered != 1 {
		t.Fatalf("after a late arrival: %+v", r)
	}
	// Silence past the timeout drops the session and its reports.
	c.Tick(at2 + int64(2*time.Second))
	if st := c.Stats(); st.SessionsExpired != 1 || len(st.Streams) != 0 {
		t.Fatalf("after silence: %+v", st)
	}
	if len(reports(t, c)) != 0 {
		t.Fatal("reports for an expired session")
	}
}

func TestUnexpectedKinds(t *testing.T) {
	c := newCore(t, Config{})
	for _, p := range []packet.Packet{
		{Header: packet.Header{Kind: packet.KindReport, Session: 1}},
		{Header: packet.Header{Kind: packet.KindNACK, Session: 1}, Ranges: []packet.Range{{First: 1, Len: 1}}},
		{Header: packet.Header{Kind: packet.KindNACK, Session: 1, Flags: packet.FlagUnavailable}, Ranges: []packet.Range{{First: 1, Len: 1}}},
	} {
		b, err := p.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Handle(b, addr(0), 1)
	}
	if st := c.Stats(); st.Unexpected != 3 || st.Sessions != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestHandleAllocatesNothing: the steady-state receive path (decode,
// tracking, statistics, queueing) allocates nothing per datagram.
func TestHandleAllocatesNothing(t *testing.T) {
	c := newCore(t, Config{})
	buf := make([]byte, 0, 256)
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Payload: make([]byte, 200)}
	seq := uint64(0)
	next := func() []byte {
		p.Seq, p.Timestamp = seq, int64(seq)*1000
		seq++
		b, _ := p.AppendTo(buf[:0])
		return b
	}
	from := addr(0)
	c.Handle(next(), from, 1)  // create the session
	c.Tick(int64(time.Second)) // past the ordered-delivery startup hold
	if n := testing.AllocsPerRun(1000, func() {
		c.Handle(next(), from, int64(time.Second)+int64(seq)*1000+500)
		c.Pop()
	}); n != 0 {
		t.Fatalf("Handle+Pop allocates %.1f times per datagram", n)
	}
}

func TestHoldForParityOnlyWhenFECIsFaster(t *testing.T) {
	c := newCore(t, Config{})
	c.Handle(dataPkt(t, 1, 0, 0, 1), addr(0), 1)
	var st *stream
	for _, s := range c.sessions {
		st = s.streams[0]
	}
	if st.holdForParity() {
		t.Fatal("held for parity before either repair was timed")
	}
	st.rtt.Observe(int64(time.Millisecond)) // retransmissions take 1 ms
	if st.holdForParity() {
		t.Fatal("held for parity before FEC was timed")
	}
	st.fecDelay.Observe(int64(10 * time.Millisecond)) // FEC took 10 ms
	if st.holdForParity() {
		t.Fatal("held for parity although retransmission is ten times faster")
	}
	st.rtt = reliability.RTT{}
	st.rtt.Observe(int64(50 * time.Millisecond))
	if st.holdForParity() {
		t.Fatal("held for parity before the stream's rate and block span were known")
	}
	// 10-message blocks at 1 000 messages/s: a gap waits 5 ms on average.
	st.fecSpan, st.msgGap = 10, int64(time.Millisecond)
	if !st.holdForParity() {
		t.Fatal("NACKed at once although FEC repairs in a fifth of the round trip")
	}
	// The same blocks at 10 messages/s wait 500 ms on average: the
	// measured 10 ms are FEC's lucky cases, and the 50 ms NACK is faster.
	st.msgGap = int64(100 * time.Millisecond)
	if st.holdForParity() {
		t.Fatal("held for parity although the block takes ten times the round trip to fill")
	}
}

// TestMessageGapFollowsSendTimes: the receiver's estimate of the time
// between messages, which sizes the expected FEC wait, comes from the send
// times of first transmissions, not from arrival jitter or reordering.
func TestMessageGapFollowsSendTimes(t *testing.T) {
	c := newCore(t, Config{})
	ms := int64(time.Millisecond)
	for _, seq := range []uint64{0, 1, 2, 4, 3, 5, 6, 8, 9, 10} { // 7 lost, 3 and 4 swapped
		c.Handle(dataPkt(t, 1, 0, seq, int64(seq)*2*ms+ms), addr(0), int64(seq)*2*ms+ms+int64(seq%3)*ms/2)
	}
	var st *stream
	for _, s := range c.sessions {
		st = s.streams[0]
	}
	if st.msgGap != 2*ms {
		t.Fatalf("message gap %d ns, want %d", st.msgGap, 2*ms)
	}
}

// A jump beyond the tracker's window resynchronises the stream; what it
// jumped over is counted as skipped, so delivered + skipped still adds up
// to what was sent.
func TestResyncJumpIsCountedSkipped(t *testing.T) {
	c := newCore(t, Config{Window: 1024, DisableNACK: true})
	now := int64(time.Second)
	for seq := range uint64(10) {
		c.Handle(dataPkt(t, 1, 0, seq, now), addr(0), now)
	}
	c.Tick(now + int64(time.Second))
	c.Handle(dataPkt(t, 1, 0, 100_000, now+int64(time.Second)), addr(0), now+int64(time.Second))
	c.Tick(now + int64(2*time.Second))
	st := c.Stats()
	s := st.Streams[0]
	if s.Resyncs != 1 || st.Delivered != 11 || s.Skipped != 100_000-10 {
		t.Fatalf("delivered %d, skipped %d, resyncs %d; want 11, 99990, 1", st.Delivered, s.Skipped, s.Resyncs)
	}
}

// A receiver that starts while a stream is running and hears two
// HEARTBEATs before any DATA (an idle sender) counts no history as lost;
// what was sent between the two HEARTBEATs is.
func TestHeartbeatsBeforeDataJoinWithoutHistory(t *testing.T) {
	hb := func(start, next uint64) []byte {
		p := packet.Packet{Header: packet.Header{Kind: packet.KindHeartbeat, Session: 1}, Heartbeat: packet.Heartbeat{Start: start, Next: next, Timestamp: 1}}
		b, err := p.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	c := newCore(t, Config{Mode: ModeUnordered})
	c.Handle(hb(0, 1000), addr(0), 1)
	c.Handle(hb(0, 1000), addr(0), 2)
	c.Handle(dataPkt(t, 1, 0, 1000, 3), addr(0), 3)
	if s := c.Stats().Streams[0]; s.Lost != 0 {
		t.Fatalf("joining a running stream counted %d lost", s.Lost)
	}
	c.Handle(hb(0, 1005), addr(0), 4) // 1001..1004 sent and never heard
	if s := c.Stats().Streams[0]; s.Lost != 4 {
		t.Fatalf("after a heartbeat revealing 4 lost: lost %d", s.Lost)
	}
	// A fresh stream: the opening HEARTBEAT anchors at its start, so a
	// second one before any DATA reveals the lost first messages.
	c2 := newCore(t, Config{Mode: ModeUnordered})
	c2.Handle(hb(0, 0), addr(0), 1)
	c2.Handle(hb(0, 3), addr(0), 2)
	if s := c2.Stats().Streams[0]; s.Lost != 3 {
		t.Fatalf("fresh stream: lost %d, want 3", s.Lost)
	}
}

// TestGapNACKedWhenFound: on a stream that has shown no reordering, the
// DATA that reveals a gap makes the NACK due at that instant, so the
// caller's loop sends it at once instead of arming a timer shorter than
// its clock can keep (a Go timer under 1 ms fires after about 1 ms in an
// idle process, which would add that to every repair).
func TestGapNACKedWhenFound(t *testing.T) {
	c := newCore(t, Config{Mode: ModeOrdered})
	now := int64(time.Second)
	c.Tick(now) // starts the report clock
	c.Handle(dataPkt(t, 7, 0, 0, now), addr(0), now)
	now += int64(time.Millisecond)
	c.Handle(dataPkt(t, 7, 0, 2, now), addr(0), now) // 1 missing
	drainOutbox(c)                                   // the opening challenge
	if at, ok := c.NextTimer(); !ok || at > now {
		t.Fatalf("next timer %d %v, want the NACK due at once (%d)", at, ok, now)
	}
	c.Tick(now)
	b := c.Outbox().Take()
	if b == nil || len(b.Datagrams()) == 0 {
		t.Fatal("no NACK sent at the instant the gap was found")
	}
	defer c.Outbox().Give(b)
	var p packet.Packet
	for _, d := range b.Datagrams() {
		if err := p.Parse(d.Data); err != nil || p.Kind != packet.KindNACK {
			t.Fatalf("outbox holds %v %v", p.Kind, err)
		}
		if len(p.Ranges) != 1 || p.Ranges[0] != (packet.Range{First: 1, Len: 1}) {
			t.Fatalf("NACK ranges %v, want [1]", p.Ranges)
		}
	}
}

// TestLongBudgetKeepsAsking: in ordered delivery a gap is asked for as
// long as delivery waits for it. With a 10 s budget and a sender that
// answers nothing for 8 s (its repairs lost, or a host stalled), the
// receiver still asks for sequence 1 late in that time, and the repair
// that finally comes is delivered: nothing is skipped. (The tracker's own
// default would give the sequence up after 8 requests and a second.)
func TestLongBudgetKeepsAsking(t *testing.T) {
	c := newCore(t, Config{Mode: ModeOrdered, Latency: 10 * time.Second})
	start := int64(time.Second)
	now := start
	c.Tick(now)
	c.Handle(dataPkt(t, 7, 0, 0, now), addr(0), now)
	c.Handle(dataPkt(t, 7, 0, 2, now), addr(0), now) // 1 missing
	// The sender answers the challenge 20 ms later: validated, and a
	// round trip measured.
	hb := packet.Packet{
		Header:    packet.Header{Kind: packet.KindHeartbeat, Flags: packet.FlagAnswer, Session: 7},
		Heartbeat: packet.Heartbeat{Start: 0, Next: 3, Timestamp: now, Answer: c.challenge(addr(0), 7, now)},
	}
	b, err := hb.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	now += int64(20 * time.Millisecond)
	if c.Handle(b, addr(0), now); c.Stats().Answers != 1 {
		t.Fatalf("answer not taken: %+v", c.Stats())
	}
	drainOutbox(c)
	var lastAsked int64
	var got []uint64
	asks := 0
	seq := uint64(3)
	for now < start+8*int64(time.Second) {
		now += 10 * int64(time.Millisecond)
		if now%int64(100*time.Millisecond) == 0 { // the stream goes on
			c.Handle(dataPkt(t, 7, 0, seq, now), addr(0), now)
			seq++
		}
		c.Tick(now)
		b := c.Outbox().Take()
		if b == nil {
			continue
		}
		var p packet.Packet
		for _, d := range b.Datagrams() {
			if p.Parse(d.Data) == nil && p.Kind == packet.KindNACK && len(p.Ranges) > 0 && p.Ranges[0].First == 1 {
				lastAsked = now
				asks++
			}
		}
		c.Outbox().Give(b)
		for m, ok := c.Pop(); ok; m, ok = c.Pop() {
			if got = append(got, m.Seq); m.Seq != 0 {
				t.Fatalf("delivered %d past the gap at %v", m.Seq, time.Duration(now-start))
			}
		}
	}
	t.Logf("%d requests, the last %v after the gap", asks, time.Duration(lastAsked-start))
	if lastAsked < start+5*int64(time.Second) {
		t.Fatalf("sequence 1 last asked for %v after it went missing (%d requests): given up inside a 10 s budget",
			time.Duration(lastAsked-start), asks)
	}
	c.Handle(dataPkt(t, 7, 0, 1, start), addr(0), now) // the repair, at last
	for m, ok := c.Pop(); ok; m, ok = c.Pop() {
		got = append(got, m.Seq)
	}
	if len(got) != int(seq) || got[1] != 1 {
		t.Fatalf("delivered %v, want 0..%d in order", got, seq-1)
	}
	if st := c.Stats().Streams[0]; st.Skipped != 0 {
		t.Fatalf("%d skipped", st.Skipped)
	}
}
