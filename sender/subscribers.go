package sender

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"strings"
	"time"

	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/packet"
)

// Unicast fan-out: a sender with several destinations (Config.To a list,
// or subscribers taken with Config.Listen) sends each DATA, PARITY and
// HEARTBEAT once per destination, in the same batch (one sendmmsg carries
// the packet to all of them; the batch holds its bytes once, see
// outbox.Batch.Fanout). Retransmissions and every other answer go only to
// the receiver that asked. A sender with one destination is the set of
// one: the same code.
//
// Subscription (Config.Listen). A receiver asks with a SUBSCRIBE; the
// sender answers with a TOKEN: the time and a MAC, under a secret drawn
// at start, over the subscriber's address, nonce and that time. Only a
// subscriber that receives at its address can echo it (in a SUBSCRIBE
// flagged packet.FlagToken); an echo younger than TokenLifetime makes it a
// destination. Until then the sender keeps nothing about the address (the
// token is stateless), answers each SUBSCRIBE with one TOKEN of 64 bytes
// for its 40 (under three times: a forged source address gets no more),
// and issues at most Config.JoinRate tokens per second over all
// addresses not yet subscribed (JoinsLimited counts the rest). Subscribers count against
// Config.MaxReceivers. A subscriber stays while it is heard: proven
// feedback or a renewed subscription (receivers renew every second)
// within Config.ReceiverTimeout; it leaves with a GOODBYE carrying its
// token (so that no one else can unsubscribe it), and the sender drops it
// at once.
//
// With a key (see secure.go) the exchange is the same, and the echo and
// the subscriber's GOODBYE must also carry a MAC under the pre-shared key
// (packet.FlagAuth): the token proves the address, the MAC the key. An
// admitted subscriber then gets a handshake of its own; until it
// completes it gets nothing, and if it does not complete within 3 s it is
// dropped. The sender's GOODBYE to a subscriber with keys is sealed under
// them.

// Defaults of subscription and of the slow-receiver policy.
const (
	// DefaultJoinRate is Config.JoinRate's default: tokens issued per
	// second, over all addresses.
	DefaultJoinRate = 200
	// DefaultSlowReceiverTimeout is Config.SlowReceiverTimeout's default.
	DefaultSlowReceiverTimeout = 2 * time.Second
	// TokenLifetime is how long a token is accepted after it was issued.
	TokenLifetime = 5 * time.Second
	// slowGap ends a run of unrepairable losses: losses further apart
	// than this do not add up to a slow receiver.
	slowGap = int64(time.Second)
)

// SlowPolicy is what a sender does with a subscriber that cannot keep up
// (Config.SlowReceiver).
type SlowPolicy uint8

// Slow-receiver policies.
const (
	// SlowLose (the default): the subscriber loses what it cannot keep up
	// with, counted at both ends; the others are not held back.
	SlowLose SlowPolicy = iota
	// SlowDisconnect: a subscriber (one that joined with
	// Config.Listen, not a Config.To destination) that keeps losing
	// sequences the sender can no longer repair for
	// Config.SlowReceiverTimeout is dropped and told so (a GOODBYE with
	// packet.ReasonSlow).
	SlowDisconnect
)

// String returns the command-line name of the policy.
func (p SlowPolicy) String() string {
	if p == SlowDisconnect {
		return "disconnect"
	}
	return "lose"
}

// ParseSlowPolicy parses "lose" or "disconnect".
func ParseSlowPolicy(s string) (SlowPolicy, error) {
	switch s {
	case "lose", "":
		return SlowLose, nil
	case "disconnect":
		return SlowDisconnect, nil
	}
	return SlowLose, fmt.Errorf("%w: slow-receiver policy %q: want lose or disconnect", ErrConfig, s)
}

// Reasons a destination list is refused, wrapped with ErrConfig.
var (
	// ErrDuplicateDestination: an address appears twice in Config.To.
	ErrDuplicateDestination = errors.New("destination listed twice")
	// ErrFanoutMulticast: a multicast group in a list, or with Listen: a
	// group is a destination set of its own.
	ErrFanoutMulticast = errors.New("a multicast group must be the only destination, without Listen")
)

