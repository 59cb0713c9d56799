package sender

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

var rcvAddr = netip.MustParseAddrPort("127.0.0.1:9000")

func newCore(t *testing.T, cfg Config) *Core {
	t.Helper()
	// These tests are about what each message's datagram does; packing
	// has tests of its own (pack_test.go).
	cfg.DisablePacking = true
	c, err := NewCore(cfg, 0xabc, rcvAddr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// drain takes what the core queued and decodes it.
func drain(t *testing.T, c *Core) []packet.Packet {
	t.Helper()
	b := c.Outbox().Take()
	if b == nil {
		return nil
	}
	defer c.Outbox().Give(b)
	var out []packet.Packet
	for _, d := range b.Datagrams() {
		var p packet.Packet
		if err := p.Parse(d.Data); err != nil {
			t.Fatalf("core queued an invalid datagram: %v", err)
		}
		if d.Addr != rcvAddr {
			t.Fatalf("datagram to %v", d.Addr)
		}
		p.Payload = append([]byte(nil), p.Payload...)
		out = append(out, p)
	}
	return out
}

func encode(t *testing.T, p *packet.Packet) []byte {
	t.Helper()
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSendStampsSequenceAndTime(t *testing.T) {
	c := newCore(t, Config{FirstSeq: 1<<32 - 2})
	for i := range 4 {
		if err := c.Send(3, []byte{byte(i)}, int64(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	pkts := drain(t, c)
	if len(pkts) != 5 {
		t.Fatalf("queued %d packets", len(pkts))
	}
	// The stream opens with a HEARTBEAT saying nothing is sent yet.
	if h := pkts[0]; h.Kind != packet.KindHeartbeat || h.Heartbeat.Start != 1<<32-2 || h.Heartbeat.Next != 1<<32-2 {
		t.Fatalf("opening packet %+v", h)
	}
	for i, p := range pkts[1:] {
		if p.Kind != packet.KindData || p.Session != 0xabc || p.Stream != 3 ||
			p.Seq != 1<<32-2+uint64(i) || p.Timestamp != int64(100+i) || msgOf(&p)[0] != byte(i) {
			t.Fatalf("packet %d: %+v", i, p)
		}
	}
	if st := c.Stats(); st.Packets != 4 || st.PayloadBytes != 4 || st.Streams[0].NextSeq != 1<<32+2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSendErrors(t *testing.T) {
	c := newCore(t, Config{MaxStreams: 1, QueuePackets: 3}) // the opening HEARTBEAT takes one
	if err := c.Send(0, make([]byte, packet.MaxPayload+1), 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: %v", err)
	}
	if err := c.Send(0, nil, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(1, nil, 1); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("second stream: %v", err)
	}
	if err := c.Send(0, nil, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(0, nil, 1); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("full queue: %v", err)
	}
	// The refused message did not use up a sequence number.
	drain(t, c)
	if err := c.Send(0, nil, 1); err != nil {
		t.Fatal(err)
	}
	if p := drain(t, c); p[0].Kind != packet.KindData || p[0].Seq != 2 {
		t.Fatalf("sequence after a refused send = %d, want 2", p[0].Seq)
	}
}

func TestHeartbeatBacksOffWhileIdle(t *testing.T) {
	hb := 20 * time.Millisecond
	c := newCore(t, Config{HeartbeatInterval: hb, MaxHeartbeatInterval: 100 * time.Millisecond, FirstSeq: 10})
	if _, ok := c.NextTimer(); ok {
		t.Fatal("timer armed before any stream exists")
	}
	now := int64(time.Second)
	for range 3 {
		if err := c.Send(0, []byte("x"), now); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, c)
	var gaps []int64
	last := now
	for range 5 {
		at, ok := c.NextTimer()
		if !ok {
			t.Fatal("no heartbeat scheduled")
		}
		c.Tick(at - 1)
		if drain(t, c) != nil {
			t.Fatal("heartbeat before it was due")
		}
		c.Tick(at)
		pkts := drain(t, c)
		if len(pkts) != 1 || pkts[0].Kind != packet.KindHeartbeat {
			t.Fatalf("at %d: %+v", at, pkts)
		}
		if h := pkts[0].Heartbeat; h.Start != 10 || h.Next != 13 || h.Timestamp != at {
			t.Fatalf("heartbeat %+v", h)
		}
		gaps = append(gaps, at-last)
		last = at
	}
	want := []time.Duration{20, 40, 80, 100, 100}
	for i := range want {
		if gaps[i] != int64(want[i]*time.Millisecond) {
			t.Fatalf("heartbeat gaps %v, want %v ms", gaps, want)
		}
	}
	// Data resets the backoff.
	c.Send(0, nil, last+5)
	if at, _ := c.NextTimer(); at != last+5+int64(hb) {
		t.Fatalf("after data, heartbeat at %d, want %d", at, last+5+int64(hb))
	}
}

func TestReportGivesRTT(t *testing.T) {
	c := newCore(t, Config{})
	c.Send(0, []byte("a"), 1_000_000)
	drain(t, c)
	// The receiver echoes timestamp 1ms, held it 2ms; it arrives at 13ms:
	// RTT = 13 - 1 - 2 = 10ms.
	rep := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc, Stream: 0},
		Report: packet.Report{EchoTimestamp: 1_000_000, EchoHoldNanos: 2_000_000, Received: 1, JitterNanos: 5, IntervalLossPPM: 20_000},
	}
	c.Handle(encode(t, &rep), rcvAddr, 13_000_000)
	st := c.Stats()
	if st.RTT.Samples != 1 || st.RTT.SmoothedNanos != 10_000_000 || st.RTT.MinNanos != 10_000_000 {
		t.Fatalf("rtt %+v", st.RTT)
	}
	if v := st.Streams[0].Receiver; !v.Reported || v.Received != 1 || v.JitterNanos != 5 || v.IntervalLoss != 0.02 {
		t.Fatalf("receiver view %+v", v)
	}
	// Echoes from the future, or holds longer than the elapsed time, give
	// no sample.
	rep.Report.EchoTimestamp = 50_000_000
	c.Handle(encode(t, &rep), rcvAddr, 14_000_000)
	rep.Report.EchoTimestamp, rep.Report.EchoHoldNanos = 1_000_000, 100_000_000
	c.Handle(encode(t, &rep), rcvAddr, 15_000_000)
	if st := c.Stats(); st.RTT.Samples != 1 || st.Reports != 3 {
		t.Fatalf("lying reports changed RTT: %+v", st.RTT)
	}
}

func TestFeedbackFiltering(t *testing.T) {
	c := newCore(t, Config{})
	c.Send(0, nil, 1)
	drain(t, c)
	foreign := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xdef}}
	c.Handle(encode(t, &foreign), rcvAddr, 2)
	c.Handle([]byte("garbage"), rcvAddr, 2)
	data := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 0xabc}}
	c.Handle(encode(t, &data), rcvAddr, 2)
	unknownStream := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xabc, Stream: 9}}
	c.Handle(encode(t, &unknownStream), rcvAddr, 2)
	st := c.Stats()
	if st.ForeignSession != 1 || st.Malformed != 1 || st.Unexpected != 2 || st.Reports != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func nackFor(t *testing.T, rs ...packet.Range) []byte {
	t.Helper()
	return encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: 0xabc}, Ranges: rs})
}

