package sim

import (
	"fmt"
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
	t.Logf("%s: complete %v (missed %d), lost (union) %d, retransmits %d (%.2f per lost), NACK packets %d (%.2f per lost), sequences NACKed %d (%.2f per lost), suppressed %d, latency max %.1f ms",
		name, r.Complete(), missed, r.LostUnion, r.Retransmits, r.RetransmitsPerLost(),
		r.NACKPackets, r.NACKPacketsPerLost(), r.NACKedSeqs, r.NACKsPerLost(), r.Sender.Suppressed, float64(latencyMax)/1e6)
	return latencyMax
}

// TestGroupRepairScales: 1, 10 and 100 receivers of one sender, each
// with its own 5% loss plus 2% shared, over several seeds. Every receiver
// gets every message in order within the 200 ms budget, and the repair
// traffic at the sender grows with the union of the losses, not with the
// receivers: retransmissions and requests per lost sequence (union over
// receivers) at most 1.5 at 10 receivers and 2 at 100, with the default
// FEC (parity at the receivers' 90th-percentile loss) and with
// retransmission alone. Requests are counted both as NACK packets and as
// sequences NACKed (a packet may name several), each per lost sequence:
// both must meet the target. The receivers' back-off follows the group
// size the sender advertises (none is configured).
func TestGroupRepairScales(t *testing.T) {
	seeds := uint64(5)
	if raceEnabled || testing.Short() {
		seeds = 1
	}
	for _, tc := range []struct {
		n       int
		fec     sender.FECMode
		target  float64
		name    string
		minLost uint64
	}{
		{1, sender.FECAuto, 0, "fec auto", 50},
		{10, sender.FECAuto, 1.5, "fec auto", 500},
		{100, sender.FECAuto, 2, "fec auto", 500},
		{1, sender.FECOff, 0, "fec off", 50},
		{10, sender.FECOff, 1.5, "fec off", 500},
		{100, sender.FECOff, 2, "fec off", 500},
	} {
		n := seeds
		if tc.n >= 100 {
			n = (seeds + 1) / 2 // 2.5 s each
		}
		for seed := uint64(1); seed <= n; seed++ {
			r, err := RunGroup(groupScenario(tc.n, tc.fec, seed))
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s, %d receivers, seed %d", tc.name, tc.n, seed)
			lat := logGroup(t, name, r)
			if !r.Complete() {
				t.Errorf("%s: not every receiver got every message in order", name)
			}
			if lat > int64(200*time.Millisecond) {
				t.Errorf("%s: a message took %.1f ms", name, float64(lat)/1e6)
			}
			if r.LostUnion < tc.minLost {
				t.Errorf("%s: only %d sequences lost: the scenario lost its loss", name, r.LostUnion)
			}
			if tc.n > 1 && (r.RetransmitsPerLost() > tc.target || r.NACKsPerLost() > tc.target || r.NACKPacketsPerLost() > tc.target) {
				t.Errorf("%s: %.2f retransmissions, %.2f NACK packets and %.2f sequences NACKed per lost sequence, want at most %.1f",
					name, r.RetransmitsPerLost(), r.NACKPacketsPerLost(), r.NACKsPerLost(), tc.target)
			}
			if r.Sender.Group.Receivers != tc.n {
				t.Errorf("%s: the sender holds %d receiver views, want %d", name, r.Sender.Group.Receivers, tc.n)
			}
			for i, x := range r.Receivers {
				if x.Stats.GroupSize != uint64(tc.n) {
					t.Errorf("%s: receiver %d was told the group has %d receivers", name, i, x.Stats.GroupSize)
					break
				}
			}
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