// SplitDestinations splits Config.To, a comma-separated list, into its
// addresses ("a:1, b:2" gives "a:1" and "b:2"); empty items are errors.
func SplitDestinations(to string) ([]string, error) {
	if strings.TrimSpace(to) == "" {
		return nil, nil
	}
	parts := strings.Split(to, ",")
	for i, p := range parts {
		if parts[i] = strings.TrimSpace(p); parts[i] == "" {
			return nil, fmt.Errorf("%w: To %q: empty address in the list", ErrConfig, to)
		}
	}
	return parts, nil
}

// checkDestinations refuses duplicates and the combinations fan-out does
// not support.
func checkDestinations(to []netip.AddrPort, cfg Config) error {
	seen := make(map[netip.AddrPort]bool, len(to))
	for _, a := range to {
		if seen[a] {
			return &DestinationError{Addr: a, Reason: ErrDuplicateDestination}
		}
		seen[a] = true
		if a.Addr().IsMulticast() && (len(to) > 1 || cfg.Listen != "") {
			return &DestinationError{Addr: a, Reason: ErrFanoutMulticast}
		}
	}
	if len(to) > cfg.MaxReceivers {
		return fmt.Errorf("%w: %d destinations, more than MaxReceivers (%d)", ErrConfig, len(to), cfg.MaxReceivers)
	}
	if len(to) == 0 && cfg.Listen == "" {
		return fmt.Errorf("%w: To is required (or Listen, to take subscribers)", ErrConfig)
	}
	return nil
}

// member is one destination of a fan-out sender.
type member struct {
	addr    netip.AddrPort
	static  bool   // from Config.To: never expires, never dropped
	nonce   uint64 // a subscriber's, named in the GOODBYE that drops it
	joined  int64
	lastAt  int64 // latest proven feedback or renewed subscription
	lossRun int64 // start of the current run of unrepairable losses; 0 none
	lossAt  int64 // latest unrepairable loss
}

// subscribers is the destination set of a fan-out sender, and the
// subscription state machine of one with Listen. Not safe for concurrent
// use (the Core's).
type subscribers struct {
	listen    bool
	max       int
	timeout   int64
	slow      SlowPolicy
	slowAfter int64
	members   []member
	mac       hash.Hash // HMAC-SHA256 under a secret drawn at start
	macIn     [34]byte
	macOut    [sha256.Size]byte
	joins     guard.Bucket
	stats     SubscriberStats
}

// SubscriberStats counts a fan-out sender's destinations and the
// subscription traffic of one that takes subscribers (Config.Listen).
type SubscriberStats struct {
	Listening    bool   `json:"listening"`    // the sender takes subscribers
	Destinations int    `json:"destinations"` // where DATA goes now: Config.To's and the subscribers
	Subscribed   int    `json:"subscribed"`   // of them, subscribers
	Joined       uint64 `json:"joined"`       // subscribers admitted (a valid token echoed)
	Renewed      uint64 `json:"renewed"`      // subscriptions renewed by a subscriber already in
	Left         uint64 `json:"left"`         // subscribers gone with a GOODBYE
	Expired      uint64 `json:"expired"`      // subscribers dropped after ReceiverTimeout of silence
	DroppedSlow  uint64 `json:"dropped_slow"` // subscribers dropped by the slow-receiver policy
	RefusedFull  uint64 `json:"refused_full"` // valid echoes refused: MaxReceivers reached
	// RefusedPending counts, with a key, valid echoes not admitted
	// because 64 subscribers' handshakes were already under way (the
	// subscriber is admitted at a later renewal).
	RefusedPending uint64 `json:"refused_pending"`
	TokensSent     uint64 `json:"tokens_sent"`   // TOKENs sent (each answers one SUBSCRIBE)
	TokenBytes     uint64 `json:"token_bytes"`   // their bytes
	BadTokens      uint64 `json:"bad_tokens"`    // echoes with a token that is forged, another address's or expired
	JoinsLimited   uint64 `json:"joins_limited"` // SUBSCRIBEs not answered: over JoinRate
	ByesIgnored    uint64 `json:"byes_ignored"`  // GOODBYEs from no subscriber or with a bad token
	Malformed      uint64 `json:"malformed"`     // subscription datagrams that failed to decode
	// Unauthenticated counts, with a key, echoes and GOODBYEs refused
	// because they lack a valid MAC under the pre-shared key
	// (packet.FlagAuth): sent by someone without the key.
	Unauthenticated uint64 `json:"unauthenticated"`
}

