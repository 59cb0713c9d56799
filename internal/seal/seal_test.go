package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/telewire/telewire/packet"
)

const testSession = 0x0123456789abcdef

func testKey(t testing.TB, seed byte) *Key {
	t.Helper()
	psk := make([]byte, KeyLen)
	for i := range psk {
		psk[i] = seed + byte(i)
	}
	k, err := NewKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSealer(t testing.TB, k *Key, p Params, first uint64) *Sealer {
	t.Helper()
	s, err := trafficOf(t, k).NewSealer(p, first)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustOpener(t testing.TB, k *Key, p Params) *Opener {
	t.Helper()
	o, err := trafficOf(t, k).NewOpener(p)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

var (
	toReceiver = Params{Session: testSession, Dir: ToReceiver}
	toSender   = Params{Session: testSession, Dir: ToSender}
)

// encode returns a real plain packet of the given kind, as the cores
// encode them.
func encode(t testing.TB, kind packet.Kind, session uint64, payload []byte) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: kind, Session: session, Stream: 7}}
	switch kind {
	case packet.KindData:
		p.Seq, p.Timestamp, p.Payload = 42, 1e9, payload
		p.Flags = packet.FlagRetransmit
	case packet.KindParity:
		p.Parity = packet.Parity{First: 40, K: 4, M: 2, Index: 1, Stride: 1}
		p.Payload = append([]byte{1}, payload...)
	case packet.KindNACK:
		p.Ranges = []packet.Range{{First: 10, Len: 3}, {First: 20, Len: 1}}
	case packet.KindReport:
		p.Report = packet.Report{EchoTimestamp: 5, HighestSeq: 99, Received: 98, IntervalLossPPM: 1000}
	case packet.KindHeartbeat:
		p.Heartbeat = packet.Heartbeat{Start: 1, Next: 43, Timestamp: 7}
	}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var kinds = []packet.Kind{packet.KindData, packet.KindParity, packet.KindNACK, packet.KindReport, packet.KindHeartbeat}

func TestRoundTripEveryKindBothDirections(t *testing.T) {
	k := testKey(t, 1)
	for _, p := range []Params{toReceiver, toSender} {
		s := mustSealer(t, k, p, 1000)
		o := mustOpener(t, k, p)
		for _, kind := range kinds {
			for _, n := range []int{0, 1, 64, 200, 1200} {
				plain := encode(t, kind, testSession, bytes.Repeat([]byte{0xa5}, n))
				want := s.Next()
				sealed, err := s.Seal(nil, plain[:packet.HeaderLen], plain[packet.HeaderLen:])
				if err != nil {
					t.Fatalf("%v %v: %v", p.Dir, kind, err)
				}
				if len(sealed) != len(plain)+p.Dir.Overhead() {
					t.Fatalf("sealed %d bytes from %d, want overhead %d", len(sealed), len(plain), p.Dir.Overhead())
				}
				if bytes.Contains(sealed, plain[packet.HeaderLen:]) && n >= 64 {
					t.Fatalf("body appears in clear")
				}
				// The header still routes: magic, version, kind, flags,
				// session and stream are where packet expects them.
				h, err := packet.PeekHeader(sealed)
				if err != nil || h.Kind != kind || h.Session != testSession || h.Stream != 7 || h.Flags != packet.Flags(plain[4]) {
					t.Fatalf("PeekHeader on sealed packet: %+v, %v", h, err)
				}
				if !IsSealed(sealed) || IsSealed(plain) {
					t.Fatal("IsSealed wrong")
				}
				info, err := Peek(sealed)
				if err != nil || info.Dir != p.Dir || info.Kind != kind || info.Session != testSession ||
					info.Counter != want || info.KeyID != trafficOf(t, k).Tag() || info.Stream != 7 {
					t.Fatalf("Peek: %+v, %v", info, err)
				}
				body, ctr, err := o.Open(nil, sealed)
				if err != nil {
					t.Fatalf("%v %v %d: Open: %v", p.Dir, kind, n, err)
				}
				if ctr != want || !bytes.Equal(body, plain[packet.HeaderLen:]) {
					t.Fatalf("Open returned counter %d (want %d), body equal %v", ctr, want, bytes.Equal(body, plain[packet.HeaderLen:]))
				}
				// The opened body parses as the kind's body did.
				var q packet.Packet
				rebuilt := append(append([]byte(nil), plain[:packet.HeaderLen]...), body...)
				if err := q.Parse(rebuilt); err != nil {
					t.Fatalf("rebuilt plain packet does not parse: %v", err)
				}
			}
		}
	}
}

func TestSealInPlaceMatchesSeal(t *testing.T) {
	k := testKey(t, 2)
	for _, p := range []Params{toReceiver, toSender} {
		a := mustSealer(t, k, p, 77)
		b := mustSealer(t, k, p, 77)
		plain := encode(t, packet.KindData, testSession, []byte("in place, please"))
		want, err := a.Seal(nil, plain[:packet.HeaderLen], plain[packet.HeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(plain), len(plain)+p.Dir.Overhead())
		copy(buf, plain)
		got, err := b.SealInPlace(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) || &got[0] != &buf[0] {
			t.Fatalf("%v: SealInPlace differs from Seal or moved the buffer", p.Dir)
		}
		// Open in place too.
		o := mustOpener(t, k, p)
		body, _, err := o.Open(got[packet.HeaderLen+p.Dir.PrefixLen():][:0], got)
		if err != nil || !bytes.Equal(body, plain[packet.HeaderLen:]) {
			t.Fatalf("in-place Open: %v", err)
		}
		// Too little capacity is refused without moving the counter.
		short := append([]byte(nil), plain...)
		short = short[:len(short):len(short)]
		next := b.Next()
		if _, err := b.SealInPlace(short); !errors.Is(err, ErrParams) || b.Next() != next {
			t.Fatalf("SealInPlace without capacity: %v", err)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	k := testKey(t, 3)
	other := testKey(t, 4)
	plain := encode(t, packet.KindReport, testSession, nil)
	seal := func(k *Key, p Params) []byte {
		b, err := mustSealer(t, k, p, 5).Seal(nil, plain[:packet.HeaderLen], plain[packet.HeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := seal(k, toSender)
	o := mustOpener(t, k, toSender)
	if _, _, err := o.Open(nil, good); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"plain", plain, ErrNotSealed},
		{"other key", seal(other, toSender), ErrKeyTag},
		{"other direction", seal(k, Params{Session: testSession, Dir: ToReceiver}), ErrDirection},
		{"unknown direction", mod(func(b []byte) { b[offEnvelope] = 9 }), ErrDirection},
		{"other session", mod(func(b []byte) { b[offSession] ^= 1 }), ErrSession},
		{"bad magic", mod(func(b []byte) { b[0] = 'X' }), ErrMalformed},
		{"bad version", mod(func(b []byte) { b[offVersion] = 2 }), ErrMalformed},
		{"length field", mod(func(b []byte) { b[offLength+1]++ }), ErrMalformed},
		{"key tag forged", mod(func(b []byte) { b[offKeyID] ^= 0x80 }), ErrKeyTag},
		{"kind", mod(func(b []byte) { b[offKind] = byte(packet.KindNACK) }), ErrAuth},
		{"flags", mod(func(b []byte) { b[4] = 1 }), ErrAuth},
		{"stream", mod(func(b []byte) { b[16] ^= 1 }), ErrAuth},
		{"counter", mod(func(b []byte) { b[packet.HeaderLen+7]++ }), ErrAuth},
		{"body", mod(func(b []byte) { b[60] ^= 4 }), ErrAuth},
		{"tag", mod(func(b []byte) { b[len(b)-1] ^= 1 }), ErrAuth},
	}
	// A packet sealed under another key but wearing this key tag is a
	// forgery: the tag catches it.
	forged := seal(other, toSender)
	binary.BigEndian.PutUint32(forged[offKeyID:], trafficOf(t, k).Tag())
	cases = append(cases, struct {
		name string
		b    []byte
		want error
	}{"other key, this key tag", forged, ErrAuth})
	for _, c := range cases {
		dst := make([]byte, 0, 512)
		body, _, err := o.Open(dst, c.b)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
		if len(body) != 0 {
			t.Errorf("%s: returned %d bytes on error", c.name, len(body))
		}
	}
}

// Every single-bit change and every truncation of a sealed datagram fails
// to open.
func TestOpenBitFlipsAndTruncations(t *testing.T) {
	k := testKey(t, 5)
	for _, p := range []Params{toReceiver, toSender} {
		s, o := mustSealer(t, k, p, 0), mustOpener(t, k, p)
		plain := encode(t, packet.KindData, testSession, []byte("sixty-four bytes of telemetry, more or less, to flip bits in..."))
		good, err := s.Seal(nil, plain[:packet.HeaderLen], plain[packet.HeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		b := append([]byte(nil), good...)
		for i := range b {
			for bit := range 8 {
				b[i] ^= 1 << bit
				if _, _, err := o.Open(nil, b); err == nil {
					t.Fatalf("%v: flip of byte %d bit %d opened", p.Dir, i, bit)
				}
				b[i] ^= 1 << bit
			}
		}
		for i := range good {
			if _, _, err := o.Open(nil, good[:i]); err == nil {
				t.Fatalf("%v: truncation to %d bytes opened", p.Dir, i)
			}
		}
		if _, _, err := o.Open(nil, good); err != nil {
			t.Fatalf("original no longer opens: %v", err)
		}
	}
}

func TestSealRejects(t *testing.T) {
	k := testKey(t, 6)
	s := mustSealer(t, k, toReceiver, 0)
	plain := encode(t, packet.KindHeartbeat, testSession, nil)
	hdr := plain[:packet.HeaderLen]
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), hdr...)
		f(b)
		return b
	}
	cases := []struct {
		name   string
		header []byte
		body   []byte
		want   error
	}{
		{"short header", hdr[:23], nil, ErrHeader},
		{"long header", plain[:25], nil, ErrHeader},
		{"bad magic", mod(func(b []byte) { b[0] = 0 }), nil, ErrHeader},
		{"bad version", mod(func(b []byte) { b[offVersion] = 0 }), nil, ErrHeader},
		{"already sealed", mod(func(b []byte) { b[offEnvelope] = 1 }), nil, ErrHeader},
		{"other session", mod(func(b []byte) { b[offSession+7] ^= 1 }), nil, ErrSession},
		{"too large", hdr, make([]byte, packet.MaxPacketLen-packet.HeaderLen-ToReceiver.Overhead()+1), ErrTooLarge},
	}
	for _, c := range cases {
		dst := []byte("keep")
		out, err := s.Seal(dst, c.header, c.body)
		if !errors.Is(err, c.want) || !bytes.Equal(out, dst) || s.Next() != 0 {
			t.Errorf("%s: err %v (want %v), out %q, next %d", c.name, err, c.want, out, s.Next())
		}
	}
	// The largest body that fits is accepted.
	body := make([]byte, packet.MaxPacketLen-packet.HeaderLen-ToReceiver.Overhead())
	out, err := s.Seal(nil, hdr, body)
	if err != nil || len(out) != packet.MaxPacketLen {
		t.Fatalf("largest body: %d bytes, %v", len(out), err)
	}
}

func TestParams(t *testing.T) {
	k := testKey(t, 7)
	for _, p := range []Params{
		{Session: 1, Dir: 0},
		{Session: 1, Dir: 3},
	} {
		if _, err := trafficOf(t, k).NewSealer(p, 0); !errors.Is(err, ErrParams) {
			t.Errorf("NewSealer(%+v): %v", p, err)
		}
		if _, err := trafficOf(t, k).NewOpener(p); !errors.Is(err, ErrParams) {
			t.Errorf("NewOpener(%+v): %v", p, err)
		}
	}
	s := mustSealer(t, k, toSender, 9)
	if s.Params() != toSender || mustOpener(t, k, toSender).Params() != toSender {
		t.Fatal("Params not kept")
	}
	if ToReceiver.String() != "to-receiver" || ToSender.String() != "to-sender" || Direction(7).String() != "direction(7)" {
		t.Fatal("Direction.String")
	}
}

// (a) A million seals, retransmissions of one packet among them, never
// repeat a nonce; the nonce each used is the one the opener rebuilds.
func TestNoncesNeverRepeat(t *testing.T) {
	const n = 1_000_000
	k := testKey(t, 8)
	s := mustSealer(t, k, toReceiver, 1<<40)
	o := mustOpener(t, k, toReceiver)
	plains := make([][]byte, len(kinds))
	for i, kind := range kinds {
		plains[i] = encode(t, kind, testSession, make([]byte, 16))
	}
	nonces := make([][NonceLen]byte, 0, n)
	dst := make([]byte, 0, 256)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		// Mostly the same DATA packet over and over, as retransmissions
		// are: same header, same body.
		plain := plains[0]
		if i%8 == 7 {
			plain = plains[rng.IntN(len(plains))]
		}
		var err error
		dst, err = s.Seal(dst[:0], plain[:packet.HeaderLen], plain[packet.HeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		nonces = append(nonces, s.nonce)
		if i%65536 == 0 {
			if _, _, err := o.Open(nil, dst); err != nil || o.nonce != s.nonce {
				t.Fatalf("seal %d: opener rebuilt another nonce (%v)", i, err)
			}
		}
	}
	slices.SortFunc(nonces, func(a, b [NonceLen]byte) int { return bytes.Compare(a[:], b[:]) })
	for i := 1; i < len(nonces); i++ {
		if nonces[i] == nonces[i-1] {
			t.Fatalf("nonce %x used twice", nonces[i])
		}
	}
}

// (b) Nonces of different directions or kinds differ even at equal
// counters, and the two directions of a session use different keys.
func TestNoncesAcrossDirectionsAndKinds(t *testing.T) {
	seen := map[[NonceLen]byte]string{}
	for _, d := range []Direction{ToReceiver, ToSender} {
		for kind := range 256 {
			for _, ctr := range []uint64{0, 1, 255, 256, 1 << 32, 1<<63 - 1, math.MaxUint64 - 1} {
				var n [NonceLen]byte
				putNonce(&n, d, byte(kind), ctr)
				id := d.String() + "/" + packet.Kind(kind).String()
				if prev, dup := seen[n]; dup {
					t.Fatalf("nonce %x for %s counter %d already used by %s", n, id, ctr, prev)
				}
				seen[n] = id
			}
		}
	}
	// Same session, same counter, same packet: the two directions produce
	// different ciphertexts and tags (different keys).
	k := testKey(t, 9)
	plain := encode(t, packet.KindNACK, testSession, nil)
	a, _ := mustSealer(t, k, toReceiver, 3).Seal(nil, plain[:24], plain[24:])
	b, _ := mustSealer(t, k, Params{Session: testSession, Dir: ToSender}, 3).Seal(nil, plain[:24], plain[24:])
	if bytes.Equal(a[len(a)-TagLen:], b[len(b)-TagLen:]) || bytes.Equal(a[32:len(a)-TagLen], b[40:len(b)-TagLen]) {
		t.Fatal("the two directions share a key")
	}
	// Forcing the direction byte does not make one direction's packet
	// open as the other's.
	a[offEnvelope] = byte(ToSender)
	if _, _, err := mustOpener(t, k, Params{Session: testSession, Dir: ToSender}).Open(nil, a); err == nil {
		t.Fatal("to-receiver packet opened as to-sender")
	}
}

// (c) The counter stops at its end: it is refused, never wrapped.
func TestCounterExhaustion(t *testing.T) {
	k := testKey(t, 10)
	plain := encode(t, packet.KindData, testSession, []byte("x"))
	s := mustSealer(t, k, toReceiver, math.MaxUint64-2)
	o := mustOpener(t, k, toReceiver)
	for _, want := range []uint64{math.MaxUint64 - 2, math.MaxUint64 - 1} {
		b, err := s.Seal(nil, plain[:24], plain[24:])
		if err != nil {
			t.Fatalf("counter %d: %v", want, err)
		}
		if _, ctr, err := o.Open(nil, b); err != nil || ctr != want {
			t.Fatalf("counter %d opened as %d, %v", want, ctr, err)
		}
	}
	if s.Remaining() != 0 {
		t.Fatalf("Remaining %d at the end", s.Remaining())
	}
	for range 3 {
		out, err := s.Seal([]byte("dst"), plain[:24], plain[24:])
		if !errors.Is(err, ErrExhausted) || string(out) != "dst" || s.Next() != math.MaxUint64 {
			t.Fatalf("after the last counter: %q, %v, next %d", out, err, s.Next())
		}
		buf := make([]byte, len(plain), len(plain)+64)
		copy(buf, plain)
		if _, err := s.SealInPlace(buf); !errors.Is(err, ErrExhausted) || !bytes.Equal(buf, plain) {
			t.Fatalf("SealInPlace after the last counter: %v", err)
		}
	}
}

// The derivation documented in doc.go, computed independently with HMAC
// from the handshake's messages and the ephemeral private keys.
func TestKeyDerivationAsDocumented(t *testing.T) {
	psk := bytes.Repeat([]byte{0x5c, 0x11}, 16)
	k, err := NewKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(key []byte, parts ...[]byte) []byte {
		h := hmac.New(sha256.New, key)
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	prk := mac([]byte("telewire/v1 psk"), psk)
	if id := binary.BigEndian.Uint32(mac(prk, []byte("telewire/v1 key id"), []byte{1})); id != k.ID() {
		t.Fatalf("key id %08x, want %08x", k.ID(), id)
	}
	macKey := mac(prk, []byte("telewire/v2 handshake mac"), []byte{1})
	ri, rr := detRand(1), detRand(2)
	in, err := k.NewHandshaker(ri).Initiate(testSession, 77)
	if err != nil {
		t.Fatal(err)
	}
	hello := in.Hello()
	welcome, tr, err := k.NewHandshaker(rr).Respond(nil, hello)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hello[64:], mac(macKey, []byte("telewire/v2 hello"), hello[:64])[:16]) ||
		!bytes.Equal(welcome[64:], mac(macKey, []byte("telewire/v2 welcome"), hello, welcome[:64])[:16]) {
		t.Fatal("handshake MACs differ from the documented ones")
	}
	// The receiver's ephemeral private key: the same draw, redone.
	var rpriv [32]byte
	_, _ = detRand(2).Read(rpriv[:])
	priv, _ := ecdh.X25519().NewPrivateKey(rpriv[:])
	pub, _ := ecdh.X25519().NewPublicKey(hello[24:56])
	dh, err := priv.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	th := sha256.Sum256(append(append([]byte("telewire/v2 transcript"), hello...), welcome...))
	secret := mac(th[:], dh, prk)
	k1 := mac(secret, []byte("telewire/v2 to-receiver"), []byte{1})
	tag := binary.BigEndian.Uint32(mac(secret, []byte("telewire/v2 key tag"), []byte{1}))
	if tag != tr.Tag() {
		t.Fatalf("key tag %08x, want %08x", tr.Tag(), tag)
	}
	block, _ := aes.NewCipher(k1)
	gcm, _ := cipher.NewGCM(block)

	p := toReceiver
	plain := encode(t, packet.KindData, testSession, []byte("documented"))
	const ctr = 0x1122334455667788
	s, err := tr.NewSealer(p, ctr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Seal(nil, plain[:24], plain[24:])
	if err != nil {
		t.Fatal(err)
	}
	ad := got[:packet.HeaderLen+8]
	nonce := []byte{byte(p.Dir), byte(packet.KindData), 0, 0}
	nonce = binary.BigEndian.AppendUint64(nonce, ctr)
	want := gcm.Seal(append([]byte(nil), ad...), nonce, plain[24:], ad)
	if !bytes.Equal(got, want) {
		t.Fatalf("sealed packet differs from the documented construction\n got %x\nwant %x", got, want)
	}
	// And the header fields the documentation promises.
	if got[offEnvelope] != 1 || binary.BigEndian.Uint16(got[offLength:]) != uint16(len(got)) ||
		binary.BigEndian.Uint32(got[offKeyID:]) != tr.Tag() || binary.BigEndian.Uint64(got[24:]) != ctr {
		t.Fatalf("sealed header %x", got[:32])
	}
}

func TestZeroAllocs(t *testing.T) {
	k := testKey(t, 11)
	for _, p := range []Params{toReceiver, toSender} {
		s, o := mustSealer(t, k, p, 0), mustOpener(t, k, p)
		plain := encode(t, packet.KindData, testSession, make([]byte, 200))
		dst := make([]byte, 0, 512)
		buf := make([]byte, 0, 512)
		body := make([]byte, 0, 512)
		var sealed []byte
		if a := testing.AllocsPerRun(1000, func() {
			sealed, _ = s.Seal(dst[:0], plain[:24], plain[24:])
		}); a != 0 {
			t.Errorf("%v Seal: %v allocs", p.Dir, a)
		}
		if a := testing.AllocsPerRun(1000, func() {
			buf = append(buf[:0], plain...)
			_, _ = s.SealInPlace(buf)
		}); a != 0 {
			t.Errorf("%v SealInPlace: %v allocs", p.Dir, a)
		}
		if a := testing.AllocsPerRun(1000, func() {
			_, _, _ = o.Open(body[:0], sealed)
		}); a != 0 {
			t.Errorf("%v Open: %v allocs", p.Dir, a)
		}
		bad := append([]byte(nil), sealed...)
		bad[len(bad)-1] ^= 1
		if a := testing.AllocsPerRun(1000, func() {
			_, _, _ = o.Open(body[:0], bad)
		}); a != 0 {
			t.Errorf("%v failed Open: %v allocs", p.Dir, a)
		}
	}
}
