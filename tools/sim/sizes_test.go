package sim

import (
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// TestPackingBurst: 10 000 messages of 32 bytes queued at one instant
// (the writer has not taken any of them yet) travel packed, in at most a
// tenth as many DATA datagrams, and arrive whole, in order, each once.
func TestPackingBurst(t *testing.T) {
	res, err := Run(Config{
		Messages: 10_000, Size: 32, Rate: 1e12, // all at one instant
		Fwd:      netem.Spec{Delay: 5 * time.Millisecond},
		Rev:      netem.Spec{Delay: 5 * time.Millisecond},
		Sender:   sender.Config{MTU: 1280, FEC: sender.FECConfig{Mode: sender.FECOff}},
		Receiver: receiver.Config{Latency: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d messages in %d DATA datagrams (%d packed into another's), p50 %v", res.Sent, res.Sender.Packets,
		res.Sender.Packed, time.Duration(res.LatencyP50))
	if res.Unique != res.Sent || res.Corrupt != 0 || res.OutOfOrder != 0 || res.Duplicates != 0 {
		t.Fatalf("delivered %d of %d (corrupt %d, out of order %d, duplicates %d)", res.Unique, res.Sent, res.Corrupt, res.OutOfOrder, res.Duplicates)
	}
	if res.Sender.Packets*10 > res.Sent {
		t.Fatalf("%d messages took %d datagrams, more than a tenth", res.Sent, res.Sender.Packets)
	}
	if st := res.Receiver.Streams[0]; st.Received != res.Sender.Packets {
		t.Fatalf("receiver counted %d datagrams, sender sent %d", st.Received, res.Sender.Packets)
	}
}

// TestPackingAddsNoLatency: at one message a second every message goes
// out at once, alone: latencies equal those of a sender that never packs,
// to the nanosecond.
func TestPackingAddsNoLatency(t *testing.T) {
	run := func(disable bool) Result {
		res, err := Run(Config{
			Messages: 20, Size: 64, Rate: 1,
			Fwd:      netem.Spec{Delay: 3 * time.Millisecond},
			Rev:      netem.Spec{Delay: 3 * time.Millisecond},
			Sender:   sender.Config{MTU: 1280, DisablePacking: disable},
			Receiver: receiver.Config{},
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.Unique != res.Sent {
			t.Fatalf("delivered %d of %d", res.Unique, res.Sent)
		}
		return res
	}
	packed, alone := run(false), run(true)
	if packed.Sender.Packed != 0 || packed.Sender.Packets != alone.Sender.Packets {
		t.Fatalf("an idle sender packed: %d packed, %d datagrams against %d", packed.Sender.Packed, packed.Sender.Packets, alone.Sender.Packets)
	}
	if packed.LatencyP50 != alone.LatencyP50 || packed.LatencyMax != alone.LatencyMax {
		t.Fatalf("latency p50 %v max %v with packing, %v and %v without", time.Duration(packed.LatencyP50),
			time.Duration(packed.LatencyMax), time.Duration(alone.LatencyP50), time.Duration(alone.LatencyMax))
	}
}

// TestLargeMessagesThroughLoss: 1 MiB messages at 20 a second, each in
// about 880 fragments of a 1280-byte MTU, through 5% random loss with a
// 10 ms path: all delivered whole within the 500 ms latency budget.
func TestLargeMessagesThroughLoss(t *testing.T) {
	messages := 40
	if raceEnabled {
		messages = 10 // the race detector makes this run slow, not different
	}
	res, err := Run(Config{
		Messages: messages, Size: 1 << 20, Rate: 20, Seed: 3,
		Fwd:      netem.Spec{Delay: 5 * time.Millisecond, Loss: netem.LossRandom, LossPercent: 5, Limit: 1 << 16},
		Rev:      netem.Spec{Delay: 5 * time.Millisecond, Loss: netem.LossRandom, LossPercent: 5},
		Sender:   sender.Config{MTU: 1280, DisableCongestionControl: true},
		Receiver: receiver.Config{Latency: 500 * time.Millisecond, ReorderCapacity: 1 << 15},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Receiver.Streams[0]
	t.Logf("%d of %d delivered; p50 %v, max %v; %d datagrams lost, %d repaired by NACK, %d by FEC; %d reassembled",
		res.Unique, res.Sent, time.Duration(res.LatencyP50), time.Duration(res.LatencyMax), st.Lost, st.RecoveredRTX, st.RecoveredFEC, st.Reassembled)
	if res.Unique != res.Sent || res.Corrupt != 0 {
		t.Fatalf("delivered %d of %d (corrupt %d; missed %v)", res.Unique, res.Sent, res.Corrupt, res.Missed)
	}
	if res.LatencyMax > int64(500*time.Millisecond) {
		t.Fatalf("latency max %v over the 500 ms budget", time.Duration(res.LatencyMax))
	}
	if st.Lost == 0 {
		t.Fatal("nothing lost: repair not exercised")
	}
}

// TestLargeMessagesEveryMode: 1 MiB messages through 5% loss in the
// unordered and latest modes too. Unordered delivers every one; latest
// never delivers an older message after a newer one and, at 20/s with
// repairs taking milliseconds, loses none to supersession here.
func TestLargeMessagesEveryMode(t *testing.T) {
	for _, mode := range []receiver.Mode{receiver.ModeUnordered, receiver.ModeLatest} {
		t.Run(mode.String(), func(t *testing.T) {
			res, err := Run(Config{
				Messages: 10, Size: 1 << 20, Rate: 20, Seed: 5,
				Fwd:      netem.Spec{Delay: 5 * time.Millisecond, Loss: netem.LossRandom, LossPercent: 5, Limit: 1 << 16},
				Rev:      netem.Spec{Delay: 5 * time.Millisecond, Loss: netem.LossRandom, LossPercent: 5},
				Sender:   sender.Config{MTU: 1280, DisableCongestionControl: true},
				Receiver: receiver.Config{Mode: mode, Latency: 500 * time.Millisecond},
			})
			if err != nil {
				t.Fatal(err)
			}
			st := res.Receiver.Streams[0]
			t.Logf("%v: %d of %d, max %v; %d lost, %d reassembled, %d superseded", mode, res.Unique, res.Sent,
				time.Duration(res.LatencyMax), st.Lost, st.Reassembled, st.Superseded)
			if res.Unique != res.Sent || res.Corrupt != 0 || res.Duplicates != 0 {
				t.Fatalf("delivered %d of %d (corrupt %d, duplicates %d)", res.Unique, res.Sent, res.Corrupt, res.Duplicates)
			}
			if mode == receiver.ModeLatest && res.OutOfOrder != 0 {
				t.Fatalf("latest delivered %d messages after newer ones", res.OutOfOrder)
			}
		})
	}
}
