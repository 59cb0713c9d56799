package soak

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// Defaults of Options.
const (
	// DefaultLink is the impairment of each direction: 1% independent
	// random loss, no delay, so the run is about sustained repair and
	// memory rather than latency.
	DefaultLink = "loss random 1%"
	// DefaultRate is the offered load in messages per second. Most of the
	// run's CPU goes to system calls, the relay making one read and one
	// write per datagram; on the shared 2-core development machine (load
	// average 7 to 14 from other work) 5 000/s kept up, 7 500/s only
	// while the load was lower, and from 10 000/s the relay's socket
	// overflowed. Raise Rate on a quiet machine.
	DefaultRate = 5000
	// DefaultSize is the message size in bytes (a 200-byte telemetry
	// record).
	DefaultSize = 200
	// DefaultDuration is how long the load runs.
	DefaultDuration = 60 * time.Second
	// DefaultInterval is the sample period.
	DefaultInterval = 10 * time.Second
	// DefaultDrain bounds the wait for the tail after the load stops.
	DefaultDrain = 5 * time.Second
)

// ErrOptions wraps every error about unusable Options.
var ErrOptions = errors.New("soak: invalid options")

// Options configure a soak run. The zero value of each field is its
// default.
type Options struct {
	// Duration is how long the load runs; default 60s.
	Duration time.Duration
	// Rate is the offered load in messages per second; default
	// DefaultRate.
	Rate float64
	// Size is each message's size in bytes, HeaderLen to
	// packet.MaxPayload; default 200.
	Size int
	// Fwd and Rev are tc-netem specs for the sender→receiver and
	// receiver→sender directions of the relay; default DefaultLink each.
	// Use "none" for a perfect link.
	Fwd, Rev string
	// Interval is the sample period; default 10s.
	Interval time.Duration
	// Warmup is left out of the memory verdict (start-up allocations,
	// FEC and windows reaching their size); default Duration/10, negative
	// for none.
	Warmup time.Duration
	// Drain bounds the wait for the tail after the load stops (fences,
	// then the receiver settling); default 5s.
	Drain time.Duration
	// Seed seeds the relay's loss decisions; default 1.
	Seed int64
	// ForceGC runs a garbage collection (runtime.GC) before each sample,
	// so that heap in use is the memory retained rather than a point on
	// the climb between collections, and every interval has a GC cycle
	// for the verdict. It costs a collection per sample. Default off:
	// the heap is sampled as the load leaves it.
	ForceGC bool
	// JSON prints one JSON object per line (each sample, then the
	// summary) instead of a table.
	JSON bool

	// Sender and Receiver are the templates of the two ends' configs:
	// Run sets Sender.To, Receiver.Listen and both Loggers and leaves
	// every other field as given, so a setting meant for both ends (a
	// key, say) is one assignment to each. The zero values are the
	// library defaults: FEC auto, NACK on. Receiver.Mode must be ordered
	// (the default), which the reconciliation relies on.
	Sender   sender.Config
	Receiver receiver.Config

	// Logger receives the two ends' and the relay's rare events; the zero
	// value discards.
	Logger zerolog.Logger
}

// specs are the parsed link specs.
type specs struct{ fwd, rev netem.Spec }

// withDefaults fills in the defaults and validates o.
func (o Options) withDefaults() (Options, specs, error) {
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.Fwd == "" {
		o.Fwd = DefaultLink
	}
	if o.Rev == "" {
		o.Rev = DefaultLink
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Warmup == 0 {
		o.Warmup = o.Duration / 10
	}
	o.Warmup = max(o.Warmup, 0)
	if o.Drain == 0 {
		o.Drain = DefaultDrain
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	var sp specs
	switch {
	case o.Duration < 0 || o.Interval < 0 || o.Drain < 0:
		return o, sp, fmt.Errorf("%w: negative duration, interval or drain", ErrOptions)
	case !(o.Rate > 0 && o.Rate <= 1e7):
		return o, sp, fmt.Errorf("%w: rate %g outside (0, 1e7] messages/s", ErrOptions, o.Rate)
	case o.Size < HeaderLen || o.Size > packet.MaxPayload:
		return o, sp, fmt.Errorf("%w: size %d outside [%d, %d]", ErrOptions, o.Size, HeaderLen, packet.MaxPayload)
	case o.Receiver.Mode != receiver.ModeOrdered:
		return o, sp, fmt.Errorf("%w: receiver mode %s; the reconciliation needs ordered delivery", ErrOptions, o.Receiver.Mode)
	}
	var err error
	if sp.fwd, err = parseLink(o.Fwd); err != nil {
		return o, sp, fmt.Errorf("%w: forward link %q: %w", ErrOptions, o.Fwd, err)
	}
	if sp.rev, err = parseLink(o.Rev); err != nil {
		return o, sp, fmt.Errorf("%w: reverse link %q: %w", ErrOptions, o.Rev, err)
	}
	return o, sp, nil
}

// parseLink parses a netem spec, with "none" for a perfect link (an empty
// string already means the default).
func parseLink(s string) (netem.Spec, error) {
	if s == "none" {
		return netem.Spec{}, nil
	}
	return netem.ParseSpec(s)
}