func newSubscribers(cfg Config, static []netip.AddrPort, now int64) (*subscribers, error) {
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("sender: no randomness for the token secret: %w", err)
	}
	rate := float64(cfg.JoinRate)
	sub := &subscribers{
		listen:    cfg.Listen != "",
		max:       cfg.MaxReceivers,
		timeout:   int64(cfg.ReceiverTimeout),
		slow:      cfg.SlowReceiver,
		slowAfter: int64(cfg.SlowReceiverTimeout),
		mac:       hmac.New(sha256.New, secret[:]),
		members:   make([]member, 0, max(len(static), cfg.MaxReceivers)),
		joins:     guard.Bucket{Depth: rate, PeriodNanos: int64(time.Second)},
	}
	for _, a := range static {
		sub.members = append(sub.members, member{addr: a, static: true, joined: now, lastAt: now})
	}
	sub.stats.Listening = sub.listen
	return sub, nil
}

// token computes the MAC of a token issued at ts to nonce at addr.
func (sub *subscribers) token(addr netip.AddrPort, nonce uint64, ts int64) [packet.TokenMACLen]byte {
	in := sub.macIn[:0]
	a := addr.Addr().As16()
	in = append(in, a[:]...)
	in = binary.BigEndian.AppendUint16(in, addr.Port())
	in = binary.BigEndian.AppendUint64(in, nonce)
	in = binary.BigEndian.AppendUint64(in, uint64(ts))
	sub.mac.Reset()
	sub.mac.Write(in)
	var t [packet.TokenMACLen]byte
	copy(t[:], sub.mac.Sum(sub.macOut[:0]))
	return t
}

// validToken reports whether s carries a token the sender issued to addr
// for s.Nonce, no later than now and, if fresh, within TokenLifetime.
func (sub *subscribers) validToken(addr netip.AddrPort, s *packet.Subscription, now int64, fresh bool) bool {
	if s.TokenTime > now || (fresh && now-s.TokenTime > int64(TokenLifetime)) {
		return false
	}
	want := sub.token(addr, s.Nonce, s.TokenTime)
	return hmac.Equal(want[:], s.TokenMAC[:])
}

func (sub *subscribers) find(addr netip.AddrPort) *member {
	for i := range sub.members {
		if sub.members[i].addr == addr {
			return &sub.members[i]
		}
	}
	return nil
}

// heard renews the member at addr, if it is one: proven feedback came.
func (sub *subscribers) heard(addr netip.AddrPort, now int64) {
	if sub == nil {
		return
	}
	if m := sub.find(addr); m != nil {
		m.lastAt = max(m.lastAt, now)
	}
}

// remove takes the member at addr out of the set.
func (sub *subscribers) remove(addr netip.AddrPort) {
	for i := range sub.members {
		if sub.members[i].addr == addr {
			sub.members = append(sub.members[:i], sub.members[i+1:]...)
			return
		}
	}
}

// subscribed counts the members that joined by subscription.
func (sub *subscribers) subscribed() int {
	n := 0
	for i := range sub.members {
		if !sub.members[i].static {
			n++
		}
	}
	return n
}

// isStatic reports whether addr is a Config.To destination.
func (sub *subscribers) isStatic(addr netip.AddrPort) bool {
	m := sub.find(addr)
	return m != nil && m.static
}

// syncDests rebuilds the Core's destination list from the set, and with a
// key the destinations' key states (a new subscriber's handshake starts).
func (c *Core) syncDests(now int64) {
	c.dests = c.dests[:0]
	for i := range c.subs.members {
		c.dests = append(c.dests, c.subs.members[i].addr)
	}
	c.syncKeys(now)
}

// handleSubscription takes a SUBSCRIBE or GOODBYE, before the
// amplification bookkeeping of feedback: it keeps no state for an address
// that has not proved it receives there.
func (c *Core) handleSubscription(b []byte, from netip.AddrPort, now int64) {
	sub := c.subs
	p := &c.pkt
	if err := p.Parse(b); err != nil {
		sub.stats.Malformed++
		return
	}
	switch {
	case p.Kind == packet.KindSubscribe && p.Flags&packet.FlagToken == 0:
		c.issueToken(p, from, len(b), now)
	case p.Kind != packet.KindToken && !c.authentic(b):
		sub.stats.Unauthenticated++ // with a key: an echo or GOODBYE without its MAC
	case p.Kind == packet.KindSubscribe:
		c.admit(p, from, now)
	case p.Kind == packet.KindGoodbye:
		m := sub.find(from)
		if p.Flags&packet.FlagToken == 0 || m == nil || m.static || m.nonce != p.Subscription.Nonce ||
			!sub.validToken(from, &p.Subscription, now, false) {
			sub.stats.ByesIgnored++
			return
		}
		sub.remove(from)
		c.syncDests(now)
		sub.stats.Left++
		c.log.Info().Stringer("addr", from).Msg("subscriber left")
	default: // TOKEN goes the other way
		c.stats.Unexpected++
	}
}

