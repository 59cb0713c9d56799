package seal

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"hash"
	"io"

	"github.com/telewire/telewire/packet"
)

// Sizes of the key-exchange datagrams, in bytes.
const (
	// HelloLen is the size of a HELLO datagram; a WELCOME is as long, so
	// that answering a HELLO never amplifies.
	HelloLen = packet.HeaderLen + packet.HelloLen + MACLen
	// WelcomeLen is the size of a WELCOME datagram.
	WelcomeLen = HelloLen
	// RetryLen is the size of a RETRY datagram. It is shorter than the
	// shortest sealed packet, so that answering one with it never
	// amplifies.
	RetryLen = packet.HeaderLen + packet.RetryLen + MACLen
	// ConfirmLen is the size of a sealed CONFIRM.
	ConfirmLen = packet.HeaderLen + CounterLen + TagLen
)

// Labels of the handshake: the MACs' domain separation and the HKDF info
// strings of the traffic keys. They are part of the wire format.
var (
	labelHello      = []byte("telewire/v2 hello")
	labelWelcome    = []byte("telewire/v2 welcome")
	labelRetry      = []byte("telewire/v2 retry")
	labelTranscript = []byte("telewire/v2 transcript")
)

const (
	labelToReceiver = "telewire/v2 to-receiver"
	labelToSender   = "telewire/v2 to-sender"
	labelKeyTag     = "telewire/v2 key tag"
)

// ErrHandshake: a WELCOME that does not answer the HELLO in hand (another
// attempt's, or one whose echoed timestamp differs), or a peer ephemeral
// key that gives no shared secret (a low-order point).
var ErrHandshake = errors.New("seal: handshake message does not answer ours")

// Traffic holds the keys one handshake yields: one AES-256 key per
// direction, and the 32-bit tag that names them in every packet sealed
// under them. Make sealers and openers from it, then Clear it.
type Traffic struct {
	tag        uint32
	toReceiver [KeyLen]byte
	toSender   [KeyLen]byte
}

// Tag returns the key tag: what a sealed packet carries in place of a
// checksum so that a receiver finds which keys open it. It is a PRF output
// of the handshake's secret and reveals nothing about the keys.
func (t *Traffic) Tag() uint32 { return t.tag }

// Clear overwrites the keys. Sealers and openers made before keep working.
func (t *Traffic) Clear() {
	clear(t.toReceiver[:])
	clear(t.toSender[:])
}

// Handshaker builds and checks the handshake messages of one end. It
// reuses one HMAC state, so it is not safe for concurrent use: one per
// sender or receiver core. Checking a message allocates nothing; a key
// agreement (X25519) allocates a little, and only after the message's MAC
// has verified.
type Handshaker struct {
	key    *Key
	random io.Reader
	mac    hash.Hash
	sum    [sha256.Size]byte
	pkt    packet.Packet
	priv   [KeyLen]byte
}

// NewHandshaker returns a Handshaker for k. random supplies the ephemeral
// private keys: crypto/rand.Reader in production (nil means that), a
// seeded source in tests.
func (k *Key) NewHandshaker(random io.Reader) *Handshaker {
	if random == nil {
		random = rand.Reader
	}
	return &Handshaker{key: k, random: random, mac: hmac.New(sha256.New, k.mac)}
}

// Key returns the pre-shared key.
func (h *Handshaker) Key() *Key { return h.key }

// computeMAC returns the first MACLen bytes of HMAC-SHA256(mac key,
// label || parts...), in h.sum.
func (h *Handshaker) computeMAC(label []byte, parts ...[]byte) []byte {
	h.mac.Reset()
	h.mac.Write(label)
	for _, p := range parts {
		h.mac.Write(p)
	}
	return h.mac.Sum(h.sum[:0])[:MACLen]
}

// ephemeral draws a new X25519 private key.
func (h *Handshaker) ephemeral() (*ecdh.PrivateKey, error) {
	defer clear(h.priv[:])
	if _, err := io.ReadFull(h.random, h.priv[:]); err != nil {
		return nil, err
	}
	return ecdh.X25519().NewPrivateKey(h.priv[:])
}

