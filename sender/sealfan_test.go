package sender

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// farEnd is one receiver of a sealed fan-out sender, as far as the
// handshake and the sealing go: it answers HELLOs (a new handshake each)
// and opens what it is sent under its own keys.
type farEnd struct {
	addr     netip.AddrPort
	hs       *seal.Handshaker
	sealer   *seal.Sealer
	opener   *seal.Opener
	tag      uint32
	mute     bool // answers no HELLO
	got      []packet.Packet
	welcomes int
}

func newFarEnd(t testing.TB, addr netip.AddrPort, psk []byte) *farEnd {
	t.Helper()
	return &farEnd{addr: addr, hs: testKey(t, psk).NewHandshaker(nil)}
}

// seal encodes and seals p as this receiver's feedback.
func (f *farEnd) seal(t testing.TB, p *packet.Packet) []byte {
	t.Helper()
	b, err := p.AppendTo(make([]byte, 0, p.EncodedLen()+seal.ToSender.Overhead()))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = f.sealer.SealInPlace(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange delivers what c queued to the far ends (by address), answers
// HELLOs with WELCOMEs handed back to c at now, and repeats until c
// queues nothing more. Every sealed datagram must open under the keys of
// the far end it is addressed to; plain ones (TOKEN, GOODBYE) are parsed.
// It returns the datagrams sent to addresses no far end has.
func exchange(t testing.TB, c *Core, ends []*farEnd, now int64) (others []sent) {
	t.Helper()
	byAddr := map[netip.AddrPort]*farEnd{}
	for _, f := range ends {
		byAddr[f.addr] = f
	}
	for range 10 {
		b := c.Outbox().Take()
		if b == nil {
			return others
		}
		type reply struct {
			b    []byte
			from netip.AddrPort
		}
		var replies []reply
		for _, d := range b.Datagrams() {
			f := byAddr[d.Addr]
			var p packet.Packet
			perr := p.Parse(d.Data)
			if f == nil {
				if perr == nil {
					others = append(others, sent{to: d.Addr, p: p, n: len(d.Data)})
				}
				continue
			}
			if perr == nil {
				f.got = append(f.got, p)
				continue
			}
			if h, _ := packet.PeekHeader(d.Data); h.Kind == packet.KindHello {
				if f.mute {
					continue
				}
				welcome, tr, err := f.hs.Respond(nil, d.Data)
				if err != nil {
					t.Fatalf("HELLO to %v: %v", d.Addr, err)
				}
				f.welcomes++
				f.tag = tr.Tag()
				if f.sealer, err = tr.NewSealer(seal.Params{Session: 0xabc, Dir: seal.ToSender}, 0); err != nil {
					t.Fatal(err)
				}
				if f.opener, err = tr.NewOpener(seal.Params{Session: 0xabc, Dir: seal.ToReceiver}); err != nil {
					t.Fatal(err)
				}
				replies = append(replies, reply{welcome, f.addr})
				continue
			}
			if f.opener == nil {
				t.Fatalf("sealed datagram to %v before its handshake", d.Addr)
			}
			body, _, err := f.opener.Open(nil, d.Data)
			if err != nil {
				t.Fatalf("datagram to %v does not open under its keys: %v", d.Addr, err)
			}
			h, _ := packet.PeekHeader(d.Data)
			if err := p.ParseBody(h, bytes.Clone(body)); err != nil {
				t.Fatal(err)
			}
			f.got = append(f.got, p)
		}
		c.Outbox().Give(b)
		for _, r := range replies {
			c.Handle(r.b, r.from, now)
		}
	}
	t.Fatal("the exchange does not settle")
	return nil
}

// kinds counts f's packets of kind k (retransmissions included).
func (f *farEnd) kinds(k packet.Kind) int {
	n := 0
	for i := range f.got {
		if f.got[i].Kind == k {
			n++
		}
	}
	return n
}

// TestSealedFanoutKeysPerDestination: with a key and three destinations,
// each gets a handshake of its own (its own keys: another's cannot open
// its packets), every DATA, PARITY and HEARTBEAT reaches each sealed under
// its keys, a NACK sealed by one is answered to it alone under its keys,
// and feedback under no destination's keys moves nothing.
func TestSealedFanoutKeysPerDestination(t *testing.T) {
	to := []netip.AddrPort{addrN(1), addrN(2), addrN(3)}
	c := fanCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECFixed, K: 2, M: 1}}, to...)
	var ends []*farEnd
	for _, a := range to {
		ends = append(ends, newFarEnd(t, a, testPSK))
	}
	c.Tick(0)
	exchange(t, c, ends, ms)
	tags := map[uint32]bool{}
	for _, f := range ends {
		if f.welcomes != 1 || f.kinds(packet.KindConfirm) != 1 {
			t.Fatalf("%v: %d handshakes, %d CONFIRMs", f.addr, f.welcomes, f.kinds(packet.KindConfirm))
		}
		tags[f.tag] = true
	}
	if len(tags) != 3 {
		t.Fatalf("key tags %v: want three handshakes with three key sets", tags)
	}
	for i := range 4 {
		if err := c.Send(0, []byte{byte(i)}, int64(2+i)*ms); err != nil {
			t.Fatal(err)
		}
	}
	c.Outbox().BeforeTake()
	// Peek at one copy before the exchange: it opens under its own
	// destination's keys only.
	cur := c.Outbox().Current()
	for _, d := range cur.Datagrams() {
		for _, f := range ends {
			if f.addr != d.Addr {
				if _, _, err := f.opener.Open(nil, d.Data); err == nil {
					t.Fatalf("a copy for %v opens under %v's keys", d.Addr, f.addr)
				}
			}
		}
	}
	exchange(t, c, ends, 10*ms)
	for _, f := range ends {
		if f.kinds(packet.KindData) != 4 || f.kinds(packet.KindParity) != 2 || f.kinds(packet.KindHeartbeat) == 0 {
			t.Fatalf("%v got %d DATA, %d PARITY, %d HEARTBEAT", f.addr, f.kinds(packet.KindData), f.kinds(packet.KindParity), f.kinds(packet.KindHeartbeat))
		}
	}

	// A NACK from the second, sealed under its keys, even from another
	// source address: answered to the second only, under its keys.
	nack := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: 0xabc}, Ranges: []packet.Range{{First: 1, Len: 1}}}
	c.Handle(ends[1].seal(t, &nack), addrN(9), 20*ms)
	before := []int{ends[0].kinds(packet.KindData), ends[1].kinds(packet.KindData), ends[2].kinds(packet.KindData)}
	if others := exchange(t, c, ends, 21*ms); len(others) != 0 {
		t.Fatalf("answers to elsewhere: %+v", others)
	}
	if ends[0].kinds(packet.KindData) != before[0] || ends[2].kinds(packet.KindData) != before[2] || ends[1].kinds(packet.KindData) != before[1]+1 {
		t.Fatalf("the repair went to the wrong receivers: before %v", before)
	}

	// Feedback under another key file's keys, or forged, moves nothing.
	stranger := newFarEnd(t, addrN(1), bytes.Repeat([]byte{7}, seal.KeyLen))
	sc := fanCore(t, Config{Key: bytes.Repeat([]byte{7}, seal.KeyLen)}, addrN(1))
	sc.Tick(0)
	exchange(t, sc, []*farEnd{stranger}, ms)
	st0 := c.Stats()
	c.Handle(stranger.seal(t, &nack), addrN(1), 30*ms)
	forged := ends[0].seal(t, &nack)
	forged[len(forged)-1] ^= 1
	c.Handle(forged, addrN(1), 30*ms)
	if others := exchange(t, c, ends, 31*ms); len(others) != 0 || ends[0].kinds(packet.KindData) != before[0] {
		t.Fatal("forged feedback was answered")
	}
	st := c.Stats()
	if st.NoKeys != st0.NoKeys+1 || st.AuthFailed != st0.AuthFailed+1 || st.NACKs != st0.NACKs || st.Handshakes != 3 || st.KeysPending != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSealedFanoutLateDestination: a destination whose handshake
