package sender

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

// sent is one datagram a core queued, decoded, with its destination.
type sent struct {
	to netip.AddrPort
	p  packet.Packet
	n  int // its length
}

// take takes what the core queued and decodes it.
func take(t *testing.T, c *Core) []sent {
	t.Helper()
	b := c.Outbox().Take()
	if b == nil {
		return nil
	}
	defer c.Outbox().Give(b)
	var out []sent
	for _, d := range b.Datagrams() {
		var p packet.Packet
		if err := p.Parse(d.Data); err != nil {
			t.Fatalf("core queued an invalid datagram: %v", err)
		}
		p.Payload = append([]byte(nil), p.Payload...)
		out = append(out, sent{to: d.Addr, p: p, n: len(d.Data)})
	}
	return out
}

func fanCore(t *testing.T, cfg Config, to ...netip.AddrPort) *Core {
	t.Helper()
	cfg.DisablePacking = true
	c, err := NewFanoutCore(cfg, 0xabc, to)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFanoutSendsEachPacketToEveryDestination: with three destinations
// every HEARTBEAT, DATA and PARITY goes to each of the three, from one
// copy of its bytes in the batch; a NACK is answered only to the receiver
// that sent it.
func TestFanoutSendsEachPacketToEveryDestination(t *testing.T) {
	to := []netip.AddrPort{addrN(1), addrN(2), addrN(3)}
	c := fanCore(t, Config{FEC: FECConfig{Mode: FECFixed, K: 2, M: 1}}, to...)
	for i := range 4 {
		if err := c.Send(0, []byte{byte(i)}, int64(i+1)*ms); err != nil {
			t.Fatal(err)
		}
	}
	b := c.Outbox().Take()
	// HEARTBEAT, 4 DATA, 2 PARITY: 7 packets, 3 copies each; bytes once.
	if b.Len() != 21 {
		t.Fatalf("%d datagrams, want 21", b.Len())
	}
	once := 0
	dgs := b.Datagrams()
	for i := 0; i < len(dgs); i += 3 {
		for k := range 3 {
			d := dgs[i+k]
			if d.Addr != to[k] || &d.Data[0] != &dgs[i].Data[0] {
				t.Fatalf("datagram %d: to %v, shares the first copy: %v", i+k, d.Addr, &d.Data[0] == &dgs[i].Data[0])
			}
		}
		once += len(dgs[i].Data)
	}
	if b.Bytes() != once {
		t.Fatalf("batch holds %d bytes; one copy of each packet is %d", b.Bytes(), once)
	}
	c.Outbox().Give(b)
	// A proven NACK from the second destination is answered to it alone.
	c.Handle(provenNACK(t, c, packet.Range{First: 1, Len: 1}), to[1], 10*ms)
	got := take(t, c)
	if len(got) != 1 || got[0].to != to[1] || got[0].p.Kind != packet.KindData || got[0].p.Flags&packet.FlagRetransmit == 0 {
		t.Fatalf("repair %+v", got)
	}
	if st := c.Stats(); st.Subscribers.Destinations != 3 || st.Subscribers.Subscribed != 0 || st.Packets != 4 {
		t.Fatalf("stats %+v", st.Subscribers)
	}
}

// TestFanoutDestinationErrors: a duplicate, a group in a list (with a key
// too), and no destination at all are refused, each with its reason.
func TestFanoutDestinationErrors(t *testing.T) {
	group := netip.MustParseAddrPort("239.1.2.3:9000")
	key := []byte("0123456789abcdef0123456789abcdef")
	for _, c := range []struct {
		name string
		cfg  Config
		to   []netip.AddrPort
		want error
	}{
		{"duplicate", Config{}, []netip.AddrPort{addrN(1), addrN(2), addrN(1)}, ErrDuplicateDestination},
		{"group in a list", Config{}, []netip.AddrPort{addrN(1), group}, ErrFanoutMulticast},
		{"group with listen", Config{Listen: ":9000"}, []netip.AddrPort{group}, ErrFanoutMulticast},
		{"key with a group in a list", Config{Key: key}, []netip.AddrPort{addrN(1), group}, ErrFanoutMulticast},
		{"nothing", Config{}, nil, ErrConfig},
		{"over MaxReceivers", Config{MaxReceivers: 2}, []netip.AddrPort{addrN(1), addrN(2), addrN(3)}, ErrConfig},
		{"local and listen", Config{Local: ":1", Listen: ":2"}, []netip.AddrPort{addrN(1)}, ErrConfig},
	} {
		_, err := NewFanoutCore(c.cfg, 1, c.to)
		if !errors.Is(err, c.want) || !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if l, err := SplitDestinations(" a:1, b:2 "); err != nil || len(l) != 2 || l[0] != "a:1" || l[1] != "b:2" {
		t.Fatalf("split: %q %v", l, err)
	}
	if _, err := SplitDestinations("a:1,,b:2"); !errors.Is(err, ErrConfig) {
		t.Fatalf("empty item: %v", err)
	}
}

// TestFanoutSendAllocatesNothing: with 16 destinations a message costs no
// allocation in steady state.
func TestFanoutSendAllocatesNothing(t *testing.T) {
	var to []netip.AddrPort
	for i := range 16 {
		to = append(to, addrN(i+1))
	}
	c, err := NewFanoutCore(Config{QueuePackets: 1 << 12, QueueBytes: 16 << 20}, 0xabc, to)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 200)
	_ = c.Send(0, payload, 1)
	now := int64(1)
	if n := testing.AllocsPerRun(1000, func() {
		now++
		if err := c.Send(0, payload, now); err != nil {
			if b := c.Outbox().Take(); b != nil {
				c.Outbox().Give(b)
			}
		}
	}); n != 0 {
		t.Fatalf("Send to 16 destinations allocates %.1f times per message", n)
	}
}

var listenAddr = netip.MustParseAddrPort("127.0.0.1:9000")

// subscribe encodes a SUBSCRIBE (with tok: echoing it).
func subscribe(t *testing.T, nonce uint64, tok *packet.Subscription) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: packet.KindSubscribe}, Subscription: packet.Subscription{Nonce: nonce}}
	if tok != nil {
		p.Flags = packet.FlagToken
		p.Subscription.TokenTime, p.Subscription.TokenMAC = tok.TokenTime, tok.TokenMAC
	}
	return encode(t, &p)
}

