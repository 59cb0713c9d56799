package sender

import (
	"errors"
	"net/netip"

	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// Bounds of the sender's encryption state that feedback can push on.
const (
	// maxSalts is how many receiver salts (receiver starts) a session
	// keeps keys for; a new one replaces the least recently heard.
	maxSalts = 4
	// derivationsPerSecond caps how often a sealed datagram naming an
	// unknown receiver salt may cost a key derivation, so that a flood of
	// forged salts costs HMACs at this rate and nothing else.
	derivationsPerSecond = 32
)

// feedbackKey opens the feedback of one receiver (one salt) and holds its
// anti-replay window.
type feedbackKey struct {
	salt   uint64
	opener *seal.Opener
	window *guard.Window
	used   int64 // when it last opened a datagram
}

// secure is the sender's encryption state; nil in Core when encryption is
// off.
type secure struct {
	key     *seal.Key
	sealer  *seal.Sealer
	grow    int // bytes sealing adds to a packet
	keys    []*feedbackKey
	derive  guard.Bucket
	scratch []byte // decrypted feedback body
	warned  bool   // key mismatch logged
	foreign guard.ForeignKeys
	// warnedPlain: unencrypted feedback was logged.
	warnedPlain bool
}

func newSecure(key *seal.Key, session uint64) (*secure, error) {
	first, err := seal.RandomCounter()
	if err != nil {
		return nil, err
	}
	sealer, err := key.NewSealer(seal.Params{Session: session, Dir: seal.ToReceiver}, first)
	if err != nil {
		return nil, err
	}
	return &secure{
		key:     key,
		sealer:  sealer,
		grow:    seal.ToReceiver.Overhead(),
		derive:  guard.Bucket{Depth: derivationsPerSecond, PeriodNanos: 1e9},
		scratch: make([]byte, 0, packet.MaxPacketLen),
	}, nil
}

// overhead returns the bytes sealing adds to each packet (0 when off).
func (c *Core) overhead() int {
	if c.sec == nil {
		return 0
	}
	return c.sec.grow
}

// sealLast seals the datagram just queued in out, if encryption is on.
// On error the datagram is gone from the batch.
func (c *Core) sealLast(out *outbox.Batch) error {
	if c.sec == nil {
		return nil
	}
	if err := out.SealLast(c.sec.sealer, c.sec.grow); err != nil {
		if !errors.Is(err, outbox.ErrFull) {
			c.stats.SealErrors++
			c.log.Error().Err(err).Msg("sealing failed, packet dropped")
		}
		return err
	}
	return nil
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
// whether b is a packet to act on; everything else is counted.
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
			c.log.Warn().Stringer("from", from).Msg("unencrypted feedback refused: this sender has a key; give the receiver the same --key-file")
		}
		return false
	case err != nil:
		c.stats.Malformed++
		return false
	case info.Dir != seal.ToSender || info.Session != c.session:
		c.stats.ForeignSession++
		return false
	case info.KeyID != c.sec.key.ID():
		if !c.sec.foreign.Observe(info.KeyID) {
			c.stats.Corrupted++ // a damaged key id, until it repeats
			return false
		}
		c.stats.KeyMismatch++
		if !c.sec.warned {
			c.sec.warned = true
			c.log.Warn().Stringer("from", from).Msg("feedback sealed under another key: check that both ends use the same key file")
		}
		return false
	}
	fk, fresh := c.feedbackKey(info.Salt, now)
	if fk == nil {
		c.stats.AuthFailed++ // could not even try: derivations throttled
		return false
	}
	body, counter, err := fk.opener.Open(c.sec.scratch[:0], b)
	if err != nil {
		c.stats.AuthFailed++
		return false
	}
	if fresh {
		c.keepFeedbackKey(fk)
	}
	if fk.window.Accept(counter) != guard.Fresh {
		c.stats.Replayed++
		return false
	}
	fk.used = now
	h, _ := packet.PeekHeader(b) // Peek checked magic and version
	if err := c.pkt.ParseBody(h, body); err != nil {
		c.stats.Malformed++ // authentic but malformed: a receiver bug
		c.log.Warn().Err(err).Stringer("from", from).Msg("authenticated feedback does not decode")
		return false
	}
	return true
}

// feedbackKey finds the opener for a receiver salt or derives a new one
// (fresh = true), which the caller keeps only once a datagram opened with
// it. It returns nil when derivations are over their rate.
func (c *Core) feedbackKey(salt uint64, now int64) (fk *feedbackKey, fresh bool) {
	for _, k := range c.sec.keys {
		if k.salt == salt {
			return k, false
		}
	}
	if !c.sec.derive.Allow(1, now) {
		c.stats.DerivationsThrottled++
		return nil, false
	}
	o, err := c.sec.key.NewOpener(seal.Params{Session: c.session, Dir: seal.ToSender, Salt: salt})
	if err != nil {
		c.log.Error().Err(err).Msg("deriving a feedback key failed")
		return nil, false
	}
	return &feedbackKey{salt: salt, opener: o, window: guard.NewWindow(guard.DefaultWindow)}, true
}

// keepFeedbackKey adds fk, replacing the least recently used key when
// maxSalts are kept.
func (c *Core) keepFeedbackKey(fk *feedbackKey) {
	if len(c.sec.keys) < maxSalts {
		c.sec.keys = append(c.sec.keys, fk)
		return
	}
	old := 0
	for i, k := range c.sec.keys {
		if k.used < c.sec.keys[old].used {
			old = i
		}
	}
	c.sec.keys[old] = fk
}
