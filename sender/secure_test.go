package sender

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

var testPSK = bytes.Repeat([]byte{0x5a}, seal.KeyLen)

func testKey(t testing.TB, psk []byte) *seal.Key {
	t.Helper()
	k, err := seal.NewKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// receiverSide seals feedback and opens data as a receiver of session
// 0xabc would, under the keys of a handshake with a sender core.
type receiverSide struct {
	hs     *seal.Handshaker
	sealer *seal.Sealer
	opener *seal.Opener
}

// newReceiverSide answers c's HELLO (c's first Tick at 0 sends it) and
// takes the CONFIRM that follows, so that c's outbox is empty and c has
// traffic keys when it returns.
func newReceiverSide(t testing.TB, c *Core, psk []byte) *receiverSide {
	t.Helper()
	r := &receiverSide{hs: testKey(t, psk).NewHandshaker(nil)}
	c.Tick(0)
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatal("no HELLO")
	}
	welcome, tr, err := r.hs.Respond(nil, b.Datagrams()[0].Data)
	c.Outbox().Give(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.sealer, err = tr.NewSealer(seal.Params{Session: 0xabc, Dir: seal.ToSender}, 1); err != nil {
		t.Fatal(err)
	}
	if r.opener, err = tr.NewOpener(seal.Params{Session: 0xabc, Dir: seal.ToReceiver}); err != nil {
		t.Fatal(err)
	}
	c.Handle(welcome, rcvAddr, 0)
	if pkts, _ := r.open(t, c); len(pkts) != 1 || pkts[0].Kind != packet.KindConfirm {
		t.Fatalf("after the WELCOME: %+v", pkts)
	}
	return r
}

func (r *receiverSide) seal(t *testing.T, p *packet.Packet) []byte {
	t.Helper()
	b := make([]byte, 0, p.EncodedLen()+seal.ToSender.Overhead())
	b, err := p.AppendTo(b)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = r.sealer.SealInPlace(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// open opens every datagram the core queued, returning the packets and
// the counters they were sealed with.
func (r *receiverSide) open(t testing.TB, c *Core) ([]packet.Packet, []uint64) {
	t.Helper()
	b := c.Outbox().Take()
	if b == nil {
		return nil, nil
	}
	defer c.Outbox().Give(b)
	var pkts []packet.Packet
	var ctrs []uint64
	for _, d := range b.Datagrams() {
		var p packet.Packet
		if err := p.Parse(d.Data); err != packet.ErrSealed {
			t.Fatalf("queued datagram not sealed: Parse says %v", err)
		}
		body, ctr, err := r.opener.Open(nil, d.Data)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		h, _ := packet.PeekHeader(d.Data)
		if err := p.ParseBody(h, body); err != nil {
			t.Fatalf("sealed body: %v", err)
		}
		pkts = append(pkts, p)
		ctrs = append(ctrs, ctr)
	}
	return pkts, ctrs
}

func TestSealedDataAndFeedback(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECOff}})
	r := newReceiverSide(t, c, testPSK)
	if got, want := c.MaxPayload(), DefaultMaxMessage; got != want {
		t.Fatalf("MaxPayload %d, want %d", got, want)
	}
	if err := c.Send(0, make([]byte, c.MaxPayload()+1), 1); err != ErrTooLarge {
		t.Fatalf("oversized payload: %v", err)
	}
	for i := range 3 {
		if err := c.Send(0, []byte{'a' + byte(i)}, int64(1_000_000+i)); err != nil {
			t.Fatal(err)
		}
	}
	pkts, ctrs := r.open(t, c)
	if len(pkts) != 4 || pkts[0].Kind != packet.KindHeartbeat || pkts[2].Seq != 1 || string(msgOf(&pkts[2])) != "b" {
		t.Fatalf("sealed stream %+v", pkts)
	}

	// A sealed NACK is answered by a retransmission sealed anew: same
	// plaintext, flagged, under a counter never used before.
	nack := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: 0xabc}, Ranges: []packet.Range{{First: 1, Len: 1}}}
	c.Handle(r.seal(t, &nack), rcvAddr, 2_000_000)
	again, rctr := r.open(t, c)
	if len(again) != 1 || again[0].Seq != 1 || again[0].Flags != packet.FlagRetransmit|packet.FlagMessages || string(msgOf(&again[0])) != "b" {
		t.Fatalf("retransmission %+v", again)
	}
	for _, used := range ctrs {
		if rctr[0] == used {
			t.Fatalf("retransmission reuses counter %d", used)
		}
	}

	rep := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc},
		Report: packet.Report{EchoTimestamp: 1_000_000, Received: 3},
	}
	sealedRep := r.seal(t, &rep)
	c.Handle(sealedRep, rcvAddr, 3_000_000)
	c.Handle(sealedRep, rcvAddr, 3_000_001) // replayed
	plain := encode(t, &rep)
	c.Handle(plain, rcvAddr, 3_000_002) // not sealed
	forged := bytes.Clone(r.seal(t, &rep))
	forged[len(forged)-1] ^= 1
	c.Handle(forged, rcvAddr, 3_000_003)
	other := newReceiverSide(t, newCore(t, Config{Key: bytes.Repeat([]byte{1}, seal.KeyLen)}), bytes.Repeat([]byte{1}, seal.KeyLen))
	c.Handle(other.seal(t, &rep), rcvAddr, 3_000_004)

	st := c.Stats()
	// RTT samples: the handshake's (0 here, so none) and the REPORT's.
	if st.Reports != 1 || st.Replayed != 1 || st.Unsealed != 1 || st.AuthFailed != 1 || st.NoKeys != 1 || st.RTT.Samples != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSealedRetransmissionAllocatesNothing(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECOff}})
	r := newReceiverSide(t, c, testPSK)
	payload := make([]byte, 200)
	now := int64(1)
	nack := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: 0xabc}, Ranges: []packet.Range{{First: 0, Len: 1}}}
	allocs := testing.AllocsPerRun(200, func() {
		now += int64(10 * time.Millisecond)
		_ = c.Send(0, payload, now)
		nack.Ranges[0].First = c.streams[0].next - 1
		c.Handle(r.seal(t, &nack), rcvAddr, now) // r.seal allocates; measured below without it
		if b := c.Outbox().Take(); b != nil {
			c.Outbox().Give(b)
		}
	})
	// r.seal allocates one buffer per call; the core must add nothing.
	if allocs > 1 {
		t.Fatalf("%.1f allocations per sealed send + NACK answer, want the test's own 1", allocs)
	}
	if st := c.Stats(); st.Retransmits < 200 {
		t.Fatalf("retransmits %d", st.Retransmits)
	}
}