// completes after the others' gets nothing meanwhile (counted), then the
// stream opened at the oldest DATA retained and that DATA resent under its
// keys; one that never answers holds back nobody.
func TestSealedFanoutLateDestination(t *testing.T) {
	to := []netip.AddrPort{addrN(1), addrN(2), addrN(3)}
	c := fanCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECOff}}, to...)
	ends := []*farEnd{newFarEnd(t, to[0], testPSK), newFarEnd(t, to[1], testPSK), newFarEnd(t, to[2], testPSK)}
	ends[1].mute, ends[2].mute = true, true
	for i := range 5 {
		if err := c.Send(0, []byte{byte(i)}, int64(1+i)*ms); err != nil {
			t.Fatal(err)
		}
	}
	exchange(t, c, ends, 10*ms) // held until the first handshake, then released to it
	if n := ends[0].kinds(packet.KindData); n != 5 {
		t.Fatalf("first destination got %d DATA of the 5 held", n)
	}
	for i := range 5 {
		if err := c.Send(0, []byte{byte(10 + i)}, int64(20+i)*ms); err != nil {
			t.Fatal(err)
		}
	}
	exchange(t, c, ends, 30*ms)
	if st := c.Stats(); st.NotKeyed == 0 || st.KeysPending != 2 || ends[0].kinds(packet.KindData) != 10 {
		t.Fatalf("with two destinations handshaking: %d DATA to the first, stats %+v", ends[0].kinds(packet.KindData), st)
	}
	ends[1].mute = false
	c.Tick(time.Second.Nanoseconds()) // the HELLO goes again
	exchange(t, c, ends, time.Second.Nanoseconds())
	var hb *packet.Packet
	for i := range ends[1].got {
		if p := &ends[1].got[i]; p.Kind == packet.KindHeartbeat && hb == nil {
			hb = p
		}
	}
	if hb == nil || hb.Heartbeat.Start != 0 || hb.Heartbeat.Next != 0 {
		t.Fatalf("late destination's opening HEARTBEAT %+v", hb)
	}
	if n := ends[1].kinds(packet.KindData); n != 10 || ends[1].got[len(ends[1].got)-1].Flags&packet.FlagRetransmit == 0 {
		t.Fatalf("late destination got %d of the 10 DATA retained", n)
	}
	if st := c.Stats(); st.Resent != 10 {
		t.Fatalf("resent %d", st.Resent)
	}
	if st := c.Stats(); st.KeysPending != 1 || st.HandshakesExpired != 0 {
		t.Fatalf("a silent Config.To destination keeps trying: %+v", st)
	}
}

