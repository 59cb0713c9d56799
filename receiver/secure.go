package receiver

import (
	"errors"
	"net/netip"

	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// errAmplification: feedback withheld by the amplification limit.
var errAmplification = errors.New("receiver: feedback over the amplification limit")

// derivationsPerSecond caps how often a sealed datagram naming an unknown
// session may cost a key derivation (one HMAC and an AES key schedule), so
// that a flood of forged session ids costs that much CPU and no state.
const derivationsPerSecond = 64

// retiredLen is how many ended sessions (expired or replaced by a restart)
// the receiver remembers the highest counter of, so that their recorded
// datagrams, replayed later, cannot bring them back.
const retiredLen = 256

// retired is an ended session's id and the highest counter it accepted.
type retired struct {
	id      uint64
	highest uint64
}

// secure is the receiver's encryption state; nil in Core when encryption
// is off.
type secure struct {
	key     *seal.Key
	salt    uint64 // this receiver's salt for the feedback it seals
	grow    int    // bytes sealing adds to a feedback packet
	derive  guard.Bucket
	scratch []byte // decrypted body; DATA payloads alias it until Handle returns
	warned  bool   // key mismatch logged
	foreign guard.ForeignKeys
	// warnedPlain: an unencrypted datagram was logged.
	warnedPlain bool
	retired     [retiredLen]retired
	nextOld     int
}

// retire remembers an ended session's counters.
func (sec *secure) retire(s *session) {
	if s.keys == nil || s.keys.window == nil {
		return
	}
	top, ok := s.keys.window.Highest()
	if !ok {
		return
	}
	sec.retired[sec.nextOld%retiredLen] = retired{id: s.id, highest: top}
	sec.nextOld++
}

// isRetiredReplay reports whether counter of session id was accepted by
// an ended session of that id.
func (c *Core) isRetiredReplay(id, counter uint64) bool {
	top, ok := c.sec.retiredHighest(id)
	return ok && counter <= top
}

// retiredHighest returns the highest counter an ended session id accepted.
func (sec *secure) retiredHighest(id uint64) (uint64, bool) {
	for _, r := range sec.retired {
		if r.id == id && id != 0 {
			return r.highest, true
		}
	}
	return 0, false
}

// sessionKeys is a session's encryption state.
type sessionKeys struct {
	opener *seal.Opener
	window *guard.Window // anti-replay over the sender's counters
	sealer *seal.Sealer  // for this receiver's feedback
	// Counters up to floor belong to an ended session of the same id and
	// are replays.
	floor    uint64
	hasFloor bool
}

func newSecure(key *seal.Key) (*secure, error) {
	salt, err := seal.RandomSalt()
	if err != nil {
		return nil, err
	}
	return &secure{
		key:     key,
		salt:    salt,
		grow:    seal.ToSender.Overhead(),
		derive:  guard.Bucket{Depth: derivationsPerSecond, PeriodNanos: 1e9},
		scratch: make([]byte, 0, packet.MaxPacketLen),
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

// openSealed authenticates and decrypts the sealed datagram b into c.pkt
// and returns its session, creating the session when b is the first
// authentic datagram of a new sender. Anything that fails is counted and
// nil returned, before any state is touched.
func (c *Core) openSealed(b []byte, from netip.AddrPort, now int64) *session {
	info, err := seal.Peek(b)
	switch {
	case errors.Is(err, seal.ErrNotSealed):
		c.stats.Unsealed++
		if !c.sec.warnedPlain {
			c.sec.warnedPlain = true
			c.log.Warn().Stringer("from", from).Msg("unencrypted datagram refused: this receiver has a key; give the sender the same --key-file")
		}
		return nil
	case err != nil:
		c.stats.Malformed++
		return nil
	case info.Dir != seal.ToReceiver:
		c.stats.Unexpected++
		return nil
	case info.KeyID != c.sec.key.ID():
		if !c.sec.foreign.Observe(info.KeyID) {
			c.stats.Corrupted++ // a damaged key id, until it repeats
			return nil
		}
		c.stats.KeyMismatch++
		if !c.sec.warned {
			c.sec.warned = true
			c.log.Warn().Stringer("from", from).Msg("datagram sealed under another key: check that both ends use the same key file")
		}
		return nil
	}
	s := c.sessions[keyOf{id: info.Session}]
	var keys *sessionKeys
	if s != nil {
		keys = s.keys
	} else {
		if !c.sec.derive.Allow(1, now) {
			c.stats.DerivationsThrottled++
			return nil
		}
		o, err := c.sec.key.NewOpener(seal.Params{Session: info.Session, Dir: seal.ToReceiver})
		if err != nil {
			c.log.Error().Err(err).Msg("deriving a session key failed")
			return nil
		}
		keys = &sessionKeys{opener: o}
	}
	body, counter, err := keys.opener.Open(c.sec.scratch[:0], b)
	if err != nil {
		c.stats.AuthFailed++
		return nil
	}
	h, _ := packet.PeekHeader(b) // Peek checked magic and version
	if err := c.pkt.ParseBody(h, body); err != nil {
		c.stats.Malformed++ // authentic but malformed: a sender bug
		c.log.Warn().Err(err).Stringer("from", from).Msg("authenticated datagram does not decode")
		return nil
	}
	if keys.hasFloor && counter <= keys.floor || s == nil && c.isRetiredReplay(info.Session, counter) {
		c.stats.Replayed++
		return nil
	}
	if s == nil {
		if c.pkt.Kind != packet.KindData && c.pkt.Kind != packet.KindParity && c.pkt.Kind != packet.KindHeartbeat {
			c.stats.Unexpected++ // only the sender's own packets open a session
			return nil
		}
		if s = c.newSealedSession(info.Session, keys, from, now); s == nil {
			return nil
		}
	}
	switch keys.window.Accept(counter) {
	case guard.Fresh:
	default:
		c.stats.Replayed++
		return nil
	}
	if from != s.addr {
		// Only the newest authentic datagram moves the session: a copy
		// replayed from elsewhere was rejected above, and a reordered
		// old one is not the sender's current address.
		if top, _ := keys.window.Highest(); top == counter {
			c.stats.AddressChanges++
			c.log.Info().Stringer("from", s.addr).Stringer("to", from).Str("session", hex64(s.id)).Msg("sender moved")
			s.addr = from
		}
	}
	return s
}

// newSealedSession creates the state of an authenticated new sender. A
// session from the same address under another id is a restarted sender:
// it is dropped, as without encryption.
func (c *Core) newSealedSession(id uint64, keys *sessionKeys, from netip.AddrPort, now int64) *session {
	for k, old := range c.sessions {
		if old.addr == from {
			c.stats.SessionRestarts++
			c.log.Info().Stringer("from", from).Str("old", hex64(old.id)).Str("new", hex64(id)).Msg("sender restarted")
			c.forget(old)
			c.sec.retire(old)
			delete(c.sessions, k)
		}
	}
	if len(c.sessions) >= c.cfg.MaxSessions {
		c.stats.SessionsRefused++
		return nil
	}
	first, err := seal.RandomCounter()
	if err != nil {
		c.log.Error().Err(err).Msg("no randomness for a feedback counter")
		return nil
	}
	if keys.sealer, err = c.sec.key.NewSealer(seal.Params{Session: id, Dir: seal.ToSender, Salt: c.sec.salt}, first); err != nil {
		c.log.Error().Err(err).Msg("deriving a feedback key failed")
		return nil
	}
	keys.window = guard.NewWindow(guard.DefaultWindow)
	// Everything up to an ended session's highest counter was its own.
	keys.floor, keys.hasFloor = c.sec.retiredHighest(id)
	c.log.Info().Stringer("from", from).Str("session", hex64(id)).Msg("new sender (authenticated)")
	s := c.newSession(id, from, now) // charged to the state budget
	if s == nil {
		return nil
	}
	s.keys = keys
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
	return out.SealLast(s.keys.sealer, c.sec.grow)
}