// appendMessage appends a handshake datagram of kind k (header, body from
// hs, MAC space) and returns it, its envelope, length and key id set.
func (h *Handshaker) appendMessage(dst []byte, k packet.Kind, dir Direction, session uint64, hs packet.Handshake) []byte {
	h.pkt.Header = packet.Header{Kind: k, Session: session}
	h.pkt.Handshake = hs
	start := len(dst)
	dst, _ = h.pkt.AppendTo(dst) // a fixed layout with valid fields: cannot fail
	m := dst[start:]
	m[offEnvelope] = byte(dir)
	binary.BigEndian.PutUint16(m[offLength:], uint16(len(m)+MACLen))
	binary.BigEndian.PutUint32(m[offKeyID:], h.key.id)
	return dst
}

// check validates the envelope of handshake datagram b: its size, magic,
// version, kind, flags, direction, length field and pre-shared key id. Its
// MAC is the caller's to check.
func (h *Handshaker) check(b []byte, k packet.Kind, dir Direction, size int) error {
	if len(b) < packet.HeaderLen {
		return ErrShort
	}
	if binary.BigEndian.Uint16(b[offMagic:]) != packet.Magic || b[offVersion] != packet.Version ||
		packet.Kind(b[offKind]) != k || int(binary.BigEndian.Uint16(b[offLength:])) != len(b) {
		return ErrMalformed
	}
	if Direction(b[offEnvelope]) != dir {
		return ErrDirection
	}
	if len(b) != size {
		return ErrMalformed
	}
	if binary.BigEndian.Uint32(b[offKeyID:]) != h.key.id {
		return ErrKeyMismatch
	}
	return nil
}

// parse decodes the body of an authenticated handshake datagram into
// h.pkt.
func (h *Handshaker) parse(b []byte) error {
	hd, err := packet.PeekHeader(b)
	if err != nil {
		return ErrMalformed
	}
	if err := h.pkt.ParseBody(hd, b[packet.HeaderLen:len(b)-MACLen]); err != nil {
		return ErrMalformed
	}
	return nil
}

// Initiation is the sender's side of one handshake attempt: its ephemeral
// private key and the HELLO it sent. Each attempt (retries included) is a
// new Initiation with a new ephemeral key.
type Initiation struct {
	priv      *ecdh.PrivateKey
	hello     [HelloLen]byte
	session   uint64
	timestamp int64
}

// Initiate starts a handshake for session at now (the sender's clock,
// which must increase from one attempt to the next within a session: the
// receiver refuses a HELLO no newer than the last it accepted).
func (h *Handshaker) Initiate(session uint64, now int64) (*Initiation, error) {
	priv, err := h.ephemeral()
	if err != nil {
		return nil, err
	}
	in := &Initiation{priv: priv, session: session, timestamp: now}
	var hs packet.Handshake
	copy(hs.Ephemeral[:], priv.PublicKey().Bytes())
	hs.Timestamp = now
	m := h.appendMessage(in.hello[:0], packet.KindHello, ToReceiver, session, hs)
	copy(in.hello[len(m):], h.computeMAC(labelHello, m))
	return in, nil
}

// Hello returns the HELLO datagram to send. It aliases the Initiation.
func (in *Initiation) Hello() []byte { return in.hello[:] }

// Timestamp returns the time the attempt was made, as given to Initiate.
func (in *Initiation) Timestamp() int64 { return in.timestamp }

// Finish checks that welcome answers this Initiation and returns the
// session's traffic keys. Errors: ErrShort, ErrMalformed, ErrDirection,
// ErrKeyMismatch, ErrAuth (bad MAC: forged, corrupted, or the answer to
// another HELLO), ErrSession, ErrHandshake.
func (h *Handshaker) Finish(in *Initiation, welcome []byte) (*Traffic, error) {
	if err := h.check(welcome, packet.KindWelcome, ToSender, WelcomeLen); err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint64(welcome[offSession:]) != in.session {
		return nil, ErrSession
	}
	n := len(welcome) - MACLen
	if subtle.ConstantTimeCompare(h.computeMAC(labelWelcome, in.hello[:], welcome[:n]), welcome[n:]) != 1 {
		return nil, ErrAuth
	}
	if err := h.parse(welcome); err != nil {
		return nil, err
	}
	if h.pkt.Handshake.Timestamp != in.timestamp {
		return nil, ErrHandshake
	}
	return h.agree(in.priv, h.pkt.Handshake.Ephemeral[:], in.hello[:], welcome)
}

