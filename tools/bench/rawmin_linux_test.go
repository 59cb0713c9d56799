package bench

import (
	"context"
	"testing"
	"time"
)

// TestRefLoopBlast runs the bare loop's two ends over loopback: Blast
// sends one unchanging batch over and over until its deadline or its
// bound, NextBatch counts what arrives, and every datagram is accounted
// for as delivered or as a kernel drop (SO_RXQ_OVFL).
func TestRefLoopBlast(t *testing.T) {
	ctx := context.Background()
	r, err := rawMinListen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := rawMinDial(ctx, r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	bc := r.(BatchCounter)
	msg := newMessage(0)
	// The bound: 3 batches and a part, far below the socket buffer.
	const bound = 3*RawBatchSize + 10
	sent, err := s.(Blaster).Blast(ctx, msg, Nanotime()+int64(time.Minute), bound)
	if err != nil || sent != bound {
		t.Fatalf("Blast to a bound: %d, %v; want %d", sent, err, bound)
	}
	var got uint64
	for got < bound {
		n, err := bc.NextBatch()
		if err != nil {
			t.Fatal(err)
		}
		got += uint64(n)
	}
	if got != bound {
		t.Errorf("counted %d, want %d", got, bound)
	}
	// The deadline: 20 ms at full speed into a receiver counting
	// meanwhile. What the receiver cannot take the kernel drops; the
	// drop count comes stamped on later datagrams, so drops at the very
	// end go uncounted: counted + drops is at most what was sent.
	got = 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n, err := bc.NextBatch()
			if err != nil {
				return
			}
			got += uint64(n)
		}
	}()
	sent, err = s.(Blaster).Blast(ctx, msg, Nanotime()+int64(20*time.Millisecond), 1<<40)
	if err != nil || sent == 0 {
		t.Fatalf("Blast for 20 ms: %d, %v", sent, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the socket buffer is read out long before
	r.Close()
	<-done
	drops := r.Counters()["kernel_drops"]
	if got == 0 || got+drops > sent {
		t.Errorf("sent %d: counted %d + %d kernel drops", sent, got, drops)
	}
	t.Logf("20 ms: sent %d, counted %d, %d drops counted", sent, got, drops)
	_, dgs, _ := s.Wire()
	if dgs != bound+sent {
		t.Errorf("wire datagrams %d, want %d", dgs, bound+sent)
	}
}
