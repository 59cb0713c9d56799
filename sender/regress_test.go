package sender

// Regression tests drawn from bugs peer transports shipped (loss reports
// parsed past their end, inverted or huge NACK ranges answered, lying
// statistics trusted, NACK floods answered without limit), run against the
// sender core, and tests of the bounds a peer can push.

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

const ms = int64(time.Millisecond)

// rawNACK encodes a NACK body by hand, valid in length and checksum, with
// count ranges announced and the given ranges (possibly fewer, or cut).
func rawNACK(count int, cut int, rs ...packet.Range) []byte {
	body := binary.BigEndian.AppendUint16(nil, uint16(count))
	body = append(body, 0, 0)
	for _, r := range rs {
		body = binary.BigEndian.AppendUint64(body, r.First)
		body = binary.BigEndian.AppendUint32(body, r.Len)
	}
	body = body[:len(body)-cut]
	return rawPacket(nil, packet.KindNACK, 0, 0xabc, 0, body)
}

// TestNACKPeerBugShapes: NACKs shaped like the ones that broke peers'
// loss-report parsing are rejected whole: nothing is resent and nothing
// answered, and each is counted as malformed.
func TestNACKPeerBugShapes(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
	}{
		{"range with a start and no end", rawNACK(1, 4, packet.Range{First: 3, Len: 1})},
		{"second range cut after its start", rawNACK(2, 4, packet.Range{First: 1, Len: 1}, packet.Range{First: 3, Len: 1})},
		{"count beyond the ranges present", rawNACK(3, 0, packet.Range{First: 1, Len: 1})},
		{"lo > hi (ranges in decreasing order)", rawNACK(2, 0, packet.Range{First: 8, Len: 1}, packet.Range{First: 2, Len: 1})},
		{"overlapping ranges", rawNACK(2, 0, packet.Range{First: 2, Len: 4}, packet.Range{First: 4, Len: 1})},
		{"empty range", rawNACK(1, 0, packet.Range{First: 2, Len: 0})},
		{"span of 2^31", rawNACK(2, 0, packet.Range{First: 1, Len: 1}, packet.Range{First: 1 << 31, Len: 1})},
		{"range of 2^32-1", rawNACK(1, 0, packet.Range{First: 0, Len: 1<<32 - 1})},
		{"more ranges than allowed", rawNACK(packet.MaxRanges+1, 0)},
	}
	for _, tc := range cases {
		c := newCore(t, Config{})
		for i := range 10 {
			c.Send(0, []byte{byte(i)}, int64(i+1))
		}
		drain(t, c)
		c.Handle(tc.b, rcvAddr, int64(time.Second))
		if got := drain(t, c); len(got) != 0 {
			t.Errorf("%s: answered with %d packets", tc.name, len(got))
		}
		if st := c.Stats(); st.Malformed != 1 || st.NACKs != 0 || st.Retransmits != 0 {
			t.Errorf("%s: stats %+v", tc.name, st)
		}
	}
}

// TestNACKBeyondHighestSentRejectedWhole: a NACK naming sequences the
// sender never sent is not from an honest receiver (issue #8 item 3:
// "ranges beyond the highest sequence sent ... are rejected whole"); none
// of it is answered.
func TestNACKBeyondHighestSentRejectedWhole(t *testing.T) {
	c := newCore(t, Config{})
	for i := range 10 {
		c.Send(0, []byte{byte(i)}, int64(i+1))
	}
	drain(t, c)
	c.Handle(nackFor(t, packet.Range{First: 5, Len: 2}, packet.Range{First: 100, Len: 1000}), rcvAddr, int64(time.Second))
	if got := drain(t, c); len(got) != 0 {
		t.Fatalf("answered with %d packets", len(got))
	}
}

