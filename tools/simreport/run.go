package simreport

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/telewire/telewire/tools/sim"
)

// ErrNoScenario: Options.Only names no scenario of the suite.
var ErrNoScenario = errors.New("no such scenario")

// ErrCorrupt: a run delivered a message whose payload differs from what
// was sent, a defect in the transport. The report is still complete.
var ErrCorrupt = errors.New("corrupt delivery")

// Options adjusts a suite for one run.
type Options struct {
	// Only, when not empty, runs just the scenario of that name.
	Only string
	// Messages, when positive, replaces every scenario's message count
	// (at most 1 000 000, as in a scenario file).
	Messages int
	// Seed, when SetSeed, replaces every scenario's seed.
	Seed    int64
	SetSeed bool
	// Strict makes an unsupported scenario or setting an error instead of
	// a row reported as not run.
	Strict bool
}

// Report is the outcome of a sweep, one entry per scenario in suite order.
// It marshals to JSON as the "--json" output of telewire sim.
type Report struct {
	Scenarios []ScenarioReport `json:"scenarios"`
}

// ScenarioReport is one scenario: what it was and one row per setting.
type ScenarioReport struct {
	Name     string   `json:"name"`
	Fwd      string   `json:"fwd"` // netem spec
	Rev      string   `json:"rev"`
	Messages int      `json:"messages"`
	Rate     float64  `json:"rate"` // messages per second
	Size     int      `json:"size"` // payload bytes
	Seed     int64    `json:"seed"`
	Outages  []string `json:"outages,omitempty"` // "1s-3s fwd"
	Rows     []Row    `json:"rows"`
	NotRun   []NotRun `json:"not_run,omitempty"`
}

// NotRun is a setting (or, with Setting "*", the whole scenario) that was
// not run because it cannot be expressed yet.
type NotRun struct {
	Setting string `json:"setting"`
	Reason  string `json:"reason"`
}

// Row is what one setting measured in one scenario. Fractions are 0..1;
// latencies are nanoseconds from the send call to the delivery.
type Row struct {
	Setting string `json:"setting"`

	Sent      uint64 `json:"sent"`      // messages sent
	Delivered uint64 `json:"delivered"` // distinct messages delivered

	RawLoss       float64 `json:"raw_loss"`       // forward datagrams lost, limit-dropped or corrupted / offered
	FwdDatagrams  uint64  `json:"fwd_datagrams"`  // datagrams offered to the forward link
	FwdLost       uint64  `json:"fwd_lost"`       // of them, not delivered intact
	Residual      float64 `json:"residual"`       // messages never delivered / sent
	RecoveredFEC  uint64  `json:"recovered_fec"`  // receiver: losses repaired by FEC
	RecoveredRTX  uint64  `json:"recovered_rtx"`  // receiver: losses repaired by retransmission
	Overhead      float64 `json:"overhead"`       // sender wire bytes / payload bytes - 1
	Parity        uint64  `json:"parity"`         // PARITY packets the sender queued
	NACKs         uint64  `json:"nacks"`          // NACK packets the receiver sent
	NACKsReceived uint64  `json:"nacks_received"` // NACK packets the sender received
	Retransmits   uint64  `json:"retransmits"`    // DATA packets the sender resent
	RetransmitsIn uint64  `json:"retransmits_in"` // retransmitted DATA the receiver got, duplicates included
	Skipped       uint64  `json:"skipped"`        // ordered delivery gave up waiting for these
	Late          uint64  `json:"late"`           // arrived after delivery had passed them
	Superseded    uint64  `json:"superseded"`     // latest-only delivery dropped them for newer data

	LatencyP50Nanos  int64 `json:"latency_p50_ns"`
	LatencyP99Nanos  int64 `json:"latency_p99_ns"`
	LatencyP999Nanos int64 `json:"latency_p999_ns"`
	LatencyMaxNanos  int64 `json:"latency_max_ns"`

	Duplicates     uint64 `json:"duplicates"`   // deliveries of a message already delivered
	OutOfOrder     uint64 `json:"out_of_order"` // deliveries older than one delivered before
	Corrupt        uint64 `json:"corrupt"`      // must be 0
	SimulatedNanos int64  `json:"simulated_ns"`
}

