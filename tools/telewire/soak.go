package main

import (
	"context"
	"errors"
	"io"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/soak"
)

func runSoak(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("soak", "[flags]",
		`Runs a sender and a receiver in this process on loopback, joined by an in-process
netem relay that loses datagrams each way, at a high rate for --duration, with FEC
and NACK at their defaults. Every --interval it prints heap in use, heap objects,
RSS, goroutines, GC cycles and the transport's counters. At the end it stops the
load, drains the tail, and reconciles: every message sent must be delivered once,
intact and in order, or counted by the receiver as skipped (StreamStats.Skipped,
or Stats.QueueOverflow). Memory is "flat" when, after the warm-up, the peak heap in
use of the second half of the samples is at most 1.25 times that of the first half
and the goroutine count never changes; a half without a completed GC cycle is
inconclusive (--gc collects before each sample to make heap in use the retained
heap). SIGINT stops the load early and still prints
the summary. With --check the exit status is 1 when the counters do not reconcile
or memory is not flat (or could not be judged: too few samples or GC cycles).`, stderr)
	var o soak.Options
	fs.DurationVar(&o.Duration, "duration", soak.DefaultDuration, "how long the load runs")
	fs.Float64Var(&o.Rate, "rate", soak.DefaultRate, "offered load in messages per second")
	fs.IntVar(&o.Size, "size", soak.DefaultSize, "message size in bytes (at least 20: index, flags and checksum)")
	fs.StringVar(&o.Fwd, "fwd", soak.DefaultLink, `netem spec of the sender→receiver direction ("" or "none" = perfect link)`)
	fs.StringVar(&o.Rev, "rev", soak.DefaultLink, `netem spec of the receiver→sender direction ("" or "none" = perfect link)`)
	fs.DurationVar(&o.Interval, "interval", soak.DefaultInterval, "sample period")
	fs.DurationVar(&o.Warmup, "warmup", 0, "left out of the memory verdict (0 = a tenth of --duration, negative = none)")
	fs.DurationVar(&o.Drain, "drain", soak.DefaultDrain, "longest wait for the tail after the load stops")
	fs.Int64Var(&o.Seed, "seed", 1, "random seed of the link's loss decisions")
	fs.BoolVar(&o.ForceGC, "gc", false, "collect garbage before each sample (heap in use is then the retained heap; one GC per sample)")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON object per sample, then the summary, instead of a table")
	keyFile := fs.String("key-file", "", keyFileUsage)
	check := fs.Bool("check", false, "exit 1 unless the counters reconcile and memory is flat")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error or disabled")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Duration <= 0 || o.Rate <= 0 || o.Interval <= 0 || o.Drain <= 0 {
		return usageError(fs, "--duration, --rate, --interval and --drain must be positive")
	}
	if o.Seed == 0 {
		return usageError(fs, "--seed must not be 0")
	}
	if o.Size < soak.HeaderLen || o.Size > packet.MaxPayload {
		return usageError(fs, "--size %d: outside %d..%d", o.Size, soak.HeaderLen, packet.MaxPayload)
	}
	o.Fwd, o.Rev = perfectIfEmpty(o.Fwd), perfectIfEmpty(o.Rev)
	if _, err := checkSpec(fs, "fwd", o.Fwd); err != nil {
		return err
	}
	if _, err := checkSpec(fs, "rev", o.Rev); err != nil {
		return err
	}
	o.Sender.KeyFile, o.Receiver.KeyFile = *keyFile, *keyFile
	var err error
	if o.Logger, err = app.NewLogger(stderr, *logLevel); err != nil {
		return usageError(fs, "--log-level: %v", err)
	}
	out := stdout
	if o.JSON {
		// Every JSON line leads with the version and the settings.
		stamped, err := app.NewJSONLinesStamper(stdout, settingsOf(fs))
		if err != nil {
			return err
		}
		defer stamped.Flush()
		out = stamped
	}
	sum, err := soak.Run(ctx, o, out)
	if errors.Is(err, soak.ErrOptions) {
		return usageError(fs, "%v", err) // a bad --size or link spec
	}
	if err != nil {
		return err
	}
	if *check {
		return sum.Check()
	}
	return nil
}