// join runs the subscription exchange for from at now and returns the
// token it was admitted with.
func join(t *testing.T, c *Core, from netip.AddrPort, nonce uint64, now int64) packet.Subscription {
	t.Helper()
	c.Handle(subscribe(t, nonce, nil), from, now)
	got := take(t, c)
	if len(got) != 1 || got[0].to != from || got[0].p.Kind != packet.KindToken || got[0].p.Subscription.Nonce != nonce || got[0].p.Session != 0xabc {
		t.Fatalf("answer to SUBSCRIBE: %+v", got)
	}
	tok := got[0].p.Subscription
	c.Handle(subscribe(t, nonce, &tok), from, now+ms)
	return tok
}

func goodbyeFrom(t *testing.T, tok packet.Subscription) []byte {
	t.Helper()
	return encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindGoodbye, Flags: packet.FlagToken}, Subscription: tok})
}

// dataTo counts the DATA datagrams in got per destination.
func dataTo(got []sent) map[netip.AddrPort]int {
	m := map[netip.AddrPort]int{}
	for _, s := range got {
		if s.p.Kind == packet.KindData {
			m[s.to]++
		}
	}
	return m
}

// TestSubscription runs the state machine: a SUBSCRIBE gets a TOKEN and
// nothing else; the echo admits the subscriber, which then gets the
// stream; a forged or expired or another address's token admits nobody;
// a GOODBYE with the token removes it at once, one without does nothing;
// a silent subscriber expires; a static destination stays.
func TestSubscription(t *testing.T) {
	static := addrN(100)
	c := fanCore(t, Config{Listen: listenAddr.String(), ReceiverTimeout: time.Second}, static)
	a, b := addrN(1), addrN(2)
	// Before anyone joins, data goes to the static destination only.
	_ = c.Send(0, []byte("x"), 1*ms)
	if m := dataTo(take(t, c)); len(m) != 1 || m[static] != 1 {
		t.Fatalf("before joining: %v", m)
	}
	tokA := join(t, c, a, 11, 2*ms)
	_ = c.Send(0, []byte("y"), 4*ms)
	if m := dataTo(take(t, c)); m[a] != 1 || m[static] != 1 || len(m) != 2 {
		t.Fatalf("after a joined: %v", m)
	}
	// b echoes a's token (a different address), a forged one, an expired one.
	c.Handle(subscribe(t, 11, &tokA), b, 5*ms)
	forged := tokA
	forged.TokenMAC[0] ^= 1
	c.Handle(subscribe(t, 11, &forged), a, 5*ms)
	c.Handle(subscribe(t, 22, nil), b, 6*ms)
	old := take(t, c)[0].p.Subscription
	c.Handle(subscribe(t, 22, &old), b, 6*ms+int64(TokenLifetime)+1)
	st := c.Stats().Subscribers
	if st.Joined != 1 || st.BadTokens != 3 || st.Subscribed != 1 || st.Destinations != 2 || !st.Listening {
		t.Fatalf("after bad tokens: %+v", st)
	}
	// A GOODBYE without a token, or from b, is ignored; a's own removes it.
	c.Handle(encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindGoodbye}, Subscription: packet.Subscription{Nonce: 11}}), a, 7*ms)
	c.Handle(goodbyeFrom(t, tokA), b, 7*ms)
	if st := c.Stats().Subscribers; st.Subscribed != 1 || st.ByesIgnored != 2 {
		t.Fatalf("after ignored goodbyes: %+v", st)
	}
	c.Handle(goodbyeFrom(t, tokA), a, 8*ms)
	_ = c.Send(0, []byte("z"), 9*ms)
	if m := dataTo(take(t, c)); m[a] != 0 || m[static] != 1 {
		t.Fatalf("after a left: %v", m)
	}
	// b joins and goes silent: it expires after ReceiverTimeout; the
	// static destination does not.
	join(t, c, b, 33, 10*ms)
	if at, ok := c.NextTimer(); !ok || at > 11*ms+int64(time.Second)+1 {
		t.Fatalf("next timer %v %v", at, ok)
	}
	c.Tick(12*ms + int64(time.Second))
	take(t, c)
	st = c.Stats().Subscribers
	if st.Joined != 2 || st.Left != 1 || st.Expired != 1 || st.Subscribed != 0 || st.Destinations != 1 {
		t.Fatalf("after expiry: %+v", st)
	}
	if d := c.Destinations(); len(d) != 1 || d[0] != static {
		t.Fatalf("destinations %v", d)
	}
}

