package sender

import (
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

// addrN is the n-th simulated receiver's address.
func addrN(n int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(n >> 8), byte(n)}), 9000)
}

// groupCore returns a Core to a multicast group that has sent 10 DATA at
// 1..10 ms.
func groupCore(t *testing.T, cfg Config) *Core {
	t.Helper()
	// The views' tests name each DATA by its sequence: one message each.
	cfg.DisablePacking = true
	c, err := NewCore(cfg, 0xabc, netip.MustParseAddrPort("239.1.2.3:9000"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := c.Send(0, []byte{byte(i)}, int64(i+1)*ms); err != nil {
			t.Fatal(err)
		}
	}
	c.Outbox().Give(c.Outbox().Take())
	return c
}

// report is a proven REPORT (echoing DATA 9, sent at 10 ms) with the given
// interval loss.
func report(t *testing.T, lossPPM uint32, flags packet.Flags) []byte {
	p := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc, Flags: flags},
		Report: packet.Report{EchoTimestamp: 10 * ms, HighestSeq: 9, Received: 10, IntervalLossPPM: lossPPM, BurstMeanMilli: 1000},
	}
	return encode(t, &p)
}

func TestReceiverViewsBoundedAndCounted(t *testing.T) {
	c := groupCore(t, Config{MaxReceivers: 3})
	for i := range 5 {
		c.Handle(report(t, 0, 0), addrN(i), 20*ms)
	}
	st := c.Stats()
	if st.Group.Receivers != 3 || len(st.Receivers) != 3 || st.Group.Refused != 2 {
		t.Fatalf("group %+v, %d views", st.Group, len(st.Receivers))
	}
	for i, r := range st.Receivers {
		if r.Addr != addrN(i).String() || r.ID != uint64(i+1) || r.Reports != 1 || r.RTT.Samples != 1 {
			t.Fatalf("receiver %d: %+v", i, r)
		}
		if len(r.Streams) != 1 || !r.Streams[0].View.Reported || r.Streams[0].View.Received != 10 {
			t.Fatalf("receiver %d streams %+v", i, r.Streams)
		}
	}
	// A known receiver is never refused, and refusals do not repeat for it.
	c.Handle(report(t, 0, 0), addrN(1), 21*ms)
	if st := c.Stats(); st.Group.Refused != 2 || st.Receivers[1].Reports != 2 {
		t.Fatalf("after a known receiver's report: %+v", st.Group)
	}
}

func TestUnprovenFeedbackTakesNoView(t *testing.T) {
	c := groupCore(t, Config{MaxReceivers: 2})
	p := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc},
		Report: packet.Report{EchoTimestamp: 10*ms + 1, HighestSeq: 9}, // not a send time
	}
	for i := range 100 {
		c.Handle(encode(t, &p), addrN(i), 20*ms)
	}
	c.Handle(nackFor(t, packet.Range{First: 3, Len: 1}), addrN(200), 20*ms) // no proof
	if st := c.Stats(); st.Group.Receivers != 0 || st.Group.Refused != 0 {
		t.Fatalf("forged feedback took views: %+v", st.Group)
	}
	// A proven NACK does take one.
	c.Handle(provenNACK(t, c, packet.Range{First: 3, Len: 1}), addrN(7), 21*ms)
	if st := c.Stats(); st.Group.Receivers != 1 || st.Receivers[0].NACKs != 1 {
		t.Fatalf("proven NACK: %+v %+v", st.Group, st.Receivers)
	}
}

