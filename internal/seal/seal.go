package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
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
	// SaltLen is the size of the receiver salt carried by ToSender packets.
	SaltLen = 8
	// TagLen is the size of the GCM authentication tag.
	TagLen = 16
	// NonceLen is the size of the AES-GCM nonce.
	NonceLen = 12
	// KeyLen is the size of the pre-shared key and of every packet key.
	KeyLen = 32
	// MaxOverhead is the most bytes sealing adds to a packet (ToSender).
	MaxOverhead = SaltLen + CounterLen + TagLen
)

// PrefixLen returns the bytes between the header and the encrypted body:
// the counter, preceded by the salt for ToSender.
func (d Direction) PrefixLen() int {
	if d == ToSender {
		return SaltLen + CounterLen
	}
	return CounterLen
}

// Overhead returns the bytes sealing adds to a packet in this direction:
// 24 for ToReceiver, 32 for ToSender. A sender's largest payload shrinks by
// as much, since a sealed datagram must still fit packet.MaxPacketLen.
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
	// ErrSalt: a ToSender packet carries another receiver's salt.
	ErrSalt = errors.New("seal: packet carries another receiver salt")
	// ErrKeyMismatch: the packet was sealed under a different pre-shared key.
	ErrKeyMismatch = errors.New("seal: packet sealed under a different pre-shared key")
	// ErrAuth: the tag does not verify; the packet is forged or corrupted.
	ErrAuth = errors.New("seal: authentication failed")
	// ErrExhausted: the sealer has used its last counter; the session
	// must end (a new session id gives a new key).
	ErrExhausted = errors.New("seal: counter exhausted, session must be renewed")
	// ErrHeader: Seal was given something other than a plain header of
	// this sealer's session.
	ErrHeader = errors.New("seal: not a plain telewire header")
	// ErrTooLarge: the sealed datagram would exceed packet.MaxPacketLen.
	ErrTooLarge = errors.New("seal: sealed datagram larger than packet.MaxPacketLen")
	// ErrParams: invalid parameters for a sealer or opener.
	ErrParams = errors.New("seal: invalid parameters")
)

// Params names one packet key: a session, a direction and, for ToSender,
// the receiver's salt.
type Params struct {
	Session uint64
	Dir     Direction
	// Salt is the receiver's salt ([RandomSalt]) for ToSender and must be
	// zero for ToReceiver, where the session id serves as salt.
	Salt uint64
}

func (p Params) validate() error {
	if !p.Dir.valid() {
		return fmt.Errorf("%w: direction %d", ErrParams, uint8(p.Dir))
	}
	if p.Dir == ToReceiver && p.Salt != 0 {
		return fmt.Errorf("%w: a to-receiver key takes no salt", ErrParams)
	}
	return nil
}

// newAEAD derives the packet key for p and returns its AES-256-GCM.
func (k *Key) newAEAD(p Params) (cipher.AEAD, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	key, err := k.packetKey(p)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Sealer seals the packets of one session in one direction. It owns the
// counter that makes every nonce unique, so there must be exactly one
// Sealer per key: one per session at a sender, one per session and salt at
// a receiver. A Sealer is not safe for concurrent use.
type Sealer struct {
	aead  cipher.AEAD
	p     Params
	keyID [4]byte
	next  uint64
	nonce [NonceLen]byte
	ad    [packet.HeaderLen + SaltLen + CounterLen]byte
}

// NewSealer returns a Sealer for p whose first packet carries counter
// first. Pass [RandomCounter]'s value in production (see the package
// documentation for why) and a fixed value in tests.
func (k *Key) NewSealer(p Params, first uint64) (*Sealer, error) {
	aead, err := k.newAEAD(p)
	if err != nil {
		return nil, err
	}
	s := &Sealer{aead: aead, p: p, next: first}
	binary.BigEndian.PutUint32(s.keyID[:], k.id)
	return s, nil
}

// Params returns the key's session, direction and salt.
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
	off := packet.HeaderLen
	if s.p.Dir == ToSender {
		binary.BigEndian.PutUint64(ad[off:], s.p.Salt)
		off += SaltLen
	}
	binary.BigEndian.PutUint64(ad[off:], ctr)
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
// has scratch space); one per session (and salt) is the intended use.
type Opener struct {
	aead  cipher.AEAD
	p     Params
	keyID [4]byte
	nonce [NonceLen]byte
	ad    [packet.HeaderLen + SaltLen + CounterLen]byte
}

// NewOpener returns an Opener for the key named by p.
func (k *Key) NewOpener(p Params) (*Opener, error) {
	aead, err := k.newAEAD(p)
	if err != nil {
		return nil, err
	}
	o := &Opener{aead: aead, p: p}
	binary.BigEndian.PutUint32(o.keyID[:], k.id)
	return o, nil
}

// Params returns the key's session, direction and salt.
func (o *Opener) Params() Params { return o.p }

// Open authenticates and decrypts the sealed datagram b. It appends the
// plaintext body (what followed the header before sealing) to dst and
// returns it with the packet's counter. It checks, in order: length,
// magic and version, that the packet is sealed, its direction, the length
// field, the session, the salt (ToSender), the key id and the tag.
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
	off := packet.HeaderLen
	if o.p.Dir == ToSender {
		if binary.BigEndian.Uint64(b[off:]) != o.p.Salt {
			return dst, 0, ErrSalt
		}
		off += SaltLen
	}
	if [4]byte(b[offKeyID:offKeyID+4]) != o.keyID {
		return dst, 0, ErrKeyMismatch
	}
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
	Salt    uint64 // ToSender only
	Counter uint64
	KeyID   uint32
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
	off := packet.HeaderLen
	if d == ToSender {
		in.Salt = binary.BigEndian.Uint64(b[off:])
		off += SaltLen
	}
	in.Counter = binary.BigEndian.Uint64(b[off:])
	return in, nil
}

// IsSealed reports whether b's header says it is sealed (reserved byte
// non-zero). It checks only that b is long enough to have a header.
func IsSealed(b []byte) bool {
	return len(b) >= packet.HeaderLen && b[offEnvelope] != 0
}

// RandomCounter returns a starting counter for a Sealer: uniformly random
// in [0, 2^63), so that at least 2^63 packets can be sealed before the
// counter is exhausted.
func RandomCounter() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]) >> 1, nil
}

// RandomSalt returns a receiver salt: 64 random bits, drawn once per
// receiver start.
func RandomSalt() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]), nil
}
