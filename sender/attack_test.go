package sender

import (
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
)

// pair runs a sender Core and a real receiver Core in process on a fake
// clock. The forward link drops the first transmission of every dropEvery-th
// DATA (0: none), so that the real receiver has losses to NACK.
type pair struct {
	t         *testing.T
	snd       *Core
	rcv       *receiver.Core
	sndAddr   netip.AddrPort
	now       int64
	dropEvery uint64
	feedback  bool // the receiver's feedback reaches the sender
	delivered int
	// rtxToRcv counts retransmitted bytes the sender queued to the
	// receiver's address while it handled a spoofed datagram.
	rtxToRcv uint64
}

func newPair(t *testing.T, dropEvery uint64) *pair {
	rcv, err := receiver.NewCore(receiver.Config{Mode: receiver.ModeUnordered})
	if err != nil {
		t.Fatal(err)
	}
	return &pair{t: t, snd: newCore(t, Config{FEC: FECConfig{Mode: FECOff}}), rcv: rcv,
		sndAddr: netip.MustParseAddrPort("127.0.0.1:5000"), now: int64(time.Second), dropEvery: dropEvery, feedback: true}
}

func (p *pair) exchange() {
	var q packet.Packet
	for moved := true; moved; {
		moved = false
		if b := p.snd.Outbox().Take(); b != nil {
			for _, d := range b.Datagrams() {
				if q.Parse(d.Data) == nil && q.Kind == packet.KindData && q.Flags&packet.FlagRetransmit == 0 &&
					p.dropEvery > 0 && q.Seq%p.dropEvery == p.dropEvery-1 {
					continue // lost on the way
				}
				p.rcv.Handle(d.Data, p.sndAddr, p.now)
				moved = true
			}
			p.snd.Outbox().Give(b)
		}
		if b := p.rcv.Outbox().Take(); b != nil {
			for _, d := range b.Datagrams() {
				if p.feedback {
					p.snd.Handle(d.Data, rcvAddr, p.now)
					moved = true
				}
			}
			p.rcv.Outbox().Give(b)
		}
		for _, ok := p.rcv.Pop(); ok; _, ok = p.rcv.Pop() {
			p.delivered++
		}
	}
}

func (p *pair) step(d time.Duration) {
	p.now += int64(d)
	p.rcv.Tick(p.now)
	p.snd.Tick(p.now)
	p.exchange()
}

// spoof hands the sender a datagram that claims to come from the
// receiver's address and counts the retransmitted bytes it draws.
func (p *pair) spoof(b []byte) {
	before := p.snd.Stats().RetransmitBytes
	p.snd.Handle(b, rcvAddr, p.now)
	p.rtxToRcv += p.snd.Stats().RetransmitBytes - before
	p.exchange()
}

// TestSpoofedNACKFloodStaysWithinAmplification is issue #19's NACK
// attack without a key: NACKs that read the session id from the clear
// header and claim the receiver's own source address. The retransmissions
// they draw stay within 3x the bytes the spoofer sent (the real
// receiver's proven feedback earns no credit for them), while the real
// receiver's proven NACKs keep repairing its losses: it gets every
// message.
func TestSpoofedNACKFloodStaysWithinAmplification(t *testing.T) {
	p := newPair(t, 20) // 5% of first transmissions lost
	payload := make([]byte, 1000)
	var spoofed uint64
	for i := range 2000 {
		if err := p.snd.Send(0, payload, p.now); err != nil {
			t.Fatal(err)
		}
		p.step(time.Millisecond)
		if i%8 == 7 { // 250 spoofed NACKs, each asking for the last 64 messages
			next := p.snd.streams[0].next
			nack := encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: p.snd.Session()},
				Ranges: []packet.Range{{First: next - 64, Len: 64}}})
			spoofed += uint64(len(nack))
			p.spoof(nack)
		}
	}
	for range 300 {
		p.step(time.Millisecond)
	}
	ps, _ := p.snd.peers.Peer(rcvAddr)
	st := p.snd.Stats()
	t.Logf("spoofer sent %d B in 250 NACKs and drew %d B of retransmissions (%.2fx); the address sent %d B in all; "+
		"NACKs %d (unproven %d), retransmissions %d (%d B), blocked %d; delivered %d of 2000",
		spoofed, p.rtxToRcv, float64(p.rtxToRcv)/float64(spoofed), ps.Received, st.NACKs, st.NACKsUnproven,
		st.Retransmits, st.RetransmitBytes, st.RetransmitsBlocked, p.delivered)
	// The real receiver's NACKs all carry proofs here (it has DATA from the
	// start), so everything unproven is the spoofer's.
	if p.rtxToRcv > 3*spoofed {
		t.Errorf("spoofed NACKs drew %d B, over 3x the %d B they carried", p.rtxToRcv, spoofed)
	}
	if st.NACKsUnproven < 250 || st.RetransmitsBlocked == 0 {
		t.Errorf("spoofed NACKs not held back: %+v", st)
	}
	if p.delivered != 2000 {
		t.Errorf("real receiver got %d of 2000", p.delivered)
	}
}