// provenNACK is nackFor as a real receiver of stream 0 sends it: with the
// sequence and exact send time of the newest DATA as proof of receipt.
func provenNACK(t *testing.T, c *Core, rs ...packet.Range) []byte {
	t.Helper()
	s := c.findStream(0)
	seq := s.next - 1
	return encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagProof, Session: 0xabc},
		Ranges: rs, ProofSeq: seq, ProofTimestamp: s.sentTs[seq%sentTsLen]})
}

func TestNACKIsAnsweredWithRetransmission(t *testing.T) {
	c := newCore(t, Config{})
	for i := range 3 {
		c.Send(0, []byte{byte('a' + i)}, int64(1000+i))
	}
	drain(t, c)
	c.Handle(nackFor(t, packet.Range{First: 1, Len: 1}), rcvAddr, 5000)
	pkts := drain(t, c)
	if len(pkts) != 1 {
		t.Fatalf("answer %+v", pkts)
	}
	p := pkts[0]
	if p.Kind != packet.KindData || p.Flags != packet.FlagRetransmit|packet.FlagMessages || p.Seq != 1 || p.Timestamp != 1001 || string(msgOf(&p)) != "b" {
		t.Fatalf("retransmission %+v", p)
	}
	// A second NACK for the same sequence right away is suppressed: one
	// retransmission answers every receiver asking within part of an RTT.
	for range 50 {
		c.Handle(nackFor(t, packet.Range{First: 1, Len: 1}), rcvAddr, 5001)
	}
	if got := drain(t, c); len(got) != 0 {
		t.Fatalf("suppressed NACKs answered with %d packets", len(got))
	}
	st := c.Stats()
	if st.NACKs != 51 || st.Retransmits != 1 || st.Suppressed != 50 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNACKForAgedOutDataIsUnavailable(t *testing.T) {
	c := newCore(t, Config{RetransmitMaxAge: 100 * time.Millisecond})
	c.Send(0, []byte("old"), 0)
	drain(t, c)
	c.Handle(nackFor(t, packet.Range{First: 0, Len: 1}), rcvAddr, int64(time.Second))
	pkts := drain(t, c)
	if len(pkts) != 1 || pkts[0].Kind != packet.KindNACK || pkts[0].Flags != packet.FlagUnavailable ||
		pkts[0].Ranges[0] != (packet.Range{First: 0, Len: 1}) {
		t.Fatalf("answer %+v", pkts)
	}
}

func TestRetransmitDisabled(t *testing.T) {
	c := newCore(t, Config{DisableRetransmit: true})
	c.Send(0, nil, 1)
	drain(t, c)
	c.Handle(nackFor(t, packet.Range{First: 0, Len: 1}, packet.Range{First: 5, Len: 2}), rcvAddr, 2)
	pkts := drain(t, c)
	if len(pkts) != 1 || pkts[0].Flags != packet.FlagUnavailable || len(pkts[0].Ranges) != 2 {
		t.Fatalf("answer %+v", pkts)
	}
	if st := c.Stats(); st.Unavailable != 1 || st.Retransmits != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSendAllocatesNothing(t *testing.T) {
	c := newCore(t, Config{QueuePackets: 1 << 14, QueueBytes: 16 << 20})
	payload := make([]byte, 200)
	c.Send(0, payload, 1) // create the stream
	now := int64(1)
	if n := testing.AllocsPerRun(1000, func() {
		now++
		if err := c.Send(0, payload, now); err != nil {
			if b := c.Outbox().Take(); b != nil {
				c.Outbox().Give(b)
			}
		}
	}); n != 0 {
		t.Fatalf("Send allocates %.1f times per message", n)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{QueuePackets: -1},
		{QueueBytes: 100},
		{HeartbeatInterval: time.Second, MaxHeartbeatInterval: time.Millisecond},
		{MaxStreams: -2},
	} {
		if _, err := NewCore(cfg, 1, rcvAddr); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}

// TestNACKStormFromManyReceivers: 50 receivers NACKing the same loss at
// once cause one retransmission, sent to the first that asked.
func TestNACKStormFromManyReceivers(t *testing.T) {
	c := newCore(t, Config{})
	for i := range 10 {
		c.Send(0, []byte{byte(i)}, int64(i))
	}
	drain(t, c)
	nack := nackFor(t, packet.Range{First: 4, Len: 1})
	for i := range 50 {
		c.Handle(nack, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(20000+i)), 100)
	}
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatalf("50 NACKs answered with %v datagrams", b)
	}
	if to := b.Datagrams()[0].Addr; to.Port() != 20000 {
		t.Fatalf("retransmission went to %v", to)
	}
	c.Outbox().Give(b)
	if st := c.Stats(); st.Retransmits != 1 || st.Suppressed != 49 {
		t.Fatalf("stats %+v", st)
	}
}

// msgOf returns the one whole message a DATA packet carries, or nil.
func msgOf(p *packet.Packet) []byte {
	if p.Flags&packet.FlagMessages == 0 {
		return p.Payload
	}
	m, ok := packet.OnlyMessage(p.Payload)
	if !ok {
		return nil
	}
	return m
}
