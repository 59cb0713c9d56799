package seal

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/telewire/telewire/packet"
)

// FuzzOpen feeds arbitrary datagrams to both openers. None may panic, and
// any datagram that opens must be exactly what a sealer of this key would
// produce for that plaintext and counter: nothing else authenticates.
func FuzzOpen(f *testing.F) {
	k := testKey(f, 21)
	for _, p := range []Params{toReceiver, toSender} {
		s := mustSealer(f, k, p, 3)
		for _, kind := range kinds {
			plain := encode(f, kind, testSession, []byte("seed"))
			b, err := s.Seal(nil, plain[:packet.HeaderLen], plain[packet.HeaderLen:])
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
			f.Add(b[:len(b)-1])
			f.Add(plain)
		}
	}
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	openers := []*Opener{mustOpener(f, k, toReceiver), mustOpener(f, k, toSender)}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, perr := Peek(b)
		for _, o := range openers {
			in := append([]byte(nil), b...)
			body, ctr, err := o.Open(nil, in)
			if !bytes.Equal(in, b) {
				t.Fatal("Open modified its input")
			}
			if err != nil {
				if body != nil {
					t.Fatalf("error %v with %d body bytes", err, len(body))
				}
				continue
			}
			if perr != nil || info.Counter != ctr || info.Dir != o.p.Dir {
				t.Fatalf("opened, but Peek says %+v, %v", info, perr)
			}
			// Re-seal the plaintext under the same counter: it must give
			// back the very datagram, or Open accepted a forgery.
			var hdr [packet.HeaderLen]byte
			copy(hdr[:], b)
			hdr[offEnvelope] = 0
			binary.BigEndian.PutUint32(hdr[offKeyID:], 0)
			again, err := mustSealer(t, k, o.p, ctr).Seal(nil, hdr[:], body)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("datagram %x opened but is not what the sealer makes (%v)", b, err)
			}
		}
	})
}

// FuzzSealOpen seals arbitrary headers and bodies: Seal either refuses with
// an error or produces a datagram that opens to the same body and counter.
func FuzzSealOpen(f *testing.F) {
	k := testKey(f, 22)
	plain := encode(f, packet.KindData, testSession, []byte("payload"))
	f.Add(plain[:packet.HeaderLen], plain[packet.HeaderLen:], uint64(0), false)
	f.Add(plain[:packet.HeaderLen], []byte{}, uint64(1<<63), true)
	f.Add([]byte("short"), []byte("x"), uint64(5), false)
	f.Fuzz(func(t *testing.T, header, body []byte, first uint64, back bool) {
		p := toReceiver
		if back {
			p = toSender
		}
		s := mustSealer(t, k, p, first)
		out, err := s.Seal(nil, header, body)
		if err != nil {
			if out != nil || s.Next() != first {
				t.Fatalf("failed Seal (%v) changed state", err)
			}
			return
		}
		got, ctr, err := mustOpener(t, k, p).Open(nil, out)
		if err != nil || ctr != first || !bytes.Equal(got, body) || s.Next() != first+1 {
			t.Fatalf("round trip: %v, counter %d of %d", err, ctr, first)
		}
	})
}

// FuzzCheckSubscription feeds arbitrary datagrams to CheckSubscription.
// It must not panic or modify its input, and a datagram it accepts must be
// exactly what AuthSubscription makes of it (but for the checksum field):
// without the key nothing verifies.
func FuzzCheckSubscription(f *testing.F) {
	k := testKey(f, 21)
	for _, kind := range []packet.Kind{packet.KindSubscribe, packet.KindGoodbye} {
		b := authedSubscription(f, k, kind, 0)
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 80))
	hs := k.NewHandshaker(nil)
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		ok := hs.CheckSubscription(in)
		if !bytes.Equal(in, b) {
			t.Fatal("CheckSubscription modified its input")
		}
		if !ok {
			return
		}
		again := bytes.Clone(b)
		if err := hs.AuthSubscription(again); err != nil {
			t.Fatalf("verified, but AuthSubscription refuses it: %v", err)
		}
		copy(again[20:24], b[20:24]) // the checksum field is not covered
		if !bytes.Equal(again, b) {
			t.Fatal("verified a datagram AuthSubscription would not make")
		}
	})
}
