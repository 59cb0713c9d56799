package bench

import (
	"bytes"
	"errors"
	"testing"
)

func TestStampRoundTrip(t *testing.T) {
	msg := make([]byte, MessageSize)
	for _, c := range []struct {
		seq  uint64
		sent int64
	}{{0, 0}, {1, 123456789}, {WarmupBit | 7, -1}, {^uint64(0), 1 << 62}} {
		PutStamp(msg, c.seq, c.sent)
		seq, sent, err := ParseStamp(msg)
		if err != nil || seq != c.seq || sent != c.sent {
			t.Errorf("PutStamp(%d, %d) parsed as %d, %d, %v", c.seq, c.sent, seq, sent, err)
		}
	}
}

func TestParseStampRejects(t *testing.T) {
	msg := make([]byte, StampLen)
	PutStamp(msg, 5, 6)
	for i := range StampLen {
		if _, _, err := ParseStamp(msg[:i]); !errors.Is(err, ErrShortMessage) {
			t.Errorf("ParseStamp of %d bytes: %v, want ErrShortMessage", i, err)
		}
	}
	bad := bytes.Clone(msg)
	bad[0] ^= 1
	if _, _, err := ParseStamp(bad); !errors.Is(err, ErrBadMagic) {
		t.Errorf("ParseStamp with a bad magic: %v, want ErrBadMagic", err)
	}
}

func TestStampAllocs(t *testing.T) {
	msg := make([]byte, MessageSize)
	short := msg[:3]
	if n := testing.AllocsPerRun(100, func() {
		PutStamp(msg, 1, 2)
		_, _, _ = ParseStamp(msg)
		_, _, _ = ParseStamp(short)
	}); n != 0 {
		t.Errorf("PutStamp+ParseStamp: %v allocations, want 0", n)
	}
}

func FuzzParseStamp(f *testing.F) {
	msg := make([]byte, MessageSize)
	PutStamp(msg, 42, 1e9)
	f.Add(msg)
	f.Add(msg[:StampLen])
	f.Add(msg[:StampLen-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, sent, err := ParseStamp(b)
		if err != nil {
			if !errors.Is(err, ErrShortMessage) && !errors.Is(err, ErrBadMagic) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		// What parses re-encodes to the same stamp.
		out := bytes.Clone(b)
		PutStamp(out, seq, sent)
		if !bytes.Equal(out[:StampLen], b[:StampLen]) {
			t.Fatalf("re-encoded stamp %x, parsed from %x", out[:StampLen], b[:StampLen])
		}
	})
}