// OpenHello authenticates the HELLO b and returns its session and
// timestamp. It allocates nothing, so that a flood of forged HELLOs costs
// one HMAC each; the key agreement is [Handshaker.Respond]'s, for the
// caller to rate-limit.
func (h *Handshaker) OpenHello(b []byte) (session uint64, timestamp int64, err error) {
	if err := h.check(b, packet.KindHello, ToReceiver, HelloLen); err != nil {
		return 0, 0, err
	}
	n := len(b) - MACLen
	if subtle.ConstantTimeCompare(h.computeMAC(labelHello, b[:n]), b[n:]) != 1 {
		return 0, 0, ErrAuth
	}
	if err := h.parse(b); err != nil {
		return 0, 0, err
	}
	return h.pkt.Session, h.pkt.Handshake.Timestamp, nil
}

// Respond answers the HELLO hello, which [Handshaker.OpenHello] has
// accepted: it draws the receiver's ephemeral key, appends the WELCOME to
// dst and returns it with the session's traffic keys. The ephemeral
// private key is gone when Respond returns.
func (h *Handshaker) Respond(dst, hello []byte) ([]byte, *Traffic, error) {
	if _, _, err := h.OpenHello(hello); err != nil {
		return dst, nil, err
	}
	peer := h.pkt.Handshake.Ephemeral
	priv, err := h.ephemeral()
	if err != nil {
		return dst, nil, err
	}
	var hs packet.Handshake
	copy(hs.Ephemeral[:], priv.PublicKey().Bytes())
	hs.Timestamp = h.pkt.Handshake.Timestamp
	start := len(dst)
	dst = h.appendMessage(dst, packet.KindWelcome, ToSender, h.pkt.Session, hs)
	dst = append(dst, h.computeMAC(labelWelcome, hello, dst[start:])...)
	t, err := h.agree(priv, peer[:], hello, dst[start:])
	if err != nil {
		return dst[:start], nil, err
	}
	return dst, t, nil
}

// agree computes the X25519 shared secret of priv and the peer's public
// key and derives the traffic keys from it, the pre-shared key and the
// transcript (HELLO and WELCOME, MACs included).
func (h *Handshaker) agree(priv *ecdh.PrivateKey, peer, hello, welcome []byte) (*Traffic, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer)
	if err != nil {
		return nil, ErrHandshake
	}
	dh, err := priv.ECDH(pub) // refuses an all-zero result (low-order point)
	if err != nil {
		return nil, ErrHandshake
	}
	defer clear(dh)
	return deriveTraffic(h.key, dh, hello, welcome)
}

// deriveTraffic is the key schedule:
//
//	th     = SHA-256("telewire/v2 transcript" || HELLO || WELCOME)
//	secret = HKDF-Extract(salt = th, IKM = DH || PRK)
//	k1     = HKDF-Expand(secret, "telewire/v2 to-receiver", 32)
//	k2     = HKDF-Expand(secret, "telewire/v2 to-sender", 32)
//	tag    = HKDF-Expand(secret, "telewire/v2 key tag", 4)
func deriveTraffic(k *Key, dh, hello, welcome []byte) (*Traffic, error) {
	th := sha256.New()
	th.Write(labelTranscript)
	th.Write(hello)
	th.Write(welcome)
	ikm := make([]byte, 0, len(dh)+len(k.prk))
	ikm = append(append(ikm, dh...), k.prk...)
	defer clear(ikm)
	secret, err := hkdf.Extract(sha256.New, ikm, th.Sum(nil))
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	t := &Traffic{}
	for _, x := range []struct {
		label string
		out   []byte
	}{{labelToReceiver, t.toReceiver[:]}, {labelToSender, t.toSender[:]}} {
		b, err := hkdf.Expand(sha256.New, secret, x.label, KeyLen)
		if err != nil {
			return nil, err
		}
		copy(x.out, b)
		clear(b)
	}
	tag, err := hkdf.Expand(sha256.New, secret, labelKeyTag, 4)
	if err != nil {
		return nil, err
	}
	t.tag = binary.BigEndian.Uint32(tag)
	return t, nil
}

