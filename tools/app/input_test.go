package app

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/tools/framing"
)

// nextWithin calls r.Next in a goroutine and fails if it does not return
// within d (a message that has arrived must never wait for the next).
func nextWithin(t *testing.T, r *inputReader, ctx context.Context, d time.Duration) (string, error) {
	t.Helper()
	type res struct {
		m   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		m, err := r.Next(ctx)
		ch <- res{string(m), err}
	}()
	select {
	case x := <-ch:
		return x.m, x.err
	case <-time.After(d):
		t.Fatalf("Next did not return within %v", d)
	}
	return "", nil
}

// TestInputReaderHandsOverAtOnce: a message is handed over as soon as it
// is complete, even with a partial one behind it, never held until more
// input comes.
func TestInputReaderHandsOverAtOnce(t *testing.T) {
	for _, f := range []framing.Framing{framing.Line, framing.Len32} {
		t.Run(string(f), func(t *testing.T) {
			pr, pw := io.Pipe()
			r := newInputReader(pr, f, 100)
			defer r.Stop()
			defer pw.Close()
			frame := func(s string) []byte {
				if f == framing.Line {
					return []byte(s + "\n")
				}
				return append(binary.BigEndian.AppendUint32(nil, uint32(len(s))), s...)
			}
			go pw.Write(frame("first"))
			if m, err := nextWithin(t, r, context.Background(), 10*time.Second); m != "first" || err != nil {
				t.Fatalf("Next = %q, %v", m, err)
			}
			// Two whole messages and the start of a third in one write.
			third := frame("third")
			go pw.Write(append(append(frame("second"), frame("2b")...), third[:3]...))
			for _, want := range []string{"second", "2b"} {
				if m, err := nextWithin(t, r, context.Background(), 10*time.Second); m != want || err != nil {
					t.Fatalf("Next = %q, %v; want %q", m, err, want)
				}
			}
			go pw.Write(third[3:])
			if m, err := nextWithin(t, r, context.Background(), 10*time.Second); m != "third" || err != nil {
				t.Fatalf("Next = %q, %v", m, err)
			}
		})
	}
}

// TestInputReaderCancel: once ctx is done, Next returns what was already
// read, then errStopped, without waiting for the blocked read.
func TestInputReaderCancel(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	r := newInputReader(pr, framing.Line, 100)
	defer r.Stop()
	go pw.Write([]byte("a\nb\n"))
	ctx, cancel := context.WithCancel(context.Background())
	if m, err := nextWithin(t, r, ctx, 10*time.Second); m != "a" || err != nil {
		t.Fatalf("Next = %q, %v", m, err)
	}
	cancel()
	if m, err := nextWithin(t, r, ctx, 10*time.Second); m != "b" || err != nil {
		t.Fatalf("after cancel: Next = %q, %v; want the message already read", m, err)
	}
	if m, err := nextWithin(t, r, ctx, 10*time.Second); !errors.Is(err, errStopped) {
		t.Fatalf("after cancel: Next = %q, %v; want errStopped", m, err)
	}
	// A Next blocked when ctx ends returns too.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel2)
	if _, err := nextWithin(t, r, ctx2, 10*time.Second); !errors.Is(err, errStopped) {
		t.Fatalf("blocked Next: %v", err)
	}
}

