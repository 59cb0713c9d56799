package udpio

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLoopback measures throughput over loopback with a sender and a
// receiver goroutine in one process: 256-byte datagrams, one datagram per
// system call ("single", the NoBatch path on both sides) against
// sendmmsg/recvmmsg at several batch sizes. One op is one datagram
// received; datagrams/s is the received rate and loss% the share of sent
// datagrams the receiver's socket dropped or had not yet read at the end;
// datagrams/read is how full the receive batches were.
func BenchmarkLoopback(b *testing.B) {
	b.Run("single", func(b *testing.B) { benchLoopback(b, 1, true) })
	for _, n := range []int{1, 8, 16, 32, 64, 128} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchLoopback(b, n, false) })
	}
}

func benchLoopback(b *testing.B, batch int, noBatch bool) {
	const size = 256
	cfg := Config{BatchSize: batch, MaxDatagram: 2048, NoBatch: noBatch}
	rx := listen(b, "127.0.0.1:0", cfg)
	tx := listen(b, "127.0.0.1:0", cfg)
	dgs := make([]Datagram, batch)
	payload := make([]byte, size)
	for i := range dgs {
		dgs[i] = Datagram{Data: payload, Addr: rx.LocalAddr()}
	}
	if err := rx.SetReadDeadline(time.Now().Add(safetyTimeout)); err != nil {
		b.Fatal(err)
	}

	var stop atomic.Bool
	var sendErr error
	var wg sync.WaitGroup
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	wg.Go(func() {
		for !stop.Load() {
			if noBatch {
				sendErr = tx.WriteTo(payload, rx.LocalAddr())
			} else {
				_, sendErr = tx.WriteBatch(dgs)
			}
			if sendErr != nil {
				return
			}
		}
	})
	received := 0
	for received < b.N {
		got, err := rx.Read()
		if err != nil {
			stop.Store(true)
			wg.Wait()
			b.Fatalf("Read after %d of %d: %v (sender: %v)", received, b.N, err, sendErr)
		}
		received += len(got)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	if sendErr != nil {
		b.Fatalf("sender: %v", sendErr)
	}
	sent := tx.Stats().DatagramsWritten
	b.ReportMetric(float64(received)/elapsed.Seconds(), "datagrams/s")
	b.ReportMetric(100*float64(sent-uint64(received))/float64(sent), "loss%")
	b.ReportMetric(float64(received)/float64(rx.Stats().ReadSyscalls), "datagrams/read")
}

// BenchmarkWrite measures the send side alone: 256-byte datagrams to a
// loopback socket that is never read (the kernel drops what overflows its
// queue, after doing the receive-side work in the sender's system call).
// One op is one datagram sent.
func BenchmarkWrite(b *testing.B) {
	b.Run("single", func(b *testing.B) { benchWrite(b, 1, true) })
	for _, n := range []int{1, 8, 16, 32, 64, 128} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchWrite(b, n, false) })
	}
}

func benchWrite(b *testing.B, batch int, noBatch bool) {
	const size = 256
	cfg := Config{BatchSize: batch, MaxDatagram: 2048, NoBatch: noBatch}
	rx := listen(b, "127.0.0.1:0", cfg)
	tx := listen(b, "127.0.0.1:0", cfg)
	dgs := make([]Datagram, batch)
	payload := make([]byte, size)
	for i := range dgs {
		dgs[i] = Datagram{Data: payload, Addr: rx.LocalAddr()}
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		chunk := dgs[:min(batch, b.N-sent)]
		n, err := tx.WriteBatch(chunk)
		if err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
}

// BenchmarkRead measures the receive side alone: the receive queue is filled
// with 1024 datagrams of 256 bytes while the timer is stopped, then drained.
// One op is one datagram read.
func BenchmarkRead(b *testing.B) {
	b.Run("single", func(b *testing.B) { benchRead(b, 1, true) })
	for _, n := range []int{1, 8, 16, 32, 64, 128} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchRead(b, n, false) })
	}
}

func benchRead(b *testing.B, batch int, noBatch bool) {
	const size, fill = 256, 1024
	rx := listen(b, "127.0.0.1:0", Config{BatchSize: batch, MaxDatagram: 2048, NoBatch: noBatch})
	tx := listen(b, "127.0.0.1:0", Config{BatchSize: 128})
	dgs := make([]Datagram, fill)
	payload := make([]byte, size)
	for i := range dgs {
		dgs[i] = Datagram{Data: payload, Addr: rx.LocalAddr()}
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for read := 0; read < b.N; {
		b.StopTimer()
		if err := rx.SetReadDeadline(time.Now().Add(safetyTimeout)); err != nil {
			b.Fatal(err)
		}
		want := min(fill, b.N-read)
		if n, err := tx.WriteBatch(dgs[:want]); n != want || err != nil {
			b.Fatalf("WriteBatch = %d, %v", n, err)
		}
		b.StartTimer()
		for got := 0; got < want; {
			r, err := rx.Read()
			if err != nil {
				b.Fatalf("Read: %v (stats %+v)", err, rx.Stats())
			}
			got += len(r)
		}
		read += want
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "datagrams/s")
	b.ReportMetric(float64(rx.Stats().DatagramsRead)/float64(rx.Stats().ReadSyscalls), "datagrams/read")
}
