package sim

import (
	"testing"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// The reliability scenarios of the NACK/delivery design, each from a seed
// on a fake clock: a failure replays exactly with the same seed. FEC is
// off here, so these measure retransmission alone; fec_test.go has the
// scenarios with parity.

// nackOnly is the sender setting of these scenarios.
var nackOnly = sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}}

func checkComplete(t *testing.T, r Result, minShare float64) {
	t.Helper()
	share := float64(r.Unique) / float64(r.Sent)
	st := r.Receiver.Streams[0]
	t.Logf("delivered %d/%d (%.5f), lost %d, by rtx %d, skipped %d, late %d, NACKs %d, rtx %d, latency p50 %.1fms p99 %.1fms p99.9 %.1fms",
		r.Unique, r.Sent, share, st.Lost, st.RecoveredRTX, st.Skipped, st.Late, st.NACKs, r.Sender.Retransmits,
		float64(r.LatencyP50)/1e6, float64(r.LatencyP99)/1e6, float64(r.LatencyP999)/1e6)
	if share < minShare {
		t.Fatalf("delivered %.5f of messages, want at least %.5f", share, minShare)
	}
	if r.OutOfOrder != 0 || r.Duplicates != 0 || r.Corrupt != 0 {
		t.Fatalf("ordered delivery broke: out of order %d, duplicates %d, corrupt %d", r.OutOfOrder, r.Duplicates, r.Corrupt)
	}
	if r.Unique+st.Skipped+st.Late < r.Sent {
		t.Fatalf("unaccounted messages: %d delivered + %d skipped + %d late < %d sent", r.Unique, st.Skipped, st.Late, r.Sent)
	}
}

func TestOrderedFivePercentLossComplete(t *testing.T) {
	r, err := Run(Config{Sender: nackOnly, Messages: 100_000, Rate: 5000, Seed: 11,
		Fwd: spec(t, "delay 20ms loss random 5%"), Rev: spec(t, "delay 20ms loss random 5%")})
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, r, 1)
}

func TestOrderedTwentyPercentLoss(t *testing.T) {
	r, err := Run(Config{Sender: nackOnly, Messages: 100_000, Rate: 5000, Seed: 12,
		Fwd: spec(t, "delay 20ms loss random 20%"), Rev: spec(t, "delay 20ms loss random 20%")})
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, r, 0.9999)
}

// TestOrderedBurstLoss: Gilbert-Elliott with mean burst 5 (r = 20%) and
// stationary loss 10% (p = r·0.1/0.9).
func TestOrderedBurstLoss(t *testing.T) {
	r, err := Run(Config{Sender: nackOnly, Messages: 100_000, Rate: 5000, Seed: 13,
		Fwd: spec(t, "delay 20ms loss gemodel 2.2222% 20%"), Rev: spec(t, "delay 20ms loss random 5%")})
	if err != nil {
		t.Fatal(err)
	}
	if lost := float64(r.FwdLink.Dropped) / float64(r.FwdLink.Enqueued); lost < 0.08 || lost > 0.12 {
		t.Fatalf("link lost %.3f, the scenario wants about 10%%", lost)
	}
	checkComplete(t, r, 0.999)
}

// TestNoStormAcrossWrap: at 1% loss, each loss costs about one NACK, at
// any starting sequence, including across 2^32 and 2^64.
func TestNoStormAcrossWrap(t *testing.T) {
	for _, first := range []uint64{0, 1, 1 << 31, 1<<32 - 5000, 1<<64 - 5000} {
		r, err := Run(Config{Sender: nackOnly, Messages: 10_000, Rate: 2000, Seed: 5, FirstSeq: first,
			Fwd: spec(t, "delay 10ms loss random 1%"), Rev: spec(t, "delay 10ms")})
		if err != nil {
			t.Fatal(err)
		}
		st := r.Receiver.Streams[0]
		if r.Unique != r.Sent || st.Lost == 0 {
			t.Fatalf("first %d: delivered %d of %d, lost %d", first, r.Unique, r.Sent, st.Lost)
		}
		if st.NACKs > 2*st.Lost || r.Sender.Retransmits > 2*st.Lost {
			t.Fatalf("first %d: %d NACKs and %d retransmissions for %d losses", first, st.NACKs, r.Sender.Retransmits, st.Lost)
		}
	}
}

// TestLatestMode: state snapshots. Nothing older is delivered after
// something newer, and superseded data is not requested.
func TestLatestMode(t *testing.T) {
	r, err := Run(Config{Sender: nackOnly, Messages: 20_000, Rate: 2000, Seed: 8,
		Fwd: spec(t, "delay 10ms 3ms loss random 5%"), Rev: spec(t, "delay 10ms"),
		Receiver: receiver.Config{Mode: receiver.ModeLatest}})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Receiver.Streams[0]
	if r.OutOfOrder != 0 || r.Duplicates != 0 {
		t.Fatalf("latest mode delivered out of order %d times, duplicates %d", r.OutOfOrder, r.Duplicates)
	}
	if st.Lost == 0 || st.Superseded+st.Late == 0 {
		t.Fatalf("scenario lost nothing or superseded nothing: %+v", st)
	}
	// Only a loss at the very end (no newer message supersedes it) may be
	// requested.
	if st.NACKs > 2 {
		t.Fatalf("latest mode sent %d NACKs for superseded data", st.NACKs)
	}
}

// TestSenderRestart: a new sender session mid-stream resets the receiver's
// state for it; nothing of the old session is requested.
func TestSenderRestart(t *testing.T) {
	r, err := Run(Config{Sender: nackOnly, Messages: 10_000, Rate: 2000, FirstSeq: 100, RestartSenderAt: 5000,
		Fwd: spec(t, "delay 10ms"), Rev: spec(t, "delay 10ms")})
	if err != nil {
		t.Fatal(err)
	}
	if r.Receiver.SessionRestarts != 1 || r.Unique != r.Sent || r.Receiver.NACKs != 0 || r.Sender.Unavailable != 0 {
		t.Fatalf("restarts %d, delivered %d of %d, NACKs %d, unavailable %d",
			r.Receiver.SessionRestarts, r.Unique, r.Sent, r.Receiver.NACKs, r.Sender.Unavailable)
	}
}

// TestReceiverRestart: a new receiver joining mid-stream starts from what
// it hears and requests no history.
func TestReceiverRestart(t *testing.T) {
	r, err := Run(Config{Sender: nackOnly, Messages: 10_000, Rate: 2000, RestartReceiverAt: 5000,
		Fwd: spec(t, "delay 10ms"), Rev: spec(t, "delay 10ms")})
	if err != nil {
		t.Fatal(err)
	}
	st := r.Receiver.Streams[0]
	if r.Receiver.NACKs != 0 || r.Sender.Unavailable != 0 || st.Lost != 0 {
		t.Fatalf("restarted receiver asked for history: NACKs %d, lost %d, unavailable %d", r.Receiver.NACKs, st.Lost, r.Sender.Unavailable)
	}
	// Messages in flight when the receiver was replaced reach the new
	// one; everything from the restart on is delivered.
	if r.Unique < r.Sent-10 {
		t.Fatalf("delivered %d of %d", r.Unique, r.Sent)
	}
}
