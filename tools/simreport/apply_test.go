package simreport

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
	"github.com/telewire/telewire/tools/sim"
)

// TestApplySetsEveryKnob applies each setting over a configuration whose
// knobs hold something else, so a knob Apply forgot would show.
func TestApplySetsEveryKnob(t *testing.T) {
	cases := []struct {
		s       Setting
		nackOff bool
		mode    receiver.Mode
		latency time.Duration
		fec     sender.FECConfig
	}{
		{Setting{Name: "none"}, true, receiver.ModeLatest, time.Hour, sender.FECConfig{Mode: sender.FECOff}},
		{Setting{Name: "nack", NACK: true}, false, receiver.ModeLatest, time.Hour, sender.FECConfig{Mode: sender.FECOff}},
		{Setting{Name: "fixed", FEC: FECFixed, FECData: 8, FECParity: 2, FECInterleave: 4}, true, receiver.ModeLatest, time.Hour,
			sender.FECConfig{Mode: sender.FECFixed, K: 8, M: 2, Interleave: 4}},
		{Setting{Name: "auto", FEC: FECAuto}, true, receiver.ModeLatest, time.Hour, sender.FECConfig{Mode: sender.FECAuto}},
		{Setting{Name: "ord", NACK: true, Delivery: DeliveryOrdered, LatencyBudget: 30 * time.Millisecond}, false,
			receiver.ModeOrdered, 30 * time.Millisecond, sender.FECConfig{Mode: sender.FECOff}},
		{Setting{Name: "unord", Delivery: DeliveryUnordered}, true, receiver.ModeUnordered, time.Hour, sender.FECConfig{Mode: sender.FECOff}},
		{Setting{Name: "latest", Delivery: DeliveryLatest}, true, receiver.ModeLatest, time.Hour, sender.FECConfig{Mode: sender.FECOff}},
	}
	for _, c := range cases {
		cfg := sim.Config{Messages: 7}
		cfg.Sender.DisableRetransmit = !c.nackOff
		cfg.Receiver.DisableNACK = !c.nackOff
		cfg.Receiver.Mode = receiver.ModeLatest
		cfg.Receiver.Latency = time.Hour
		cfg.Sender.FEC = sender.FECConfig{Mode: sender.FECFixed, K: 1, M: 1, MaxOverhead: 9}
		if err := c.s.Apply(&cfg); err != nil {
			t.Fatalf("%s: %v", c.s.Name, err)
		}
		if cfg.Sender.DisableRetransmit != c.nackOff || cfg.Receiver.DisableNACK != c.nackOff {
			t.Errorf("%s: DisableRetransmit %v DisableNACK %v, want %v", c.s.Name,
				cfg.Sender.DisableRetransmit, cfg.Receiver.DisableNACK, c.nackOff)
		}
		if cfg.Receiver.Mode != c.mode || cfg.Receiver.Latency != c.latency {
			t.Errorf("%s: mode %v latency %v, want %v %v", c.s.Name, cfg.Receiver.Mode, cfg.Receiver.Latency, c.mode, c.latency)
		}
		if cfg.Sender.FEC != c.fec {
			t.Errorf("%s: FEC %+v, want %+v", c.s.Name, cfg.Sender.FEC, c.fec)
		}
		if cfg.Messages != 7 {
			t.Errorf("%s: Apply touched the workload", c.s.Name)
		}
	}
}

// TestApplyDoesNotInheritTransportDefaults: on a zero configuration (the
// transport's defaults: NACK on, FEC auto) "none" must still mean no
// repair at all.
func TestApplyDoesNotInheritTransportDefaults(t *testing.T) {
	var c sim.Config
	if err := (Setting{Name: "none"}).Apply(&c); err != nil {
		t.Fatal(err)
	}
	if !c.Sender.DisableRetransmit || !c.Receiver.DisableNACK || c.Sender.FEC.Mode != sender.FECOff {
		t.Fatalf("%+v %+v", c.Sender, c.Receiver)
	}
}

func TestApplyRejectsWhatItCannotSet(t *testing.T) {
	for _, s := range []Setting{
		{Name: "weird-mode", Delivery: "sideways"},
		{Name: "weird-fec", FEC: "raptor"},
		{Name: "budget-unordered", Delivery: DeliveryUnordered, LatencyBudget: time.Second},
	} {
		c := sim.Config{Messages: 3}
		c.Sender.FEC.Mode = sender.FECFixed
		before := c
		err := s.Apply(&c)
		if err == nil || !strings.Contains(err.Error(), `"`+s.Name+`"`) {
			t.Errorf("%s: error %v should name the setting", s.Name, err)
		}
		if !reflect.DeepEqual(c, before) {
			t.Errorf("%s: a failed Apply changed the config", s.Name)
		}
	}
}

func TestScenarioConfig(t *testing.T) {
	fwd := mustSpec(t, "delay 10ms 2ms loss gemodel 1% 10% 100% 0% duplicate 1%")
	sc := Scenario{Name: "o", Fwd: fwd, Rev: mustSpec(t, "delay 3ms"), Messages: 9, Rate: 50, Size: 32, Seed: 11,
		Outages: []Outage{{From: time.Second, To: 2 * time.Second}, {From: 3 * time.Second, To: 4 * time.Second, Dir: DirFwd}}}
	c, err := sc.Config()
	if err != nil {
		t.Fatal(err)
	}
	if c.Fwd != sc.Fwd || c.Rev != sc.Rev || c.Messages != 9 || c.Rate != 50 || c.Size != 32 || c.Seed != 11 {
		t.Fatalf("%+v", c)
	}
	dark := mustSpec(t, "delay 10ms 2ms loss random 100% duplicate 1%")
	want := []sim.Change{{At: time.Second, Spec: dark}, {At: 2 * time.Second, Spec: fwd},
		{At: 3 * time.Second, Spec: dark}, {At: 4 * time.Second, Spec: fwd}}
	if !reflect.DeepEqual(c.FwdChanges, want) {
		t.Fatalf("changes %+v\nwant %+v", c.FwdChanges, want)
	}
	if err := dark.Validate(); err != nil {
		t.Fatal(err)
	}

	for _, d := range []Direction{DirRev, DirBoth} {
		sc.Outages = []Outage{{From: time.Second, To: 2 * time.Second, Dir: d}}
		_, err := sc.Config()
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `scenario "o"`) {
			t.Errorf("%s outage: %v, want ErrUnsupported naming the scenario", d, err)
		}
	}
}

// TestOutageSilencesTheLink runs an outage and checks that exactly the
// messages sent inside the window are lost when nothing repairs them.
func TestOutageSilencesTheLink(t *testing.T) {
	sc := Scenario{Name: "o", Fwd: netem.Spec{}, Messages: 1000, Rate: 1000, Size: 16, Seed: 1,
		Outages: []Outage{{From: 200 * time.Millisecond, To: 500 * time.Millisecond}}}
	c, err := sc.Config()
	if err != nil {
		t.Fatal(err)
	}
	if err := (Setting{Name: "none"}).Apply(&c); err != nil {
		t.Fatal(err)
	}
	r, err := sim.Run(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Missed) != 300 || r.Missed[0] != 200 || r.Missed[299] != 499 {
		t.Fatalf("missed %d messages: %v...", len(r.Missed), r.Missed[:min(5, len(r.Missed))])
	}
}
