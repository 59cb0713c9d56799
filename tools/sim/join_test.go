package sim

import (
	"testing"
	"time"

	"github.com/telewire/telewire/sender"
)

// joinScenario: five receivers of a group at 2% loss each plus 1% shared;
// receiver 0 joins at message 2000 and asks for history.
func joinScenario(history int, seed uint64) GroupConfig {
	return GroupConfig{
		Receivers: 5, SharedLoss: 0.01, Loss: 0.02, RevLoss: 0.01, Delay: 5 * time.Millisecond, Seed: seed,
		Messages: 4000, Rate: 1000,
		Late:   []Join{{At: 2000, History: history}},
		Sender: sender.Config{DisablePacking: true, FEC: sender.FECConfig{Mode: sender.FECOff}},
	}
}

// TestLateJoinerGetsHistory: a receiver that joins a running group with
// JoinHistory 300 gets the 300 messages before the first it heard, then
// every live one, all in order and intact; the history came to it alone
// (unicast), the other receivers got everything as before and nothing
// unicast.
func TestLateJoinerGetsHistory(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		c := joinScenario(300, seed)
		r, err := RunGroup(c)
		if err != nil {
			t.Fatal(err)
		}
		j := r.Receivers[0]
		t.Logf("seed %d: joiner first %d, got %d, out of order %d, duplicates %d, history asked %d, unicast %d; sender history NACKs %d",
			seed, j.First, j.Unique, j.OutOfOrder, j.Duplicates, j.Stats.HistoryRequested, j.Unicast, r.Sender.HistoryNACKs)
		// The joiner's first heard message may be a little after 2000
		// (lost) or a retransmission of an earlier one: history counts
		// back from the first sequence it heard.
		first := int(j.Stats.HistoryRequested)
		if j.Stats.HistoryRequested != 300 {
			t.Errorf("seed %d: the joiner asked for %d sequences of history, want 300", seed, first)
		}
		if j.First > 1700 || j.First < 1600 {
			t.Errorf("seed %d: the joiner's first message is %d, want about 2000-300", seed, j.First)
		}
		if want := uint64(c.Messages - j.First); j.Unique != want || j.OutOfOrder != 0 || j.Duplicates != 0 || j.Corrupt != 0 {
			t.Errorf("seed %d: joiner got %d of the %d messages from %d (out of order %d, duplicates %d, corrupt %d)",
				seed, j.Unique, want, j.First, j.OutOfOrder, j.Duplicates, j.Corrupt)
		}
		if j.Unicast < 300 || r.Sender.HistoryNACKs == 0 {
			t.Errorf("seed %d: %d datagrams to the joiner alone, %d history NACKs: the history did not come unicast", seed, j.Unicast, r.Sender.HistoryNACKs)
		}
		for i, x := range r.Receivers[1:] {
			if x.Unique != r.Sent || x.OutOfOrder != 0 || x.Duplicates != 0 || x.Unicast != 0 {
				t.Errorf("seed %d: receiver %d got %d of %d (out of order %d, duplicates %d), %d unicast", seed, i+1, x.Unique, r.Sent, x.OutOfOrder, x.Duplicates, x.Unicast)
			}
		}
	}
}

// TestLateJoinerHistoryBounded: history the sender no longer holds is
// answered "unavailable" and skipped; the rest still comes in order.
// Without JoinHistory a joiner starts at the live edge.
func TestLateJoinerHistoryBounded(t *testing.T) {
	c := joinScenario(1000, 1)
	c.Sender.RetransmitPackets = 256 // holds about the last 256 ms
	r, err := RunGroup(c)
	if err != nil {
		t.Fatal(err)
	}
	j := r.Receivers[0]
	t.Logf("joiner first %d, got %d, history asked %d, unicast %d", j.First, j.Unique, j.Stats.HistoryRequested, j.Unicast)
	// The sender holds the last 256 sequences; the oldest of them expire
	// while the request and its answers travel, so a few at the far end
	// may be skipped too.
	if j.First < 2000-256 || j.First > 2000-200 {
		t.Errorf("joiner's first message %d: want about the oldest the sender still held (%d)", j.First, 2000-256)
	}
	if want := uint64(c.Messages - j.First); j.Unique+10 < want || j.OutOfOrder != 0 || j.Duplicates != 0 || j.Corrupt != 0 {
		t.Errorf("joiner got %d of the %d messages from %d (out of order %d, duplicates %d)", j.Unique, want, j.First, j.OutOfOrder, j.Duplicates)
	}
	if j.Missed != c.Messages-int(j.Unique) || j.Unique < uint64(c.Messages-2000) {
		t.Errorf("joiner missed %d, got %d: the live messages must all come", j.Missed, j.Unique)
	}

	c = joinScenario(0, 1)
	if r, err = RunGroup(c); err != nil {
		t.Fatal(err)
	}
	// It may start a little before 2000: a retransmission to the group
	// of what another receiver lost can be the first thing it hears.
	if j := r.Receivers[0]; j.First < 1900 || j.Stats.HistoryRequested != 0 || j.Unicast != 0 {
		t.Errorf("without JoinHistory: first %d, history asked %d, unicast %d", j.First, j.Stats.HistoryRequested, j.Unicast)
	}
}