func TestNACKBeyondHighestSentIsRejectedWhole(t *testing.T) {
	c := newCore(t, Config{})
	for i := range 5 {
		c.Send(0, []byte{byte(i)}, int64(i+1))
	}
	drain(t, c)
	c.Handle(nackFor(t, packet.Range{First: 1, Len: 1}, packet.Range{First: 4, Len: 2}), rcvAddr, 10)
	if got := drain(t, c); len(got) != 0 {
		t.Fatalf("NACK reaching past the highest sent answered with %d packets", len(got))
	}
	if st := c.Stats(); st.NACKsRejected != 1 || st.Retransmits != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A spoofed-source NACK flood: an attacker sends NACKs for real sequences
// with a victim's address as source. For 60 simulated seconds the sender
// may send the victim at most three times what it received from it.
func TestSpoofedNACKFloodIsBoundByAmplification(t *testing.T) {
	c := newCore(t, Config{FEC: FECConfig{Mode: FECOff}})
	victim := netip.MustParseAddrPort("192.0.2.7:4444")
	var received, sentVictim, sentReceiver int
	payload := make([]byte, 1000)
	for ms := range 60_000 {
		now := int64(ms+1) * int64(time.Millisecond)
		_ = c.Send(0, payload, now)
		if ms%10 == 0 { // 100 NACKs/s, each asking for the last 64 sequences
			next := c.streams[0].next
			n := nackFor(t, packet.Range{First: next - min(next, 64), Len: uint32(min(next, 64))})
			received += len(n)
			c.Handle(n, victim, now)
		}
		if b := c.Outbox().Take(); b != nil {
			for _, d := range b.Datagrams() {
				switch d.Addr {
				case victim:
					sentVictim += len(d.Data)
				case rcvAddr:
					sentReceiver += len(d.Data)
				default:
					t.Fatalf("datagram to %v", d.Addr)
				}
			}
			c.Outbox().Give(b)
		}
	}
	if sentVictim > 3*received {
		t.Fatalf("sent %d bytes to the unvalidated address, received %d from it (limit 3x)", sentVictim, received)
	}
	if sentVictim == 0 {
		t.Fatal("nothing sent to the spoofed address: the limit, not a blanket refusal, should bound it")
	}
	st := c.Stats()
	if st.RetransmitsBlocked == 0 || sentReceiver < 60_000*len(payload) {
		t.Fatalf("stats %+v, %d bytes to the receiver", st, sentReceiver)
	}
	t.Logf("victim: received %d B, sent %d B (%.2fx); %d retransmissions blocked", received, sentVictim,
		float64(sentVictim)/float64(received), st.RetransmitsBlocked)
}

// An authenticated NACK flood of 10 000 NACKs/s for the same sequences:
// each is resent at most once per round trip.
func TestAuthenticatedNACKFloodResendsOncePerRTT(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECOff}})
	r := newReceiverSide(t, c, testPSK)
	for i := range 10 {
		_ = c.Send(0, []byte{byte(i)}, int64(i+1)*int64(time.Millisecond))
	}
	// One REPORT sets the RTT to 20 ms.
	const rtt = 20 * time.Millisecond
	rep := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xabc}, Report: packet.Report{EchoTimestamp: int64(time.Millisecond)}}
	c.Handle(r.seal(t, &rep), rcvAddr, int64(time.Millisecond+rtt))
	r.open(t, c)
	start := int64(time.Millisecond + rtt)
	nack := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: 0xabc}, Ranges: []packet.Range{{First: 0, Len: 10}}}
	resent := map[uint64][]int64{}
	const flood = 500 * time.Millisecond                   // within the 1 s the buffer keeps data
	for i := range int(flood / (100 * time.Microsecond)) { // 10 000 NACKs/s
		now := start + int64(i)*int64(100*time.Microsecond)
		c.Handle(r.seal(t, &nack), rcvAddr, now)
		pkts, _ := r.open(t, c)
		for _, p := range pkts {
			if p.Kind != packet.KindData {
				t.Fatalf("answer %v %+v", p.Kind, p)
			}
			resent[p.Seq] = append(resent[p.Seq], now)
		}
	}
	for seq := range uint64(10) {
		at := resent[seq]
		if len(at) == 0 {
			t.Fatalf("sequence %d never resent", seq)
		}
		for i := 1; i < len(at); i++ {
			if gap := at[i] - at[i-1]; gap < int64(rtt) {
				t.Fatalf("sequence %d resent %v after the previous copy, within one RTT (%v)", seq, time.Duration(gap), rtt)
			}
		}
		if max := int(flood/rtt) + 1; len(at) > max {
			t.Fatalf("sequence %d resent %d times in %v", seq, len(at), flood)
		}
	}
}

