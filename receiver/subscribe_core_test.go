package receiver

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// outOf takes what the core queued, decoded, with destinations.
func outOf(t *testing.T, c *Core) ([]packet.Packet, []netip.AddrPort) {
	t.Helper()
	b := c.Outbox().Take()
	if b == nil {
		return nil, nil
	}
	defer c.Outbox().Give(b)
	var ps []packet.Packet
	var to []netip.AddrPort
	for _, d := range b.Datagrams() {
		var p packet.Packet
		if err := p.Parse(d.Data); err != nil {
			t.Fatal(err)
		}
		ps, to = append(ps, p), append(to, d.Addr)
	}
	return ps, to
}

func subPkt(t *testing.T, kind packet.Kind, flags packet.Flags, sub packet.Subscription) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: kind, Flags: flags, Session: 7}, Subscription: sub}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSubscriptionClient runs the subscriber's side with a fake clock: it
// asks at once and again with back-off while no TOKEN comes; echoes a
// TOKEN from the sender naming its nonce (not one from elsewhere or for
// another nonce), then renews every second; leaves with a GOODBYE
// carrying the token; a GOODBYE from the sender ends the subscription
// with its reason.
func TestSubscriptionClient(t *testing.T) {
	to := addr(1)
	c := newCore(t, Config{Subscribe: to.String()})
	ms := int64(time.Millisecond)
	c.Tick(0)
	ps, dst := outOf(t, c)
	if len(ps) != 1 || dst[0] != to || ps[0].Kind != packet.KindSubscribe || ps[0].Flags != 0 {
		t.Fatalf("first ask: %+v to %v", ps, dst)
	}
	nonce := ps[0].Subscription.Nonce
	// No TOKEN: asks again after 100 ms, then 200 ms.
	if at, ok := c.NextTimer(); !ok || at > 100*ms {
		t.Fatalf("next timer %v", at)
	}
	c.Tick(100 * ms)
	c.Tick(250 * ms) // not yet: the next is due at 300 ms
	if ps, _ := outOf(t, c); len(ps) != 1 {
		t.Fatalf("%d asks by 250 ms, want 1 more", len(ps))
	}
	tok := packet.Subscription{Nonce: nonce, TokenTime: 12345, TokenMAC: [16]byte{1, 2, 3}}
	// From another address, or for another nonce: ignored.
	c.Handle(subPkt(t, packet.KindToken, packet.FlagToken, tok), addr(2), 260*ms)
	other := tok
	other.Nonce++
	c.Handle(subPkt(t, packet.KindToken, packet.FlagToken, other), to, 260*ms)
	if ps, _ := outOf(t, c); len(ps) != 0 || c.Stats().Subscription.ByeIgnored != 2 {
		t.Fatalf("answered a stray TOKEN: %+v", ps)
	}
	c.Handle(subPkt(t, packet.KindToken, packet.FlagToken, tok), to, 270*ms)
	ps, _ = outOf(t, c)
	if len(ps) != 1 || ps[0].Kind != packet.KindSubscribe || ps[0].Flags != packet.FlagToken || ps[0].Subscription != tok {
		t.Fatalf("echo %+v", ps)
	}
	// Renewal a second later.
	c.Tick(270*ms + int64(SubscribeRenew))
	if ps, _ := outOf(t, c); len(ps) != 1 || ps[0].Kind != packet.KindSubscribe {
		t.Fatalf("renewal %+v", ps)
	}
	// Leave: a GOODBYE with the token; nothing more after it.
	c.Leave()
	ps, dst = outOf(t, c)
	if len(ps) != 1 || dst[0] != to || ps[0].Kind != packet.KindGoodbye || ps[0].Flags != packet.FlagToken ||
		ps[0].Subscription.Nonce != nonce || ps[0].Subscription.TokenMAC != tok.TokenMAC || ps[0].Subscription.Reason != packet.ReasonLeaving {
		t.Fatalf("goodbye %+v", ps)
	}
	c.Tick(10 * int64(time.Second))
	if ps, _ := outOf(t, c); len(ps) != 0 {
		t.Fatalf("sent after leaving: %+v", ps)
	}
	if c.SubscriptionEnded() != nil {
		t.Fatal("leaving is not the sender ending it")
	}

	// The sender drops a second subscriber as too slow.
	c = newCore(t, Config{Subscribe: to.String()})
	c.Tick(0)
	ps, _ = outOf(t, c)
	bye := packet.Subscription{Nonce: ps[0].Subscription.Nonce, Reason: packet.ReasonSlow}
	c.Handle(subPkt(t, packet.KindGoodbye, 0, bye), to, ms)
	var e *SubscriptionEndedError
	if err := c.SubscriptionEnded(); !errors.As(err, &e) || e.Reason != packet.ReasonSlow || !errors.Is(err, ErrSubscriptionEnded) {
		t.Fatalf("ended: %v", err)
	}
	if st := c.Stats().Subscription; !st.Ended || st.EndReason != packet.ReasonSlow {
		t.Fatalf("stats %+v", st)
	}
	if _, ok := c.subscribeTimer(); ok {
		t.Fatal("still asking after the sender ended it")
	}
}