// TestSubscribeAmplification: a flood of SUBSCRIBEs from one forged
// address gets at most three times its bytes back, keeps no state for the
// address, and past the join rate gets nothing.
func TestSubscribeAmplification(t *testing.T) {
	c := fanCore(t, Config{Listen: listenAddr.String(), JoinRate: 50})
	victim := addrN(7)
	in, out := 0, 0
	for i := range 1000 {
		b := subscribe(t, uint64(i), nil)
		in += len(b)
		c.Handle(b, victim, int64(i)*int64(time.Millisecond)/10) // 10 000 per second for 0.1 s
		for _, s := range take(t, c) {
			if s.to != victim || s.p.Kind != packet.KindToken {
				t.Fatalf("answered %v to %v", s.p.Kind, s.to)
			}
			out += s.n
		}
	}
	st := c.Stats()
	if out > 3*in || st.Subscribers.TokensSent > 55 || st.Subscribers.JoinsLimited < 945 {
		t.Fatalf("%d bytes in, %d out; %+v", in, out, st.Subscribers)
	}
	if uint64(out) != st.Subscribers.TokenBytes {
		t.Fatalf("token bytes %d, counted %d", out, st.Subscribers.TokenBytes)
	}
	if _, ok := c.peers.Peer(victim); ok || st.Subscribers.Subscribed != 0 || len(st.Receivers) != 0 {
		t.Fatalf("state kept for an unvalidated address: %+v", st.Subscribers)
	}
}

