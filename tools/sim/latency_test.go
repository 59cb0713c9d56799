package sim

import (
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// TestRepairLatencyOnAShortPath holds the repair-latency figures of issue
// #7 on a simulated 100 µs round trip with 5% loss each way at 1000 (and
// 10 000) messages/s: repair within RTT + 2 ms at the 99th percentile with
// NACK only, within 2 ms with FEC, ordered delivery included (a gap FEC
// could rebuild is NACKed at once when retransmission has proved faster
// than waiting for parity). The 1ms-timers cases run the cores on timers
// that fire only on whole milliseconds, as Go's do in an otherwise idle
// process: a repair must not wait for a timer shorter than that.
func TestRepairLatencyOnAShortPath(t *testing.T) {
	spec, err := netem.ParseSpec("delay 50us loss random 5%")
	if err != nil {
		t.Fatal(err)
	}
	const rtt = 100 * time.Microsecond
	for _, c := range []struct {
		name string
		fec  sender.FECConfig
		mode receiver.Mode
		rate float64
		gran time.Duration // timer granularity (Go's timers in an idle process: 1 ms)
	}{
		{"nack/unordered", sender.FECConfig{Mode: sender.FECOff}, receiver.ModeUnordered, 1000, 0},
		{"fec10,3/unordered", sender.FECConfig{Mode: sender.FECFixed, K: 10, M: 3}, receiver.ModeUnordered, 1000, 0},
		{"fec-auto/unordered", sender.FECConfig{Mode: sender.FECAuto}, receiver.ModeUnordered, 1000, 0},
		{"nack/ordered", sender.FECConfig{Mode: sender.FECOff}, receiver.ModeOrdered, 1000, 0},
		{"fec-auto/ordered", sender.FECConfig{Mode: sender.FECAuto}, receiver.ModeOrdered, 1000, 0},
		{"nack/ordered/10k", sender.FECConfig{Mode: sender.FECOff}, receiver.ModeOrdered, 10_000, 0},
		{"fec-auto/ordered/10k", sender.FECConfig{Mode: sender.FECAuto}, receiver.ModeOrdered, 10_000, 0},
		{"nack/ordered/1ms-timers", sender.FECConfig{Mode: sender.FECOff}, receiver.ModeOrdered, 1000, time.Millisecond},
		{"fec10,3/ordered/1ms-timers", sender.FECConfig{Mode: sender.FECFixed, K: 10, M: 3}, receiver.ModeOrdered, 1000, time.Millisecond},
		{"fec-auto/ordered/1ms-timers", sender.FECConfig{Mode: sender.FECAuto}, receiver.ModeOrdered, 1000, time.Millisecond},
	} {
		p99 := rtt + 2*time.Millisecond
		if c.fec.Mode != sender.FECOff {
			p99 = 2 * time.Millisecond
		}
		r, err := Run(Config{Fwd: spec, Rev: spec, Seed: 3, Messages: 10_000, Rate: c.rate, TimerGranularity: c.gran,
			Sender: sender.Config{FEC: c.fec}, Receiver: receiver.Config{Mode: c.mode}})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-20s residual %.4f%%  p50 %v  p99 %v  p99.9 %v", c.name, 100*r.Residual(),
			time.Duration(r.LatencyP50), time.Duration(r.LatencyP99), time.Duration(r.LatencyP999))
		if r.Residual() != 0 || time.Duration(r.LatencyP99) > p99 {
			t.Errorf("%s: residual %.4f%%, p99 %v, want 0 and <= %v", c.name, 100*r.Residual(), time.Duration(r.LatencyP99), p99)
		}
	}
}