// TestSpoofedReportsDoNotMoveRTT: REPORTs forged with the receiver's
// address, echoing a send time from the stream's past (which an
// attacker can guess to within its range, not to the nanosecond of the
// sequence it names), give no RTT sample, do not feed the pacer and are
// counted.
func TestSpoofedReportsDoNotMoveRTT(t *testing.T) {
	p := newPair(t, 0)
	payload := make([]byte, 200)
	for range 500 {
		if err := p.snd.Send(0, payload, p.now); err != nil {
			t.Fatal(err)
		}
		p.step(time.Millisecond)
	}
	rtt := p.snd.Stats().RTT
	pace := p.snd.Stats().Pacing
	if rtt.Samples == 0 {
		t.Fatal("no RTT measured from the real receiver")
	}
	p.feedback = false // only the forgeries reach the sender now
	s := p.snd.streams[0]
	for i := range 50 { // 50/s for a second
		p.step(20 * time.Millisecond)
		r := packet.Report{HighestSeq: s.next - 1, Received: s.next - s.start, EchoTimestamp: s.firstTs + int64(i)}
		p.spoof(encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: p.snd.Session()}, Report: r}))
	}
	after := p.snd.Stats()
	t.Logf("RTT %.3f ms (%d samples) before 50 forged REPORTs, %.3f ms (%d samples) after; %d unproven",
		float64(rtt.SmoothedNanos)/1e6, rtt.Samples, float64(after.RTT.SmoothedNanos)/1e6, after.RTT.Samples, after.ReportsUnproven)
	if after.RTT != rtt || after.ReportsUnproven != 50 || after.Pacing.DeliveryPerSec != pace.DeliveryPerSec {
		t.Errorf("forged REPORTs moved the sender: RTT %+v -> %+v, delivery %v -> %v, unproven %d",
			rtt, after.RTT, pace.DeliveryPerSec, after.Pacing.DeliveryPerSec, after.ReportsUnproven)
	}
}

// TestMalformedFeedbackAllocatesNothing: junk and feedback for another
// session cost the sender no allocation, logging at its default.
func TestMalformedFeedbackAllocatesNothing(t *testing.T) {
	c := newCore(t, Config{})
	if err := c.Send(0, []byte("x"), 1); err != nil {
		t.Fatal(err)
	}
	foreign := encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: 0x999}, Ranges: []packet.Range{{First: 0, Len: 1}}})
	corrupt := append([]byte(nil), foreign...)
	corrupt[len(corrupt)-1] ^= 1
	in := [][]byte{foreign, corrupt, []byte("junk"), foreign[:30]}
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		c.Handle(in[i%len(in)], rcvAddr, int64(2+i))
		i++
	}); n != 0 {
		t.Fatalf("%.2f allocations per malformed datagram", n)
	}
}
