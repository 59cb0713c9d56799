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
	// pendingHandshakeTimeout is how long a subscriber admitted with a
	// key has to complete its handshake (about eight HELLOs with the
	// back-off); then it is dropped (Stats.HandshakesExpired) and the
	// sender keeps nothing of it. A Config.To destination never expires:
	// its HELLOs go on, as with one receiver.
	pendingHandshakeTimeout = int64(3 * time.Second)
	// maxPendingHandshakes caps the subscribers admitted with a key whose
	// handshake has not completed: a further valid echo is refused
	// (SubscriberStats.RefusedPending) until one completes or expires.
	maxPendingHandshakes = 64
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

// heldPacket is a plain packet waiting for traffic keys, in secure.held.
// Without keys no feedback is taken, so nothing is answered while packets
// are held: they are all DATA, PARITY and HEARTBEAT for every destination.
type heldPacket struct{ off, n int }

// destKeys is one destination's handshake and traffic keys. A sender with
// one receiver has one; a fan-out sender one per destination (Config.To's
// and subscribers), each with its own ephemeral keys, traffic keys,
// rekeying and replay window, so that forward secrecy and freshness hold
// per receiver and a receiver's feedback is taken only under its keys.
type destKeys struct {
	addr      netip.AddrPort
	static    bool // the one receiver or a Config.To address: never expires
	cur, prev *txKeys
	prevUntil int64
	attempt   *seal.Initiation // the HELLO awaiting its WELCOME; nil if none
	retryAt   int64            // when the next attempt goes if no WELCOME came
	timeout   int64            // the current attempt's wait
	lastHello int64            // timestamp of the latest HELLO: each is newer
	helloAt   int64            // when the current handshake's HELLO was first sent
	since     int64            // when it became a destination
}

// secure is the sender's encryption state; nil in Core when encryption is
// off.
type secure struct {
	key *seal.Key
	hs  *seal.Handshaker
	// fan: several destinations or Listen. Each DATA, PARITY and
	// HEARTBEAT is then sealed once per destination with keys (fanout),
	// and answers under the keys of the destination they go to.
	fan bool
	// dests follows Core.dests: one key state per destination.
	dests, spare []*destKeys
	// The destinations with keys, and their sealers: what fanout seals
	// for (rebuilt when keys or destinations change).
	addrs   []netip.AddrPort
	sealers []outbox.InPlaceSealer
	plain   []byte // a datagram's plain bytes while its copies are sealed
	statics int    // destinations that are static
	grow    int    // bytes sealing adds to a packet
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
	// once the new handshake completes. One receiver only: a fan-out
	// destination that lost its keys gets a HEARTBEAT from the stream's
	// start instead and asks for what it misses (see keyed).
	sent   [sentRing]sentRef
	sentN  uint64
	resend []sentRef
	// warnedPlain: unencrypted feedback was logged.
	warnedPlain bool
	// opened is the destination whose keys opened the feedback being
	// handled.
	opened *destKeys
}

func newSecure(key *seal.Key, fan bool, width int) (*secure, error) {
	sec := &secure{
		key:     key,
		hs:      key.NewHandshaker(nil),
		fan:     fan,
		dests:   make([]*destKeys, 0, width),
		spare:   make([]*destKeys, 0, width),
		addrs:   make([]netip.AddrPort, 0, width),
		sealers: make([]outbox.InPlaceSealer, 0, width),
		plain:   make([]byte, 0, packet.MaxPacketLen),
		grow:    seal.ToReceiver.Overhead(),
		scratch: make([]byte, 0, packet.MaxPacketLen),
		held:    make([]heldPacket, 0, heldPackets),
		heldBuf: make([]byte, 0, heldBytes),
		resend:  make([]sentRef, 0, sentRing),
	}
	sec.holding.sec = sec
	return sec, nil
}

