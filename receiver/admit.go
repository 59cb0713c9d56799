package receiver

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"net/netip"
	"time"
	"unsafe"

	"github.com/telewire/telewire/packet"
)

// What an unauthenticated peer may claim (see the package documentation,
// "Unauthenticated peers").
const (
	// unvalidatedShare is the part of Config.MaxStateBytes that sessions
	// not yet validated may hold together: 1/unvalidatedShare.
	unvalidatedShare = 4
	// probationGrace is how long a session not yet validated is safe from
	// eviction: a real sender answers the challenge within a round trip
	// of its second datagram, so one still unvalidated after this is
	// taken for a spoofer and may make way for a newcomer.
	probationGrace = time.Second
	// challengeLifetime is how long a challenge's answer is taken.
	challengeLifetime = 10 * time.Second
	// maxAnswerRTT caps the round trip an answer may seed.
	maxAnswerRTT = int64(maxRTO)
)

// sessionBytes and streamBytes are the fixed parts of a session's and a
// stream's state, charged when they are created.
const (
	sessionBytes = int(unsafe.Sizeof(session{}))
	streamBytes  = int(unsafe.Sizeof(stream{}))
)

// meter is a session's account against the receiver-wide state budget;
// the session's tracker and delivery ask it before they grow
// (reliability.Budget).
type meter struct {
	c *Core
	s *session
}

// Reserve implements reliability.Budget: a refused growth of a tracker or
// delivery ring is counted (BudgetDenied).
func (m *meter) Reserve(n int) bool {
	if !m.c.reserve(m.s, n) {
		m.c.stats.BudgetDenied++
		return false
	}
	return true
}

// Release implements reliability.Budget.
func (m *meter) Release(n int) { m.c.unreserve(m.s, n) }

// trusted reports whether s has shown that its address receives what the
// receiver sends (plain mode: it answered a challenge) or authenticated
// itself (a key is configured).
func (c *Core) trusted(s *session) bool { return s.validated || c.sec != nil }

// reserve charges n bytes of state to session s, within the receiver-wide
// budget and, for a session not yet trusted, the share such sessions may
// hold together. The caller counts a refusal.
func (c *Core) reserve(s *session, n int) bool {
	if n <= 0 {
		c.unreserve(s, -n)
		return true
	}
	k := int64(n)
	trusted := c.trusted(s)
	if c.memUsed+k > int64(c.cfg.MaxStateBytes) ||
		!trusted && c.memUnvalidated+k > int64(c.cfg.MaxStateBytes/unvalidatedShare) {
		return false
	}
	c.memUsed += k
	s.bytes += k
	if !trusted {
		c.memUnvalidated += k
	}
	return true
}

// unreserve gives back n bytes of s's state.
func (c *Core) unreserve(s *session, n int) {
	k := min(int64(n), s.bytes)
	c.memUsed -= k
	s.bytes -= k
	if !c.trusted(s) {
		c.memUnvalidated -= k
	}
}

// Optional parts of a stream's state, tried again when the budget refuses
// them but counted (BudgetDenied) only at the first refusal.
const (
	optDelay uint8 = 1 << iota // delay histogram
	optNACKs                   // NACK buffer
	optFEC                     // FEC decoder
)

// reserveOpt charges n bytes for optional part opt of stream st.
func (c *Core) reserveOpt(s *session, st *stream, opt uint8, n int) bool {
	if c.reserve(s, n) {
		st.denied &^= opt
		return true
	}
	if st.denied&opt == 0 {
		st.denied |= opt
		c.stats.BudgetDenied++
	}
	return false
}

// forget gives back everything s holds, when it is dropped.
func (c *Core) forget(s *session) {
	c.release(s)
	c.unreserve(s, int(s.bytes))
}

// evictStale drops the oldest session not yet validated whose grace time
// has passed, to admit a new one; it reports whether it dropped one.
func (c *Core) evictStale(now int64) bool {
	var victim keyOf
	var oldest *session
	for k, s := range c.sessions {
		if c.trusted(s) || now-s.created < int64(probationGrace) {
			continue
		}
		if oldest == nil || s.created < oldest.created {
			victim, oldest = k, s
		}
	}
	if oldest == nil {
		return false
	}
	c.forget(oldest)
	delete(c.sessions, victim)
	c.stats.SessionsEvicted++
	return true
}

// newMAC returns the block cipher that keys this receiver's challenges.
func newMAC() (cipher.Block, error) {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	return aes.NewCipher(key[:])
}

