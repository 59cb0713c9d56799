package framing

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func readAll(t *testing.T, r *Reader) ([][]byte, error) {
	t.Helper()
	var out [][]byte
	for {
		m, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, bytes.Clone(m))
	}
}

func TestLines(t *testing.T) {
	r := NewReader(strings.NewReader("a\n\nbc\nlast"), Line, 100)
	got, err := readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a", "", "bc", "last"}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Fatalf("message %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestLineTooLong(t *testing.T) {
	long := strings.Repeat("x", 200_000)
	r := NewReader(strings.NewReader("ok\n"+long+"\n"), Line, 100_000)
	if m, err := r.Next(); err != nil || string(m) != "ok" {
		t.Fatalf("first: %q %v", m, err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("long line: %v", err)
	}
	// A line of exactly max bytes is fine, across bufio's buffer size.
	exact := strings.Repeat("y", 100_000)
	r = NewReader(strings.NewReader(exact+"\n"), Line, 100_000)
	if m, err := r.Next(); err != nil || len(m) != 100_000 {
		t.Fatalf("exact: %d %v", len(m), err)
	}
}

// TestLen32RoundTrip writes random binary messages (0..1400 bytes, any byte
// values including newlines) and reads them back.
func TestLen32RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var msgs [][]byte
	var buf bytes.Buffer
	w := NewWriter(&buf, Len32)
	for range 500 {
		m := make([]byte, rng.IntN(1401))
		for i := range m {
			m[i] = byte(rng.UintN(256))
		}
		msgs = append(msgs, m)
		if err := w.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, NewReader(&buf, Len32, 1400))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(msgs) {
		t.Fatalf("read %d messages, wrote %d", len(got), len(msgs))
	}
	for i := range msgs {
		if !bytes.Equal(got[i], msgs[i]) {
			t.Fatalf("message %d differs", i)
		}
	}
}

func TestLen32Errors(t *testing.T) {
	if _, err := NewReader(bytes.NewReader([]byte{0, 0}), Len32, 10).Next(); !errors.Is(err, ErrTruncated) {
		t.Errorf("short header: %v", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte{0, 0, 0, 5, 'a'}), Len32, 10).Next(); !errors.Is(err, ErrTruncated) {
		t.Errorf("short body: %v", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte{0, 0, 1, 0}), Len32, 10).Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("too long: %v", err)
	}
}

func TestParse(t *testing.T) {
	if f, err := Parse("len32"); err != nil || f != Len32 {
		t.Fatal(f, err)
	}
	if _, err := Parse("xml"); err == nil {
		t.Fatal("xml accepted")
	}
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("a\nb\n"), false)
	f.Add([]byte{0, 0, 0, 1, 'x'}, true)
	f.Fuzz(func(t *testing.T, data []byte, len32 bool) {
		fr := Line
		if len32 {
			fr = Len32
		}
		r := NewReader(bytes.NewReader(data), fr, 64)
		var total int
		for range len(data) + 1 {
			m, err := r.Next()
			if err != nil {
				return
			}
			if len(m) > 64 {
				t.Fatalf("message of %d bytes over the limit", len(m))
			}
			total += len(m)
		}
		if total > len(data) {
			t.Fatalf("read %d payload bytes from %d input bytes", total, len(data))
		}
	})
}