// TestSealedSubscriptionClient: with a key the subscriber takes the
// sender's TOKEN in clear, echoes it flagged packet.FlagAuth with a MAC
// under the pre-shared key (valid for the key, not for another), leaves
// with an authenticated GOODBYE; a GOODBYE in clear ends the subscription
// only before data has come (a sender with no room), never after.
func TestSealedSubscriptionClient(t *testing.T) {
	to := addr(1)
	psk := bytes.Repeat([]byte{0x42}, seal.KeyLen)
	key, err := seal.NewKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	c := newCore(t, Config{Subscribe: to.String(), Key: psk})
	ms := int64(time.Millisecond)
	c.Tick(0)
	ps, _ := outOf(t, c)
	if len(ps) != 1 || ps[0].Kind != packet.KindSubscribe || ps[0].Flags != 0 {
		t.Fatalf("first ask: %+v", ps)
	}
	nonce := ps[0].Subscription.Nonce
	tok := packet.Subscription{Nonce: nonce, TokenTime: 12345, TokenMAC: [16]byte{1, 2, 3}}
	c.Handle(subPkt(t, packet.KindToken, packet.FlagToken, tok), to, ms)
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatal("no echo")
	}
	echo := bytes.Clone(b.Datagrams()[0].Data)
	c.Outbox().Give(b)
	var p packet.Packet
	if err := p.Parse(echo); err != nil || p.Flags != packet.FlagToken|packet.FlagAuth || p.Subscription.TokenMAC != tok.TokenMAC {
		t.Fatalf("echo %+v %v", p, err)
	}
	if !key.NewHandshaker(nil).CheckSubscription(echo) {
		t.Fatal("the echo's MAC does not verify under the key")
	}
	other, _ := seal.NewKey(bytes.Repeat([]byte{0x43}, seal.KeyLen))
	if other.NewHandshaker(nil).CheckSubscription(echo) {
		t.Fatal("the echo's MAC verifies under another key")
	}
	// Data came (the subscriber is admitted): a GOODBYE in clear, as an
	// attacker who saw the nonce could send, ends nothing.
	c.sub.stats.Admitted = true
	c.Handle(subPkt(t, packet.KindGoodbye, 0, packet.Subscription{Nonce: nonce, Reason: packet.ReasonSlow}), to, 2*ms)
	if c.SubscriptionEnded() != nil || c.Stats().Subscription.ByeIgnored != 1 {
		t.Fatal("a GOODBYE in clear ended an admitted sealed subscription")
	}
	c.Leave()
	b = c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatal("no GOODBYE")
	}
	bye := bytes.Clone(b.Datagrams()[0].Data)
	c.Outbox().Give(b)
	if err := p.Parse(bye); err != nil || p.Kind != packet.KindGoodbye || p.Flags != packet.FlagToken|packet.FlagAuth || !key.NewHandshaker(nil).CheckSubscription(bye) {
		t.Fatalf("GOODBYE %+v %v", p, err)
	}

	// Before any data, a GOODBYE in clear (no room) ends it.
	c = newCore(t, Config{Subscribe: to.String(), Key: psk})
	c.Tick(0)
	ps, _ = outOf(t, c)
	c.Handle(subPkt(t, packet.KindGoodbye, 0, packet.Subscription{Nonce: ps[0].Subscription.Nonce, Reason: packet.ReasonFull}), to, ms)
	var e *SubscriptionEndedError
	if err := c.SubscriptionEnded(); !errors.As(err, &e) || e.Reason != packet.ReasonFull {
		t.Fatalf("ended: %v", err)
	}
}

// TestSubscribeConfig: a multicast Listen, or a Subscribe that is no
// unicast address is refused.
func TestSubscribeConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Subscribe: "127.0.0.1:9000", Listen: "239.1.2.3:9000"},
		{Subscribe: "239.1.2.3:9000"},
		{Subscribe: "127.0.0.1:0"},
	} {
		if _, err := NewCore(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
