package soak

import (
	"bytes"
	"errors"
	"testing"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{HeaderLen, HeaderLen + 1, 64, 200, 1400} {
		for _, index := range []uint64{0, 1, 255, 1 << 32, 1<<64 - 1} {
			for _, flags := range []uint32{0, FlagFence} {
				msg := make([]byte, size)
				PutPayload(msg, index, flags)
				gi, gf, err := CheckPayload(msg)
				if err != nil || gi != index || gf != flags {
					t.Fatalf("size %d index %d flags %d: got %d, %d, %v", size, index, flags, gi, gf, err)
				}
			}
		}
	}
}

func TestPayloadErrors(t *testing.T) {
	good := make([]byte, 64)
	PutPayload(good, 12345, 0)
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	withCRC := func(f func(b []byte)) []byte { // a change the checksum is recomputed over
		b := mutate(f)
		c := checksum(b)
		b[offCRC], b[offCRC+1], b[offCRC+2], b[offCRC+3] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
		return b
	}
	cases := []struct {
		name string
		msg  []byte
		want error
	}{
		{"empty", nil, ErrShortPayload},
		{"short", good[:HeaderLen-1], ErrShortPayload},
		{"magic", mutate(func(b []byte) { b[0] ^= 1 }), ErrBadMagic},
		{"index bit", mutate(func(b []byte) { b[offIndex+7] ^= 1 }), ErrBadChecksum},
		{"filler bit", mutate(func(b []byte) { b[40] ^= 0x80 }), ErrBadChecksum},
		{"crc bit", mutate(func(b []byte) { b[offCRC] ^= 4 }), ErrBadChecksum},
		{"truncated filler", good[:63], ErrBadChecksum},
		{"unknown flag", withCRC(func(b []byte) { b[offFlags+3] |= 2 }), ErrBadFlags},
		{"restamped index", withCRC(func(b []byte) { b[offIndex+7]++ }), ErrBadFiller},
	}
	for _, c := range cases {
		if _, _, err := CheckPayload(c.msg); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

// Every proper prefix of a message fails cleanly.
func TestPayloadPrefixes(t *testing.T) {
	msg := make([]byte, 200)
	PutPayload(msg, 7, FlagFence)
	for i := range len(msg) {
		if _, _, err := CheckPayload(msg[:i]); err == nil {
			t.Fatalf("prefix of %d bytes accepted", i)
		}
	}
}

func TestPayloadNoAllocs(t *testing.T) {
	msg := make([]byte, 200)
	var index uint64
	allocs := testing.AllocsPerRun(1000, func() {
		index++
		PutPayload(msg, index, 0)
		if _, _, err := CheckPayload(msg); err != nil {
			t.Fatal(err)
		}
		msg[50] ^= 1
		if _, _, err := CheckPayload(msg); err == nil {
			t.Fatal("corruption not caught")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per put and check", allocs)
	}
}

func FuzzCheckPayload(f *testing.F) {
	for _, size := range []int{HeaderLen, 64, 200} {
		msg := make([]byte, size)
		PutPayload(msg, uint64(size)*1000, 0)
		f.Add(msg)
		fence := bytes.Clone(msg)
		PutPayload(fence, 3, FlagFence)
		f.Add(fence)
	}
	f.Add([]byte{})
	f.Add([]byte("TWS1"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		index, flags, err := CheckPayload(msg)
		if err != nil {
			return
		}
		// What is accepted re-encodes to the same bytes.
		again := make([]byte, len(msg))
		PutPayload(again, index, flags)
		if !bytes.Equal(again, msg) {
			t.Fatalf("accepted %x, re-encoded %x", msg, again)
		}
	})
}

func BenchmarkPayload(b *testing.B) {
	msg := make([]byte, DefaultSize)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		PutPayload(msg, uint64(i), 0)
		if _, _, err := CheckPayload(msg); err != nil {
			b.Fatal(err)
		}
	}
}