// dest returns the key state of the destination at addr, nil if none.
func (sec *secure) dest(addr netip.AddrPort) *destKeys {
	for _, d := range sec.dests {
		if d.addr == addr {
			return d
		}
	}
	return nil
}

// byTag returns the destination holding keys tagged tag, current or
// previous within their overlap, and those keys.
func (sec *secure) byTag(tag uint32, now int64) (*destKeys, *txKeys) {
	for _, d := range sec.dests {
		if d.cur != nil && d.cur.tag == tag {
			return d, d.cur
		}
		if d.prev != nil && d.prev.tag == tag && now <= d.prevUntil {
			return d, d.prev
		}
	}
	return nil, nil
}

// syncKeys makes the key states follow Core.dests (after a subscriber
// joined or left): a destination that stays keeps its keys, a new one
// starts its handshake, a gone one's keys are forgotten.
func (c *Core) syncKeys(now int64) {
	sec := c.sec
	if sec == nil {
		return
	}
	next := sec.spare[:0]
	added := false
	for _, a := range c.dests {
		d := sec.dest(a)
		if d == nil {
			d = &destKeys{addr: a, static: c.subs == nil || c.subs.isStatic(a), since: now}
			added = true
		}
		next = append(next, d)
	}
	clear(sec.dests)
	sec.spare, sec.dests = sec.dests[:0], next
	sec.statics = 0
	for _, d := range sec.dests {
		if d.static {
			sec.statics++
		}
	}
	sec.rebuild()
	if added {
		c.secureStart(now)
	}
}

// rebuild lists the destinations with keys and their sealers.
func (sec *secure) rebuild() {
	clear(sec.sealers)
	sec.addrs, sec.sealers = sec.addrs[:0], sec.sealers[:0]
	for _, d := range sec.dests {
		if d.cur != nil {
			sec.addrs = append(sec.addrs, d.addr)
			sec.sealers = append(sec.sealers, d.cur.sealer)
		}
	}
}

// pendingSubscribers counts the subscribers without keys.
func (sec *secure) pendingSubscribers() int {
	n := 0
	for _, d := range sec.dests {
		if !d.static && d.cur == nil {
			n++
		}
	}
	return n
}

// pending counts the destinations without keys.
func (sec *secure) pending() int { return len(sec.dests) - len(sec.addrs) }

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

// holdingPackets reports whether packets go to the held queue: packets
// held earlier are not all out yet, or no destination has keys and there
// is a configured one to wait for (the one receiver, or Config.To's). A
// sender that only takes subscribers holds nothing: what goes while no
// subscriber has keys reaches no one (a subscriber starts at the live
// edge anyway).
func (sec *secure) holdingPackets() bool {
	return len(sec.held) > 0 || len(sec.addrs) == 0 && sec.statics > 0
}

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

// sealLast seals the datagram just queued in out for every destination
// (DATA, PARITY, HEARTBEAT), if encryption is on. Without traffic keys it
// moves the datagram to the held queue, sent sealed once a handshake
// completes. With one receiver it seals in place under its keys; a
// fan-out sender leaves it plain for fanout, which seals a copy per
// destination. On error the datagram is gone from the batch.
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
	if c.sec.fan {
		return nil // fanout seals it, once per destination with keys
	}
	return c.sealUnder(out, c.sec.dests[0])
}

// sealTo seals the datagram just queued in out for the one destination at
// to (a retransmission, an answer): under that destination's keys. One
// that has none gets nothing (the datagram is removed; errNoKeys).
func (c *Core) sealTo(out *outbox.Batch, to netip.AddrPort) error {
	if c.sec == nil {
		return nil
	}
	if !c.sec.fan {
		return c.sealLast(out)
	}
	d := c.sec.dest(to)
	if d == nil || d.cur == nil {
		_ = out.Fanout(nil) // removes it: nothing unsealed is written
		c.stats.NotKeyed++
		return errNoKeys
	}
	return c.sealUnder(out, d)
}

