package fault

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// TestMessageSizesThroughLoss sends messages of every size that matters
// to the mapping of messages onto datagrams — empty, one byte, one less
// than a datagram carries, exactly that, one more (the smallest message
// in two fragments), 64 KiB and 1 MiB — through a netem relay losing 2%
// each way, repaired by NACK alone and by FEC alone, with a 1280-byte MTU:
// each must arrive whole, byte-identical, in order.
func TestMessageSizesThroughLoss(t *testing.T) {
	testutil.NoLeaks(t)
	const mtu = 1280
	// The largest message one datagram carries: the DATA room less the
	// message map (a 3-byte header, a 2-byte length).
	single := sender.Config{MTU: mtu}.DataRoom(false) - packet.MessagesHeaderLen - 2
	sizes := []int{0, 1, single - 1, single, single + 1, 64 << 10, 1 << 20}
	for _, repair := range []string{"nack", "fec"} {
		t.Run(repair, func(t *testing.T) {
			rcfg := receiver.Config{Listen: "127.0.0.1:0", Latency: 2 * time.Second, ReorderCapacity: 1 << 14}
			scfg := sender.Config{MTU: mtu, FEC: sender.FECConfig{Mode: sender.FECOff}}
			if repair == "fec" {
				rcfg.DisableNACK = true
				scfg.FEC = sender.FECConfig{Mode: sender.FECFixed, K: 8, M: 4}
			}
			rcv, err := receiver.Listen(context.Background(), rcfg)
			if err != nil {
				t.Fatal(err)
			}
			var (
				mu  sync.Mutex
				got [][]byte
			)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					m, err := rcv.Recv(context.Background())
					if err != nil {
						return
					}
					mu.Lock()
					got = append(got, bytes.Clone(m.Payload))
					mu.Unlock()
				}
			}()
			t.Cleanup(func() { _ = rcv.Close(); <-done })
			// A deep queue: a 1 MiB message is a burst of ~900 datagrams,
			// and a relay slowed down (by -race, or a busy host) that
			// overflowed its default 1 000-packet queue would lose them in
			// runs FEC alone cannot rebuild; the test is about random loss.
			relay := lossyRelay(t, rcv.Addr().String(), "loss random 2% limit 50000")
			scfg.To = relay.Addr().String()
			snd := newSender(t, scfg)

			rng := rand.New(rand.NewPCG(1, 2))
			var want [][]byte
			for round := range 2 {
				for _, n := range sizes {
					msg := make([]byte, n)
					for i := range msg {
						msg[i] = byte(rng.Uint32())
					}
					if err := snd.Send(msg); err != nil {
						t.Fatalf("round %d, %d bytes: %v", round, n, err)
					}
					want = append(want, msg)
				}
			}
			testutil.Eventually(t, wait, "every message delivered", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(got) >= len(want)
			})
			mu.Lock()
			defer mu.Unlock()
			for i := range want {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("message %d: got %d bytes, want %d (byte-identical)", i, len(got[i]), len(want[i]))
				}
			}
			ss, rs := snd.Stats(), rcv.Stats()
			t.Logf("%s: %d messages in %d DATA packets; relay dropped %d; receiver lost %d, repaired %d by NACK, %d by FEC; reassembled %d",
				repair, ss.Messages, ss.Packets, relay.Stats().Fwd.Dropped, rs.Streams[0].Lost, rs.Streams[0].RecoveredRTX,
				rs.Streams[0].RecoveredFEC, rs.Streams[0].Reassembled)
			if rs.Streams[0].Lost == 0 {
				t.Errorf("the link lost nothing: repair was not exercised")
			}
			if repair == "fec" && rs.Streams[0].RecoveredRTX != 0 {
				t.Errorf("%d repaired by retransmission with NACK off", rs.Streams[0].RecoveredRTX)
			}
			if frag := uint64(2 * 3); ss.Fragmented != frag {
				t.Errorf("%d messages fragmented, want %d (single+1, 64 KiB, 1 MiB, twice)", ss.Fragmented, frag)
			}
		})
	}
}

// lossyRelay starts a netem relay in front of to impairing both
// directions with spec.
func lossyRelay(t *testing.T, to, spec string) *netem.Relay {
	t.Helper()
	sp, err := netem.ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	r, err := netem.NewRelay(netem.RelayConfig{Listen: "127.0.0.1:0", To: to, Fwd: sp, Rev: sp, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r
}