// authentic reports whether the echo or GOODBYE b may act: always
// without a key; with one, only when it carries a valid MAC under the
// pre-shared key (packet.FlagAuth), so that nobody without the key is
// admitted (and makes the sender start a handshake) or ends a
// subscription, even having seen the subscriber's token on the path.
func (c *Core) authentic(b []byte) bool {
	return c.sec == nil || c.sec.hs.CheckSubscription(b)
}

// issueToken answers a SUBSCRIBE of n bytes from addr with a TOKEN, within
// the join rate and three times n.
func (c *Core) issueToken(p *packet.Packet, from netip.AddrPort, n int, now int64) {
	sub := c.subs
	// A subscriber's renewals do not spend the join rate (they would crowd
	// out new joiners with many subscribers); a forger using a
	// subscriber's address gets it one TOKEN per SUBSCRIBE, smaller than
	// 3x, sent to an address that receives the stream anyway.
	if sub.find(from) == nil && !sub.joins.Allow(1, now) {
		sub.stats.JoinsLimited++
		return
	}
	nonce := p.Subscription.Nonce
	p.Header = packet.Header{Kind: packet.KindToken, Flags: packet.FlagToken, Session: c.session}
	p.Subscription = packet.Subscription{Nonce: nonce, TokenTime: now, TokenMAC: sub.token(from, nonce, now)}
	if size := p.EncodedLen(); size > amplification*n || c.out.Current().Append(p, from) != nil {
		c.stats.FeedbackDropped++
		return
	}
	sub.stats.TokensSent++
	sub.stats.TokenBytes += uint64(p.EncodedLen())
}

// amplification is how many times the bytes an unvalidated address sent
// the sender answers it with at most (RFC 9000 §8).
const amplification = 3

// admit takes a SUBSCRIBE echoing a token: a valid one makes its source a
// destination (or renews it).
func (c *Core) admit(p *packet.Packet, from netip.AddrPort, now int64) {
	sub := c.subs
	s := &p.Subscription
	if !sub.validToken(from, s, now, true) {
		sub.stats.BadTokens++
		return
	}
	if m := sub.find(from); m != nil {
		m.lastAt = max(m.lastAt, now)
		if !m.static {
			m.nonce = s.Nonce // a subscriber restarted on the same address names itself anew
		}
		sub.stats.Renewed++
		return
	}
	if len(sub.members) >= sub.max {
		sub.stats.RefusedFull++
		c.goodbye(from, s.Nonce, packet.ReasonFull)
		return
	}
	if c.sec != nil && c.sec.pendingSubscribers() >= maxPendingHandshakes {
		// Handshakes under way are bounded: this one waits for the
		// subscriber's renewal (a second), not counted as a member.
		sub.stats.RefusedPending++
		return
	}
	sub.members = append(sub.members, member{addr: from, nonce: s.Nonce, joined: now, lastAt: now})
	c.peers.Validate(from) // it proved it receives there: data and repairs may go
	c.syncDests(now)       // with a key: its handshake starts
	if c.sec == nil {
		c.anchor(from, now) // with a key, once it has keys (keyed)
	}
	sub.stats.Joined++
	c.log.Info().Stringer("addr", from).Int("subscribers", sub.subscribed()).Msg("subscriber joined")
}