// TestSubscribersBounded: past MaxReceivers a valid echo is refused with
// a GOODBYE saying so, and counted.
func TestSubscribersBounded(t *testing.T) {
	c := fanCore(t, Config{Listen: listenAddr.String(), MaxReceivers: 2})
	join(t, c, addrN(1), 1, ms)
	join(t, c, addrN(2), 2, ms)
	take(t, c)
	c.Handle(subscribe(t, 3, nil), addrN(3), 2*ms)
	tok := take(t, c)[0].p.Subscription
	c.Handle(subscribe(t, 3, &tok), addrN(3), 3*ms)
	got := take(t, c)
	if len(got) != 1 || got[0].to != addrN(3) || got[0].p.Kind != packet.KindGoodbye || got[0].p.Subscription.Reason != packet.ReasonFull {
		t.Fatalf("answer past the bound: %+v", got)
	}
	if st := c.Stats().Subscribers; st.Subscribed != 2 || st.RefusedFull != 1 {
		t.Fatalf("%+v", st)
	}
}

// TestSlowReceiverDisconnect: with SlowDisconnect, a subscriber that keeps
// asking for sequences no longer buffered for SlowReceiverTimeout is
// dropped and told (GOODBYE, ReasonSlow); with the default policy it only
// loses them, counted per receiver; one whose losses stop does not add up.
func TestSlowReceiverDisconnect(t *testing.T) {
	for _, policy := range []SlowPolicy{SlowLose, SlowDisconnect} {
		t.Run(policy.String(), func(t *testing.T) {
			c := fanCore(t, Config{Listen: listenAddr.String(), SlowReceiver: policy, RetransmitMaxAge: 100 * time.Millisecond,
				ReceiverTimeout: time.Hour, HeartbeatInterval: time.Hour, MaxHeartbeatInterval: time.Hour})
			slow, fast := addrN(1), addrN(2)
			join(t, c, slow, 1, 0)
			join(t, c, fast, 2, 0)
			now := int64(10 * ms)
			dropped := int64(0)
			for i := 0; now < int64(4*time.Second) && dropped == 0; i++ {
				now += 50 * ms
				_ = c.Send(0, []byte{byte(i)}, now)
				take(t, c)
				if i < 3 {
					continue
				}
				// The slow one asks for the sequence sent 150 ms ago: gone.
				c.Handle(provenNACK(t, c, packet.Range{First: uint64(i - 3), Len: 1}), slow, now)
				for _, s := range take(t, c) {
					if s.p.Kind == packet.KindGoodbye {
						if s.to != slow || s.p.Subscription.Reason != packet.ReasonSlow || s.p.Subscription.Nonce != 1 {
							t.Fatalf("goodbye %+v to %v", s.p, s.to)
						}
						dropped = now
					}
				}
			}
			st := c.Stats()
			var unavailable uint64
			for _, r := range st.Receivers {
				if r.Addr == slow.String() {
					unavailable = r.Unavailable
				}
			}
			if unavailable == 0 {
				t.Fatalf("no unavailable sequences counted for the slow receiver: %+v", st.Receivers)
			}
			switch policy {
			case SlowLose:
				if dropped != 0 || st.Subscribers.Subscribed != 2 || st.Subscribers.DroppedSlow != 0 {
					t.Fatalf("dropped under SlowLose: %+v", st.Subscribers)
				}
			case SlowDisconnect:
				// Losses from about 160 ms on; dropped 2 s later.
				if dropped < int64(2*time.Second) || dropped > int64(2400*time.Millisecond) ||
					st.Subscribers.DroppedSlow != 1 || st.Subscribers.Subscribed != 1 {
					t.Fatalf("dropped at %v: %+v", time.Duration(dropped), st.Subscribers)
				}
				if d := c.Destinations(); len(d) != 1 || d[0] != fast {
					t.Fatalf("destinations %v", d)
				}
			}
		})
	}
	// Losses more than a second apart do not add up to a slow receiver.
	c := fanCore(t, Config{Listen: listenAddr.String(), SlowReceiver: SlowDisconnect})
	join(t, c, addrN(1), 1, 0)
	for i := range 10 {
		c.unrepairable(addrN(1), int64(i)*1100*ms)
	}
	if st := c.Stats().Subscribers; st.DroppedSlow != 0 {
		t.Fatalf("sparse losses dropped it: %+v", st)
	}
}