func TestReceiverViewsExpire(t *testing.T) {
	c := groupCore(t, Config{MaxReceivers: 2, ReceiverTimeout: time.Second})
	c.Handle(report(t, 0, 0), addrN(0), 20*ms)
	c.Handle(report(t, 0, 0), addrN(1), 500*ms)
	if at, ok := c.NextTimer(); !ok || at > 20*ms+int64(time.Second)+1 {
		t.Fatalf("next timer %d %v: want the first expiry", at, ok)
	}
	c.Tick(20*ms + int64(time.Second)) // exactly the timeout: kept
	if st := c.Stats(); st.Group.Receivers != 2 || st.Group.Expired != 0 {
		t.Fatalf("expired early: %+v", st.Group)
	}
	c.Tick(21*ms + int64(time.Second))
	st := c.Stats()
	if st.Group.Receivers != 1 || st.Group.Expired != 1 || st.Receivers[0].Addr != addrN(1).String() {
		t.Fatalf("after the first timeout: %+v %+v", st.Group, st.Receivers)
	}
	// A full set makes room by expiring silent receivers before refusing.
	c.Handle(report(t, 0, 0), addrN(2), 600*ms)
	c.Handle(report(t, 0, 0), addrN(3), 1600*ms)
	st = c.Stats()
	if st.Group.Receivers != 2 || st.Group.Expired != 2 || st.Group.Refused != 0 {
		t.Fatalf("full set: %+v", st.Group)
	}
	if st.Receivers[0].Addr != addrN(2).String() || st.Receivers[1].Addr != addrN(3).String() {
		t.Fatalf("views %+v", st.Receivers)
	}
	// A receiver back after expiry is a new view with a new id.
	c.Tick(5000 * ms)
	c.Handle(report(t, 0, 0), addrN(0), 5001*ms)
	if st := c.Stats(); st.Group.Receivers != 1 || st.Receivers[0].ID != 5 {
		t.Fatalf("returning receiver: %+v", st.Receivers)
	}
}

// TestOneReceiverIsAGroupOfOne: a unicast sender's receiver is the one
// member of the set, and the merged view is its own.
func TestOneReceiverIsAGroupOfOne(t *testing.T) {
	c := newCore(t, Config{})
	c.Send(0, []byte("a"), 1*ms)
	drain(t, c)
	rep := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc},
		Report: packet.Report{EchoTimestamp: 1 * ms, Received: 1, IntervalLossPPM: 30_000, JitterNanos: 7, DelayP99Nanos: 9},
	}
	c.Handle(encode(t, &rep), rcvAddr, 11*ms)
	st := c.Stats()
	if len(st.Receivers) != 1 || st.Receivers[0].Addr != rcvAddr.String() || st.Receivers[0].RTT.SmoothedNanos != 10*ms {
		t.Fatalf("receivers %+v", st.Receivers)
	}
	g := st.Group
	if g.Receivers != 1 || g.LossAtPct != 0.03 || g.LossMean != 0.03 || g.LossMax != 0.03 ||
		g.RTTMinNanos != 10*ms || g.RTTMaxNanos != 10*ms || g.JitterMaxNanos != 7 || g.DelayP99MaxNanos != 9 {
		t.Fatalf("group %+v", g)
	}
	if st.Receivers[0].Streams[0].View != st.Streams[0].Receiver {
		t.Fatalf("the stream's view %+v differs from the receiver's %+v", st.Streams[0].Receiver, st.Receivers[0].Streams[0].View)
	}
}