// TestInputReaderStopInterruptsRead: with an input that has read
// deadlines (a pipe from os.Pipe), Stop interrupts the blocked read and
// the goroutine is gone when it returns.
func TestInputReaderStopInterruptsRead(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	defer pr.Close()
	r := newInputReader(pr, framing.Line, 100)
	pw.WriteString("x\n")
	if m, err := nextWithin(t, r, context.Background(), 10*time.Second); m != "x" || err != nil {
		t.Fatalf("Next = %q, %v", m, err)
	}
	done := make(chan struct{})
	go func() { r.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
	select {
	case <-r.exited:
	default:
		t.Fatal("the reading goroutine outlived Stop")
	}
}

// TestInputReaderWhole: many messages of every size cross batch
// boundaries intact and in order, in both framings, and an oversized one
// ends the input with framing.ErrTooLong after every message before it.
func TestInputReaderWhole(t *testing.T) {
	const max = 3000
	var msgs []string
	for i := range 20_000 {
		msgs = append(msgs, strings.Repeat(string(rune('a'+i%26)), (i*7919)%(max+1)))
	}
	for _, f := range []framing.Framing{framing.Line, framing.Len32} {
		var in bytes.Buffer
		for _, m := range msgs {
			if f == framing.Len32 {
				in.Write(binary.BigEndian.AppendUint32(nil, uint32(len(m))))
				in.WriteString(m)
			} else {
				in.WriteString(m + "\n")
			}
		}
		over := strings.Repeat("z", max+1)
		if f == framing.Len32 {
			in.Write(binary.BigEndian.AppendUint32(nil, uint32(len(over))))
			in.WriteString(over)
		} else {
			in.WriteString(over + "\n")
		}
		r := newInputReader(&in, f, max)
		for i, want := range msgs {
			m, err := r.Next(context.Background())
			if err != nil || string(m) != want {
				t.Fatalf("%s: message %d: %d bytes, %v; want %d bytes", f, i, len(m), err, len(want))
			}
		}
		if _, err := r.Next(context.Background()); !errors.Is(err, framing.ErrTooLong) {
			t.Fatalf("%s: oversized message: %v", f, err)
		}
		r.Stop()
	}
}

// endless yields "12345\n" forever without allocating.
type endless struct{ off int }

func (e *endless) Read(p []byte) (int, error) {
	const pat = "12345\n"
	for i := range p {
		p[i] = pat[(e.off+i)%len(pat)]
	}
	e.off = (e.off + len(p)) % len(pat)
	return len(p), nil
}

// TestInputReaderAllocatesNothing: reading, hand-over and recycling of
// batches allocate nothing per message (measured process-wide, so the
// reading goroutine counts).
func TestInputReaderAllocatesNothing(t *testing.T) {
	r := newInputReader(&endless{}, framing.Line, 100)
	defer r.Stop()
	ctx := context.Background()
	allocs := testing.AllocsPerRun(20, func() {
		for range 10_000 {
			if m, err := r.Next(ctx); err != nil || len(m) != 5 {
				panic(fmt.Sprintf("Next = %q, %v", m, err))
			}
		}
	})
	// Allowance for the runtime's own rare allocations (timers, stacks)
	// over 10 000 messages: far below one per message.
	if allocs > 5 {
		t.Fatalf("%.0f allocations per 10 000 messages", allocs)
	}
}

// BenchmarkInputReader is the stdin path of `telewire send` without the
// sender: short lines, as from `seq`.
func BenchmarkInputReader(b *testing.B) {
	r := newInputReader(&endless{}, framing.Line, 65_000)
	defer r.Stop()
	ctx := context.Background()
	b.SetBytes(6)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFramingReader is the synchronous read it replaced, for
// comparison.
func BenchmarkFramingReader(b *testing.B) {
	r := framing.NewReader(&endless{}, framing.Line, 65_000)
	b.SetBytes(6)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Next(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestInputReaderDiscard counts and drops everything read ahead, and
// keeps the end of the input for Next.
func TestInputReaderDiscard(t *testing.T) {
	var in bytes.Buffer
	for i := range 3000 {
		fmt.Fprintf(&in, "%d\n", i)
	}
	r := newInputReader(&in, framing.Line, 100)
	defer r.Stop()
	if m, err := r.Next(context.Background()); string(m) != "0" || err != nil {
		t.Fatalf("Next = %q, %v", m, err)
	}
	<-r.exited // the whole input is read ahead: three batches
	if n := r.Discard(); n != 2999 {
		t.Fatalf("Discard = %d, want 2999", n)
	}
	if m, err := r.Next(context.Background()); err != io.EOF {
		t.Fatalf("after Discard: Next = %q, %v; want io.EOF", m, err)
	}
	if n := r.Discard(); n != 0 {
		t.Fatalf("second Discard = %d", n)
	}
}

// FuzzInputReader: the batching reader yields exactly what a plain
// framing.Reader yields from the same bytes, messages and final error
// alike, whatever the chunks the input arrives in (the chunk sizes
// decide where a message is split between reads, which is what the
// hand-over checks look at).
func FuzzInputReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), uint8(1), false)
	f.Add([]byte("0123456789abcdefghijklmnopqrstuvwxyz\nshort\n"), uint8(3), false)
	f.Add([]byte{0, 0, 0, 2, 'h', 'i', 0, 0, 0, 0, 0, 0, 0, 9, 'x'}, uint8(2), true)
	f.Add([]byte{0, 0, 1, 0, 'h'}, uint8(5), true)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, len32 bool) {
		const max = 16
		fr := framing.Line
		if len32 {
			fr = framing.Len32
		}
		want := framing.NewReader(bytes.NewReader(data), fr, max)
		r := newInputReader(&chunked{data: data, n: int(chunk%8) + 1}, fr, max)
		defer r.Stop()
		for i := 0; ; i++ {
			w, werr := want.Next()
			g, gerr := r.Next(context.Background())
			if !bytes.Equal(w, g) || !sameErr(werr, gerr) {
				t.Fatalf("message %d: got %q, %v; framing.Reader gives %q, %v", i, g, gerr, w, werr)
			}
			if werr != nil {
				return
			}
		}
	})
}

// sameErr reports whether a and b are both nil or the same one of the
// errors a framing.Reader ends with.
func sameErr(a, b error) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	for _, e := range []error{io.EOF, framing.ErrTooLong, framing.ErrTruncated} {
		if errors.Is(a, e) != errors.Is(b, e) {
			return false
		}
	}
	return true
}

// chunked reads data n bytes at a time.
type chunked struct {
	data []byte
	n    int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.data)
	c.data = c.data[k:]
	return k, nil
}