// TestFanoutRepairsEachAsker: with unicast fan-out a repair reaches only
// the receiver that asked, so two receivers asking for one sequence at
// once both get it (a multicast sender would send it once, to the group).
func TestFanoutRepairsEachAsker(t *testing.T) {
	to := []netip.AddrPort{addrN(1), addrN(2)}
	c := fanCore(t, Config{}, to...)
	for i := range 3 {
		_ = c.Send(0, []byte{byte(i)}, int64(i+1)*ms)
	}
	take(t, c)
	c.Handle(provenNACK(t, c, packet.Range{First: 1, Len: 1}), to[0], 10*ms)
	c.Handle(provenNACK(t, c, packet.Range{First: 1, Len: 1}), to[1], 10*ms)
	got := take(t, c)
	if len(got) != 2 || got[0].to != to[0] || got[1].to != to[1] || got[0].p.Seq != 1 || got[1].p.Seq != 1 {
		st := c.Stats()
		t.Fatalf("%d repairs; suppressed %d throttled %d blocked %d", len(got), st.Suppressed, st.Throttled, st.RetransmitsBlocked)
	}
}

// TestRenewalsSpendNoJoinRate: a subscriber renews whatever the join
// rate, which new addresses have spent.
func TestRenewalsSpendNoJoinRate(t *testing.T) {
	c := fanCore(t, Config{Listen: listenAddr.String(), JoinRate: 1})
	join(t, c, addrN(1), 1, 0)
	c.Handle(subscribe(t, 2, nil), addrN(2), ms) // refills nothing at 1/s: limited
	c.Handle(subscribe(t, 1, nil), addrN(1), ms)
	got := take(t, c)
	if len(got) != 1 || got[0].to != addrN(1) || got[0].p.Kind != packet.KindToken {
		t.Fatalf("answers %+v", got)
	}
	if st := c.Stats().Subscribers; st.JoinsLimited != 1 {
		t.Fatalf("%+v", st)
	}
}

// TestFanoutMessageTooLargeForEveryCopy: a message whose datagrams,
// copied to every destination, could never fit the queue is refused with
// ErrTooLarge, not left waiting for room forever; one that fits goes.
func TestFanoutMessageTooLargeForEveryCopy(t *testing.T) {
	var to []netip.AddrPort
	for i := range 300 {
		to = append(to, addrN(i+1))
	}
	// 300 destinations x 1024 places is over the 2^18 cap: 873 places a copy.
	c := fanCore(t, Config{QueuePackets: 1024, FEC: FECConfig{Mode: FECOff}, MaxReceivers: 1000}, to...)
	big := make([]byte, 900*c.DataRoom())
	if err := c.Send(0, big, 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a message of 900+ datagrams to 300 destinations: %v", err)
	}
	if err := c.Send(0, make([]byte, 100*c.DataRoom()), 2); err != nil {
		t.Fatalf("a message of 100 datagrams: %v", err)
	}
}
