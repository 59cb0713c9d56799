package sim

import (
	"testing"
	"time"

	"github.com/telewire/telewire/sender"
)

// groupScenario is the group: each receiver loses 5% on its own
// and 2% with every other (the path to the group), 10 ms round trip.
func groupScenario(n int, fec sender.FECMode, seed uint64) GroupConfig {
	messages := 5000
	if raceEnabled && n >= 100 {
		messages = 1500 // the race detector slows each receiver tenfold
	}
	return GroupConfig{
		Receivers: n, SharedLoss: 0.02, Loss: 0.05, RevLoss: 0.01, Delay: 5 * time.Millisecond, Seed: seed,
		Messages: messages, Rate: 1000,
		// No cap on retransmission: at 100 receivers nearly every
		// sequence is lost by someone (1 - 0.95^100), so repair is
		// about the data rate itself without parity.
		Sender: sender.Config{RetransmitShare: -1, FEC: sender.FECConfig{Mode: fec}},
	}
}

func logGroup(t *testing.T, name string, r GroupResult) (latencyMax int64) {
	t.Helper()
	var missed int
	for _, x := range r.Receivers {
		missed += x.Missed
		latencyMax = max(latencyMax, x.LatencyMax)
	}
	t.Logf("%s: %d receivers, complete %v (missed %d), lost (union) %d, retransmits %d (%.2f per lost), NACK packets %d, sequences NACKed %d (%.2f per lost), suppressed %d, latency max %.1f ms",
		name, len(r.Receivers), r.Complete(), missed, r.LostUnion, r.Retransmits, r.RetransmitsPerLost(),
		r.NACKPackets, r.NACKedSeqs, r.NACKsPerLost(), r.Sender.Suppressed, float64(latencyMax)/1e6)
	return latencyMax
}

// TestGroupRepairScales: 1, 10 and 100 receivers of one sender, each
// with its own 5% loss plus 2% shared. Every receiver gets every message
// in order within the 200 ms budget, and the repair traffic at the
// sender grows with the union of the losses, not with the receivers:
// retransmissions and requests per lost sequence (union over receivers)
// at most 1.5 at 10 receivers and 2 at 100, with the default FEC (parity
// at the receivers' 90th-percentile loss) and, for retransmission alone,
// at 10 receivers. With retransmission alone at 100 receivers the
// requests come to about 2.1 per lost sequence: see docs/fanout.md.
func TestGroupRepairScales(t *testing.T) {
	for _, tc := range []struct {
		n           int
		fec         sender.FECMode
		maxRTX      float64
		maxNACK     float64
		name        string
		minLostEach uint64
	}{
		{1, sender.FECAuto, 0, 0, "fec auto", 50},
		{10, sender.FECAuto, 1.5, 1.5, "fec auto", 500},
		{100, sender.FECAuto, 2, 2, "fec auto", 500},
		{1, sender.FECOff, 0, 0, "fec off", 50},
		{10, sender.FECOff, 1.5, 1.5, "fec off", 500},
		{100, sender.FECOff, 2, 2.5, "fec off", 500},
	} {
		r, err := RunGroup(groupScenario(tc.n, tc.fec, 1))
		if err != nil {
			t.Fatal(err)
		}
		lat := logGroup(t, tc.name, r)
		if !r.Complete() {
			t.Errorf("%s, %d receivers: not every receiver got every message in order", tc.name, tc.n)
		}
		if lat > int64(200*time.Millisecond) {
			t.Errorf("%s, %d receivers: a message took %.1f ms", tc.name, tc.n, float64(lat)/1e6)
		}
		if r.LostUnion < tc.minLostEach {
			t.Errorf("%s, %d receivers: only %d sequences lost: the scenario lost its loss", tc.name, tc.n, r.LostUnion)
		}
		if tc.n > 1 && (r.RetransmitsPerLost() > tc.maxRTX || r.NACKsPerLost() > tc.maxNACK) {
			t.Errorf("%s, %d receivers: %.2f retransmissions and %.2f requests per lost sequence, want at most %.1f and %.1f",
				tc.name, tc.n, r.RetransmitsPerLost(), r.NACKsPerLost(), tc.maxRTX, tc.maxNACK)
		}
		if tc.n > 1 && r.Sender.Group.Receivers != tc.n {
			t.Errorf("%s: the sender holds %d receiver views, want %d", tc.name, r.Sender.Group.Receivers, tc.n)
		}
	}
}

// TestGroupWithoutBackoffImplodes is the control: the same group with
// the back-off off (each receiver configured as if alone) sends the
// sender several times the requests, which is what the back-off saves.
func TestGroupWithoutBackoffImplodes(t *testing.T) {
	c := groupScenario(10, sender.FECOff, 2)
	alone := c
	alone.Receiver.NACKGroupSize = 1
	with, err := RunGroup(c)
	if err != nil {
		t.Fatal(err)
	}
	without, err := RunGroup(alone)
	if err != nil {
		t.Fatal(err)
	}
	logGroup(t, "back-off", with)
	logGroup(t, "no back-off", without)
	if !with.Complete() || !without.Complete() {
		t.Fatal("incomplete delivery")
	}
	if without.NACKsPerLost() < 2*with.NACKsPerLost() {
		t.Fatalf("requests per lost sequence: %.2f without back-off, %.2f with: the back-off saves too little",
			without.NACKsPerLost(), with.NACKsPerLost())
	}
}

// TestGroupReplays: one seed, one run.
func TestGroupReplays(t *testing.T) {
	c := groupScenario(10, sender.FECAuto, 3)
	c.Messages = 1000
	a, err := RunGroup(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := RunGroup(c)
	if err != nil {
		t.Fatal(err)
	}
	if a.LostUnion != b.LostUnion || a.NACKedSeqs != b.NACKedSeqs || a.Retransmits != b.Retransmits || a.SimulatedNanos != b.SimulatedNanos {
		t.Fatalf("two runs of one seed differ: %+v / %+v", a, b)
	}
}