// TestFECFollowsLossPercentile: nine receivers without loss and one with
// 20% leave FEC off at the 90th percentile (the mean, 2%, would turn it
// on), and turn it on when FECLossPercentile is 100.
func TestFECFollowsLossPercentile(t *testing.T) {
	for _, tc := range []struct {
		pct    float64
		parity bool
	}{{0, false}, {90, false}, {100, true}} {
		c := groupCore(t, Config{FECLossPercentile: tc.pct})
		// Two rounds of reports: adaptive FEC searches at most every 50 ms.
		for round := range 2 {
			for i := range 10 {
				loss := uint32(0)
				if i == 9 { // last: with fewer than ten, the 90th percentile is the worst
					loss = 200_000
				}
				c.Handle(report(t, loss, 0), addrN(i), int64(20+100*round)*ms+int64(i))
			}
		}
		st := c.Stats()
		if got := st.Streams[0].FECM > 0; got != tc.parity {
			t.Fatalf("percentile %v: FEC M = %d, want parity %v (group %+v)", tc.pct, st.Streams[0].FECM, tc.parity, st.Group)
		}
		if st.Group.LossMax != 0.2 || st.Group.LossMean < 0.0199 || st.Group.LossMean > 0.0201 {
			t.Fatalf("group %+v", st.Group)
		}
	}
	// Two receivers of ten at 20%: the 90th percentile is one of them.
	c := groupCore(t, Config{})
	for round := range 2 {
		for i := range 10 {
			loss := uint32(0)
			if i >= 8 {
				loss = 200_000
			}
			c.Handle(report(t, loss, 0), addrN(i), int64(20+100*round)*ms+int64(i))
		}
	}
	if st := c.Stats(); st.Streams[0].FECM == 0 || st.Group.LossAtPct != 0.2 {
		t.Fatalf("two lossy receivers of ten: M = %d, group %+v", st.Streams[0].FECM, st.Group)
	}
}

// TestGroupRepairGoesToTheGroup: with a multicast destination, the
// answer to any receiver's NACK goes to the group, once per round trip
// however many receivers ask.
func TestGroupRepairGoesToTheGroup(t *testing.T) {
	c := groupCore(t, Config{})
	group := netip.MustParseAddrPort("239.1.2.3:9000")
	for i := range 20 {
		c.Handle(provenNACK(t, c, packet.Range{First: 4, Len: 1}), addrN(i), 30*ms)
	}
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 || b.Datagrams()[0].Addr != group {
		t.Fatalf("20 NACKs answered with %v", b)
	}
	c.Outbox().Give(b)
	if st := c.Stats(); st.Retransmits != 1 || st.Suppressed != 19 || st.Group.Receivers != 20 {
		t.Fatalf("stats: retransmits %d suppressed %d receivers %d", st.Retransmits, st.Suppressed, st.Group.Receivers)
	}
}

func TestReceiverConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{MaxReceivers: -1}, {MaxReceivers: 1 << 17}, {ReceiverTimeout: -1},
		{FECLossPercentile: -1}, {FECLossPercentile: 101},
	} {
		if _, err := NewCore(cfg, 1, rcvAddr); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestPercentileIndex(t *testing.T) {
	for _, tc := range []struct {
		n    int
		pct  float64
		want int
	}{{1, 90, 0}, {10, 90, 8}, {10, 100, 9}, {10, 50, 4}, {100, 90, 89}, {3, 1, 0}, {7, 99.9, 6}} {
		if got := percentileIndex(tc.n, tc.pct); got != tc.want {
			t.Errorf("percentileIndex(%d, %v) = %d, want %d", tc.n, tc.pct, got, tc.want)
		}
	}
}

// TestGroupReportAllocatesNothing: a REPORT from a known receiver of a
// group of 50 (views, percentile, adaptive FEC input) allocates nothing.
func TestGroupReportAllocatesNothing(t *testing.T) {
	c := groupCore(t, Config{})
	reps := make([][]byte, 50)
	for i := range reps {
		reps[i] = report(t, uint32(i*1000), 0)
		c.Handle(reps[i], addrN(i), 20*ms)
	}
	now := 100 * ms
	i := 0
	allocs := testing.AllocsPerRun(500, func() {
		now += ms
		c.Handle(reps[i%50], addrN(i%50), now)
		i++
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per REPORT", allocs)
	}
}

// groupHeartbeats returns the HEARTBEATs queued in c's outbox, decoded.
func groupHeartbeats(t *testing.T, c *Core) []packet.Packet {
	t.Helper()
	var out []packet.Packet
	b := c.Outbox().Take()
	if b == nil {
		return nil
	}
	for _, d := range b.Datagrams() {
		var p packet.Packet
		if err := p.Parse(d.Data); err != nil {
			t.Fatal(err)
		}
		if p.Kind == packet.KindHeartbeat {
			out = append(out, p)
		}
	}
	c.Outbox().Give(b)
	return out
}

// TestSenderAdvertisesGroupSize: a multicast sender tells its receivers
// how many it hears, in a HEARTBEAT flagged FlagGroup every
// groupAnnounceInterval while it sends (it never falls idle here) and in
// its idle HEARTBEATs; before it hears anyone, and to a unicast address,
// it says nothing.
func TestSenderAdvertisesGroupSize(t *testing.T) {
	c := groupCore(t, Config{})
	c.Tick(11 * ms)
	for _, p := range groupHeartbeats(t, c) {
		if p.Flags&packet.FlagGroup != 0 {
			t.Fatalf("a group size before any receiver was heard: %+v", p.Heartbeat)
		}
	}
	for i := range 3 {
		c.Handle(report(t, 0, 0), addrN(i), 12*ms)
	}
	at, ok := c.NextTimer()
	if !ok || at > 12*ms {
		t.Fatalf("next timer %d, %v: the announcement is due at once", at, ok)
	}
	var announced []packet.Packet
	now := 12 * ms
	// Keep sending every 5 ms for 1.2 s: no idle HEARTBEAT, so the
	// announcements alone carry the size.
	for ; now < 1212*ms; now += 5 * ms {
		if err := c.Send(0, []byte{1}, now); err != nil {
			t.Fatal(err)
		}
		c.Handle(report(t, 0, 0), addrN(0), now)
		c.Tick(now)
		for _, p := range groupHeartbeats(t, c) {
			if p.Flags&packet.FlagGroup == 0 || p.Heartbeat.Receivers != 3 {
				t.Fatalf("at %d ms: HEARTBEAT %+v flags %#x, want the group size 3", now/ms, p.Heartbeat, p.Flags)
			}
			announced = append(announced, p)
		}
	}
	// At 12 ms, 512 ms and 1012 ms.
	if len(announced) != 3 {
		t.Fatalf("%d announcements in 1.2 s, want 3 (one per %d ms)", len(announced), groupAnnounceInterval/ms)
	}
	// The idle HEARTBEAT that follows the last DATA carries it too.
	c.Tick(now + 100*ms)
	hb := groupHeartbeats(t, c)
	if len(hb) == 0 || hb[0].Flags&packet.FlagGroup == 0 || hb[0].Heartbeat.Receivers != 3 {
		t.Fatalf("idle HEARTBEATs %+v: want the group size", hb)
	}

	// A unicast sender never does.
	u, err := NewCore(Config{DisablePacking: true}, 0xabc, addrN(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := u.Send(0, []byte{byte(i)}, int64(i+1)*ms); err != nil {
			t.Fatal(err)
		}
	}
	u.Outbox().Give(u.Outbox().Take())
	u.Handle(report(t, 0, 0), addrN(0), 12*ms)
	idle := 0
	for now := 12 * ms; now < 2*int64(time.Second); now += 10 * ms {
		u.Tick(now)
		for _, p := range groupHeartbeats(t, u) {
			if p.Flags&packet.FlagGroup != 0 {
				t.Fatalf("a unicast sender advertised a group: %+v", p.Heartbeat)
			}
			idle++
		}
	}
	if idle == 0 {
		t.Fatal("the unicast sender sent no HEARTBEAT at all")
	}
}

// TestSenderAnnouncesGroupChangeSoon: when a receiver joins, the group
// hears its new size within groupAnnounceMinGap, not at the next interval:
// receivers told the group is one do not back off.
func TestSenderAnnouncesGroupChangeSoon(t *testing.T) {
	c := groupCore(t, Config{})
	c.Handle(report(t, 0, 0), addrN(0), 11*ms)
	c.Tick(11 * ms)
	if hb := groupHeartbeats(t, c); len(hb) != 1 || hb[0].Heartbeat.Receivers != 1 {
		t.Fatalf("first announcement %+v, want one of 1 receiver", hb)
	}
	c.Handle(report(t, 0, 0), addrN(1), 12*ms)
	at, ok := c.NextTimer()
	if !ok || at > 11*ms+groupAnnounceMinGap {
		t.Fatalf("next timer %d ms: the new size is due within %d ms of the last announcement", at/ms, groupAnnounceMinGap/ms)
	}
	c.Tick(at)
	if hb := groupHeartbeats(t, c); len(hb) != 1 || hb[0].Heartbeat.Receivers != 2 {
		t.Fatalf("announcement at %d ms: %+v, want one of 2 receivers", at/ms, hb)
	}
	// Told (by the announcement or an idle HEARTBEAT, which carries the
	// size too): nothing more until the interval.
	if next, _ := c.announceTimer(); next != 11*ms+groupAnnounceInterval {
		t.Fatalf("next announcement at %d ms while nothing changed, want %d", next/ms, (11*ms+groupAnnounceInterval)/ms)
	}
}

// TestGroupRepeatedRepairGoesTwice: a sequence asked for again after the
// suppression time lost its first repair on the way to someone: the
// group gets the second repair twice. A late joiner's history goes to it
// alone (packet.FlagHistory), and a history request beyond
// packet.MaxJoinHistory is refused whole.
func TestGroupRepeatedRepairGoesTwice(t *testing.T) {
	c := groupCore(t, Config{})
	group := netip.MustParseAddrPort("239.1.2.3:9000")
	count := func() (toGroup, toOthers int) {
		b := c.Outbox().Take()
		if b == nil {
			return 0, 0
		}
		for _, d := range b.Datagrams() {
			if d.Addr == group {
				toGroup++
			} else {
				toOthers++
			}
		}
		c.Outbox().Give(b)
		return toGroup, toOthers
	}
	c.Handle(provenNACK(t, c, packet.Range{First: 4, Len: 1}), addrN(0), 30*ms)
	if g, o := count(); g != 1 || o != 0 {
		t.Fatalf("first repair: %d to the group, %d elsewhere; want 1, 0", g, o)
	}
	c.Handle(provenNACK(t, c, packet.Range{First: 4, Len: 1}), addrN(1), 300*ms) // past the suppression time
	if g, o := count(); g != 2 || o != 0 {
		t.Fatalf("repeated repair: %d to the group, %d elsewhere; want 2, 0", g, o)
	}

	hist := func(rs ...packet.Range) []byte {
		var p packet.Packet
		if err := p.Parse(provenNACK(t, c, rs...)); err != nil {
			t.Fatal(err)
		}
		p.Flags |= packet.FlagHistory
		return encode(t, &p)
	}
	c.Handle(hist(packet.Range{First: 1, Len: 3}), addrN(2), 400*ms)
	if g, o := count(); g != 0 || o != 3 {
		t.Fatalf("history: %d to the group, %d to the joiner; want 0, 3", g, o)
	}
	for i := range 1200 { // enough sent for a request over the cap to name only sent sequences
		if err := c.Send(0, []byte{byte(i)}, 450*ms+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	count()
	before := c.Stats().NACKsRejected
	c.Handle(hist(packet.Range{First: 10, Len: 5}, packet.Range{First: 16, Len: packet.MaxJoinHistory}), addrN(2), 500*ms)
	if g, o := count(); g != 0 || o != 0 || c.Stats().NACKsRejected != before+1 {
		t.Fatalf("history request over the cap: %d to the group, %d to the joiner, rejected %d", g, o, c.Stats().NACKsRejected-before)
	}
	if st := c.Stats(); st.HistoryNACKs != 1 {
		t.Fatalf("history NACKs %d, want 1", st.HistoryNACKs)
	}
}
