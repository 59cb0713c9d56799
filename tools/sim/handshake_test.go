package sim

import (
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// sealedCfg returns a run with the same key at both ends.
func sealedCfg(c Config) Config {
	c.Sender.Key, c.Receiver.Key = chaosKey, chaosKey
	return c
}

// The handshake completes through 30% loss each way from the very first
// packet (HELLO and WELCOME lost as often as anything), over several
// seeds: the sender retries with back-off, holds its messages meanwhile,
// and everything is delivered once it completes.
func TestHandshakeThroughThirtyPercentLoss(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		first := int64(-1)
		r, err := Run(sealedCfg(Config{
			Seed: seed, Messages: 2000, Rate: 100, Size: 64,
			Fwd: spec(t, "delay 20ms loss 30%"), Rev: spec(t, "delay 20ms loss 30%"),
			Receiver: receiver.Config{Latency: time.Second},
			Delivered: func(i int, _ *receiver.Message, lat int64) {
				if first < 0 {
					first = lat
				}
			},
		}))
		if err != nil {
			t.Fatal(err)
		}
		s := r.Sender
		if s.Handshakes != 1 || r.Receiver.Handshakes != 1 {
			t.Fatalf("seed %d: handshakes sender %d receiver %d after %d attempts", seed, s.Handshakes, r.Receiver.Handshakes, s.HandshakeAttempts)
		}
		// With a 1 s latency budget NACKs repair nearly everything; the
		// messages held for the handshake are delivered too.
		if r.Residual() > 0.01 || r.Corrupt+r.Duplicates+r.OutOfOrder != 0 {
			t.Fatalf("seed %d: residual %.4f, corrupt %d, duplicates %d, out of order %d", seed, r.Residual(), r.Corrupt, r.Duplicates, r.OutOfOrder)
		}
		t.Logf("seed %d: %d HELLOs, first message delivered after %.0f ms, held %d, residual %.2f%%",
			seed, s.HandshakeAttempts, float64(first)/1e6, s.Held, 100*r.Residual())
	}
}

