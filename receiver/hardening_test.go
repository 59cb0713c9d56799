package receiver

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// malformedInputs are datagrams that fail before touching any state: bad
// magic, short, wrong length, bad checksum, and (for a keyed receiver c)
// a sealed DATA with a corrupted tag and a HELLO with a damaged key id.
func malformedInputs(t *testing.T, c *Core, sealed bool) [][]byte {
	t.Helper()
	good := dataPkt(t, 7, 1, 3, 100)
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 0x40 // CRC mismatch
	short := good[:10]
	magic := append([]byte(nil), good...)
	magic[0] = 'X'
	in := [][]byte{corrupt, short, magic, good[:len(good)-1]}
	if sealed {
		s := newSenderSide(t, c, testPSK, 7, 0)
		sb := s.data(1, 100)
		tag := append([]byte(nil), sb...)
		tag[len(tag)-1] ^= 1 // auth failure, key tag intact
		in = append(in, tag, damagedHello(t, testPSK, 9, 0))
	}
	return in
}

// damagedHello is a HELLO of session under psk with bit i%32 of its key id
// flipped.
func damagedHello(t *testing.T, psk []byte, session uint64, i int) []byte {
	t.Helper()
	k, err := seal.NewKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	in, err := k.NewHandshaker(nil).Initiate(session, int64(1+i))
	if err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), in.Hello()...)
	b[20+i%4] ^= byte(1 << (i % 8)) // a bit of the key id
	return b
}

// TestMalformedPathAllocatesNothing feeds malformed datagrams to a Core
// with logging off, at its default level and at debug: none allocates.
func TestMalformedPathAllocatesNothing(t *testing.T) {
	loggers := map[string]zerolog.Logger{
		"zero":  {}, // Config.Logger's default
		"nop":   zerolog.Nop(),
		"info":  zerolog.New(os.Stderr).Level(zerolog.InfoLevel),
		"warn":  zerolog.New(os.Stderr).Level(zerolog.WarnLevel),
		"debug": zerolog.New(zerolog.Nop()).Level(zerolog.Disabled),
	}
	for _, sealed := range []bool{false, true} {
		for name, log := range loggers {
			cfg := Config{Logger: log}
			if sealed {
				cfg.Key = testPSK
			}
			c := newCore(t, cfg)
			in := malformedInputs(t, c, sealed)
			from := addr(1)
			// The first of each may log once (a sampled warning); the
			// steady state must not allocate.
			for _, b := range in {
				c.Handle(b, from, 1)
			}
			i := 0
			n := testing.AllocsPerRun(1000, func() {
				c.Handle(in[i%len(in)], from, int64(2+i))
				i++
			})
			if n != 0 {
				t.Errorf("sealed=%v logger %s: %.2f allocations per malformed datagram", sealed, name, n)
			}
		}
	}
}

// TestCorruptedKeyIDIsNotAMismatch: on a correctly keyed link, HELLOs
// (the only datagrams that carry the pre-shared key's id) whose key id was
// damaged on the way are counted as corrupted, and nothing is logged about
// another key; a sender with another key, which retries the same HELLO, is
// called so after guard.MismatchRun of them.
func TestCorruptedKeyIDIsNotAMismatch(t *testing.T) {
	var logged bytes.Buffer
	c := newCore(t, Config{Key: testPSK, Logger: zerolog.New(&logged)})
	for i := range 10 {
		c.Handle(damagedHello(t, testPSK, uint64(100+i), i), addr(1), int64(1000+i))
	}
	st := c.Stats()
	if st.KeyMismatch != 0 || st.Corrupted != 10 || strings.Contains(logged.String(), "another key") {
		t.Fatalf("corruption reported as a key mismatch: %+v\n%s", st, logged.String())
	}
	k, err := seal.NewKey(bytes.Repeat([]byte{9}, len(testPSK)))
	if err != nil {
		t.Fatal(err)
	}
	in, err := k.NewHandshaker(nil).Initiate(8, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c.Handle(in.Hello(), addr(2), int64(2000+i))
	}
	st = c.Stats()
	if st.KeyMismatch != 5-guard.MismatchRun+1 || !strings.Contains(logged.String(), "another key") {
		t.Fatalf("another key not reported: %+v\n%s", st, logged.String())
	}
}

// TestSizeClass: class gives the smallest class that holds n bytes.
func TestSizeClass(t *testing.T) {
	for n := 0; n <= packet.MaxPayload; n++ {
		c := 0
		for (1<<(c+minClassShift)) < n && c < len(heldPool{}.classes)-1 {
			c++
		}
		if got := class(n); got != c {
			t.Fatalf("class(%d) = %d, want %d", n, got, c)
		}
	}
}