// anchor tells a new subscriber where each stream starts for it: a
// HEARTBEAT whose Start and Next are the next sequence, ahead of any DATA
// it gets. It joined a running stream; without this, a HEARTBEAT naming
// the stream's first sequence (a few hundred back, early in a stream)
// would make it take what was sent before it joined for its own loss.
func (c *Core) anchor(to netip.AddrPort, now int64) {
	p := &c.probe
	for _, s := range c.streams {
		p.Header = packet.Header{Kind: packet.KindHeartbeat, Session: c.session, Stream: s.id}
		p.Heartbeat = packet.Heartbeat{Start: s.next, Next: s.next, Timestamp: now}
		if c.queue(p, to) != nil {
			c.stats.FeedbackDropped++
			return
		}
		c.stats.Heartbeats++
	}
}

// goodbye queues a GOODBYE for the subscriber at to, whose nonce is nonce:
// with a key, sealed under the subscriber's traffic keys when it has
// them (call it before the subscriber's keys are dropped), so that it
// cannot be forged to one that is admitted.
func (c *Core) goodbye(to netip.AddrPort, nonce uint64, reason uint8) {
	p := &c.probe
	p.Header = packet.Header{Kind: packet.KindGoodbye, Session: c.session}
	p.Subscription = packet.Subscription{Nonce: nonce, Reason: reason}
	var err error
	if d := c.keysOf(to); d != nil {
		err = c.queue(p, to)
	} else {
		err = c.out.Current().Append(p, to)
	}
	if err != nil {
		c.stats.FeedbackDropped++
	}
}

// keysOf returns the key state of the destination at to when it has keys.
func (c *Core) keysOf(to netip.AddrPort) *destKeys {
	if c.sec == nil {
		return nil
	}
	if d := c.sec.dest(to); d != nil && d.cur != nil {
		return d
	}
	return nil
}

// expireSubscribers drops the subscribers silent for longer than
// ReceiverTimeout.
func (c *Core) expireSubscribers(now int64) {
	sub := c.subs
	if sub == nil || !sub.listen {
		return
	}
	kept := sub.members[:0]
	for _, m := range sub.members {
		if !m.static && now-m.lastAt > sub.timeout {
			sub.stats.Expired++
			c.log.Info().Stringer("addr", m.addr).Msg("subscriber silent, dropped")
			continue
		}
		kept = append(kept, m)
	}
	if len(kept) != len(sub.members) {
		clear(sub.members[len(kept):])
		sub.members = kept
		c.syncDests(now)
	}
}

// nextSubscriberExpiry returns when the next subscriber expires, if any.
func (sub *subscribers) nextExpiry() (int64, bool) {
	if sub == nil {
		return 0, false
	}
	var at int64
	ok := false
	for i := range sub.members {
		if m := &sub.members[i]; !m.static && (!ok || m.lastAt+sub.timeout+1 < at) {
			at, ok = m.lastAt+sub.timeout+1, true
		}
	}
	return at, ok
}

// unrepairable notes that the receiver at addr lost sequences the sender
// can no longer repair (it asked for them after they left the retransmit
// buffer, or reported them given up): with SlowDisconnect, a subscriber
// whose such losses continue, none more than a second apart, for
// SlowReceiverTimeout is dropped and told.
func (c *Core) unrepairable(addr netip.AddrPort, now int64) {
	sub := c.subs
	if sub == nil || sub.slow != SlowDisconnect {
		return
	}
	m := sub.find(addr)
	if m == nil || m.static {
		return
	}
	if m.lossAt == 0 || now-m.lossAt > slowGap {
		m.lossRun = now
	}
	m.lossAt = now
	if now-m.lossRun < sub.slowAfter {
		return
	}
	c.goodbye(addr, m.nonce, packet.ReasonSlow) // while its keys are still there
	sub.remove(addr)
	c.syncDests(now)
	sub.stats.DroppedSlow++
	c.log.Warn().Stringer("addr", addr).Msg("subscriber cannot keep up: dropped (slow-receiver policy disconnect)")
}

// Goodbye queues a GOODBYE (packet.ReasonClosing) to every subscriber, so
// that they stop at once rather than after their timeout; a sender calls
// it as it closes. It does nothing without subscribers.
func (c *Core) Goodbye() {
	if c.subs == nil || !c.subs.listen {
		return
	}
	for _, m := range c.subs.members {
		if !m.static {
			c.goodbye(m.addr, m.nonce, packet.ReasonClosing)
		}
	}
}

// Destinations returns where DATA goes now, in order: Config.To's
// addresses, then the subscribers in the order they joined.
func (c *Core) Destinations() []netip.AddrPort {
	return append([]netip.AddrPort(nil), c.dests...)
}
