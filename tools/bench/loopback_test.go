package bench

import (
	"context"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/udpio"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// Both paths are closed loops: the sender stays at most window messages
// ahead of what the receiver has taken, so the kernel never drops and
// every message of b.N is received. The figure is what one sender and one
// receiver sustain on this machine, loopback, 2 goroutines busy.
const (
	payloadSize = 200
	window      = 2048
)

// BenchmarkLoopback/raw is the baseline: udpio's WriteBatch (sendmmsg,
// batches of 64) into Read (recvmmsg), 200-byte datagrams, no protocol,
// GSO and GRO off as in the sender's default.
// BenchmarkLoopback/telewire is the full path: sender.Send → batched write
// → receiver decode, tracking, statistics → Recv, in the default
// configuration (messages packed while the socket is busy);
// BenchmarkLoopback/telewire-nopack the same with one message per
// datagram (sender.Config.DisablePacking), the per-datagram path.
func BenchmarkLoopback(b *testing.B) {
	b.Run("raw", benchRaw)
	b.Run("telewire", func(b *testing.B) { benchTelewire(b, false) })
	b.Run("telewire-nopack", func(b *testing.B) { benchTelewire(b, true) })
}

func benchRaw(b *testing.B) {
	plain := udpio.Config{NoGSO: true, NoGRO: true}
	rx, err := udpio.Listen("127.0.0.1:0", plain)
	if err != nil {
		b.Fatal(err)
	}
	defer rx.Close()
	tx, err := udpio.Listen("127.0.0.1:0", plain)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	dst := rx.LocalAddr()

	var received atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			dgs, err := rx.Read()
			if err != nil {
				return
			}
			received.Add(int64(len(dgs)))
		}
	}()
	const batch = 64
	dgs := make([]udpio.Datagram, batch)
	bufs := make([][]byte, batch)
	for i := range dgs {
		bufs[i] = make([]byte, payloadSize)
		dgs[i] = udpio.Datagram{Data: bufs[i], Addr: dst}
	}
	b.SetBytes(payloadSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var sent int64
	for sent < int64(b.N) {
		for sent-received.Load() > window {
			time.Sleep(20 * time.Microsecond)
		}
		n := min(batch, int64(b.N)-sent)
		for i := range n {
			binary.BigEndian.PutUint64(bufs[i], uint64(sent+i))
		}
		if _, err := tx.WriteBatch(dgs[:n]); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	for received.Load() < int64(b.N) {
		time.Sleep(20 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	rx.Close()
	wg.Wait()
}

func benchTelewire(b *testing.B, noPack bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s, err := sender.New(ctx, sender.Config{To: r.Addr().String(), DisablePacking: noPack})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	var received atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, err := r.Recv(ctx); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	payload := make([]byte, payloadSize)
	// Warm up: the first messages create the session and stream state.
	for range 100 {
		if err := s.Send(payload); err != nil {
			b.Fatal(err)
		}
	}
	for received.Load() < 100 {
		time.Sleep(100 * time.Microsecond)
	}
	received.Store(0)

	b.SetBytes(payloadSize)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		for int64(i)-received.Load() > window {
			time.Sleep(20 * time.Microsecond)
		}
		binary.BigEndian.PutUint64(payload, uint64(i))
		if err := s.Send(payload); err != nil {
			b.Fatal(err)
		}
	}
	for received.Load() < int64(b.N) {
		time.Sleep(20 * time.Microsecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	cancel()
	s.Close()
	r.Close()
	wg.Wait()
}