// authed encodes a SUBSCRIBE echo or a GOODBYE with tok, flagged
// packet.FlagAuth and authenticated under psk (nil: flagged but the MAC
// left zero).
func authed(t testing.TB, kind packet.Kind, nonce uint64, tok packet.Subscription, psk []byte) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: kind, Flags: packet.FlagToken | packet.FlagAuth},
		Subscription: packet.Subscription{Nonce: nonce, TokenTime: tok.TokenTime, TokenMAC: tok.TokenMAC}}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if psk != nil {
		if err := testKey(t, psk).NewHandshaker(nil).AuthSubscription(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// tokenFor runs the first half of the subscription exchange.
func tokenFor(t testing.TB, c *Core, from netip.AddrPort, nonce uint64, now int64) packet.Subscription {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: packet.KindSubscribe}, Subscription: packet.Subscription{Nonce: nonce}}
	b, _ := p.AppendTo(nil)
	c.Handle(b, from, now)
	ob := c.Outbox().Take()
	if ob == nil {
		t.Fatal("no TOKEN")
	}
	defer c.Outbox().Give(ob)
	var tok packet.Packet
	for _, d := range ob.Datagrams() {
		if d.Addr == from && tok.Parse(d.Data) == nil && tok.Kind == packet.KindToken {
			return tok.Subscription
		}
	}
	t.Fatal("no TOKEN to the subscriber")
	return packet.Subscription{}
}

