package sim

import (
	"math"
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

func spec(t *testing.T, s string) netem.Spec {
	t.Helper()
	sp, err := netem.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func TestCleanLinkDeliversEverything(t *testing.T) {
	for _, first := range []uint64{0, 1<<32 - 5000, 1<<64 - 5000} {
		r, err := Run(Config{Messages: 10_000, Rate: 5000, FirstSeq: first,
			Fwd: spec(t, "delay 10ms"), Rev: spec(t, "delay 10ms")})
		if err != nil {
			t.Fatal(err)
		}
		if r.Unique != 10_000 || r.Duplicates != 0 || r.Corrupt != 0 || r.OutOfOrder != 0 {
			t.Fatalf("first seq %d: %+v", first, r)
		}
		st := r.Receiver.Streams[0]
		if st.Lost != 0 || st.Received != 10_000 || st.Resyncs != 0 {
			t.Fatalf("first seq %d: receiver %+v", first, st)
		}
		// Constant delay: latency is the link delay, jitter and relative
		// delay are zero, RTT is twice the delay.
		if r.LatencyP50 != int64(10*time.Millisecond) || r.LatencyMax != int64(10*time.Millisecond) {
			t.Fatalf("latency p50 %d max %d", r.LatencyP50, r.LatencyMax)
		}
		if st.JitterNanos != 0 || st.Delay.P99 != 0 {
			t.Fatalf("jitter %d delay %+v on a constant-delay link", st.JitterNanos, st.Delay)
		}
		if rtt := r.Sender.RTT; rtt.Samples == 0 || rtt.MinNanos != int64(20*time.Millisecond) {
			t.Fatalf("rtt %+v, want 20ms", rtt)
		}
	}
}

// TestLossIsMeasured runs 2% random loss with jitter and checks the
// receiver's and the sender's view of it against the link's own count.
func TestLossIsMeasured(t *testing.T) {
	r, err := Run(Config{Messages: 20_000, Rate: 2000, Seed: 7,
		Fwd: spec(t, "delay 5ms 1ms distribution normal loss random 2%"), Rev: spec(t, "delay 5ms"),
		Receiver: receiver.Config{DisableNACK: true, Mode: receiver.ModeUnordered},
		Sender:   sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}}})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Receiver.Streams[0]
	lost := r.Sent - r.Unique
	if st.Lost != lost {
		t.Fatalf("receiver counted %d lost, %d were", st.Lost, lost)
	}
	if frac := float64(lost) / float64(r.Sent); math.Abs(frac-0.02) > 0.005 {
		t.Fatalf("loss %.4f, link configured for 0.02", frac)
	}
	if r.Corrupt != 0 || r.Duplicates != 0 {
		t.Fatalf("%+v", r)
	}
	// Normal jitter of 1ms standard deviation: RFC 3550 jitter estimates
	// the mean absolute difference of successive transit times, about
	// 2/sqrt(pi) * 1ms = 1.13ms.
	if j := float64(st.JitterNanos) / 1e6; j < 0.8 || j > 1.5 {
		t.Fatalf("jitter %.3fms, expected about 1.13ms", j)
	}
	if v := r.Sender.Streams[0].Receiver; !v.Reported || v.Lost == 0 || v.JitterNanos == 0 {
		t.Fatalf("sender did not learn the receiver's figures: %+v", v)
	}
}

// TestTailLossRevealedByHeartbeat drops the end of a burst: only the
// heartbeat can tell the receiver those messages existed.
func TestTailLossRevealedByHeartbeat(t *testing.T) {
	// A 100% loss window from 1.9s to 2.5s simulated cuts the last 100 of
	// 1000 messages sent at 1000/s from t=1s; modelled here by a link that
	// loses everything after the first 900 packets.
	r, err := Run(Config{Messages: 1000, Rate: 1000, Fwd: spec(t, "delay 1ms"), Rev: spec(t, "delay 1ms"),
		TailDrop: 100, Receiver: receiver.Config{DisableNACK: true}})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Receiver.Streams[0]
	if r.Unique != 900 || st.Lost != 100 {
		t.Fatalf("delivered %d, receiver counted %d lost (want 900 and 100)", r.Unique, st.Lost)
	}
}

func TestSameSeedSameRun(t *testing.T) {
	cfg := Config{Messages: 5000, Seed: 42, Fwd: spec(t, "delay 5ms 2ms loss random 5%"), Rev: spec(t, "delay 5ms")}
	a, err := Run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Run(cfg)
	if a.Unique != b.Unique || a.LatencyP99 != b.LatencyP99 || a.Receiver.Streams[0].JitterNanos != b.Receiver.Streams[0].JitterNanos {
		t.Fatalf("runs differ: %+v vs %+v", a, b)
	}
}

// TestNACKRepairsLoss: with retransmission on, 5% random loss each way at
// 40 ms RTT, ordered delivery with the default 200 ms budget delivers every
// message, in order, once.
func TestNACKRepairsLoss(t *testing.T) {
	for _, first := range []uint64{0, 1, 1 << 31, 1<<32 - 5000, 1<<64 - 5000} {
		r, err := Run(Config{Messages: 20_000, Rate: 2000, Seed: 3, FirstSeq: first,
			Fwd: spec(t, "delay 20ms loss random 5%"), Rev: spec(t, "delay 20ms loss random 5%")})
		if err != nil {
			t.Fatal(err)
		}
		st := r.Receiver.Streams[0]
		if r.Unique != r.Sent || r.OutOfOrder != 0 || r.Duplicates != 0 || r.Corrupt != 0 {
			t.Fatalf("first %d: delivered %d of %d, out of order %d, dup %d\n%+v", first, r.Unique, r.Sent, r.OutOfOrder, r.Duplicates, st)
		}
		if st.Lost == 0 || st.RecoveredRTX+st.RecoveredFEC != st.Lost || st.Unrecovered != 0 {
			t.Fatalf("first %d: lost %d, recovered %d+%d, unrecovered %d", first, st.Lost, st.RecoveredRTX, st.RecoveredFEC, st.Unrecovered)
		}
		t.Logf("first %d: lost %d, NACKs %d, retransmits %d, latency p50 %.1fms p99 %.1fms max %.1fms",
			first, st.Lost, st.NACKs, r.Sender.Retransmits, float64(r.LatencyP50)/1e6, float64(r.LatencyP99)/1e6, float64(r.LatencyMax)/1e6)
	}
}
