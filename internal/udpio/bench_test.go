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
// sendmmsg/recvmmsg at several batch sizes, without GSO or GRO (see
// BenchmarkOffload for those). One op is one datagram
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
	cfg := Config{BatchSize: batch, MaxDatagram: 2048, NoBatch: noBatch, NoGSO: true, NoGRO: true}
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

// BenchmarkWrite measures the send side alone, without GSO: 256-byte
// datagrams to a loopback socket that is never read (the kernel drops what overflows its
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
	cfg := Config{BatchSize: batch, MaxDatagram: 2048, NoBatch: noBatch, NoGSO: true, NoGRO: true}
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

// BenchmarkRead measures the receive side alone, without GSO or GRO: the
// receive queue is filled with 1024 datagrams of 256 bytes while the timer
// is stopped, then drained.
// One op is one datagram read.
func BenchmarkRead(b *testing.B) {
	b.Run("single", func(b *testing.B) { benchRead(b, 1, true) })
	for _, n := range []int{1, 8, 16, 32, 64, 128} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) { benchRead(b, n, false) })
	}
}

func benchRead(b *testing.B, batch int, noBatch bool) {
	const size, fill = 256, 1024
	rx := listen(b, "127.0.0.1:0", Config{BatchSize: batch, MaxDatagram: 2048, NoBatch: noBatch, NoGRO: true})
	tx := listen(b, "127.0.0.1:0", Config{BatchSize: 128, NoGSO: true})
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

// offloadModes are the ways BenchmarkOffload moves datagrams: one per
// system call on both sides; sendmmsg/recvmmsg of 64; the same with GSO on
// the sender (the kernel segments on loopback, so the receiver gets plain
// datagrams); and GSO with GRO on the receiver (coalesced reads).
var offloadModes = []struct {
	name       string
	tx, rx     Config
	perSyscall bool // the sender writes one datagram per call
}{
	{"single", Config{NoBatch: true}, Config{NoBatch: true, MaxDatagram: 2048}, true},
	{"batch64", Config{BatchSize: 64, NoGSO: true, NoGRO: true}, Config{BatchSize: 64, MaxDatagram: 2048, NoGRO: true}, false},
	{"gso", Config{BatchSize: 64, NoGRO: true}, Config{BatchSize: 64, MaxDatagram: 2048, NoGRO: true}, false},
	{"gso+gro", Config{BatchSize: 64, NoGRO: true}, Config{BatchSize: 64, MaxDatagram: 2048}, false},
}

// BenchmarkOffload measures throughput over loopback, a sender and a
// receiver goroutine in one process, for each datagram size and each of
// offloadModes. The sender offers 64 datagrams per WriteBatch (one WriteTo
// each with "single") and stays at most offloadWindow datagrams ahead of
// the receiver, so that the socket buffer never overflows: the figure is
// the rate both sides sustain without loss, not how fast the kernel can
// drop. One op is one datagram received; datagrams/s is the received rate,
// loss% the share of sent datagrams the receiver's socket dropped or had
// not read at the end (0 unless the window outgrows the socket buffer),
// datagrams/read how many datagrams one receive call brought, and
// datagrams/write how many one send call carried.
//
//	go test -run '^$' -bench Offload -benchtime 1s -count 3 ./internal/udpio
func BenchmarkOffload(b *testing.B) {
	for _, size := range []int{64, 200, 256, 1200} {
		for _, m := range offloadModes {
			b.Run(fmt.Sprintf("size=%d/%s", size, m.name), func(b *testing.B) {
				benchOffload(b, size, m.tx, m.rx, m.perSyscall)
			})
		}
	}
}

// offloadWindow bounds the datagrams in flight in BenchmarkOffload: 2048
// datagrams of 1200 bytes take about 4.5 MiB of receive-buffer memory as
// separate datagrams (2304 bytes each, measured in /proc/net/udp), within
// the 8 MiB a 4 MiB SO_RCVBUF request is granted; coalesced by GRO they
// take about half that.
const offloadWindow = 2048

func benchOffload(b *testing.B, size int, txCfg, rxCfg Config, perSyscall bool) {
	const perWrite = 64
	rx := listen(b, "127.0.0.1:0", rxCfg)
	tx := listen(b, "127.0.0.1:0", txCfg)
	if gso, _ := tx.Offload(); !txCfg.NoGSO && !txCfg.NoBatch && !gso {
		b.Skip("no UDP GSO here")
	}
	if _, gro := rx.Offload(); !rxCfg.NoGRO && !rxCfg.NoBatch && !gro {
		b.Skip("no UDP GRO here")
	}
	dst := rx.LocalAddr()
	dgs := make([]Datagram, perWrite)
	payload := make([]byte, size)
	for i := range dgs {
		dgs[i] = Datagram{Data: payload, Addr: dst}
	}
	if err := rx.SetReadDeadline(time.Now().Add(safetyTimeout)); err != nil {
		b.Fatal(err)
	}

	var received atomic.Int64
	space := make(chan struct{}, 1) // the receiver took something
	done := make(chan struct{})
	var sendErr error
	var wg sync.WaitGroup
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	wg.Go(func() {
		sent := int64(0)
		for {
			// Datagrams the kernel dropped will never be received: they
			// leave the window too, or a drop would shrink it for good.
			for sent-received.Load()-int64(rx.kernelDrops.Load()) > offloadWindow-perWrite {
				select {
				case <-space:
				case <-done:
					return
				}
			}
			select {
			case <-done:
				return
			default:
			}
			if perSyscall {
				for i := 0; i < perWrite && sendErr == nil; i++ {
					sendErr = tx.WriteTo(payload, dst)
				}
			} else {
				_, sendErr = tx.WriteBatch(dgs)
			}
			if sendErr != nil {
				return
			}
			sent += perWrite
		}
	})
	for received.Load() < int64(b.N) {
		got, err := rx.Read()
		if err != nil {
			close(done)
			wg.Wait()
			b.Fatalf("Read after %d of %d: %v (sender: %v)", received.Load(), b.N, err, sendErr)
		}
		received.Add(int64(len(got)))
		select {
		case space <- struct{}{}:
		default:
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	close(done)
	wg.Wait()
	if sendErr != nil {
		b.Fatalf("sender: %v", sendErr)
	}
	ts, rs := tx.Stats(), rx.Stats()
	got := float64(received.Load())
	b.ReportMetric(got/elapsed.Seconds(), "datagrams/s")
	b.ReportMetric(100*(float64(ts.DatagramsWritten)-got)/float64(ts.DatagramsWritten), "loss%")
	b.ReportMetric(got/float64(rs.ReadSyscalls), "datagrams/read")
	b.ReportMetric(float64(ts.DatagramsWritten)/float64(ts.WriteSyscalls), "datagrams/write")
}