// TestReportEchoNeverSentGivesNoRTT: a REPORT echoing a timestamp newer
// than any DATA the sender has sent (a lie: "echoed timestamps from the
// future", issue #8 item 5) must not yield an RTT sample; here it would
// drive the RTT to 1 µs against a true minimum of 10 ms.
func TestReportEchoNeverSentGivesNoRTT(t *testing.T) {
	c := newCore(t, Config{})
	c.Send(0, []byte("a"), 1*ms)
	drain(t, c)
	rep := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xabc},
		Report: packet.Report{EchoTimestamp: 1 * ms, EchoHoldNanos: 0}}
	c.Handle(encode(t, &rep), rcvAddr, 11*ms) // honest: 10 ms
	rep.Report.EchoTimestamp = 50*ms - 1000   // never sent: the newest DATA is at 1 ms
	c.Handle(encode(t, &rep), rcvAddr, 50*ms)
	if st := c.Stats().RTT; st.Samples != 1 || st.MinNanos != 10*ms {
		t.Fatalf("RTT after a report echoing a time never sent: %+v", st)
	}
}

// TestSpoofedNACKAmplification: NACKs from an address the sender has never
// validated (here one that is not its receiver) are answered to that
// address. Issue #8 item 3: until validated, at most 3× the bytes received
// from it.
func TestSpoofedNACKAmplification(t *testing.T) {
	c := newCore(t, Config{})
	payload := make([]byte, 1200)
	now := int64(time.Second)
	for i := range 200 {
		c.Send(0, payload, now+int64(i))
	}
	drain(t, c)
	spoofed := fuzzAddrs[1]
	received, sent := 0, 0
	for i := range 100 {
		n := nackFor(t, packet.Range{First: uint64(2 * i), Len: 1})
		received += len(n)
		c.Handle(n, spoofed, now+int64(i)*ms)
		if b := c.Outbox().Take(); b != nil {
			for _, d := range b.Datagrams() {
				if d.Addr == spoofed {
					sent += len(d.Data)
				}
			}
			c.Outbox().Give(b)
		}
	}
	if sent > 3*received {
		t.Fatalf("%d bytes sent to an unvalidated address that sent %d", sent, received)
	}
}

// TestNACKFloodResendsOncePerSuppression: 10 000 NACKs a second for the
// same sequences resend each at most once per suppression time (at least
// 1 ms, half the RTT once measured), however many ask.
func TestNACKFloodResendsOncePerSuppression(t *testing.T) {
	c := newCore(t, Config{})
	for i := range 20 {
		c.Send(0, []byte{byte(i)}, int64(i+1))
	}
	drain(t, c)
	// An RTT of 20 ms: suppression 10 ms.
	rep := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xabc}, Report: packet.Report{EchoTimestamp: 20, EchoHoldNanos: 0}}
	c.Handle(encode(t, &rep), rcvAddr, 20+20*ms)
	n := nackFor(t, packet.Range{First: 3, Len: 4})
	start := int64(time.Second)
	const flood = 10_000
	for i := range flood {
		c.Handle(n, rcvAddr, start+int64(i)*100_000) // every 0.1 ms for 1 s
	}
	resent := 0
	for _, p := range drain(t, c) {
		if p.Kind == packet.KindData && p.Flags&packet.FlagRetransmit != 0 {
			resent++
		}
	}
	// 4 sequences, once per 10 ms over 1 s: at most 4·100 (+4 at the edge).
	if st := c.Stats(); resent > 404 || resent < 4 || st.Retransmits != uint64(resent) || st.NACKs != flood {
		t.Fatalf("%d resent for %d NACKs of 4 sequences; stats %+v", resent, flood, st)
	}
}

