package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/telewire/telewire/sender"
)

// fanoutScenario: a sender with three unicast destinations, each losing
// 5% on its own path (1% of its feedback), 10 ms round trip.
func fanoutScenario(seed uint64) GroupConfig {
	return GroupConfig{
		Fanout: true, Receivers: 3, Loss: 0.05, RevLoss: 0.01, Delay: 5 * time.Millisecond, Seed: seed,
		Messages: 5000, Rate: 1000,
		Sender: sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}},
	}
}

// TestFanoutRepairPerDestination: in a unicast fan-out a repair reaches
// only the receiver that asked, so the sender suppresses repeats per
// destination: a sequence is resent to one receiver at most once per its
// round trip, and another receiver's request for it is still answered.
// Every receiver gets every message in order, and the retransmissions per
// first transmission a receiver lost stay at most 1.5 times the copies
// each repair goes in (two at this loss rate: sender's redundantLossPPM),
// where answering every repeated NACK cost about twice that.
func TestFanoutRepairPerDestination(t *testing.T) {
	seeds := uint64(3)
	if raceEnabled || testing.Short() {
		seeds = 1
	}
	const copies = 2 // a unicast repair goes twice from 2% loss
	for seed := uint64(1); seed <= seeds; seed++ {
		r, err := RunGroup(fanoutScenario(seed))
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("fan-out to 3, seed %d", seed)
		var missed int
		for _, x := range r.Receivers {
			missed += x.Missed
		}
		t.Logf("%s: complete %v (missed %d), lost (each) %d, retransmits %d (%.2f per lost, %.2f repairs of %d copies), NACKed %d sequences in %d packets, suppressed %d",
			name, r.Complete(), missed, r.LostTotal, r.Retransmits, r.RetransmitsPerLostEach(), r.RetransmitsPerLostEach()/copies, copies,
			r.NACKedSeqs, r.NACKPackets, r.Sender.Suppressed)
		if !r.Complete() {
			t.Errorf("%s: not every receiver got every message in order", name)
		}
		if r.LostTotal < 500 {
			t.Errorf("%s: only %d first transmissions lost: the scenario lost its loss", name, r.LostTotal)
		}
		if per := r.RetransmitsPerLostEach() / copies; per > 1.5 {
			t.Errorf("%s: %.2f repairs per loss per destination (%.2f retransmissions), want at most 1.5", name, per, r.RetransmitsPerLostEach())
		}
		if r.Sender.Suppressed == 0 {
			t.Errorf("%s: nothing suppressed", name)
		}
		for i, x := range r.Receivers {
			if x.Unicast == 0 || x.Stats.Streams[0].RecoveredRTX == 0 {
				t.Errorf("%s: receiver %d got %d datagrams, %d repaired", name, i, x.Unicast, x.Stats.Streams[0].RecoveredRTX)
			}
		}
	}
}
