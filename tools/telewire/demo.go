package main

import (
	"context"
	"io"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/demo"
	"github.com/telewire/telewire/tools/gen"
	"github.com/telewire/telewire/tools/netem"
)

func runDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "[flags]",
		`Runs a sender and a receiver in this process on loopback, joined by an in-process
link that loses and delays datagrams like tc netem, streams synthetic market ticks for
--duration, prints a table of live statistics each second and a summary at the end.
No flags are needed.`, stderr)
	var o demo.Options
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to stream")
	fs.Float64Var(&o.Rate, "rate", 2000, "messages per second")
	fs.IntVar(&o.Size, "size", 0, "message size in bytes (0 = natural size, else >= 64)")
	source := fs.String("gen", "market", "synthetic source: market or game")
	fs.StringVar(&o.Fwd, "fwd", demo.DefaultLink, `netem spec of the sender→receiver direction ("" or "none" = perfect link)`)
	fs.StringVar(&o.Rev, "rev", demo.DefaultLink, `netem spec of the receiver→sender direction ("" or "none" = perfect link)`)
	fs.Int64Var(&o.Seed, "seed", 1, "random seed of the link and the generator")
	fs.StringVar(&o.KeyFile, "key-file", "", keyFileUsage)
	fs.IntVar(&o.Receivers, "receivers", 1, "receivers of the stream, 1 to 16: from 2 on, the sender sends once to a multicast group on loopback and each receiver hears it through a link of its own (--fwd/--rev, drawn independently), shown in one table (not with --key-file, --stats or --http)")
	stats := addStatsFlags(fs, true)
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error or disabled")
	hw := addWebFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Duration <= 0 || o.Rate <= 0 {
		return usageError(fs, "--duration and --rate must be positive")
	}
	if o.Receivers < 1 || o.Receivers > demo.MaxReceivers {
		return usageError(fs, "--receivers must be 1 to %d", demo.MaxReceivers)
	}
	if o.Receivers > 1 && (o.KeyFile != "" || stats.path != "" || *hw.addr != "") {
		return usageError(fs, "--receivers above 1 does not take --key-file (sealed multicast is not supported yet), --stats or --http")
	}
	if err := checkGen(fs, *source, o.Size); err != nil {
		return err
	}
	o.Source = gen.Kind(*source)
	o.Fwd, o.Rev = perfectIfEmpty(o.Fwd), perfectIfEmpty(o.Rev)
	if _, err := checkSpec(fs, "fwd", o.Fwd); err != nil {
		return err
	}
	if _, err := checkSpec(fs, "rev", o.Rev); err != nil {
		return err
	}
	var err error
	if o.Logger, err = app.NewLogger(stderr, *logLevel); err != nil {
		return usageError(fs, "--log-level: %v", err)
	}
	if o.Receivers > 1 {
		_, err := demo.RunGroup(ctx, o, stdout)
		return err
	}
	statsOut, err := stats.open(fs, stdout, true)
	if err != nil {
		return err
	}
	defer statsOut.Close()
	srv, err := hw.start(fs, "demo", stderr, o.Logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	var statsRun *app.DemoStatsRun
	o.OnStart = func(s *sender.Sender, r *receiver.Receiver, l *netem.Relay) {
		statsRun = app.StartDemoStats(statsOut, s.Stats, r.Stats)
		srv.AddSender(s, l.Addr().String())
		srv.AddReceiver(r)
		srv.AddRelay(l)
	}
	sum, err := demo.Run(ctx, o, stdout)
	if err != nil {
		statsRun.Stop()
		return err
	}
	return statsRun.Finish(sum.Sender, sum.ReceiverAll)
}