// errNoKeys: the destination has no keys (yet).
var errNoKeys = errors.New("sender: the destination has no keys yet")

// sealUnder seals the datagram just queued under d's current keys.
func (c *Core) sealUnder(out *outbox.Batch, d *destKeys) error {
	if err := out.SealLast(d.cur.sealer, c.sec.grow); err != nil {
		if !errors.Is(err, outbox.ErrFull) {
			c.stats.SealErrors++
			c.log.Error().Err(err).Msg("sealing failed, packet dropped")
		}
		return err
	}
	return nil
}

// fanoutSealed is fanout with a key: the datagram just queued (left plain
// by sealLast) goes to each destination with keys, sealed under its keys;
// destinations still handshaking get nothing (NotKeyed). Nothing happens
// when the datagram was held, or was sealed in place for one receiver.
func (c *Core) fanoutSealed() {
	sec := c.sec
	if !sec.fan || sec.holdingPackets() {
		return
	}
	out := c.out.Current()
	c.stats.NotKeyed += uint64(sec.pending())
	if len(sec.addrs) == 0 {
		c.stats.NoDestination++ // nobody has keys: it goes nowhere
	}
	n, err := out.FanoutSealed(sec.addrs, sec.sealers, sec.grow, sec.plain)
	switch {
	case errors.Is(err, outbox.ErrFull):
		c.stats.FeedbackDropped++ // cannot happen: room was checked for every copy
	case err != nil:
		c.stats.SealErrors += uint64(len(sec.addrs) - n)
		c.log.Error().Err(err).Msg("sealing failed, packet dropped")
	}
}

// noteSealed remembers the counter the DATA just sealed took (nothing
// when it was held: it is sealed later, under new keys; nothing with
// several destinations, see secure.sent).
func (c *Core) noteSealed(stream uint32, seq uint64) {
	sec := c.sec
	if sec == nil || sec.fan || sec.holdingPackets() {
		return
	}
	cur := sec.dests[0].cur
	sec.sent[sec.sentN%sentRing] = sentRef{tag: cur.tag, ctr: cur.sealer.Next() - 1, stream: stream, seq: seq}
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
// with. One receiver only (see secure.sent).
func (c *Core) resendLost(now int64) {
	sec := c.sec
	d := sec.dests[0]
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
		if !out.Room(len(data)+sec.grow) || out.AppendRaw(data, d.addr) != nil {
			break
		}
		_ = packet.MarkRetransmit(out.Datagrams()[out.Len()-1].Data) // stored packets are DATA
		if err := out.SealLast(d.cur.sealer, sec.grow); err != nil {
			c.stats.SealErrors++
			continue
		}
		c.stats.Resent++
	}
	sec.resend = sec.resend[:0]
}

