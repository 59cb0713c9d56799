package sender

import (
	"errors"
	"net/netip"
	"time"

	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// The sender's handshake schedule and bounds (see docs/security.md).
const (
	// firstHandshakeTimeout is how long a HELLO waits for its WELCOME
	// before it is sent again (the same HELLO: the receiver answers a
	// repeat with the same WELCOME, at no new cost, so whichever copy's
	// answer arrives completes the handshake). Each further wait is half
	// as long again, up to maxHandshakeTimeout; attempts never stop while
	// the sender runs (each is counted). With a round trip measured, the
	// first wait is three of them instead (at least minHandshakeTimeout).
	firstHandshakeTimeout = int64(100 * time.Millisecond)
	minHandshakeTimeout   = int64(20 * time.Millisecond)
	maxHandshakeTimeout   = int64(2 * time.Second)
	// RekeyAfter and RekeyAfterPackets are the defaults of
	// Config.RekeyInterval and Config.RekeyPackets: a session makes a new
	// handshake (new ephemeral keys, new traffic keys) after this long or
	// this many packets under one key, whichever comes first; packets keep
	// flowing under the old keys until the new ones are in place.
	RekeyAfter        = 2 * time.Minute
	RekeyAfterPackets = 1 << 32
	// keyOverlap is how long the previous keys still open feedback after
	// a rekey.
	keyOverlap = int64(5 * time.Second)
	// heldPackets and heldBytes bound what the sender holds while it has
	// no traffic keys (before the first handshake completes, or after a
	// RETRY): Send returns ErrQueueFull beyond them. Nothing is sent
	// before the handshake: 0-RTT data could be replayed.
	heldPackets = 1024
	heldBytes   = 256 << 10
	// sentRing is how many DATA first transmissions the sender remembers
	// the counter of, so that after a RETRY it can resend, under the new
	// keys, what it sent under keys the receiver had lost.
	sentRing = 1024
)

// sentRef names the DATA sealed under a key tag with a counter.
type sentRef struct {
	tag    uint32
	ctr    uint64
	stream uint32
	seq    uint64
}

// txKeys is one handshake's keys at the sender.
type txKeys struct {
	tag    uint32
	sealer *seal.Sealer  // DATA, PARITY, HEARTBEAT, CONFIRM, unavailable NACKs
	opener *seal.Opener  // feedback
	window *guard.Window // anti-replay over the receiver's counters
	since  int64         // when they took over
}

// heldPacket is a plain packet waiting for traffic keys, in secure.held;
// all go to the configured receiver (without keys no feedback is taken, so
// nothing is answered elsewhere).
type heldPacket struct{ off, n int }

// secure is the sender's encryption state; nil in Core when encryption is
// off.
type secure struct {
	key       *seal.Key
	hs        *seal.Handshaker
	cur, prev *txKeys
	prevUntil int64
	attempt   *seal.Initiation // the HELLO awaiting its WELCOME; nil if none
	retryAt   int64            // when the next attempt goes if no WELCOME came
	timeout   int64            // the current attempt's wait
	lastHello int64            // timestamp of the latest HELLO: each is newer
	helloAt   int64            // when the current handshake's HELLO was first sent
	grow      int              // bytes sealing adds to a packet
	// Plain packets held until keys exist, in order.
	held    []heldPacket
	heldBuf []byte
	holding holdSealer
	scratch []byte // decrypted feedback body
	warned  bool   // key mismatch logged
	foreign guard.ForeignKeys
	pkt     packet.Packet
	// sent remembers the latest DATA sealed (a ring); resend holds, after
	// a RETRY, those sealed from the counter it named on, to go again
	// once the new handshake completes.
	sent   [sentRing]sentRef
	sentN  uint64
	resend []sentRef
	// warnedPlain: unencrypted feedback was logged.
	warnedPlain bool
}

func newSecure(key *seal.Key) (*secure, error) {
	sec := &secure{
		key:     key,
		hs:      key.NewHandshaker(nil),
		grow:    seal.ToReceiver.Overhead(),
		scratch: make([]byte, 0, packet.MaxPacketLen),
		held:    make([]heldPacket, 0, heldPackets),
		heldBuf: make([]byte, 0, heldBytes),
		resend:  make([]sentRef, 0, sentRing),
	}
	sec.holding.sec = sec
	return sec, nil
}

// errHeld says a datagram went to the held queue instead of the wire.
var errHeld = errors.New("sender: held for the handshake")

// holdSealer is an outbox.InPlaceSealer that copies the plain datagram to
// the held queue and refuses it, so that SealLast takes it out of the
// batch: nothing unsealed is ever written.
type holdSealer struct{ sec *secure }

func (h holdSealer) SealInPlace(pkt []byte) ([]byte, error) {
	sec := h.sec
	if len(sec.held) == cap(sec.held) || len(sec.heldBuf)+len(pkt) > cap(sec.heldBuf) {
		return pkt, outbox.ErrFull
	}
	sec.held = append(sec.held, heldPacket{off: len(sec.heldBuf), n: len(pkt)})
	sec.heldBuf = append(sec.heldBuf, pkt...)
	return pkt, errHeld
}

// holding reports whether packets go to the held queue: there are no
// traffic keys, or packets held earlier are not all out yet.
func (sec *secure) holdingPackets() bool { return sec.cur == nil || len(sec.held) > 0 }

// roomHeld reports whether k more packets of n bytes in all fit the held
// queue (always, when packets are not being held).
func (c *Core) roomHeld(k, n int) bool {
	sec := c.sec
	if sec == nil || !sec.holdingPackets() {
		return true
	}
	return len(sec.held)+k <= cap(sec.held) && len(sec.heldBuf)+n <= cap(sec.heldBuf)
}

// overhead returns the bytes sealing adds to each packet (0 when off).
func (c *Core) overhead() int {
	if c.sec == nil {
		return 0
	}
	return c.sec.grow
}

// sealLast seals the datagram just queued in out, if encryption is on.
// Without traffic keys yet it moves the datagram to the held queue, sent
// sealed once the handshake completes. On error the datagram is gone from
// the batch.
func (c *Core) sealLast(out *outbox.Batch) error {
	if c.sec == nil {
		return nil
	}
	if c.sec.holdingPackets() {
		err := out.SealLast(c.sec.holding, 0)
		if errors.Is(err, errHeld) {
			c.stats.Held++
			return nil
		}
		c.stats.HeldDropped++
		return outbox.ErrFull
	}
	if err := out.SealLast(c.sec.cur.sealer, c.sec.grow); err != nil {
		if !errors.Is(err, outbox.ErrFull) {
			c.stats.SealErrors++
			c.log.Error().Err(err).Msg("sealing failed, packet dropped")
		}
		return err
	}
	return nil
}

// noteSealed remembers the counter the DATA just sealed took (nothing
// when it was held: it is sealed later, under new keys).
func (c *Core) noteSealed(stream uint32, seq uint64) {
	sec := c.sec
	if sec == nil || sec.holdingPackets() {
		return
	}
	sec.sent[sec.sentN%sentRing] = sentRef{tag: sec.cur.tag, ctr: sec.cur.sealer.Next() - 1, stream: stream, seq: seq}
	sec.sentN++
}

// lostFrom collects, for a RETRY naming counter ctr of the keys tagged
// tag, the DATA sealed under them from that counter on: the receiver that
// sent the RETRY could open none of it.
func (sec *secure) lostFrom(tag uint32, ctr uint64) {
	sec.resend = sec.resend[:0]
	first := sec.sentN - min(sec.sentN, sentRing)
	for i := first; i < sec.sentN; i++ {
		if r := sec.sent[i%sentRing]; r.tag == tag && r.ctr >= ctr {
			sec.resend = append(sec.resend, r)
		}
	}
}

// resendLost queues again, sealed under the new keys and flagged as
// retransmissions, the DATA a RETRY said was lost (as far as the
// retransmit buffer still holds it and the outbox takes it): a receiver
// that restarted then misses only what the old one received and died
// with.
func (c *Core) resendLost(now int64) {
	sec := c.sec
	out := c.out.Current()
	for _, r := range sec.resend {
		s := c.findStream(r.stream)
		if s == nil || s.retained == nil {
			continue
		}
		data, ok := s.retained.Get(r.seq, now)
		if !ok {
			continue
		}
		if !out.Room(len(data)+sec.grow) || out.AppendRaw(data, c.remote) != nil {
			break
		}
		_ = packet.MarkRetransmit(out.Datagrams()[out.Len()-1].Data) // stored packets are DATA
		if err := out.SealLast(sec.cur.sealer, sec.grow); err != nil {
			c.stats.SealErrors++
			continue
		}
		c.stats.Resent++
	}
	sec.resend = sec.resend[:0]
}

// releaseHeld seals and queues the held packets, in order, as far as the
// outbox takes them.
func (c *Core) releaseHeld() {
	sec := c.sec
	if sec.cur == nil || len(sec.held) == 0 {
		return
	}
	out := c.out.Current()
	done := 0
	for _, h := range sec.held {
		if !out.Room(h.n + sec.grow) {
			break
		}
		if out.AppendRaw(sec.heldBuf[h.off:h.off+h.n], c.remote) != nil {
			break
		}
		done++
		if err := out.SealLast(sec.cur.sealer, sec.grow); err != nil {
			c.stats.SealErrors++
		}
	}
	if done == len(sec.held) {
		sec.held, sec.heldBuf = sec.held[:0], sec.heldBuf[:0]
		return
	}
	// Keep the rest at the front; the buffers are reused in place.
	rest := sec.held[done:]
	base := rest[0].off
	n := copy(sec.heldBuf, sec.heldBuf[base:])
	sec.heldBuf = sec.heldBuf[:n]
	k := copy(sec.held, rest)
	sec.held = sec.held[:k]
	for i := range sec.held {
		sec.held[i].off -= base
	}
}

// secureStart begins a handshake if there is none and no keys.
func (c *Core) secureStart(now int64) {
	if c.sec != nil && c.sec.cur == nil && c.sec.attempt == nil {
		c.hello(now)
	}
}

// firstTimeout is the wait of a new handshake's first HELLO.
func (c *Core) firstTimeout() int64 {
	if c.rtt.Samples() == 0 {
		return firstHandshakeTimeout
	}
	return min(max(3*c.rtt.Smoothed(), minHandshakeTimeout), maxHandshakeTimeout)
}

// secureTick runs the handshake's timers: the first handshake, retries
// with back-off, rekeying; and releases held packets.
func (c *Core) secureTick(now int64) {
	sec := c.sec
	if sec == nil {
		return
	}
	if sec.prev != nil && now > sec.prevUntil {
		sec.prev = nil
	}
	switch {
	case sec.attempt != nil:
		if now >= sec.retryAt {
			sec.timeout = min(sec.timeout+sec.timeout/2, maxHandshakeTimeout)
			sec.retryAt = now + sec.timeout
			c.sendHello()
		}
	case sec.cur == nil:
		c.secureStart(now)
	case now-sec.cur.since >= int64(c.cfg.RekeyInterval) || sec.cur.sealer.Next() >= c.cfg.RekeyPackets:
		c.hello(now)
	}
	c.releaseHeld()
}

// secureTimer returns when secureTick next has work: the next HELLO of a
// handshake under way, or the rekey. (Held packets that did not fit the
// outbox go with the next Tick, which follows every write of it; the
// first handshake starts at the first Tick or Send.)
func (c *Core) secureTimer() (int64, bool) {
	sec := c.sec
	switch {
	case sec == nil:
		return 0, false
	case sec.attempt != nil:
		return sec.retryAt, true
	case sec.cur != nil:
		return sec.cur.since + int64(c.cfg.RekeyInterval), true
	}
	return 0, false
}

// hello starts a handshake: a new ephemeral key and a HELLO to the
// receiver, sent again at retryAt until its WELCOME arrives.
func (c *Core) hello(now int64) {
	sec := c.sec
	ts := max(now, sec.lastHello+1) // strictly newer than the last, for the receiver's replay check
	in, err := sec.hs.Initiate(c.session, ts)
	if err != nil {
		c.log.Error().Err(err).Msg("no randomness for a handshake")
		return
	}
	sec.timeout = c.firstTimeout()
	sec.attempt, sec.lastHello, sec.retryAt = in, ts, now+sec.timeout
	sec.helloAt = now
	c.sendHello()
}

// sendHello queues the current HELLO.
func (c *Core) sendHello() {
	if err := c.out.Current().AppendRaw(c.sec.attempt.Hello(), c.remote); err != nil {
		c.stats.FeedbackDropped++ // queue full: the retry timer sends it again
		return
	}
	c.stats.HandshakeAttempts++
}

// handleWelcome completes the handshake in progress.
func (c *Core) handleWelcome(b []byte, now int64) {
	sec := c.sec
	if sec.attempt == nil {
		c.stats.Unexpected++ // a late or repeated WELCOME
		return
	}
	t, err := sec.hs.Finish(sec.attempt, b)
	if err != nil {
		c.countHandshakeError(b, err)
		return
	}
	defer t.Clear()
	keys := &txKeys{tag: t.Tag(), window: guard.NewWindow(guard.DefaultWindow), since: now}
	if keys.sealer, err = t.NewSealer(seal.Params{Session: c.session, Dir: seal.ToReceiver}, 0); err == nil {
		keys.opener, err = t.NewOpener(seal.Params{Session: c.session, Dir: seal.ToSender})
	}
	if err != nil {
		c.log.Error().Err(err).Msg("traffic keys unusable")
		return
	}
	if sec.retryAt-sec.timeout == sec.helloAt {
		// Only an answer to the first copy of the HELLO measures a
		// round trip: after a retry, which copy was answered is unknown.
		if sample := now - sec.helloAt; sample > 0 {
			c.rtt.Observe(sample)
			c.stats.HandshakeRTTNanos = sample
		}
	}
	if sec.cur != nil {
		sec.prev, sec.prevUntil = sec.cur, now+keyOverlap
		c.stats.Rekeys++
	}
	sec.cur, sec.attempt = keys, nil
	c.stats.Handshakes++
	// CONFIRM first, under the new keys: it tells the receiver they are
	// in use and gives it the round trip. Then what was held, and, when
	// something was, a second CONFIRM behind it in case the first is
	// lost: the receiver's first NACKs are for that burst.
	held := len(sec.held) > 0 || len(sec.resend) > 0
	c.confirm()
	c.resendLost(now)
	c.releaseHeld()
	if held {
		c.confirm()
	}
}

// confirm queues a sealed CONFIRM under the current keys, ahead of any
// packets still held.
func (c *Core) confirm() {
	sec := c.sec
	sec.pkt.Header = packet.Header{Kind: packet.KindConfirm, Session: c.session}
	if out := c.out.Current(); out.Room(seal.ConfirmLen) && out.Append(&sec.pkt, c.remote) == nil {
		_ = out.SealLast(sec.cur.sealer, sec.grow)
	}
}

// handleRetry starts a new handshake when the receiver says it holds no
// keys for a packet sealed under the current ones (it restarted). The
// RETRY must name the current key tag and a counter already used, so a
// recorded RETRY replayed later does nothing.
func (c *Core) handleRetry(b []byte, now int64) {
	sec := c.sec
	session, tag, counter, err := sec.hs.OpenRetry(b)
	if err != nil {
		c.countHandshakeError(b, err)
		return
	}
	switch {
	case session != c.session:
		c.stats.ForeignSession++
		return
	case sec.cur == nil || tag != sec.cur.tag || counter >= sec.cur.sealer.Next() || sec.attempt != nil:
		c.stats.RetriesIgnored++ // stale, or a handshake is already under way
		return
	}
	c.log.Info().Msg("receiver holds no keys for this session (restarted?): handshaking again")
	c.stats.Rehandshakes++
	sec.lostFrom(tag, counter)
	sec.cur, sec.prev = nil, nil
	c.secureStart(now)
}

func (c *Core) countHandshakeError(b []byte, err error) {
	switch {
	case errors.Is(err, seal.ErrKeyMismatch):
		// Another key file, or a key id damaged on the way: only the same
		// foreign id repeating is called a mismatch.
		if info, perr := seal.Peek(b); perr == nil && !c.sec.foreign.Observe(info.KeyID) {
			c.stats.Corrupted++
			return
		}
		c.stats.KeyMismatch++
		if !c.sec.warned {
			c.sec.warned = true
			c.log.Warn().Msg("handshake answered under another key: check that both ends use the same key file")
		}
	case errors.Is(err, seal.ErrAuth), errors.Is(err, seal.ErrHandshake):
		c.stats.AuthFailed++ // forged, corrupted, or the answer to an earlier attempt
	case errors.Is(err, seal.ErrSession):
		c.stats.ForeignSession++
	default:
		c.stats.Malformed++
	}
}

// queue encodes p for to into the outbox, sealed when encryption is on.
func (c *Core) queue(p *packet.Packet, to netip.AddrPort) error {
	out := c.out.Current()
	if !out.Room(p.EncodedLen() + c.overhead()) {
		return outbox.ErrFull
	}
	if err := out.Append(p, to); err != nil {
		return err
	}
	return c.sealLast(out)
}

// queueTrailing is queue for a datagram that goes behind the DATA queued
// with it (outbox.Batch.AppendTrailing): PARITY, so that it does not split
// runs of equal-size DATA under UDP GSO.
func (c *Core) queueTrailing(p *packet.Packet, to netip.AddrPort) error {
	out := c.out.Current()
	if !out.Room(p.EncodedLen() + c.overhead()) {
		return outbox.ErrFull
	}
	if err := out.AppendTrailing(p, to); err != nil {
		return err
	}
	return c.sealLast(out)
}

// decode parses feedback datagram b into c.pkt: plainly, or, with
// encryption on, by authenticating and decrypting it first. It reports
// whether b is a packet to act on; everything else (the handshake's
// WELCOME and RETRY included) is handled or counted here.
func (c *Core) decode(b []byte, from netip.AddrPort, now int64) bool {
	if c.sec == nil {
		if err := c.pkt.Parse(b); err != nil {
			c.stats.Malformed++
			if e := c.log.Debug(); e != nil { // boxing from allocates: only when debug is on
				e.Err(err).Stringer("from", from).Int("len", len(b)).Msg("malformed datagram dropped")
			}
			return false
		}
		return true
	}
	info, err := seal.Peek(b)
	switch {
	case errors.Is(err, seal.ErrNotSealed):
		c.stats.Unsealed++
		if !c.sec.warnedPlain {
			c.sec.warnedPlain = true
			c.log.Warn().Str("from", from.String()).Msg("unencrypted feedback refused: this sender has a key; give the receiver the same --key-file")
		}
		return false
	case err != nil:
		c.stats.Malformed++
		return false
	case info.Dir != seal.ToSender || info.Session != c.session:
		c.stats.ForeignSession++
		return false
	case info.Kind == packet.KindWelcome:
		c.handleWelcome(b, now)
		return false
	case info.Kind == packet.KindRetry:
		c.handleRetry(b, now)
		return false
	}
	keys := c.sec.cur
	if keys == nil || keys.tag != info.KeyID {
		if keys = c.sec.prev; keys == nil || keys.tag != info.KeyID || now > c.sec.prevUntil {
			c.stats.NoKeys++ // an earlier handshake's, or forged
			return false
		}
	}
	body, counter, err := keys.opener.Open(c.sec.scratch[:0], b)
	if err != nil {
		c.stats.AuthFailed++
		return false
	}
	if keys.window.Accept(counter) != guard.Fresh {
		c.stats.Replayed++
		return false
	}
	h, _ := packet.PeekHeader(b) // Peek checked magic and version
	if err := c.pkt.ParseBody(h, body); err != nil {
		c.stats.Malformed++ // authentic but malformed: a receiver bug
		c.log.Warn().Err(err).Str("from", from.String()).Msg("authenticated feedback does not decode")
		return false
	}
	return true
}