// TestSealedSubscription: with a key, an echo without a valid MAC under
// the pre-shared key admits nobody and starts no handshake; an
// authenticated one makes the subscriber a destination with a handshake
// of its own, which gets the stream from the live edge once keyed; a
// GOODBYE with the token but without the MAC (an attacker on the path)
// ends nothing, an authentic one does; a subscriber whose handshake never
// completes is dropped after the timeout and leaves nothing behind.
func TestSealedSubscription(t *testing.T) {
	c := fanCore(t, Config{Key: testPSK, Listen: listenAddr.String(), ReceiverTimeout: time.Hour, FEC: FECConfig{Mode: FECOff}})
	sub := newFarEnd(t, addrN(1), testPSK)
	if err := c.Send(0, []byte("early"), ms); err != nil { // nobody to hold it for
		t.Fatal(err)
	}
	c.Outbox().BeforeTake()
	if b := c.Outbox().Take(); b != nil {
		t.Fatalf("%d datagrams with no subscriber", b.Len())
	}
	if st := c.Stats(); st.MessagesNoDestination != 1 || st.NoDestination != 2 { // the opening HEARTBEAT and the DATA
		t.Fatalf("sent to nobody: %d messages, %d datagrams", st.MessagesNoDestination, st.NoDestination)
	}

	tok := tokenFor(t, c, sub.addr, 42, 2*ms)
	c.Handle(authed(t, packet.KindSubscribe, 42, tok, nil), sub.addr, 3*ms)                                  // MAC missing
	c.Handle(authed(t, packet.KindSubscribe, 42, tok, bytes.Repeat([]byte{9}, seal.KeyLen)), sub.addr, 3*ms) // another key
	c.Handle(subscribe(t, 42, &tok), sub.addr, 3*ms)                                                         // no FlagAuth
	if got := take(t, c); len(got) != 0 || len(c.Destinations()) != 0 {
		t.Fatalf("unauthenticated echoes: sent %+v, destinations %v", got, c.Destinations())
	}
	if st := c.Stats(); st.Subscribers.Unauthenticated != 3 || st.Subscribers.Joined != 0 || st.HandshakeAttempts != 0 {
		t.Fatalf("stats %+v", st.Subscribers)
	}

	c.Handle(authed(t, packet.KindSubscribe, 42, tok, testPSK), sub.addr, 4*ms)
	exchange(t, c, []*farEnd{sub}, 5*ms)
	if sub.welcomes != 1 || sub.kinds(packet.KindConfirm) != 1 || sub.kinds(packet.KindHeartbeat) != 1 {
		t.Fatalf("after admission: %d handshakes, %+v", sub.welcomes, sub.got)
	}
	if hb := sub.got[len(sub.got)-1]; hb.Kind != packet.KindHeartbeat || hb.Heartbeat.Start != 1 || hb.Heartbeat.Next != 1 {
		t.Fatalf("anchor %+v: want the live edge (1)", hb)
	}
	if err := c.Send(0, []byte("live"), 6*ms); err != nil {
		t.Fatal(err)
	}
	exchange(t, c, []*farEnd{sub}, 7*ms)
	if sub.kinds(packet.KindData) != 1 {
		t.Fatalf("subscriber got %d DATA", sub.kinds(packet.KindData))
	}

	// An on-path attacker saw the token: its GOODBYE (no MAC) is refused.
	c.Handle(goodbyeFrom(t, packet.Subscription{Nonce: 42, TokenTime: tok.TokenTime, TokenMAC: tok.TokenMAC}), sub.addr, 8*ms)
	if len(c.Destinations()) != 1 {
		t.Fatal("a GOODBYE without the key's MAC ended a sealed subscription")
	}

	// A second subscriber that never completes its handshake.
	ghost := newFarEnd(t, addrN(2), testPSK)
	ghost.mute = true
	gtok := tokenFor(t, c, ghost.addr, 7, 10*ms)
	c.Handle(authed(t, packet.KindSubscribe, 7, gtok, testPSK), ghost.addr, 11*ms)
	exchange(t, c, []*farEnd{sub, ghost}, 11*ms)
	if st := c.Stats(); st.KeysPending != 1 || len(c.Destinations()) != 2 {
		t.Fatalf("pending: %+v", st)
	}
	for now := 11 * ms; now < 11*ms+pendingHandshakeTimeout+200*ms; now += 100 * ms {
		c.Tick(now)
		exchange(t, c, []*farEnd{sub, ghost}, now)
	}
	if st := c.Stats(); st.HandshakesExpired != 1 || st.KeysPending != 0 || len(c.Destinations()) != 1 || len(c.sec.dests) != 1 || st.Subscribers.Subscribed != 1 {
		t.Fatalf("after the handshake timeout: destinations %v, stats %+v", c.Destinations(), st)
	}

	// The subscriber's own GOODBYE, authenticated, ends it at once; the
	// sender keeps no key state for it.
	c.Handle(authed(t, packet.KindGoodbye, 42, tok, testPSK), sub.addr, 2*time.Second.Nanoseconds())
	if len(c.Destinations()) != 0 || len(c.sec.dests) != 0 || len(c.sec.addrs) != 0 {
		t.Fatalf("after the GOODBYE: %v", c.Destinations())
	}
	if st := c.Stats(); st.Subscribers.Left != 1 {
		t.Fatalf("stats %+v", st.Subscribers)
	}
}