// releaseHeld seals and queues the held packets, in order, as far as the
// outbox takes them: to the one receiver, or to every destination with
// keys.
func (c *Core) releaseHeld() {
	sec := c.sec
	if len(sec.addrs) == 0 || len(sec.held) == 0 {
		return
	}
	out := c.out.Current()
	done := 0
	for _, h := range sec.held {
		if !out.RoomFor(len(sec.addrs), len(sec.addrs)*(h.n+sec.grow)) {
			break
		}
		if out.AppendRaw(sec.heldBuf[h.off:h.off+h.n], sec.addrs[0]) != nil {
			break
		}
		done++
		if !sec.fan {
			if err := out.SealLast(sec.dests[0].cur.sealer, sec.grow); err != nil {
				c.stats.SealErrors++
			}
			continue
		}
		if n, err := out.FanoutSealed(sec.addrs, sec.sealers, sec.grow, sec.plain); err != nil {
			c.stats.SealErrors += uint64(len(sec.addrs) - n)
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

// secureStart begins a handshake with each destination that has neither
// keys nor one under way.
func (c *Core) secureStart(now int64) {
	if c.sec == nil {
		return
	}
	for _, d := range c.sec.dests {
		if d.cur == nil && d.attempt == nil {
			c.hello(d, now)
		}
	}
}

// firstTimeout is the wait of a new handshake's first HELLO.
func (c *Core) firstTimeout() int64 {
	if c.rtt.Samples() == 0 {
		return firstHandshakeTimeout
	}
	return min(max(3*c.rtt.Smoothed(), minHandshakeTimeout), maxHandshakeTimeout)
}

// secureTick runs the handshakes' timers: the first handshakes, retries
// with back-off, rekeying, the expiry of subscribers that never completed
// theirs; and releases held packets.
func (c *Core) secureTick(now int64) {
	sec := c.sec
	if sec == nil {
		return
	}
	expired := false
	for _, d := range sec.dests {
		if d.prev != nil && now > d.prevUntil {
			d.prev = nil
		}
		switch {
		case d.cur == nil && !d.static && now-d.since > pendingHandshakeTimeout:
			// A subscriber whose handshake does not complete (its WELCOMEs
			// do not authenticate, or it is gone): dropped, nothing kept.
			c.subs.remove(d.addr)
			c.stats.HandshakesExpired++
			expired = true
			c.log.Info().Stringer("addr", d.addr).Msg("subscriber's handshake did not complete: dropped")
		case d.attempt != nil:
			if now >= d.retryAt {
				d.timeout = min(d.timeout+d.timeout/2, maxHandshakeTimeout)
				d.retryAt = now + d.timeout
				c.sendHello(d)
			}
		case d.cur == nil:
			c.hello(d, now)
		case now-d.cur.since >= int64(c.cfg.RekeyInterval) || d.cur.sealer.Next() >= c.cfg.RekeyPackets:
			c.hello(d, now)
		}
	}
	if expired {
		c.syncDests(now)
	}
	c.releaseHeld()
}

// secureTimer returns when secureTick next has work: the next HELLO of a
// handshake under way, a pending subscriber's expiry, or a rekey. (Held
// packets that did not fit the outbox go with the next Tick, which
// follows every write of it; the first handshake starts at the first Tick
// or Send.)
func (c *Core) secureTimer() (int64, bool) {
	sec := c.sec
	if sec == nil {
		return 0, false
	}
	var at int64
	ok := false
	consider := func(t int64) {
		if !ok || t < at {
			at, ok = t, true
		}
	}
	for _, d := range sec.dests {
		switch {
		case d.attempt != nil:
			consider(d.retryAt)
		case d.cur != nil:
			consider(d.cur.since + int64(c.cfg.RekeyInterval))
		}
		if d.cur == nil && !d.static {
			consider(d.since + pendingHandshakeTimeout + 1)
		}
	}
	return at, ok
}

// hello starts a handshake with d: a new ephemeral key and a HELLO, sent
// again at retryAt until its WELCOME arrives.
func (c *Core) hello(d *destKeys, now int64) {
	sec := c.sec
	ts := max(now, d.lastHello+1) // strictly newer than the last, for the receiver's replay check
	in, err := sec.hs.Initiate(c.session, ts)
	if err != nil {
		c.log.Error().Err(err).Msg("no randomness for a handshake")
		return
	}
	d.timeout = c.firstTimeout()
	d.attempt, d.lastHello, d.retryAt = in, ts, now+d.timeout
	d.helloAt = now
	c.sendHello(d)
}

// sendHello queues d's current HELLO.
func (c *Core) sendHello(d *destKeys) {
	if err := c.out.Current().AppendRaw(d.attempt.Hello(), d.addr); err != nil {
		c.stats.FeedbackDropped++ // queue full: the retry timer sends it again
		return
	}
	c.stats.HandshakeAttempts++
}

// handleWelcome completes the handshake in progress with the destination
// the WELCOME comes from (the one receiver's, from wherever it comes: a
// relay may answer from another address).
func (c *Core) handleWelcome(b []byte, from netip.AddrPort, now int64) {
	sec := c.sec
	d := sec.dest(from)
	if !sec.fan {
		d = sec.dests[0]
	}
	if d == nil || d.attempt == nil {
		c.stats.Unexpected++ // a late or repeated WELCOME
		return
	}
	t, err := sec.hs.Finish(d.attempt, b)
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
	if d.retryAt-d.timeout == d.helloAt {
		// Only an answer to the first copy of the HELLO measures a
		// round trip: after a retry, which copy was answered is unknown.
		if sample := now - d.helloAt; sample > 0 {
			c.rtt.Observe(sample)
			c.stats.HandshakeRTTNanos = sample
		}
	}
	first := d.cur == nil
	if d.cur != nil {
		d.prev, d.prevUntil = d.cur, now+keyOverlap
		c.stats.Rekeys++
	}
	d.cur, d.attempt = keys, nil
	c.stats.Handshakes++
	sec.rebuild()
	// CONFIRM first, under the new keys: it tells the receiver they are
	// in use and gives it the round trip. Then what was held, and, when
	// something was, a second CONFIRM behind it in case the first is
	// lost: the receiver's first NACKs are for that burst.
	held := len(sec.held) > 0 || len(sec.resend) > 0
	c.confirm(d)
	if !sec.fan {
		c.resendLost(now)
	}
	c.releaseHeld()
	if held {
		c.confirm(d)
	}
	if sec.fan && first && !held {
		// (With packets held, it is the first to have keys: it got the
		// stream from its start just now.)
		c.keyed(d, now)
	}
}

// keyed brings a fan-out destination that has just got keys into the
// streams. A subscriber starts at the live edge (see anchor). A Config.To
// destination (keyed later than the first one, or again after it lost its
// keys) gets, per stream, a HEARTBEAT opening the stream at the oldest
// DATA the retransmit buffer still holds, then that DATA, resent under its
// keys (Stats.Resent) as far as the queue takes it: what does not fit
// arrives as gaps it asks for. (A HEARTBEAT naming the stream's true
// start would not do: a receiver that first hears a stream joins it at
// the live edge.)
func (c *Core) keyed(d *destKeys, now int64) {
	if !d.static {
		c.anchor(d.addr, now)
		return
	}
	p := &c.probe
	out := c.out.Current()
	for _, s := range c.streams {
		first := s.next
		if s.retained != nil {
			back := min(uint64(packet.SeqDiff(s.next, s.start)), uint64(c.cfg.RetransmitPackets))
			for q := s.next - back; q != s.next; q++ {
				if _, ok := s.retained.Get(q, now); ok {
					first = q
					break
				}
			}
		}
		p.Header = packet.Header{Kind: packet.KindHeartbeat, Session: c.session, Stream: s.id}
		p.Heartbeat = packet.Heartbeat{Start: first, Next: first, Timestamp: now}
		if c.queue(p, d.addr) != nil {
			c.stats.FeedbackDropped++
			return
		}
		c.stats.Heartbeats++
		for q := first; q != s.next; q++ {
			data, ok := s.retained.Get(q, now)
			if !ok {
				continue
			}
			if !out.Room(len(data)+c.sec.grow) || out.AppendRaw(data, d.addr) != nil {
				break // the rest arrive as gaps, asked for and repaired
			}
			_ = packet.MarkRetransmit(out.Datagrams()[out.Len()-1].Data) // stored packets are DATA
			if c.sealUnder(out, d) != nil {
				break
			}
			c.stats.Resent++
		}
	}
}

// confirm queues a sealed CONFIRM to d under its current keys, ahead of
// any packets still held.
func (c *Core) confirm(d *destKeys) {
	sec := c.sec
	sec.pkt.Header = packet.Header{Kind: packet.KindConfirm, Session: c.session}
	if out := c.out.Current(); out.Room(seal.ConfirmLen) && out.Append(&sec.pkt, d.addr) == nil {
		_ = out.SealLast(d.cur.sealer, sec.grow)
	}
}

// handleRetry starts a new handshake when a receiver says it holds no
// keys for a packet sealed under the current ones (it restarted). The
// RETRY must name a destination's current key tag and a counter already
// used, so a recorded RETRY replayed later does nothing.
func (c *Core) handleRetry(b []byte, now int64) {
	sec := c.sec
	session, tag, counter, err := sec.hs.OpenRetry(b)
	if err != nil {
		c.countHandshakeError(b, err)
		return
	}
	d, keys := sec.byTag(tag, now)
	switch {
	case session != c.session:
		c.stats.ForeignSession++
		return
	case d == nil || keys != d.cur || counter >= d.cur.sealer.Next() || d.attempt != nil:
		c.stats.RetriesIgnored++ // stale, or a handshake is already under way
		return
	}
	c.log.Info().Stringer("addr", d.addr).Msg("receiver holds no keys for this session (restarted?): handshaking again")
	c.stats.Rehandshakes++
	if !sec.fan {
		sec.lostFrom(tag, counter)
	}
	d.cur, d.prev = nil, nil
	d.since = now // a subscriber has pendingHandshakeTimeout from now again
	sec.rebuild()
	c.hello(d, now)
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

// queue encodes p for the one destination at to into the outbox, sealed
// under its keys when encryption is on.
func (c *Core) queue(p *packet.Packet, to netip.AddrPort) error {
	out := c.out.Current()
	if !out.Room(p.EncodedLen() + c.overhead()) {
		return outbox.ErrFull
	}
	if err := out.Append(p, to); err != nil {
		return err
	}
	return c.sealTo(out, to)
}

// queueAll encodes p, which goes to every destination (a HEARTBEAT), into
// the outbox, sealed or held when encryption is on; fanout then copies it
// to each destination.
func (c *Core) queueAll(p *packet.Packet) error {
	out := c.out.Current()
	if !out.Room(p.EncodedLen() + c.overhead()) {
		return outbox.ErrFull
	}
	if err := out.Append(p, c.remote); err != nil {
		return err
	}
	return c.sealLast(out)
}

// queueTrailing is queueAll for a datagram that goes behind the DATA
// queued with it (outbox.Batch.AppendTrailing): PARITY, so that it does
// not split runs of equal-size DATA under UDP GSO.
func (c *Core) queueTrailing(p *packet.Packet) error {
	out := c.out.Current()
	if !out.Room(p.EncodedLen() + c.overhead()) {
		return outbox.ErrFull
	}
	if err := out.AppendTrailing(p, c.remote); err != nil {
		return err
	}
	return c.sealLast(out)
}

// decode parses feedback datagram b into c.pkt: plainly, or, with
// encryption on, by authenticating and decrypting it first under the keys
// of the destination they name (secure.opened). It reports whether b is
// a packet to act on; everything else (the handshake's WELCOME and RETRY
// included) is handled or counted here.
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
		c.handleWelcome(b, from, now)
		return false
	case info.Kind == packet.KindRetry:
		c.handleRetry(b, now)
		return false
	}
	d, keys := c.sec.byTag(info.KeyID, now)
	if keys == nil {
		c.stats.NoKeys++ // an earlier handshake's, or forged
		return false
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
	c.sec.opened = d
	return true
}

// feedbackFrom returns the address authentic feedback stands for: with
// several destinations, the destination whose keys opened it (its
// answers go there, under those keys, whatever source address the
// datagram claimed); else the datagram's source.
func (c *Core) feedbackFrom(from netip.AddrPort) netip.AddrPort {
	if c.sec != nil && c.sec.fan && c.sec.opened != nil {
		return c.sec.opened.addr
	}
	return from
}