// REPORTs with absurd figures cannot drive the RTT to zero or below,
// the FEC overhead over its ceiling, or the timers out of their bounds.
func TestLyingReportsAreClamped(t *testing.T) {
	c := newCore(t, Config{FEC: FECConfig{Mode: FECAuto, MaxOverhead: 0.3}})
	now := int64(time.Second)
	_ = c.Send(0, []byte("x"), now)
	drain(t, c)
	lies := []packet.Report{
		{EchoTimestamp: now + int64(time.Hour), IntervalLossPPM: packet.MaxLossPPM},       // from the future
		{EchoTimestamp: now, BurstMeanMilli: 1 << 31, IntervalLossPPM: packet.MaxLossPPM}, // huge bursts
		{EchoTimestamp: 1, EchoHoldNanos: 0, Lost: 1 << 62},                               // before the first send
		{EchoTimestamp: now, EchoHoldNanos: int64(time.Hour)},                             // hold longer than elapsed
	}
	for i, l := range lies {
		rep := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xabc}, Report: l}
		c.Handle(encode(t, &rep), rcvAddr, now+int64(i+1)*int64(time.Millisecond))
	}
	st := c.Stats()
	if st.RTT.Samples != 1 || st.RTT.MinNanos != 2*int64(time.Millisecond) {
		t.Fatalf("absurd echoes gave RTT samples: %+v (want only the honest 2 ms one)", st.RTT)
	}
	k, m, _ := c.streams[0].encoder.Params()
	if float64(m)/float64(k) > 0.3+1e-9 {
		t.Fatalf("FEC %d+%d over the 0.3 overhead ceiling after a 100%% loss report", k, m)
	}
}

