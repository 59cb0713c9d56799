package netem

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/udpio"
)

// BenchmarkRelayLossless measures how many datagrams a Relay with perfect
// links passes over loopback: a sender goroutine writes 200-byte datagrams
// to the relay in batches of 32 (sendmmsg without GSO, as the bench's
// raw-batch sender does), and a sink socket behind the relay reads
// them (recvmmsg). One op is one datagram received by the sink.
//
// "window" keeps the sender at most 512 datagrams ahead of the sink, so
// it measures what the relay forwards without being overrun; "flood" lets
// the sender run free, so the relay is overrun and loss% shows what its
// socket buffers and queues drop. datagrams/s is the sink's receive rate;
// loss% is the share of sent datagrams the sink had not received at the
// end (with "window" at most 512 are then still in flight); relay-drop%
// is the share of the datagrams the relay read that its link dropped
// because its queue was full (the default limit of 1000 packets), that
// is, because delivery fell behind. Allocations count
// the whole process (sender, relay and sink), after one datagram has set
// the relay's client up.
func BenchmarkRelayLossless(b *testing.B) {
	b.Run("window", func(b *testing.B) { benchRelay(b, 512) })
	b.Run("flood", func(b *testing.B) { benchRelay(b, 0) })
}

func benchRelay(b *testing.B, window int) {
	const size, batch = 200, 32
	sink, err := udpio.Listen("127.0.0.1:0", udpio.Config{MaxDatagram: 2048})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	r, err := NewRelay(RelayConfig{Listen: "127.0.0.1:0", To: sink.LocalAddr().String()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			b.Errorf("Run: %v", err)
		}
	}()
	tx, err := udpio.Listen("127.0.0.1:0", udpio.Config{MaxDatagram: 2048, NoGSO: true, NoGRO: true})
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	// failure guard only: a relay that stops forwarding fails the benchmark
	if err := sink.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		b.Fatal(err)
	}

	payload := make([]byte, size)
	dgs := make([]udpio.Datagram, batch)
	for i := range dgs {
		dgs[i] = udpio.Datagram{Data: payload, Addr: r.Addr()}
	}
	// Warm up: the first datagram creates the relay's client, its
	// upstream socket and buffers, which are not what is measured.
	if _, err := tx.WriteBatch(dgs[:1]); err != nil {
		b.Fatal(err)
	}
	if _, err := sink.Read(); err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	var stop atomic.Bool
	progress := make(chan struct{}, 1)
	var sent int64
	var sendErr error
	var wg sync.WaitGroup

	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	wg.Go(func() {
		// A datagram the relay drops would hold the window shut for good,
		// so a window that sees no progress for stall is written off.
		const stall = 20 * time.Millisecond
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		var writtenOff int64
		for !stop.Load() {
			for window > 0 && sent-writtenOff-received.Load() >= int64(window) && !stop.Load() {
				timer.Reset(stall)
				select {
				case <-progress:
				case <-timer.C:
					writtenOff = sent - received.Load()
				}
			}
			n, err := tx.WriteBatch(dgs)
			sent += int64(n)
			if err != nil {
				sendErr = err
				return
			}
		}
	})
	for received.Load() < int64(b.N) {
		got, err := sink.Read()
		if err != nil {
			stop.Store(true)
			wg.Wait()
			b.Fatalf("sink Read after %d of %d: %v (sender: %v, relay %+v)", received.Load(), b.N, err, sendErr, r.Stats())
		}
		received.Add(int64(len(got)))
		select {
		case progress <- struct{}{}:
		default:
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	if sendErr != nil {
		b.Fatalf("sender: %v", sendErr)
	}
	st := r.Stats()
	r.mu.Lock()
	for _, c := range r.clients {
		if us := c.up.Stats(); us.WriteSyscalls > 0 {
			b.ReportMetric(float64(us.DatagramsWritten)/float64(us.WriteSyscalls), "datagrams/write")
		}
	}
	r.mu.Unlock()
	if ls := r.conn.Stats(); ls.ReadSyscalls > 0 {
		b.ReportMetric(float64(ls.DatagramsRead)/float64(ls.ReadSyscalls), "datagrams/read")
	}
	b.ReportMetric(float64(received.Load())/elapsed.Seconds(), "datagrams/s")
	b.ReportMetric(100*float64(sent-received.Load())/float64(sent), "loss%")
	if st.Fwd.Received > 0 {
		b.ReportMetric(100*float64(st.Fwd.LimitDropped)/float64(st.Fwd.Received), "relay-drop%")
	}
}