// AppendRetry appends a RETRY for session to dst: the receiver holds no
// keys for the sealed packet it names by key tag and counter, and asks the
// sender to handshake again. It is authenticated by the pre-shared key
// alone (the receiver that sends it has no traffic keys for the session),
// so any holder of the key can make one; see the package documentation.
func (h *Handshaker) AppendRetry(dst []byte, session uint64, tag uint32, counter uint64) []byte {
	start := len(dst)
	dst = h.appendMessage(dst, packet.KindRetry, ToSender, session, packet.Handshake{KeyTag: tag, Counter: counter})
	return append(dst, h.computeMAC(labelRetry, dst[start:])...)
}

// OpenRetry authenticates the RETRY b and returns what it names. It
// allocates nothing.
func (h *Handshaker) OpenRetry(b []byte) (session uint64, tag uint32, counter uint64, err error) {
	if err := h.check(b, packet.KindRetry, ToSender, RetryLen); err != nil {
		return 0, 0, 0, err
	}
	n := len(b) - MACLen
	if subtle.ConstantTimeCompare(h.computeMAC(labelRetry, b[:n]), b[n:]) != 1 {
		return 0, 0, 0, ErrAuth
	}
	if err := h.parse(b); err != nil {
		return 0, 0, 0, err
	}
	return h.pkt.Session, h.pkt.Handshake.KeyTag, h.pkt.Handshake.Counter, nil
}

// labelSubscription separates the subscription MAC from the handshake's.
var labelSubscription = []byte("telewire/v2 subscription")

// subscriptionMAC computes the MAC of the encoded SUBSCRIBE or GOODBYE
// pkt, flagged packet.FlagAuth: over the header but its checksum field,
// and the body before the MAC.
func (h *Handshaker) subscriptionMAC(pkt []byte) []byte {
	return h.computeMAC(labelSubscription, pkt[:offKeyID], pkt[packet.HeaderLen:len(pkt)-packet.AuthLen])
}

// subscriptionShaped reports whether pkt can carry a subscription MAC: a
// SUBSCRIBE or GOODBYE flagged packet.FlagAuth, long enough for it.
func subscriptionShaped(pkt []byte) bool {
	if len(pkt) < packet.HeaderLen+packet.SubscriptionLen+packet.TokenLen+packet.AuthLen {
		return false
	}
	k := packet.Kind(pkt[3])
	return (k == packet.KindSubscribe || k == packet.KindGoodbye) && packet.Flags(pkt[4])&packet.FlagAuth != 0
}

// AuthSubscription writes the MAC under the pre-shared key into the
// encoded SUBSCRIBE or GOODBYE pkt, flagged packet.FlagAuth (its last
// packet.AuthLen bytes), and rewrites its checksum. A subscriber with a
// key authenticates its echo and its GOODBYE so; see packet/doc.go.
// ErrMalformed if pkt is not such a datagram. It allocates nothing.
func (h *Handshaker) AuthSubscription(pkt []byte) error {
	if !subscriptionShaped(pkt) {
		return ErrMalformed
	}
	copy(pkt[len(pkt)-packet.AuthLen:], h.subscriptionMAC(pkt))
	return packet.Refinish(pkt)
}

// CheckSubscription reports whether the SUBSCRIBE or GOODBYE pkt, flagged
// packet.FlagAuth, carries a valid MAC under the pre-shared key: its
// sender holds the key. It allocates nothing.
func (h *Handshaker) CheckSubscription(pkt []byte) bool {
	if !subscriptionShaped(pkt) {
		return false
	}
	return subtle.ConstantTimeCompare(h.subscriptionMAC(pkt), pkt[len(pkt)-packet.AuthLen:]) == 1
}