// Feedback that comes back from another address than the configured one
// (a relay, a NAT) is answered within the amplification limit until a
// REPORT from it echoes the exact send time of the DATA it names.
func TestReportEchoValidatesAnotherAddress(t *testing.T) {
	c := newCore(t, Config{FEC: FECConfig{Mode: FECOff}})
	relay := netip.MustParseAddrPort("127.0.0.1:7777")
	payload := make([]byte, 1000)
	for i := range 20 {
		_ = c.Send(0, payload, int64(1_000_000+i))
	}
	drain(t, c)
	nack := nackFor(t, packet.Range{First: 0, Len: 10})
	c.Handle(nack, relay, 2_000_000)
	if st := c.Stats(); st.Retransmits != 0 || st.RetransmitsBlocked != 1 {
		t.Fatalf("unvalidated address got %d retransmissions of 1 kB for a %d B NACK", st.Retransmits, len(nack))
	}
	guess := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xabc},
		Report: packet.Report{HighestSeq: 19, EchoTimestamp: 1_000_018}} // wrong by 1 ns
	c.Handle(encode(t, &guess), relay, 3_000_000)
	if st := c.Stats(); st.AddressesValidated != 0 {
		t.Fatal("a REPORT with a guessed timestamp validated the address")
	}
	guess.Report.EchoTimestamp = 1_000_019
	c.Handle(encode(t, &guess), relay, 3_000_001)
	if st := c.Stats(); st.AddressesValidated != 1 {
		t.Fatalf("after a true echo: %+v", st)
	}
	// Validated, the address still gets no more than 3x for a NACK that
	// proves nothing (its source may be forged), and everything for one
	// that proves receipt.
	c.Handle(nackFor(t, packet.Range{First: 10, Len: 10}), relay, 4_000_000)
	ps, _ := c.peers.Peer(relay)
	st := c.Stats()
	if st.Retransmits == 10 || st.RetransmitBytes > 3*ps.Received || st.NACKsUnproven != 2 {
		t.Fatalf("an unproven NACK from a validated address drew %d bytes for %d received: %+v", st.RetransmitBytes, ps.Received, st)
	}
	// The proven NACK gets the rest: what the unproven one could not be
	// answered is not held back as recently resent.
	c.Handle(provenNACK(t, c, packet.Range{First: 10, Len: 10}), relay, 4_000_001)
	if st := c.Stats(); st.Retransmits != 10 {
		t.Fatalf("a proven NACK: %+v", st)
	}
}

// Before the handshake nothing but the HELLO leaves: what is sent is
// held, in order, up to its bound (then Send says ErrQueueFull), and goes
// out sealed, behind a CONFIRM, the moment the WELCOME arrives.
func TestHeldUntilHandshake(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECOff}})
	payload := make([]byte, 1000)
	sent := 0
	for ; sent < 10_000; sent++ {
		payload[0] = byte(sent)
		if err := c.Send(0, payload, int64(sent+1)); err != nil {
			if !errors.Is(err, ErrQueueFull) {
				t.Fatal(err)
			}
			break
		}
	}
	if sent == 0 || sent*(len(payload)+64) < heldBytes/2 || c.Room(len(payload)) {
		t.Fatalf("held %d messages of %d bytes before refusing; Room says %v", sent, len(payload), c.Room(len(payload)))
	}
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatalf("before the WELCOME the outbox holds %v datagrams, want the HELLO alone", b)
	}
	hello := bytes.Clone(b.Datagrams()[0].Data)
	c.Outbox().Give(b)
	if info, err := seal.Peek(hello); err != nil || info.Kind != packet.KindHello {
		t.Fatalf("first datagram %+v %v", info, err)
	}
	h := testKey(t, testPSK).NewHandshaker(nil)
	welcome, tr, err := h.Respond(nil, hello)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := tr.NewOpener(seal.Params{Session: 0xabc, Dir: seal.ToReceiver})
	c.Handle(welcome, rcvAddr, int64(time.Millisecond))
	var kinds []packet.Kind
	var seqs []uint64
	for b := c.Outbox().Take(); b != nil; b = c.Outbox().Take() {
		for _, d := range b.Datagrams() {
			body, _, err := o.Open(nil, d.Data)
			if err != nil {
				t.Fatalf("released datagram does not open: %v", err)
			}
			var p packet.Packet
			hd, _ := packet.PeekHeader(d.Data)
			if err := p.ParseBody(hd, body); err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, p.Kind)
			if p.Kind == packet.KindData {
				seqs = append(seqs, p.Seq)
			}
		}
		c.Outbox().Give(b)
		c.Tick(int64(time.Millisecond)) // what did not fit goes with the next Tick
	}
	if len(kinds) < 3 || kinds[0] != packet.KindConfirm || kinds[1] != packet.KindHeartbeat || kinds[len(kinds)-1] != packet.KindConfirm {
		t.Fatalf("released %d datagrams: first %v, last %v", len(kinds), kinds[:min(3, len(kinds))], kinds[len(kinds)-1])
	}
	if len(seqs) != sent {
		t.Fatalf("released %d of %d held messages", len(seqs), sent)
	}
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("held message %d released as sequence %d", i, s)
		}
	}
	if st := c.Stats(); st.Held != uint64(sent)+1 || st.Handshakes != 1 || st.HandshakeRTTNanos != int64(time.Millisecond)-1 {
		t.Fatalf("stats: held %d (want %d + the heartbeat), handshakes %d, rtt %d", st.Held, sent, st.Handshakes, st.HandshakeRTTNanos)
	}
}