// Run sweeps the suite: for each scenario (or just Options.Only) it runs
// each of the scenario's settings through tools/sim and collects a Row.
// It stops early, with the report so far, when ctx is cancelled. A
// corrupt delivery is reported in its row and makes Run return ErrCorrupt
// after the sweep.
func Run(ctx context.Context, s Suite, o Options) (Report, error) {
	var rep Report
	if o.Messages > maxMessages {
		return rep, fmt.Errorf("simreport: %d messages per run is above the limit of %d", o.Messages, maxMessages)
	}
	found := o.Only == ""
	var corrupt []string
	for _, sc := range s.Scenarios {
		if o.Only != "" && sc.Name != o.Only {
			continue
		}
		found = true
		if o.Messages > 0 {
			sc.Messages = o.Messages
		}
		if o.SetSeed {
			sc.Seed = o.Seed
		}
		sr, err := runScenario(ctx, sc, s.Settings, o.Strict)
		rep.Scenarios = append(rep.Scenarios, sr)
		if err != nil {
			return rep, err
		}
		for _, r := range sr.Rows {
			if r.Corrupt > 0 {
				corrupt = append(corrupt, fmt.Sprintf("%s/%s: %d", sc.Name, r.Setting, r.Corrupt))
			}
		}
	}
	if !found {
		names := make([]string, len(s.Scenarios))
		for i, sc := range s.Scenarios {
			names[i] = sc.Name
		}
		return rep, fmt.Errorf("%w %q (scenarios are %s)", ErrNoScenario, o.Only, strings.Join(names, ", "))
	}
	if len(corrupt) > 0 {
		return rep, fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(corrupt, "; "))
	}
	return rep, nil
}

func runScenario(ctx context.Context, sc Scenario, settings []Setting, strict bool) (ScenarioReport, error) {
	sr := ScenarioReport{Name: sc.Name, Fwd: sc.Fwd.String(), Rev: sc.Rev.String(),
		Messages: sc.Messages, Rate: sc.Rate, Size: sc.Size, Seed: sc.Seed, Rows: []Row{}}
	for _, w := range sc.Outages {
		dir := string(w.Dir)
		if w.Dir == DirFwd {
			dir = "fwd"
		}
		sr.Outages = append(sr.Outages, fmt.Sprintf("%v-%v %s", w.From, w.To, dir))
	}
	base, err := sc.Config()
	if err != nil {
		if errors.Is(err, ErrUnsupported) && !strict {
			sr.NotRun = append(sr.NotRun, NotRun{Setting: "*", Reason: err.Error()})
			return sr, nil
		}
		return sr, err
	}
	for _, st := range selectSettings(sc, settings) {
		if err := ctx.Err(); err != nil {
			return sr, err
		}
		c := base
		if err := st.Apply(&c); err != nil {
			if errors.Is(err, ErrUnsupported) && !strict {
				sr.NotRun = append(sr.NotRun, NotRun{Setting: st.Name, Reason: err.Error()})
				continue
			}
			return sr, fmt.Errorf("scenario %q: %w", sc.Name, err)
		}
		res, err := sim.Run(c)
		if err != nil {
			return sr, fmt.Errorf("scenario %q, setting %q: %w", sc.Name, st.Name, err)
		}
		sr.Rows = append(sr.Rows, rowOf(st.Name, res))
	}
	return sr, nil
}

// selectSettings returns the settings a scenario runs, in its order.
func selectSettings(sc Scenario, all []Setting) []Setting {
	if sc.Settings == nil {
		return all
	}
	var out []Setting
	for _, name := range sc.Settings {
		for _, st := range all {
			if st.Name == name {
				out = append(out, st)
			}
		}
	}
	return out
}

// rowOf reads one run's measurements: the only place that knows where
// each figure lives in sim.Result.
func rowOf(setting string, r sim.Result) Row {
	fl := r.FwdLink
	row := Row{
		Setting:          setting,
		Sent:             r.Sent,
		Delivered:        r.Unique,
		FwdDatagrams:     fl.Enqueued,
		FwdLost:          fl.Dropped + fl.LimitDropped + fl.Corrupted,
		Residual:         r.Residual(),
		Overhead:         r.Overhead(),
		Parity:           r.Sender.Parity,
		NACKs:            r.Receiver.NACKs,
		NACKsReceived:    r.Sender.NACKs,
		Retransmits:      r.Sender.Retransmits,
		LatencyP50Nanos:  r.LatencyP50,
		LatencyP99Nanos:  r.LatencyP99,
		LatencyP999Nanos: r.LatencyP999,
		LatencyMaxNanos:  r.LatencyMax,
		Duplicates:       r.Duplicates,
		OutOfOrder:       r.OutOfOrder,
		Corrupt:          r.Corrupt,
		SimulatedNanos:   r.SimulatedNanos,
	}
	if fl.Enqueued > 0 {
		row.RawLoss = float64(row.FwdLost) / float64(fl.Enqueued)
	}
	for _, st := range r.Receiver.Streams {
		row.RecoveredFEC += st.RecoveredFEC
		row.RecoveredRTX += st.RecoveredRTX
		row.RetransmitsIn += st.Retransmits
		row.Skipped += st.Skipped
		row.Late += st.Late
		row.Superseded += st.Superseded
	}
	return row
}
