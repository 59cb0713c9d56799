package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/telewire/telewire/packet"
)

// Direction says which way a sealed packet travels. Its value is the byte
// a sealed header carries at offset 5 (zero there means not sealed).
type Direction uint8

// The two directions.
const (
	// ToReceiver is sender to receiver: DATA, PARITY, HEARTBEAT and the
	// sender's "unavailable" NACK.
	ToReceiver Direction = 1
	// ToSender is receiver to sender: NACK and REPORT.
	ToSender Direction = 2
)

// String returns "to-receiver" or "to-sender".
func (d Direction) String() string {
	switch d {
	case ToReceiver:
		return "to-receiver"
	case ToSender:
		return "to-sender"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

func (d Direction) valid() bool { return d == ToReceiver || d == ToSender }

// Sizes of the sealed format, in bytes.
const (
	// CounterLen is the size of the counter carried after the header.
	CounterLen = 8
	// TagLen is the size of the GCM authentication tag.
	TagLen = 16
	// MACLen is the size of the MAC that ends a HELLO, WELCOME or RETRY.
	MACLen = 16
	// NonceLen is the size of the AES-GCM nonce.
	NonceLen = 12
	// KeyLen is the size of the pre-shared key and of every traffic key.
	KeyLen = 32
	// MaxOverhead is the most bytes sealing adds to a packet.
	MaxOverhead = CounterLen + TagLen
)

// PrefixLen returns the bytes between the header and the encrypted body:
// the counter, in both directions.
func (d Direction) PrefixLen() int { return CounterLen }

// Overhead returns the bytes sealing adds to a packet: 24 in either
// direction. A sender's largest payload shrinks by as much, since a sealed
// datagram must still fit packet.MaxPacketLen.
func (d Direction) Overhead() int { return d.PrefixLen() + TagLen }

// Header offsets this package reads and writes; the rest of the layout is
// package packet's.
const (
	offMagic    = 0
	offVersion  = 2
	offKind     = 3
	offEnvelope = 5
	offLength   = 6
	offSession  = 8
	offKeyID    = 20
)

// Errors returned by Seal and Open. They are sentinels, so that callers
// test them with errors.Is and rejecting a datagram allocates nothing.
var (
	// ErrShort: the datagram is too short for a sealed packet.
	ErrShort = errors.New("seal: datagram too short for a sealed packet")
	// ErrMalformed: bad magic or version, or a length field that disagrees
	// with the datagram.
	ErrMalformed = errors.New("seal: not a well-formed telewire datagram")
	// ErrNotSealed: a plain packet where a sealed one is required.
	ErrNotSealed = errors.New("seal: packet is not sealed")
	// ErrDirection: sealed for the other direction, or an unknown one.
	ErrDirection = errors.New("seal: packet sealed for another direction")
	// ErrSession: the header's session is not the one this key is for.
	ErrSession = errors.New("seal: packet for another session")
	// ErrKeyTag: the packet was sealed under traffic keys other than
	// this opener's (another handshake's, or none this end knows).
	ErrKeyTag = errors.New("seal: packet sealed under other traffic keys")
	// ErrKeyMismatch: a handshake message made with a different
	// pre-shared key.
	ErrKeyMismatch = errors.New("seal: handshake under a different pre-shared key")
	// ErrAuth: the tag does not verify; the packet is forged or corrupted.
	ErrAuth = errors.New("seal: authentication failed")
	// ErrExhausted: the sealer has used its last counter; a new handshake
	// must give new keys.
	ErrExhausted = errors.New("seal: counter exhausted, session must be renewed")
	// ErrHeader: Seal was given something other than a plain header of
	// this sealer's session.
	ErrHeader = errors.New("seal: not a plain telewire header")
	// ErrTooLarge: the sealed datagram would exceed packet.MaxPacketLen.
	ErrTooLarge = errors.New("seal: sealed datagram larger than packet.MaxPacketLen")
	// ErrParams: invalid parameters for a sealer or opener.
	ErrParams = errors.New("seal: invalid parameters")
)

// Params names what a traffic key seals: one session in one direction.
type Params struct {
	Session uint64
	Dir     Direction
}

func (p Params) validate() error {
	if !p.Dir.valid() {
		return fmt.Errorf("%w: direction %d", ErrParams, uint8(p.Dir))
	}
	return nil
}

// newAEAD returns the AES-256-GCM of t's key for p's direction.
func (t *Traffic) newAEAD(p Params) (cipher.AEAD, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	key := &t.toReceiver
	if p.Dir == ToSender {
		key = &t.toSender
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Sealer seals the packets of one session in one direction under the
// traffic keys of one handshake. It owns the counter that makes every
// nonce unique, so there must be exactly one Sealer per traffic key and
// direction. A Sealer is not safe for concurrent use.
type Sealer struct {
	aead  cipher.AEAD
	p     Params
	keyID [4]byte
	next  uint64
	nonce [NonceLen]byte
	ad    [packet.HeaderLen + CounterLen]byte
}

// NewSealer returns a Sealer for p under t whose first packet carries
// counter first: 0 in production (each handshake's keys are new, see the
// package documentation), any value in tests.
func (t *Traffic) NewSealer(p Params, first uint64) (*Sealer, error) {
	aead, err := t.newAEAD(p)
	if err != nil {
		return nil, err
	}
	s := &Sealer{aead: aead, p: p, next: first}
	binary.BigEndian.PutUint32(s.keyID[:], t.tag)
	return s, nil
}

// Params returns the key's session and direction.
func (s *Sealer) Params() Params { return s.p }

// Next returns the counter the next sealed packet will carry.
func (s *Sealer) Next() uint64 { return s.next }

// Remaining returns how many packets the sealer can still seal.
func (s *Sealer) Remaining() uint64 { return math.MaxUint64 - s.next }

// Seal appends to dst the sealed datagram for a plain packet given as its
// 24-byte header and its body, and returns the extended slice. header is a
// plain header of this sealer's session as packet.Packet.AppendTo writes it
// (its length and CRC fields are ignored and rewritten); body is everything
// after it. Seal takes the next counter: each call, a retransmission
// included, produces a packet with a nonce never used before.
//
// body must not overlap the bytes Seal appends to dst, except exactly: a
// body that already sits at dst[len(dst)+24+PrefixLen:] is encrypted in
// place ([Sealer.SealInPlace] does that). On error dst is returned unchanged
// and no counter is used. Seal does not allocate when dst has room for
// len(body) + 24 + Overhead bytes.
func (s *Sealer) Seal(dst, header, body []byte) ([]byte, error) {
	if len(header) != packet.HeaderLen ||
		binary.BigEndian.Uint16(header[offMagic:]) != packet.Magic ||
		header[offVersion] != packet.Version ||
		header[offEnvelope] != 0 {
		return dst, ErrHeader
	}
	if binary.BigEndian.Uint64(header[offSession:]) != s.p.Session {
		return dst, ErrSession
	}
	pre := s.p.Dir.PrefixLen()
	total := packet.HeaderLen + pre + len(body) + TagLen
	if total > packet.MaxPacketLen {
		return dst, ErrTooLarge
	}
	if s.next == math.MaxUint64 {
		return dst, ErrExhausted
	}
	ctr := s.next
	s.next++

	ad := s.ad[:packet.HeaderLen+pre]
	copy(ad, header)
	ad[offEnvelope] = byte(s.p.Dir)
	binary.BigEndian.PutUint16(ad[offLength:], uint16(total))
	copy(ad[offKeyID:], s.keyID[:])
	binary.BigEndian.PutUint64(ad[packet.HeaderLen:], ctr)
	putNonce(&s.nonce, s.p.Dir, header[offKind], ctr)

	dst = append(dst, ad...)
	return s.aead.Seal(dst, s.nonce[:], body, ad), nil
}

// SealInPlace seals the plain packet pkt (header and body, as
// packet.Packet.AppendTo encodes it) in its own storage: the body moves up
// by the prefix, is encrypted where it lands, and the tag follows it. pkt
// must have capacity for len(pkt) + Overhead bytes; the result is
// pkt[:len(pkt)+Overhead]. On error pkt is returned unchanged (its bytes
// may have moved only if the error is ErrExhausted or ErrTooLarge, which
// are checked first, so in practice it is untouched).
func (s *Sealer) SealInPlace(pkt []byte) ([]byte, error) {
	if len(pkt) < packet.HeaderLen {
		return pkt, ErrHeader
	}
	pre := s.p.Dir.PrefixLen()
	n := len(pkt) - packet.HeaderLen
	if cap(pkt) < len(pkt)+pre+TagLen {
		return pkt, fmt.Errorf("%w: packet buffer lacks %d bytes of capacity", ErrParams, pre+TagLen)
	}
	if packet.HeaderLen+pre+n+TagLen > packet.MaxPacketLen {
		return pkt, ErrTooLarge
	}
	if s.next == math.MaxUint64 {
		return pkt, ErrExhausted
	}
	var hdr [packet.HeaderLen]byte
	copy(hdr[:], pkt)
	if binary.BigEndian.Uint16(hdr[offMagic:]) != packet.Magic || hdr[offVersion] != packet.Version || hdr[offEnvelope] != 0 {
		return pkt, ErrHeader
	}
	if binary.BigEndian.Uint64(hdr[offSession:]) != s.p.Session {
		return pkt, ErrSession
	}
	body := pkt[packet.HeaderLen+pre : packet.HeaderLen+pre+n]
	copy(body, pkt[packet.HeaderLen:]) // memmove: the regions overlap
	return s.Seal(pkt[:0], hdr[:], body)
}

func putNonce(n *[NonceLen]byte, dir Direction, kind byte, ctr uint64) {
	n[0], n[1], n[2], n[3] = byte(dir), kind, 0, 0
	binary.BigEndian.PutUint64(n[4:], ctr)
}

// Opener opens the packets of one session sealed in one direction. It
// holds no state that a datagram can change: Open either returns the
// plaintext or an error, and the anti-replay check on the returned counter
// is the caller's next step. An Opener is not safe for concurrent use (it
// has scratch space); one per session is the intended use.
type Opener struct {
	aead  cipher.AEAD
	p     Params
	keyID [4]byte
	nonce [NonceLen]byte
	ad    [packet.HeaderLen + CounterLen]byte
}

// NewOpener returns an Opener for p under t.
func (t *Traffic) NewOpener(p Params) (*Opener, error) {
	aead, err := t.newAEAD(p)
	if err != nil {
		return nil, err
	}
	o := &Opener{aead: aead, p: p}
	binary.BigEndian.PutUint32(o.keyID[:], t.tag)
	return o, nil
}

// Params returns the key's session and direction.
func (o *Opener) Params() Params { return o.p }

// Open authenticates and decrypts the sealed datagram b. It appends the
// plaintext body (what followed the header before sealing) to dst and
// returns it with the packet's counter. It checks, in order: length,
// magic and version, that the packet is sealed, its direction, the length
// field, the session, the key tag and the GCM tag.
//
// Any error means the datagram must be dropped and counted; nothing about
// it may be trusted or recorded. On error the spare capacity of dst may
// have been overwritten. To decrypt in place, pass
// b[packet.HeaderLen+Dir.PrefixLen():][:0] as dst (the ciphertext is then
// overwritten, also on failure). The returned body is dst extended by the
// plaintext. Open does not allocate.
func (o *Opener) Open(dst, b []byte) (body []byte, counter uint64, err error) {
	pre := o.p.Dir.PrefixLen()
	if len(b) < packet.HeaderLen {
		return dst, 0, ErrShort
	}
	if binary.BigEndian.Uint16(b[offMagic:]) != packet.Magic || b[offVersion] != packet.Version {
		return dst, 0, ErrMalformed
	}
	switch env := Direction(b[offEnvelope]); {
	case env == 0:
		return dst, 0, ErrNotSealed
	case env != o.p.Dir:
		return dst, 0, ErrDirection
	}
	if int(binary.BigEndian.Uint16(b[offLength:])) != len(b) {
		return dst, 0, ErrMalformed
	}
	if len(b) < packet.HeaderLen+pre+TagLen {
		return dst, 0, ErrShort
	}
	if binary.BigEndian.Uint64(b[offSession:]) != o.p.Session {
		return dst, 0, ErrSession
	}
	if [4]byte(b[offKeyID:offKeyID+4]) != o.keyID {
		return dst, 0, ErrKeyTag
	}
	off := packet.HeaderLen
	ctr := binary.BigEndian.Uint64(b[off:])
	off += CounterLen
	ad := o.ad[:off]
	copy(ad, b)
	putNonce(&o.nonce, o.p.Dir, b[offKind], ctr)
	out, err := o.aead.Open(dst, o.nonce[:], b[off:], ad)
	if err != nil {
		return dst, 0, ErrAuth
	}
	return out, ctr, nil
}

// Info is what a sealed header says before it is authenticated. It lets a
// demultiplexer find (or decide whether to derive) the Opener for a
// datagram. None of it may be trusted, counted per session or stored until
// Open has succeeded.
type Info struct {
	Dir     Direction
	Kind    packet.Kind
	Session uint64
	Stream  uint32
	Counter uint64 // sealed packets; meaningless for HELLO, WELCOME, RETRY
	// KeyID is the traffic key tag of a sealed packet, or the pre-shared
	// key's id ([Key.ID]) on HELLO, WELCOME and RETRY.
	KeyID uint32
}

// Peek reads the unauthenticated routing fields of the sealed datagram b.
// It checks the length, magic, version, direction and length field, as Open
// does first; it returns ErrNotSealed for a plain packet.
func Peek(b []byte) (Info, error) {
	if len(b) < packet.HeaderLen {
		return Info{}, ErrShort
	}
	if binary.BigEndian.Uint16(b[offMagic:]) != packet.Magic || b[offVersion] != packet.Version {
		return Info{}, ErrMalformed
	}
	d := Direction(b[offEnvelope])
	if d == 0 {
		return Info{}, ErrNotSealed
	}
	if !d.valid() {
		return Info{}, ErrDirection
	}
	if int(binary.BigEndian.Uint16(b[offLength:])) != len(b) {
		return Info{}, ErrMalformed
	}
	if len(b) < packet.HeaderLen+d.PrefixLen()+TagLen {
		return Info{}, ErrShort
	}
	in := Info{
		Dir:     d,
		Kind:    packet.Kind(b[offKind]),
		Session: binary.BigEndian.Uint64(b[offSession:]),
		Stream:  binary.BigEndian.Uint32(b[offSession+8:]),
		KeyID:   binary.BigEndian.Uint32(b[offKeyID:]),
	}
	in.Counter = binary.BigEndian.Uint64(b[packet.HeaderLen:])
	return in, nil
}

// IsSealed reports whether b's header says it is sealed (reserved byte
// non-zero). It checks only that b is long enough to have a header.
func IsSealed(b []byte) bool {
	return len(b) >= packet.HeaderLen && b[offEnvelope] != 0
}