// A RETRY starts a new handshake only when it is authentic, names the
// current keys and a counter already used, and no handshake is under way.
func TestRetryHandling(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECOff}})
	r := newReceiverSide(t, c, testPSK)
	for i := range 3 {
		_ = c.Send(0, []byte{byte(i)}, int64(i+1))
	}
	_, ctrs := r.open(t, c)
	tag := c.sec.dests[0].cur.tag
	k := testKey(t, testPSK)
	other := testKey(t, bytes.Repeat([]byte{9}, seal.KeyLen))
	forged := k.NewHandshaker(nil).AppendRetry(nil, 0xabc, tag, ctrs[0])
	forged[len(forged)-1] ^= 1
	for _, b := range [][]byte{
		forged,
		other.NewHandshaker(nil).AppendRetry(nil, 0xabc, tag, ctrs[0]),         // another key file
		k.NewHandshaker(nil).AppendRetry(nil, 0xabc, tag^1, ctrs[0]),           // other keys
		k.NewHandshaker(nil).AppendRetry(nil, 0xabc, tag, ctrs[len(ctrs)-1]+1), // a counter never used
		k.NewHandshaker(nil).AppendRetry(nil, 0xdef, tag, ctrs[0]),             // another session
	} {
		c.Handle(b, rcvAddr, 10)
	}
	st := c.Stats()
	// One RETRY under another key file is corruption until that key id
	// repeats (guard.MismatchRun): KeyMismatch or Corrupted, not both.
	if st.Rehandshakes != 0 || st.AuthFailed != 1 || st.KeyMismatch+st.Corrupted != 1 || st.RetriesIgnored != 2 || st.ForeignSession != 1 {
		t.Fatalf("bad RETRYs: %+v", st)
	}
	if b := c.Outbox().Take(); b != nil {
		t.Fatalf("bad RETRYs drew %d datagrams", b.Len())
	}
	good := k.NewHandshaker(nil).AppendRetry(nil, 0xabc, tag, ctrs[1])
	c.Handle(good, rcvAddr, 20)
	c.Handle(good, rcvAddr, 21) // again, mid-handshake: ignored
	st = c.Stats()
	if st.Rehandshakes != 1 || st.RetriesIgnored != 3 || st.HandshakeAttempts != 2 {
		t.Fatalf("good RETRY: %+v", st)
	}
	// Until the new handshake completes, packets are held, not sealed
	// under keys the receiver no longer has.
	_ = c.Send(0, []byte("after"), 30)
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatalf("after a RETRY: %v datagrams, want the new HELLO alone", b)
	}
	hello := bytes.Clone(b.Datagrams()[0].Data)
	if info, _ := seal.Peek(hello); info.Kind != packet.KindHello {
		t.Fatalf("after a RETRY the sender sent %v", info.Kind)
	}
	c.Outbox().Give(b)

	// The new handshake completes: CONFIRM, then the DATA sealed from the
	// RETRY's counter on (the receiver could open none of it) again,
	// flagged, under the new keys, then what was held, then a CONFIRM.
	welcome, tr, err := k.NewHandshaker(nil).Respond(nil, hello)
	if err != nil {
		t.Fatal(err)
	}
	r.opener, _ = tr.NewOpener(seal.Params{Session: 0xabc, Dir: seal.ToReceiver})
	c.Handle(welcome, rcvAddr, 40)
	pkts, _ := r.open(t, c)
	var got []string
	for _, p := range pkts {
		switch p.Kind {
		case packet.KindData:
			msgs, _ := messagesOf(t, &p)
			got = append(got, fmt.Sprintf("DATA %d %q rtx=%v", p.Seq, msgs, p.Flags&packet.FlagRetransmit != 0))
		default:
			got = append(got, p.Kind.String())
		}
	}
	want := []string{"CONFIRM", `DATA 0 ["\x00"] rtx=true`, `DATA 1 ["\x01"] rtx=true`, `DATA 2 ["\x02"] rtx=true`, `DATA 3 ["after"] rtx=false`, "CONFIRM"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the new handshake:\n got %q\nwant %q", got, want)
	}
	if st := c.Stats(); st.Resent != 3 {
		t.Fatalf("resent %d", st.Resent)
	}
}