// A lossless handshake costs one round trip before the first message:
// its latency is the handshake's RTT plus the one-way delay, and the
// handshake's round trip seeds the sender's RTT estimator.
func TestHandshakeCostsOneRoundTrip(t *testing.T) {
	first := int64(-1)
	r, err := Run(sealedCfg(Config{
		Messages: 100, Rate: 1000, Fwd: spec(t, "delay 10ms"), Rev: spec(t, "delay 10ms"),
		Delivered: func(_ int, _ *receiver.Message, lat int64) {
			if first < 0 {
				first = lat
			}
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(30 * time.Millisecond); first != want {
		t.Fatalf("first message delivered after %v, want %v (HELLO, WELCOME, then the data)", time.Duration(first), time.Duration(want))
	}
	if r.Sender.HandshakeRTTNanos != int64(20*time.Millisecond) || r.Sender.HandshakeAttempts != 1 || r.Unique != r.Sent {
		t.Fatalf("handshake RTT %v, attempts %d, delivered %d of %d",
			time.Duration(r.Sender.HandshakeRTTNanos), r.Sender.HandshakeAttempts, r.Unique, r.Sent)
	}
	// The receiver's NACK retry timer starts from the handshake's round
	// trip (WELCOME to CONFIRM), not from a quarter of the latency budget:
	// on this lossless link no NACK ever replaced it.
	if got := r.Receiver.Streams[0].NACKRTTNanos; got != int64(20*time.Millisecond) {
		t.Fatalf("receiver's first RTT %v, want the handshake's 20ms", time.Duration(got))
	}
}

// The receiver restarts mid-stream (a new process: no keys). The sender's
// next packets draw a RETRY naming the first of them the new receiver
// could not open; the sender handshakes again and resends, under the new
// keys, everything it sealed from that packet on. So nothing is lost: the
// packets in flight at the restart and those sent before the RETRY came
// back (a round trip's worth, 41 here) all arrive, only later.
func TestSealedReceiverRestart(t *testing.T) {
	const rate, restart = 2000, 5000
	const oneWay = 10 * time.Millisecond
	var recvNoKeys uint64
	var rehandshakeAt, resumedAt time.Duration // since the start
	r, err := Run(sealedCfg(Config{
		Sender: nackOnly, Messages: 10_000, Rate: rate, RestartReceiverAt: restart,
		Fwd: spec(t, "delay 10ms"), Rev: spec(t, "delay 10ms"),
		Observe: func(el time.Duration, snd *sender.Core, rcv *receiver.Core) {
			recvNoKeys = max(recvNoKeys, rcv.Stats().NoKeys)
			if st := snd.Stats(); st.Rehandshakes > 0 && rehandshakeAt == 0 {
				rehandshakeAt = el
			} else if st.Handshakes == 2 && resumedAt == 0 {
				resumedAt = el
			}
		},
		ObserveEvery: time.Millisecond,
	}))
	if err != nil {
		t.Fatal(err)
	}
	s := r.Sender
	if s.Rehandshakes != 1 || s.Handshakes != 2 || r.Receiver.Handshakes != 1 {
		t.Fatalf("rehandshakes %d, handshakes %d (receiver %d)", s.Rehandshakes, s.Handshakes, r.Receiver.Handshakes)
	}
	if len(r.Missed) != 0 || s.Resent != recvNoKeys || r.Corrupt+r.Duplicates+r.OutOfOrder != 0 {
		t.Fatalf("lost %d messages across the receiver restart (resent %d of the %d the new receiver could not open), corrupt %d, duplicates %d, out of order %d",
			len(r.Missed), s.Resent, recvNoKeys, r.Corrupt, r.Duplicates, r.OutOfOrder)
	}
	// The restart happens just before message 5000 is sent (2.5 s in):
	// the sender's next packet reaches the new receiver one way later and
	// its RETRY comes back one way after that; the new handshake takes one
	// more round trip. Allow a millisecond of sampling.
	restartAt := time.Duration(restart) * time.Second / rate
	if rehandshakeAt == 0 || rehandshakeAt > restartAt+2*oneWay+time.Millisecond || resumedAt > restartAt+4*oneWay+2*time.Millisecond {
		t.Fatalf("restart at %v: re-handshake began at %v, completed at %v", restartAt, rehandshakeAt, resumedAt)
	}
	t.Logf("the new receiver saw %d packets under the old keys, all resent; re-handshake %v after the restart, keys again %v after, p99 latency %.1f ms",
		recvNoKeys, rehandshakeAt-restartAt, resumedAt-restartAt, float64(r.LatencyP99)/1e6)
}

// A sender restart with a key: the new session handshakes, the receiver
// replaces the old session, everything is delivered.
func TestSealedSenderRestart(t *testing.T) {
	r, err := Run(sealedCfg(Config{Sender: nackOnly, Messages: 10_000, Rate: 2000, RestartSenderAt: 5000,
		Fwd: spec(t, "delay 10ms"), Rev: spec(t, "delay 10ms")}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Receiver.SessionRestarts != 1 || r.Unique != r.Sent || r.Receiver.Handshakes != 2 {
		t.Fatalf("restarts %d, delivered %d of %d, handshakes %d", r.Receiver.SessionRestarts, r.Unique, r.Sent, r.Receiver.Handshakes)
	}
}

// Rekeying every second (and every 3000 packets) for 20 s over a lossy,
// reordering link: every rekey completes, no message is lost to it (the
// previous keys keep opening what is in flight), and the receiver never
// sees a packet it holds no keys for.
func TestRekeyLosesNothing(t *testing.T) {
	cfg := sealedCfg(Config{
		Messages: 20_000, Rate: 1000, Seed: 3,
		Fwd: spec(t, "delay 20ms 5ms distribution normal loss 2%"), Rev: spec(t, "delay 20ms loss 2%"),
	})
	cfg.Sender.RekeyInterval = time.Second
	cfg.Sender.RekeyPackets = 3000
	r, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The receiver may not have seen a packet under the last rekey's keys
	// when the run ends (its CONFIRM lost, the stream idle).
	if r.Sender.Rekeys < 15 || r.Receiver.Rekeys+1 < r.Sender.Rekeys || r.Receiver.Rekeys > r.Sender.Rekeys ||
		r.Receiver.NoKeys != 0 || r.Sender.NoKeys != 0 {
		t.Fatalf("rekeys sender %d receiver %d, no-key packets at receiver %d, at sender %d",
			r.Sender.Rekeys, r.Receiver.Rekeys, r.Receiver.NoKeys, r.Sender.NoKeys)
	}
	if r.Residual() > 0.0005 || r.Corrupt+r.Duplicates+r.OutOfOrder != 0 {
		t.Fatalf("residual %.4f%%, corrupt %d, duplicates %d, out of order %d", 100*r.Residual(), r.Corrupt, r.Duplicates, r.OutOfOrder)
	}
	t.Logf("%d rekeys, residual %.4f%%, p99 %.1f ms", r.Sender.Rekeys, 100*r.Residual(), float64(r.LatencyP99)/1e6)
}
