package receiver

import (
	"bytes"
	"errors"
	"net/netip"
	"time"

	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// errAmplification: feedback withheld by the amplification limit.
var errAmplification = errors.New("receiver: feedback over the amplification limit")

// Bounds of the receiver's handshake state (see docs/security.md).
const (
	// handshakesPerSecond caps the key agreements (X25519 key generation
	// and agreement, about 0.1 ms of CPU each) the receiver makes to
	// answer authentic HELLOs, so that replayed HELLOs cost bounded CPU.
	// A HELLO repeated byte for byte is answered from the pending table
	// at no such cost.
	handshakesPerSecond = 64
	// retriesPerSecond caps the RETRYs the receiver sends for sealed
	// packets it holds no keys for (one HMAC each).
	retriesPerSecond = 64
	// pendingLen is how many answered but unconfirmed handshakes the
	// receiver remembers: a fixed table, allocated once; when no slot is
	// free the one answered longest ago is replaced. New entries need a key
	// agreement, at most handshakesPerSecond, so a legitimate entry
	// survives at least (pendingLen - handshakesPerSecond) /
	// handshakesPerSecond = 3 s of a flood, far longer than the round trip
	// that confirms it.
	pendingLen = 256
	// repeatGap is the least time between two answers to the same HELLO
	// (the sender waits at least 20 ms before sending it again), and
	// repeatsPerSecond caps such answers in all: a replayed HELLO cannot
	// make the receiver reflect WELCOMEs at the replayer's rate.
	repeatGap        = int64(10 * time.Millisecond)
	repeatsPerSecond = 256
	// keyOverlap is how long a session's previous traffic keys keep
	// opening packets after new ones took over: the packets in flight
	// across a rekey are not lost.
	keyOverlap = int64(5 * time.Second)
)

// pendingHandshake is a WELCOME sent and its keys, waiting for the first
// packet sealed under them (the sender's CONFIRM, normally), which proves
// the sender holds the HELLO's ephemeral private key.
type pendingHandshake struct {
	session uint64
	hello   [seal.HelloLen]byte // to recognise a HELLO sent again
	welcome [seal.WelcomeLen]byte
	helloTs int64 // the HELLO's timestamp
	firstAt int64 // when the WELCOME was first queued: replacement order
	sentAt  int64 // when it was last queued (a repeat resends it)
	traffic seal.Traffic
	// keys are made from traffic at the first packet that names them and
	// kept, so that forgeries under a pending tag cost an open, not a key
	// schedule (and no allocation) each.
	keys *keySet
	used bool
}

// secure is the receiver's encryption state; nil in Core when encryption
// is off.
type secure struct {
	key     *seal.Key
	hs      *seal.Handshaker
	agree   guard.Bucket // key agreements
	retry   guard.Bucket // RETRYs
	repeat  guard.Bucket // WELCOMEs sent again
	grow    int          // bytes sealing adds to a feedback packet
	scratch []byte       // decrypted body; DATA payloads alias it until Handle returns
	msg     []byte       // a WELCOME or RETRY being built
	pending [pendingLen]pendingHandshake
	warned  bool // key mismatch logged
	foreign guard.ForeignKeys
	// warnedPlain: an unencrypted datagram was logged.
	warnedPlain bool
}

// keySet is one handshake's keys within a session.
type keySet struct {
	tag    uint32
	opener *seal.Opener
	window *guard.Window // anti-replay over the sender's counters under this key
	sealer *seal.Sealer  // for this receiver's feedback
	// welcomeAt is when the WELCOME went out; the first CONFIRM under
	// these keys measures the round trip from it (seeded says it has).
	welcomeAt int64
	seeded    bool
}

// sessionKeys is a session's encryption state: its current traffic keys
// and, for keyOverlap after a rekey, the previous ones.
type sessionKeys struct {
	cur, prev *keySet
	prevUntil int64
	helloTs   int64 // timestamp of the newest HELLO confirmed: older ones are replays
}

func newSecure(key *seal.Key) (*secure, error) {
	return &secure{
		key:     key,
		hs:      key.NewHandshaker(nil),
		agree:   guard.Bucket{Depth: handshakesPerSecond, PeriodNanos: 1e9},
		retry:   guard.Bucket{Depth: retriesPerSecond, PeriodNanos: 1e9},
		repeat:  guard.Bucket{Depth: repeatsPerSecond, PeriodNanos: 1e9},
		grow:    seal.ToSender.Overhead(),
		scratch: make([]byte, 0, packet.MaxPacketLen),
		msg:     make([]byte, 0, seal.HelloLen),
	}, nil
}

// keyOf is the session table key of a sender: its address without
// encryption (a new session id from an address is a restart), its session
// id with it (the id is authenticated, the address is not: a replayed or
// forged datagram from elsewhere must not create or move a session).
type keyOf struct {
	addr netip.AddrPort
	id   uint64
}

func (c *Core) sessionKey(id uint64, from netip.AddrPort) keyOf {
	if c.sec != nil {
		return keyOf{id: id}
	}
	return keyOf{addr: from}
}

// find returns the session's keys for tag, dropping the previous keys
// once their overlap has passed.
func (k *sessionKeys) find(tag uint32, now int64) *keySet {
	if k.prev != nil && now > k.prevUntil {
		k.prev = nil
	}
	switch {
	case k.cur != nil && k.cur.tag == tag:
		return k.cur
	case k.prev != nil && k.prev.tag == tag:
		return k.prev
	}
	return nil
}

// findPending returns the pending handshake of session whose keys carry
// tag, if any.
func (sec *secure) findPending(session uint64, tag uint32) *pendingHandshake {
	for i := range sec.pending {
		p := &sec.pending[i]
		if p.used && p.session == session && p.traffic.Tag() == tag {
			return p
		}
	}
	return nil
}

// slotFor returns the pending slot of session, or a free one, or the one
// answered longest ago.
func (sec *secure) slotFor(session uint64) (p *pendingHandshake, same bool) {
	free, oldest := -1, 0
	for i := range sec.pending {
		q := &sec.pending[i]
		if q.used && q.session == session {
			return q, true
		}
		if !q.used && free < 0 {
			free = i
		}
		if q.firstAt < sec.pending[oldest].firstAt {
			oldest = i
		}
	}
	if free < 0 {
		free = oldest
	}
	return &sec.pending[free], false
}

// openSealed authenticates and decrypts the sealed datagram b into c.pkt
// and returns its session, creating the session when b is the first
// packet under the keys of a handshake this receiver answered. HELLOs are
// answered here; a sealed packet under keys this receiver does not hold
// is answered with a RETRY. Anything that fails is counted and nil
// returned, before any session state is touched.
func (c *Core) openSealed(b []byte, from netip.AddrPort, now int64) *session {
	info, err := seal.Peek(b)
	switch {
	case errors.Is(err, seal.ErrNotSealed):
		c.stats.Unsealed++
		if !c.sec.warnedPlain {
			c.sec.warnedPlain = true
			c.log.Warn().Str("from", from.String()).Msg("unencrypted datagram refused: this receiver has a key; give the sender the same --key-file")
		}
		return nil
	case err != nil:
		c.stats.Malformed++
		return nil
	case info.Dir != seal.ToReceiver:
		c.stats.Unexpected++
		return nil
	case info.Kind == packet.KindHello:
		c.handleHello(b, from, now)
		return nil
	}
	s := c.sessions[keyOf{id: info.Session}]
	var ks *keySet
	if s != nil {
		ks = s.keys.find(info.KeyID, now)
	}
	var p *pendingHandshake
	if ks == nil {
		if p = c.sec.findPending(info.Session, info.KeyID); p == nil {
			c.noKeys(b, info, from, now)
			return nil
		}
		if p.keys == nil {
			var err error
			if p.keys, err = newKeySet(&p.traffic, info.Session); err != nil {
				c.log.Error().Err(err).Msg("traffic keys unusable")
				return nil
			}
		}
		ks = p.keys
	}
	body, counter, err := ks.opener.Open(c.sec.scratch[:0], b)
	if err != nil {
		c.stats.AuthFailed++
		return nil
	}
	h, _ := packet.PeekHeader(b) // Peek checked magic and version
	if err := c.pkt.ParseBody(h, body); err != nil {
		c.stats.Malformed++ // authentic but malformed: a sender bug
		c.log.Warn().Err(err).Str("from", from.String()).Msg("authenticated datagram does not decode")
		return nil
	}
	if p != nil {
		// The first packet under a handshake's keys: the sender holds
		// the HELLO's ephemeral key. The keys become the session's.
		if s == nil {
			switch c.pkt.Kind {
			case packet.KindData, packet.KindParity, packet.KindHeartbeat, packet.KindConfirm:
			default:
				c.stats.Unexpected++ // only the sender's own packets open a session
				return nil
			}
			if s = c.newSealedSession(info.Session, from, now); s == nil {
				return nil
			}
		} else {
			s.keys.prev, s.keys.prevUntil = s.keys.cur, now+keyOverlap
			c.stats.Rekeys++
		}
		s.keys.cur = ks
		s.keys.helloTs = p.helloTs
		ks.welcomeAt = p.sentAt
		*p = pendingHandshake{}
		c.stats.Handshakes++
	}
	if ks.window.Accept(counter) != guard.Fresh {
		c.stats.Replayed++
		return nil
	}
	if from != s.addr {
		// Only the newest authentic datagram moves the session: a copy
		// replayed from elsewhere was rejected above, and a reordered
		// old one is not the sender's current address.
		if top, _ := ks.window.Highest(); top == counter {
			c.stats.AddressChanges++
			c.log.Info().Stringer("from", s.addr).Str("to", from.String()).Str("session", hex64(s.id)).Msg("sender moved")
			s.addr = from
		}
	}
	if c.pkt.Kind == packet.KindConfirm {
		if !ks.seeded {
			// Sent as soon as the WELCOME arrived (twice, around what
			// the sender held): a round trip.
			ks.seeded = true
			c.seedRTT(s, now-ks.welcomeAt, now)
		}
		s.lastSeen = now
		return nil // its work is done
	}
	return s
}

// newKeySet makes the openers and sealer of one handshake's keys.
func newKeySet(t *seal.Traffic, session uint64) (*keySet, error) {
	o, err := t.NewOpener(seal.Params{Session: session, Dir: seal.ToReceiver})
	if err != nil {
		return nil, err
	}
	s, err := t.NewSealer(seal.Params{Session: session, Dir: seal.ToSender}, 0)
	if err != nil {
		return nil, err
	}
	return &keySet{tag: t.Tag(), opener: o, sealer: s, window: guard.NewWindow(guard.DefaultWindow)}, nil
}

// handleHello answers an authentic HELLO with a WELCOME. A HELLO no newer
// than the last one confirmed for its session, or than the one pending, is
// a replay; the same HELLO again (the WELCOME was lost) gets the same
// WELCOME without a new key agreement.
func (c *Core) handleHello(b []byte, from netip.AddrPort, now int64) {
	session, ts, err := c.sec.hs.OpenHello(b)
	switch {
	case errors.Is(err, seal.ErrKeyMismatch):
		// Another key file, or a key id damaged on the way: only the same
		// foreign id again and again (a sender retries the same HELLO) is
		// called a mismatch.
		if info, perr := seal.Peek(b); perr == nil && !c.sec.foreign.Observe(info.KeyID) {
			c.stats.Corrupted++
			return
		}
		c.stats.KeyMismatch++
		if !c.sec.warned {
			c.sec.warned = true
			c.log.Warn().Str("from", from.String()).Msg("handshake under another key: check that both ends use the same key file")
		}
		return
	case errors.Is(err, seal.ErrAuth):
		c.stats.AuthFailed++
		return
	case err != nil:
		c.stats.Malformed++
		return
	}
	if s := c.sessions[keyOf{id: session}]; s != nil && ts <= s.keys.helloTs {
		c.stats.Replayed++
		return
	}
	p, same := c.sec.slotFor(session)
	if same {
		if bytes.Equal(p.hello[:], b) {
			// The WELCOME (or the HELLO's first copy) was lost: the
			// same answer again, no new key agreement; at most one per
			// repeatGap, and repeatsPerSecond in all.
			c.stats.HelloRepeats++
			if now-p.sentAt >= repeatGap && c.sec.repeat.Allow(1, now) {
				p.sentAt = now
				c.queueRaw(p.welcome[:], from)
			}
			return
		}
		if ts <= p.helloTs {
			c.stats.Replayed++
			return
		}
	}
	if !c.sec.agree.Allow(1, now) {
		c.stats.HandshakesThrottled++
		return
	}
	welcome, t, err := c.sec.hs.Respond(c.sec.msg[:0], b)
	if err != nil {
		c.stats.AuthFailed++ // a point with no shared secret
		return
	}
	*p = pendingHandshake{session: session, helloTs: ts, firstAt: now, sentAt: now, traffic: *t, used: true}
	t.Clear()
	copy(p.hello[:], b)
	copy(p.welcome[:], welcome)
	c.queueRaw(welcome, from)
	c.stats.Welcomes++
}

// noKeys handles a sealed packet under keys this receiver does not hold
// (it restarted, or the packet belongs to a session it never had, or it
// is a replay of an old one): it is counted and answered with a RETRY, at
// most retriesPerSecond, and only when the RETRY is no larger than the
// packet, so the answer never amplifies.
func (c *Core) noKeys(b []byte, info seal.Info, from netip.AddrPort, now int64) {
	c.stats.NoKeys++
	if len(b) < seal.RetryLen {
		return
	}
	if !c.sec.retry.Allow(1, now) {
		c.stats.RetriesThrottled++
		return
	}
	c.queueRaw(c.sec.hs.AppendRetry(c.sec.msg[:0], info.Session, info.KeyID, info.Counter), from)
	c.stats.Retries++
}

// queueRaw queues an already built datagram to to.
func (c *Core) queueRaw(b []byte, to netip.AddrPort) {
	if err := c.out.Current().AppendRaw(b, to); err != nil {
		c.stats.FeedbackDropped++
	}
}

// newSealedSession creates the state of an authenticated new sender. A
// session from the same address under another id is a restarted sender:
// it is dropped, as without encryption.
func (c *Core) newSealedSession(id uint64, from netip.AddrPort, now int64) *session {
	for k, old := range c.sessions {
		if old.addr == from {
			c.stats.SessionRestarts++
			c.log.Info().Stringer("from", from).Str("old", hex64(old.id)).Str("new", hex64(id)).Msg("sender restarted")
			c.forget(old)
			delete(c.sessions, k)
		}
	}
	if len(c.sessions) >= c.cfg.MaxSessions {
		c.stats.SessionsRefused++
		return nil
	}
	c.log.Info().Stringer("from", from).Str("session", hex64(id)).Msg("new sender (authenticated)")
	s := c.newSession(id, from, now) // charged to the state budget
	if s == nil {
		return nil
	}
	s.keys = &sessionKeys{}
	c.sessions[keyOf{id: id}] = s
	c.stats.Sessions++
	return s
}

// feedback encodes feedback p to session s into the outbox, sealed when
// encryption is on.
func (c *Core) feedback(s *session, p *packet.Packet) error {
	out := c.out.Current()
	if c.sec == nil {
		n := uint64(p.EncodedLen())
		if s.txBytes+n > amplificationFactor*s.rxBytes {
			c.stats.FeedbackBlocked++
			return errAmplification
		}
		if err := out.Append(p, s.addr); err != nil {
			return err
		}
		s.txBytes += n
		return nil
	}
	if !out.Room(p.EncodedLen() + c.sec.grow) {
		return outbox.ErrFull
	}
	if err := out.Append(p, s.addr); err != nil {
		return err
	}
	return out.SealLast(s.keys.cur.sealer, c.sec.grow)
}