// challenge returns the challenge for session id at address to, issued at
// now: the time in microseconds (32 bits, wrapping every 71 minutes) and a
// 32-bit tag over it, the address and the session id (AES CBC-MAC of two
// blocks under a key only this receiver holds). An answer can be checked
// with no state kept per challenge, so a flood of sessions that never
// answer costs nothing to challenge, and a real sender whose state was
// evicted in the meantime is still recognised.
func (c *Core) challenge(to netip.AddrPort, id uint64, now int64) uint64 {
	t := uint32(now / 1000)
	return uint64(t)<<32 | uint64(c.tag(to, id, t))
}

func (c *Core) tag(to netip.AddrPort, id uint64, t uint32) uint32 {
	b := &c.macBuf
	*b = [32]byte{}
	a := to.Addr().As16()
	copy(b[:16], a[:])
	binary.BigEndian.PutUint16(b[16:], to.Port())
	binary.BigEndian.PutUint64(b[18:], id)
	binary.BigEndian.PutUint32(b[26:], t)
	c.mac.Encrypt(b[:16], b[:16])
	subtle.XORBytes(b[16:], b[16:], b[:16])
	c.mac.Encrypt(b[16:], b[16:])
	return binary.BigEndian.Uint32(b[16:])
}

// checkAnswer verifies a HEARTBEAT's answer to a challenge sent to from
// for session id, and returns the round trip it measures (0 if none can be
// trusted). ok is false for an answer this receiver did not issue to that
// address and session, or one older than challengeLifetime.
func (c *Core) checkAnswer(hb *packet.Heartbeat, from netip.AddrPort, id uint64, now int64) (rtt int64, ok bool) {
	t := uint32(hb.Answer >> 32)
	if uint32(hb.Answer) != c.tag(from, id, t) {
		return 0, false
	}
	ageMicros := int64(uint32(now/1000) - t) // wraps like t
	if ageMicros*1000 > int64(challengeLifetime) {
		return 0, false
	}
	sent := (now/1000 - ageMicros) * 1000
	if rtt = now - sent - hb.AnswerHoldNanos; rtt <= 0 || rtt > maxAnswerRTT {
		rtt = 0
	}
	return rtt, true
}

// handleAnswer takes a HEARTBEAT that answers a challenge: the session is
// validated (its address receives this receiver's packets) and the round
// trip seeds the RTT of its streams that have none yet.
func (c *Core) handleAnswer(s *session, hb *packet.Heartbeat, from netip.AddrPort, now int64) {
	rtt, ok := c.checkAnswer(hb, from, s.id, now)
	if !ok {
		if c.cfg.NACKGroupSize > 1 {
			// A group's receivers hear the answers to each other's
			// challenges: not this one's, and no sign of trouble.
			c.stats.AnswersOthers++
			return
		}
		c.stats.AnswersRejected++
		return
	}
	c.stats.Answers++
	if !s.validated {
		s.validated = true
		if c.sec == nil {
			c.memUnvalidated -= s.bytes // the session's state moves to the trusted part
		}
		c.stats.SessionsValidated++
	}
	if rtt > 0 {
		c.seedRTT(s, rtt, now)
	}
}

// SeedRTT gives the streams of session id (from address from) that have
// not yet timed a NACK round trip a first RTT of rttNanos, measured some
// other way: the answer to a challenge (plain mode) or a handshake's round
// trip. Until a stream times its own retransmissions, its NACK retries
// wait for this rather than a quarter of the latency budget. It reports
// whether the session exists; rttNanos outside (0, 500ms] is ignored.
func (c *Core) SeedRTT(id uint64, from netip.AddrPort, rttNanos, now int64) bool {
	s := c.sessions[c.sessionKey(id, from)]
	if s == nil || s.id != id {
		return false
	}
	if rttNanos > 0 && rttNanos <= maxAnswerRTT {
		c.seedRTT(s, rttNanos, now)
	}
	return true
}

// seedRTT records a round trip measured outside the NACK loop (a plain
// sender's answer to a challenge, or the handshake's WELCOME to CONFIRM
// with a key): streams created later start their NACK retry timeout from
// it instead of a quarter of the latency budget, and streams with no
// sample take it now. Samples of zero or less, or beyond maxRTO, are
// ignored.
func (c *Core) seedRTT(s *session, rttNanos, now int64) {
	if rttNanos <= 0 || rttNanos > int64(maxRTO) {
		return
	}
	if s.seedRTT == 0 {
		s.seedRTT = rttNanos
	}
	for _, st := range s.streams {
		if st.rtt.Samples() == 0 {
			st.rtt.Observe(rttNanos)
			c.retime(st)
		}
	}
}