// TestRetransmitBufferBoundedAndAnswered: the retransmit buffer keeps at
// most RetransmitPackets packets; NACKs for evicted ones are answered
// "unavailable" (counted), not resent.
func TestRetransmitBufferBoundedAndAnswered(t *testing.T) {
	c := newCore(t, Config{RetransmitPackets: 64})
	for i := range 1000 {
		c.Send(0, []byte{byte(i)}, int64(i+1))
		if i%100 == 0 {
			drain(t, c)
		}
	}
	drain(t, c)
	if st := c.streams[0].retained.Stats(); st.Retained != 64 || st.EvictedCapacity != 1000-64 {
		t.Fatalf("retained %+v", st)
	}
	if got := c.Stats().Streams[0].RetransmitEvictedCapacity; got != 1000-64 {
		t.Fatalf("Stats says %d evicted for capacity", got)
	}
	c.Handle(nackFor(t, packet.Range{First: 10, Len: 5}), rcvAddr, 2000)
	got := drain(t, c)
	if len(got) != 1 || got[0].Flags != packet.FlagUnavailable || got[0].Ranges[0] != (packet.Range{First: 10, Len: 5}) {
		t.Fatalf("answer %+v", got)
	}
	if st := c.Stats(); st.Unavailable != 1 || st.Retransmits != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRetransmitBudgetThrottles: retransmissions are capped at a share of
// the stream's send rate (with a floor); NACKs beyond it are counted as
// throttled. The test sends at 10 MB/s without asking the pacer, so the
// pacer is off: its own share for retransmissions would hold them back
// first.
func TestRetransmitBudgetThrottles(t *testing.T) {
	c := newCore(t, Config{RetransmitShare: 10, RetransmitPackets: 4096, DisableCongestionControl: true})
	payload := make([]byte, 1000)
	now := int64(0)
	for i := range 4000 { // 4000 packets over 400 ms
		now = int64(i) * 100_000
		c.Send(0, payload, now)
		if i%500 == 0 {
			drain(t, c)
		}
	}
	drain(t, c)
	// Ask for everything, in NACKs of 64 ranges of one sequence each.
	for base := uint64(0); base < 4000; base += 128 {
		rs := make([]packet.Range, 0, 64)
		for j := uint64(0); j < 64 && base+2*j < 4000; j++ {
			rs = append(rs, packet.Range{First: base + 2*j, Len: 1})
		}
		c.Handle(provenNACK(t, c, rs...), rcvAddr, now+ms)
		drain(t, c)
	}
	st := c.Stats()
	if st.Throttled == 0 || st.Retransmits == 0 || st.Retransmits+st.Throttled != 2000 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("2000 sequences asked at once: %d resent (%d bytes), %d throttled", st.Retransmits, st.RetransmitBytes, st.Throttled)
}

// TestRoomCountsOpeningHeartbeat: Room(n) promises that a payload of n
// bytes fits; on a stream's first Send the opening HEARTBEAT is queued too,
// so Room must count it, or Send fails right after Room said yes (found by
// FuzzSenderCore, seed crash_room_new_stream).
func TestRoomCountsOpeningHeartbeat(t *testing.T) {
	c := newCore(t, Config{QueuePackets: 2})
	if err := c.Send(0, nil, 1); err != nil { // HEARTBEAT + DATA: full
		t.Fatal(err)
	}
	c.Outbox().Give(c.Outbox().Take())
	c.Send(0, nil, 2) // one datagram left
	if c.Room(10) {
		if err := c.Send(1, make([]byte, 10), 3); err != nil {
			t.Fatalf("Room(10) said yes, Send on a new stream: %v", err)
		}
	}
}

// TestOpeningHeartbeatNotLostWhenQueueFull: a stream's opening HEARTBEAT
// tells the receiver where the stream starts, so that losing its first
// messages is seen as a gap and repaired. If the queue is full when the
// stream's first Send comes, the HEARTBEAT must still go before its first
// DATA once there is room.
func TestOpeningHeartbeatNotLostWhenQueueFull(t *testing.T) {
	c := newCore(t, Config{QueuePackets: 8})
	for i := 0; ; i++ {
		if err := c.Send(0, []byte{byte(i)}, int64(i+1)); err != nil {
			break // full: 1 HEARTBEAT + 7 DATA
		}
	}
	if err := c.Send(1, []byte("first"), 100); err == nil {
		t.Fatal("Send on a full queue succeeded")
	}
	drain(t, c)
	if err := c.Send(1, []byte("first"), 200); err != nil {
		t.Fatal(err)
	}
	pkts := drain(t, c)
	if len(pkts) == 0 || pkts[0].Kind != packet.KindHeartbeat || pkts[0].Stream != 1 {
		t.Fatalf("stream 1 starts with %+v, not its opening HEARTBEAT", pkts)
	}
}
