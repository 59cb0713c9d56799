package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"testing"

	"github.com/telewire/telewire/packet"
)

var benchSizes = []int{64, 200, 1200}

// BenchmarkSeal seals DATA packets of 64, 200 and 1200 payload bytes; the
// Raw variants run bare AES-256-GCM on the same bytes in the same run, so
// the difference is this package's own cost. SetBytes counts the body.
func BenchmarkSeal(b *testing.B) {
	k := testKey(b, 31)
	for _, n := range benchSizes {
		plain := encode(b, packet.KindData, testSession, make([]byte, n))
		hdr, body := plain[:packet.HeaderLen], plain[packet.HeaderLen:]
		b.Run(fmt.Sprintf("Seal/%d", n), func(b *testing.B) {
			s := mustSealer(b, k, toReceiver, 0)
			dst := make([]byte, 0, len(plain)+MaxOverhead)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = s.Seal(dst[:0], hdr, body)
			}
		})
		b.Run(fmt.Sprintf("SealInPlace/%d", n), func(b *testing.B) {
			s := mustSealer(b, k, toReceiver, 0)
			buf := make([]byte, 0, len(plain)+MaxOverhead)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				buf = append(buf[:0], plain...)
				buf, _ = s.SealInPlace(buf)
			}
		})
		b.Run(fmt.Sprintf("RawSeal/%d", n), func(b *testing.B) {
			aead := rawAEAD(b)
			nonce := make([]byte, NonceLen)
			ad := make([]byte, packet.HeaderLen+CounterLen)
			dst := make([]byte, 0, len(plain)+MaxOverhead)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				nonce[11], nonce[10] = byte(i), byte(i>>8)
				dst = aead.Seal(dst[:0], nonce, body, ad)
			}
		})
	}
}

// BenchmarkOpen opens the packets BenchmarkSeal makes, against bare
// AES-256-GCM Open.
func BenchmarkOpen(b *testing.B) {
	k := testKey(b, 32)
	for _, n := range benchSizes {
		plain := encode(b, packet.KindData, testSession, make([]byte, n))
		body := plain[packet.HeaderLen:]
		sealed, err := mustSealer(b, k, toReceiver, 0).Seal(nil, plain[:packet.HeaderLen], body)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("Open/%d", n), func(b *testing.B) {
			o := mustOpener(b, k, toReceiver)
			dst := make([]byte, 0, len(plain))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := o.Open(dst[:0], sealed); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("RawOpen/%d", n), func(b *testing.B) {
			aead := rawAEAD(b)
			nonce := make([]byte, NonceLen)
			ad := make([]byte, packet.HeaderLen+CounterLen)
			ct := aead.Seal(nil, nonce, body, ad)
			dst := make([]byte, 0, len(plain))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := aead.Open(dst[:0], nonce, ct, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("OpenForged/200", func(b *testing.B) {
		plain := encode(b, packet.KindData, testSession, make([]byte, 200))
		sealed, _ := mustSealer(b, k, toReceiver, 0).Seal(nil, plain[:24], plain[24:])
		sealed[40] ^= 1
		o := mustOpener(b, k, toReceiver)
		dst := make([]byte, 0, len(sealed))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := o.Open(dst[:0], sealed); err == nil {
				b.Fatal("forgery opened")
			}
		}
	})
}

// BenchmarkRespond is a receiver's cost of answering one authentic HELLO
// (MAC check, X25519 key generation and agreement, key schedule): what
// the handshake token bucket rations.
func BenchmarkRespond(b *testing.B) {
	k := testKey(b, 33)
	in, err := k.NewHandshaker(nil).Initiate(1, 1)
	if err != nil {
		b.Fatal(err)
	}
	h := k.NewHandshaker(nil)
	dst := make([]byte, 0, WelcomeLen)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := h.Respond(dst[:0], in.Hello()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenHelloForged is the cost of rejecting a forged HELLO: one
// HMAC, no allocation.
func BenchmarkOpenHelloForged(b *testing.B) {
	k := testKey(b, 34)
	in, err := k.NewHandshaker(nil).Initiate(1, 1)
	if err != nil {
		b.Fatal(err)
	}
	forged := append([]byte(nil), in.Hello()...)
	forged[30] ^= 1
	h := k.NewHandshaker(nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := h.OpenHello(forged); err == nil {
			b.Fatal("forgery accepted")
		}
	}
}

func rawAEAD(b *testing.B) cipher.AEAD {
	block, err := aes.NewCipher(make([]byte, KeyLen))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return aead
}
