package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestRawBatchTransport sends messages through the raw-batch baseline's
// own sender and receiver over loopback and checks that each arrives
// intact and in order (nothing else shares the socket, far below any
// buffer limit), that the wire counters add up, and that Close ends a
// blocked Next.
func TestRawBatchTransport(t *testing.T) {
	ctx := context.Background()
	var raw Transport
	for _, tr := range Builtin() {
		if tr.Name == RawBatch {
			raw = tr
		}
	}
	if !raw.Baseline {
		t.Fatal("raw-batch is not the baseline")
	}
	r, err := raw.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := raw.Dial(ctx, r.Addr())
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	const n = 3*RawBatchSize + 5 // full batches and a flushed partial one
	msg := newMessage(MessageSize)
	for i := range uint64(n) {
		PutStamp(msg, i, int64(i)*7)
		if err := s.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, dgs, counters := s.Wire()
	if dgs != n || b != n*MessageSize || counters["write_errors"] != 0 {
		t.Errorf("wire: %d bytes, %d datagrams, %v; want %d, %d, no errors", b, dgs, counters, n*MessageSize, n)
	}
	for i := range uint64(n) {
		got, err := r.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		PutStamp(msg, i, int64(i)*7)
		if !bytes.Equal(got, msg) {
			t.Fatalf("message %d differs", i)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.Next()
		done <- err
	}()
	time.Sleep(30 * time.Millisecond) // let Next block
	r.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Next after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a blocked Next")
	}
	if c := r.Counters(); c["datagrams"] != n || c["kernel_drops"] != 0 {
		t.Errorf("receiver counters %v, want %d datagrams, no drops", c, n)
	}
}