// TestSealedSubscriberDroppedGetsSealedGoodbye: the sender's GOODBYE to a
// subscriber with keys goes sealed under them.
func TestSealedSubscriberDroppedGetsSealedGoodbye(t *testing.T) {
	c := fanCore(t, Config{Key: testPSK, Listen: listenAddr.String(), FEC: FECConfig{Mode: FECOff}})
	sub := newFarEnd(t, addrN(1), testPSK)
	tok := tokenFor(t, c, sub.addr, 42, ms)
	c.Handle(authed(t, packet.KindSubscribe, 42, tok, testPSK), sub.addr, 2*ms)
	exchange(t, c, []*farEnd{sub}, 3*ms)
	c.Goodbye()
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatal("no GOODBYE")
	}
	var p packet.Packet
	if err := p.Parse(b.Datagrams()[0].Data); err != packet.ErrSealed {
		t.Fatalf("GOODBYE to a keyed subscriber in clear (%v)", err)
	}
	body, _, err := sub.opener.Open(nil, b.Datagrams()[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := packet.PeekHeader(b.Datagrams()[0].Data)
	if err := p.ParseBody(h, body); err != nil || p.Kind != packet.KindGoodbye || p.Subscription.Nonce != 42 || p.Subscription.Reason != packet.ReasonClosing {
		t.Fatalf("GOODBYE %+v %v", p, err)
	}
}

// sealedFanout returns a sealed fan-out core with n keyed destinations
// and the far ends.
func sealedFanout(t testing.TB, n int) (*Core, []*farEnd) {
	t.Helper()
	var to []netip.AddrPort
	var ends []*farEnd
	for i := range n {
		to = append(to, addrN(i+1))
		ends = append(ends, newFarEnd(t, addrN(i+1), testPSK))
	}
	c, err := NewFanoutCore(Config{Key: testPSK, FEC: FECConfig{Mode: FECOff}, QueuePackets: 1 << 12, DisablePacking: true}, 0xabc, to)
	if err != nil {
		t.Fatal(err)
	}
	c.Tick(0)
	exchange(t, c, ends, ms)
	if st := c.Stats(); st.Handshakes != uint64(n) {
		t.Fatalf("%d handshakes of %d", st.Handshakes, n)
	}
	return c, ends
}

// TestSealedFanoutSendAllocatesNothing: with keys for 16 destinations a
// message (sealed 16 times) costs no allocation in steady state.
func TestSealedFanoutSendAllocatesNothing(t *testing.T) {
	c, _ := sealedFanout(t, 16)
	payload := make([]byte, 200)
	now := 2 * ms
	allocs := testing.AllocsPerRun(500, func() {
		now += 100_000
		if err := c.Send(0, payload, now); err != nil {
			t.Fatal(err)
		}
		if b := c.Outbox().Take(); b != nil {
			c.Outbox().Give(b)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per sealed fan-out message", allocs)
	}
}

// BenchmarkSealedFanoutSend measures a 200-byte message sent sealed to 1,
// 10 and 50 destinations, each under its own keys, against the same
// without a key (plain: one copy of the bytes for all): the sealing is
// per destination, so its cost grows with them (ns/op is per message).
func BenchmarkSealedFanoutSend(b *testing.B) {
	for _, keyed := range []bool{true, false} {
		for _, n := range []int{1, 10, 50} {
			b.Run(fmt.Sprintf("key=%v/dests=%d", keyed, n), func(b *testing.B) {
				var c *Core
				if keyed {
					c, _ = sealedFanout(b, n)
				} else {
					var to []netip.AddrPort
					for i := range n {
						to = append(to, addrN(i+1))
					}
					var err error
					if c, err = NewFanoutCore(Config{FEC: FECConfig{Mode: FECOff}, QueuePackets: 1 << 12, DisablePacking: true}, 0xabc, to); err != nil {
						b.Fatal(err)
					}
				}
				payload := make([]byte, 200)
				now := 2 * ms
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					now += 10_000
					if err := c.Send(0, payload, now); err != nil {
						b.Fatal(err)
					}
					if ob := c.Outbox().Take(); ob != nil {
						c.Outbox().Give(ob)
					}
				}
			})
		}
	}
}
