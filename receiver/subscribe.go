package receiver

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/telewire/telewire/packet"
)

// Subscription (Config.Subscribe): the receiver asks a sender that takes
// subscribers (sender.Config.Listen) for its stream, from its own socket.
// It sends a SUBSCRIBE with a random nonce; the sender answers with a
// TOKEN, which the receiver echoes at once (proving it receives at its
// address); the sender then streams to it. The receiver renews the
// subscription every SubscribeRenew (the same exchange), so that a
// sender that restarted takes it back and one that forgot it (its
// ReceiverTimeout passed) admits it again; while no TOKEN comes it asks
// again after 100 ms, doubling to SubscribeRenew. On Close it leaves with
// a GOODBYE carrying the token it was admitted with. A GOODBYE from the
// sender (dropped as too slow, sender closing, no room) ends the
// subscription: Recv returns a *SubscriptionEndedError once the messages
// delivered before it are taken.

// SubscribeRenew is how often a subscriber renews its subscription.
const SubscribeRenew = time.Second

// unansweredEchoes is how many TOKENs a subscriber echoes without data
// coming before it warns (once).
const unansweredEchoes = 3

// firstSubscribeRetry is the first wait for a TOKEN before asking again.
const firstSubscribeRetry = int64(100 * time.Millisecond)

// ErrSubscriptionEnded matches every *SubscriptionEndedError.
var ErrSubscriptionEnded = errors.New("receiver: the sender ended the subscription")

// SubscriptionEndedError is returned by Recv when the sender ended the
// subscription with a GOODBYE; Reason is the packet's (packet.ReasonSlow,
// ReasonClosing or ReasonFull). errors.Is matches ErrSubscriptionEnded.
type SubscriptionEndedError struct {
	Reason uint8
}

// Error implements error.
func (e *SubscriptionEndedError) Error() string {
	return fmt.Sprintf("%v: %s", ErrSubscriptionEnded, ReasonText(e.Reason))
}

// Unwrap returns ErrSubscriptionEnded.
func (e *SubscriptionEndedError) Unwrap() error { return ErrSubscriptionEnded }

// ReasonText says what a GOODBYE's reason means.
func ReasonText(r uint8) string {
	switch r {
	case packet.ReasonLeaving:
		return "the subscriber left"
	case packet.ReasonSlow:
		return "dropped by the sender: this receiver could not keep up (slow-receiver policy disconnect)"
	case packet.ReasonClosing:
		return "the sender closed"
	case packet.ReasonFull:
		return "refused: the sender has no room for another subscriber"
	}
	return fmt.Sprintf("reason %d", r)
}

// SubscriptionStats is a subscriber's side of its subscription (zero
// without Config.Subscribe).
type SubscriptionStats struct {
	To         string `json:"to"`          // the sender subscribed to
	Subscribes uint64 `json:"subscribes"`  // SUBSCRIBEs sent, asking and echoing
	Tokens     uint64 `json:"tokens"`      // TOKENs taken from the sender
	Admitted   bool   `json:"admitted"`    // a token was echoed and data came since
	Ended      bool   `json:"ended"`       // the sender ended it (EndReason), or the receiver left
	EndReason  uint8  `json:"end_reason"`  // the sender's GOODBYE reason, when it ended it
	ByeIgnored uint64 `json:"bye_ignored"` // GOODBYEs and TOKENs from elsewhere or naming another nonce
}

// subscription is a subscriber's state; nil in Core without
// Config.Subscribe.
type subscription struct {
	to     netip.AddrPort
	nonce  uint64
	tok    packet.Subscription // the latest token, echoed (FlagToken)
	hasTok bool
	nextAt int64 // when the next SUBSCRIBE goes; 0: at the first Tick
	gap    int64 // the wait after it, while no TOKEN comes
	ended  bool  // by the sender (endedBy) or by Leave
	byS    bool  // the sender ended it
	warned bool  // echoes went unanswered by data: logged
	pkt    packet.Packet
	stats  SubscriptionStats
}

func newSubscription(to netip.AddrPort) (*subscription, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("receiver: no randomness for a subscription nonce: %w", err)
	}
	return &subscription{to: to, nonce: binary.BigEndian.Uint64(b[:]), gap: firstSubscribeRetry, stats: SubscriptionStats{To: to.String()}}, nil
}

// send queues a SUBSCRIBE, echoing the token when it has one (echo).
func (c *Core) sendSubscribe(echo bool) {
	sub := c.sub
	p := &sub.pkt
	p.Header = packet.Header{Kind: packet.KindSubscribe}
	p.Subscription = packet.Subscription{Nonce: sub.nonce}
	if echo {
		p.Flags = packet.FlagToken
		p.Subscription.TokenTime, p.Subscription.TokenMAC = sub.tok.TokenTime, sub.tok.TokenMAC
	}
	if !c.queueSubscription(p) {
		c.stats.FeedbackDropped++
		return
	}
	sub.stats.Subscribes++
}

// subscribeTick asks (again) when it is time.
func (c *Core) subscribeTick(now int64) {
	sub := c.sub
	if sub == nil || sub.ended || now < sub.nextAt {
		return
	}
	c.sendSubscribe(false)
	sub.nextAt = now + sub.gap
	sub.gap = min(2*sub.gap, int64(SubscribeRenew))
}

