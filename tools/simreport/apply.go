package simreport

import (
	"errors"
	"fmt"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
	"github.com/telewire/telewire/tools/sim"
)

// ErrUnsupported marks a scenario feature or a repair setting that the
// simulator, sender or receiver cannot express yet. [Run] reports such a
// pair as not run (or fails, with Options.Strict); it never runs it as
// something else.
var ErrUnsupported = errors.New("not supported yet")

// Config returns the simulator configuration of the scenario with no
// repair setting applied, or an error wrapping ErrUnsupported that names
// what cannot be expressed.
//
// A forward outage is a timed change of the forward link to a spec that
// loses everything (sim.Config.FwdChanges) and back to the scenario's
// spec at its end. Each change starts a fresh link model; packets already
// on the link when it changes are delivered as scheduled.
func (sc Scenario) Config() (sim.Config, error) {
	c := sim.Config{
		Fwd:      sc.Fwd,
		Rev:      sc.Rev,
		Seed:     sc.Seed,
		Messages: sc.Messages,
		Rate:     sc.Rate,
		Size:     sc.Size,
	}
	for _, o := range sc.Outages {
		if o.Dir != DirFwd {
			return sim.Config{}, fmt.Errorf("scenario %q: outage of direction %q: %w (tools/sim can change only the forward link)",
				sc.Name, o.Dir, ErrUnsupported)
		}
		c.FwdChanges = append(c.FwdChanges,
			sim.Change{At: o.From, Spec: blackout(sc.Fwd)},
			sim.Change{At: o.To, Spec: sc.Fwd})
	}
	return c, nil
}

// blackout returns spec with its loss model replaced by certain loss.
func blackout(spec netem.Spec) netem.Spec {
	spec.Loss, spec.LossPercent, spec.LossCorrPercent = netem.LossRandom, 100, 0
	spec.P13, spec.P31, spec.P32, spec.P23, spec.P14 = 0, 0, 0, 0, 0
	spec.GEP, spec.GER, spec.GE1H, spec.GE1K = 0, 0, 0, 0
	return spec
}

// Apply sets every repair knob of c that the setting controls, so that a
// setting means the same thing whatever the sender's and receiver's
// defaults are. This is the one place where settings meet the
// configuration: extend it as sender.Config and receiver.Config grow.
//
// A knob that cannot be set makes Apply return an error naming the
// setting (wrapping ErrUnsupported when the transport lacks the feature);
// c is then left unchanged.
func (s Setting) Apply(c *sim.Config) error {
	snd, rcv := c.Sender, c.Receiver

	// NACK: the receiver asks for gaps and the sender answers from its
	// retransmit buffer; off means neither.
	snd.DisableRetransmit = !s.NACK
	rcv.DisableNACK = !s.NACK

	switch s.Delivery {
	case DeliveryDefault:
	case DeliveryOrdered:
		rcv.Mode = receiver.ModeOrdered
	case DeliveryUnordered:
		rcv.Mode = receiver.ModeUnordered
	case DeliveryLatest:
		rcv.Mode = receiver.ModeLatest
	default:
		return fmt.Errorf("setting %q: unknown delivery mode %q", s.Name, s.Delivery)
	}
	if s.LatencyBudget != 0 {
		if s.Delivery != DeliveryOrdered {
			return fmt.Errorf("setting %q: a latency budget goes with ordered delivery", s.Name)
		}
		rcv.Latency = s.LatencyBudget
	}

	switch s.FEC {
	case FECOff:
		snd.FEC = sender.FECConfig{Mode: sender.FECOff}
	case FECAuto:
		snd.FEC = sender.FECConfig{Mode: sender.FECAuto}
	case FECFixed:
		snd.FEC = sender.FECConfig{Mode: sender.FECFixed, K: s.FECData, M: s.FECParity, Interleave: s.FECInterleave}
	default:
		return fmt.Errorf("setting %q: unknown FEC mode %q", s.Name, s.FEC)
	}

	c.Sender, c.Receiver = snd, rcv
	return nil
}
