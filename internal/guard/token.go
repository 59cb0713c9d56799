package guard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"
	"net/netip"
)

// TokenSecretLen is the minimum secret length for NewTokens.
const TokenSecretLen = 16

// Tokens makes and checks address-validation tokens without storing
// anything per address: a token is the first 8 bytes of
// HMAC-SHA256(secret, session || address || port), so only someone who
// receives what the sender sends to an address can echo its token. The
// sender draws the secret from crypto/rand when it starts; tokens are
// then stable for the life of the sender, so a receiver can echo the
// latest one it saw at any time.
//
// An IPv4 address and its IPv4-mapped IPv6 form get the same token; zones
// are ignored. A Tokens is not safe for concurrent use (it reuses one HMAC
// state); Token and Check do not allocate.
type Tokens struct {
	mac hash.Hash
	in  [8 + 16 + 2]byte
	sum [sha256.Size]byte
}

// NewTokens returns a token maker keyed with secret, at least
// TokenSecretLen bytes; the secret is copied.
func NewTokens(secret []byte) (*Tokens, error) {
	if len(secret) < TokenSecretLen {
		return nil, fmt.Errorf("%w: token secret of %d bytes < %d", ErrConfig, len(secret), TokenSecretLen)
	}
	return &Tokens{mac: hmac.New(sha256.New, secret)}, nil
}

// Token returns the token for addr in session.
func (t *Tokens) Token(session uint64, addr netip.AddrPort) uint64 {
	binary.BigEndian.PutUint64(t.in[0:], session)
	a := addr.Addr().Unmap().As16()
	copy(t.in[8:], a[:])
	binary.BigEndian.PutUint16(t.in[24:], addr.Port())
	t.mac.Reset()
	t.mac.Write(t.in[:])
	t.mac.Sum(t.sum[:0])
	return binary.BigEndian.Uint64(t.sum[:])
}

// Check reports whether tok is addr's token in session, in constant time.
func (t *Tokens) Check(session uint64, addr netip.AddrPort, tok uint64) bool {
	want := t.Token(session, addr)
	var a, b [8]byte
	binary.BigEndian.PutUint64(a[:], want)
	binary.BigEndian.PutUint64(b[:], tok)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
