package sender

import (
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

// TestFanoutSuppressesPerDestination: in a unicast fan-out a repair
// reaches only the receiver that asked, so a sequence is resent to one
// destination at most once per that destination's round trip, while
// another destination's request for it is still answered.
func TestFanoutSuppressesPerDestination(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:9001")
	b := netip.MustParseAddrPort("127.0.0.1:9002")
	c, err := NewFanoutCore(Config{DisablePacking: true, FEC: FECConfig{Mode: FECOff}}, 0xabc, []netip.AddrPort{a, b})
	if err != nil {
		t.Fatal(err)
	}
	const ms = 1_000_000
	for i := range 3 {
		if err := c.Send(0, []byte{byte('a' + i)}, int64(i+1)*ms); err != nil {
			t.Fatal(err)
		}
	}
	take := func() map[netip.AddrPort]int {
		out := map[netip.AddrPort]int{}
		bt := c.Outbox().Take()
		if bt == nil {
			return out
		}
		defer c.Outbox().Give(bt)
		for _, d := range bt.Datagrams() {
			var p packet.Packet
			if err := p.Parse(d.Data); err != nil {
				t.Fatal(err)
			}
			if p.Kind == packet.KindData && p.Flags&packet.FlagRetransmit != 0 {
				if p.Seq != 1 {
					t.Fatalf("resent %d, want 1", p.Seq)
				}
				out[d.Addr]++
			}
		}
		return out
	}
	take()
	// Round trips: a's 2 ms, b's 20 ms (seq 0, sent at 1 ms, echoed).
	rep := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc},
		Report: packet.Report{HighestSeq: 0, EchoTimestamp: 1 * ms, Received: 1},
	}
	c.Handle(encode(t, &rep), a, 3*ms)
	c.Handle(encode(t, &rep), b, 21*ms)
	nack := func(from netip.AddrPort, now int64) map[netip.AddrPort]int {
		t.Helper()
		p := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagProof, Session: 0xabc},
			Ranges: []packet.Range{{First: 1, Len: 1}}, ProofSeq: 2, ProofTimestamp: 3 * ms}
		c.Handle(encode(t, &p), from, now)
		return take()
	}
	const at = 30 * ms
	for _, step := range []struct {
		from     netip.AddrPort
		now      int64
		toA, toB int
		why      string
	}{
		{a, at, 1, 0, "a's first request"},
		{a, at + 1*ms, 0, 0, "a again within its 2 ms"},
		{b, at + 1*ms, 0, 1, "b's first request, after a's repair"},
		{a, at + 3*ms, 1, 0, "a again past its 2 ms"},
		{b, at + 10*ms, 0, 0, "b again within its 20 ms"},
		{b, at + 22*ms, 0, 1, "b again past its 20 ms"},
	} {
		got := nack(step.from, step.now)
		if got[a] != step.toA || got[b] != step.toB {
			t.Fatalf("%s: resent %d to a, %d to b; want %d, %d", step.why, got[a], got[b], step.toA, step.toB)
		}
	}
	if st := c.Stats(); st.Retransmits != 4 || st.Suppressed != 2 {
		t.Fatalf("%d retransmissions, %d suppressed; want 4, 2", st.Retransmits, st.Suppressed)
	}
}

// TestFanoutNACKAllocatesNothing: answering a fan-out destination's NACK,
// per-destination suppression included, allocates nothing once its
// record exists.
func TestFanoutNACKAllocatesNothing(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:9001")
	b := netip.MustParseAddrPort("127.0.0.1:9002")
	c, err := NewFanoutCore(Config{DisablePacking: true, FEC: FECConfig{Mode: FECOff}}, 0xabc, []netip.AddrPort{a, b})
	if err != nil {
		t.Fatal(err)
	}
	const ms = 1_000_000
	for i := range 64 {
		_ = c.Send(0, []byte{byte(i)}, int64(i+1)*ms)
	}
	drop := func() {
		if bt := c.Outbox().Take(); bt != nil {
			c.Outbox().Give(bt)
		}
	}
	drop()
	nack := encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagProof, Session: 0xabc},
		Ranges: []packet.Range{{First: 3, Len: 4}, {First: 20, Len: 2}}, ProofSeq: 63, ProofTimestamp: 64 * ms})
	now := int64(100 * ms)
	c.Handle(nack, a, now) // creates a's record
	drop()
	allocs := testing.AllocsPerRun(100, func() {
		now += 5 * ms
		c.Handle(nack, a, now)
		drop()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per NACK", allocs)
	}
	if c.Stats().Retransmits < 100 {
		t.Fatalf("only %d retransmissions: the NACKs were not answered", c.Stats().Retransmits)
	}
}

// TestFanoutSendsNoGroupSize: the group size (HEARTBEAT packet.FlagGroup)
// is a multicast feature: a fan-out sender, to a list or to subscribers,
// that holds views of several receivers sends its HEARTBEATs without it.
func TestFanoutSendsNoGroupSize(t *testing.T) {
	for _, listen := range []string{"", "127.0.0.1:0"} {
		c, err := NewFanoutCore(Config{DisablePacking: true, Listen: listen}, 0xabc, []netip.AddrPort{addrN(0), addrN(1), addrN(2)})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := c.Send(0, []byte{byte(i)}, int64(i+1)*ms); err != nil {
				t.Fatal(err)
			}
		}
		c.Outbox().Give(c.Outbox().Take())
		for i := range 3 {
			c.Handle(report(t, 0, 0), addrN(i), 12*ms)
		}
		if n := len(c.rcv.peers); n != 3 {
			t.Fatalf("listen %q: %d receiver views, want 3", listen, n)
		}
		heartbeats := 0
		for now := 12 * ms; now < 2*int64(time.Second); now += 10 * ms {
			if now < 1200*ms {
				if err := c.Send(0, []byte{1}, now); err != nil {
					t.Fatal(err)
				}
			}
			c.Tick(now)
			for _, p := range groupHeartbeats(t, c) {
				if p.Flags&packet.FlagGroup != 0 {
					t.Fatalf("listen %q: a fan-out sender advertised a group of %d", listen, p.Heartbeat.Receivers)
				}
				heartbeats++
			}
		}
		if heartbeats == 0 {
			t.Fatalf("listen %q: no HEARTBEAT at all", listen)
		}
	}
}