// plainSubscription reports whether b is a plain (unsealed) TOKEN or
// GOODBYE for a subscriber with a key: byte 3 is the kind, 5 the envelope.
func (c *Core) plainSubscription(b []byte) bool {
	if c.sub == nil || len(b) <= 5 || b[5] != 0 {
		return false
	}
	k := packet.Kind(b[3])
	return k == packet.KindToken || k == packet.KindGoodbye
}

// handleSubscription takes a TOKEN or GOODBYE from the sender subscribed
// to; anything else, or naming another nonce, is counted and ignored.
// sealed says it came sealed under the session's keys. With a key, a
// GOODBYE in clear (a sender with no room, or ending a subscription whose
// handshake never completed) is taken only until data has come; after
// that only a sealed one ends the subscription, so that an attacker who
// saw the nonce on the path cannot end it.
func (c *Core) handleSubscription(p *packet.Packet, from netip.AddrPort, now int64, sealed bool) {
	sub := c.sub
	if sub != nil && c.sec != nil && !sealed && p.Kind == packet.KindGoodbye && sub.stats.Admitted {
		sub.stats.ByeIgnored++
		return
	}
	if sub == nil || sub.ended || from != sub.to || p.Subscription.Nonce != sub.nonce {
		if sub != nil {
			sub.stats.ByeIgnored++
		} else {
			c.stats.Unexpected++
		}
		return
	}
	switch {
	case p.Kind == packet.KindToken && p.Flags&packet.FlagToken != 0:
		sub.tok, sub.hasTok = p.Subscription, true
		sub.stats.Tokens++
		if sub.stats.Tokens >= unansweredEchoes && !sub.stats.Admitted && !sub.warned {
			// The sender answers, but streams nothing here: it has no
			// room, its stream has not begun, or (with a key) it refuses
			// this receiver's echoes, made under another key file.
			sub.warned = true
			c.log.Warn().Stringer("sender", from).Bool("key", c.sec != nil).Msg("subscribed, but no data comes: the sender may have no room or nothing to send yet; with --key-file, check that both ends use the same key file")
		}
		c.sendSubscribe(true)
		// Renew in a second; a sender that restarted or forgot this
		// subscriber takes it back then.
		sub.gap = int64(SubscribeRenew)
		sub.nextAt = now + sub.gap
	case p.Kind == packet.KindGoodbye:
		sub.ended, sub.byS = true, true
		sub.stats.Ended, sub.stats.EndReason = true, p.Subscription.Reason
		c.log.Warn().Stringer("sender", from).Str("reason", ReasonText(p.Subscription.Reason)).Msg("subscription ended by the sender")
	default:
		sub.stats.ByeIgnored++
	}
}

// Leave ends the subscription (Config.Subscribe) with a GOODBYE carrying
// the token the receiver was admitted with, so that the sender drops it at
// once; [Receiver.Close] calls it. It does nothing without a subscription,
// before any token, or once the subscription has ended.
func (c *Core) Leave() {
	sub := c.sub
	if sub == nil || sub.ended || !sub.hasTok {
		return
	}
	sub.ended = true
	sub.stats.Ended = true
	p := &sub.pkt
	p.Header = packet.Header{Kind: packet.KindGoodbye, Flags: packet.FlagToken}
	p.Subscription = sub.tok
	p.Subscription.Nonce, p.Subscription.Reason = sub.nonce, packet.ReasonLeaving
	if !c.queueSubscription(p) {
		c.stats.FeedbackDropped++
	}
}

// queueSubscription queues the SUBSCRIBE or GOODBYE p to the sender; with
// a key, one carrying a token is flagged packet.FlagAuth and
// authenticated under the pre-shared key (the sender admits no one, and
// drops no one, without it).
func (c *Core) queueSubscription(p *packet.Packet) bool {
	auth := c.sec != nil && p.Flags&packet.FlagToken != 0
	if auth {
		p.Flags |= packet.FlagAuth
	}
	out := c.out.Current()
	if out.Append(p, c.sub.to) != nil {
		return false
	}
	if auth {
		// Append encoded it last, in order: sign it in place.
		_ = c.sec.hs.AuthSubscription(out.Datagrams()[out.Len()-1].Data)
	}
	return true
}

// SubscriptionEnded returns the error Recv returns once the sender has
// ended the subscription, nil while it has not (or without one).
func (c *Core) SubscriptionEnded() error {
	if c.sub == nil || !c.sub.byS {
		return nil
	}
	return &SubscriptionEndedError{Reason: c.sub.stats.EndReason}
}

// subscribeTimer returns when subscribeTick next has work.
func (c *Core) subscribeTimer() (int64, bool) {
	if c.sub == nil || c.sub.ended {
		return 0, false
	}
	return c.sub.nextAt, true
}

// resolveSubscribe resolves Config.Subscribe (names allowed) and, when
// Listen is empty, binds ":0" of the sender's family.
func resolveSubscribe(cfg Config) (Config, error) {
	ua, err := net.ResolveUDPAddr("udp", cfg.Subscribe)
	if err != nil {
		return cfg, fmt.Errorf("%w: Subscribe %q: %v", ErrConfig, cfg.Subscribe, err)
	}
	to := ua.AddrPort()
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	cfg.Subscribe = to.String()
	if cfg.Listen == "" {
		cfg.Listen = "0.0.0.0:0"
		if to.Addr().Is6() {
			cfg.Listen = "[::]:0"
		}
	}
	return cfg, nil
}
