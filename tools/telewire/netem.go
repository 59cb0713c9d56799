package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/netem"
)

func runNetem(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("netem", "--listen HOST:PORT --to HOST:PORT --fwd SPEC [--rev SPEC] [flags]",
		`Relays UDP between clients and one server through an emulated bad link, like Linux
"tc qdisc ... netem" but in userspace (no root, no sch_netem needed). Datagrams sent to
--listen are impaired by --fwd and forwarded to --to, from one socket per client;
replies come back to each client impaired by --rev. Several clients are served at once.
Runs until SIGINT/SIGTERM, then prints, per direction, what it dropped, delayed,
reordered, duplicated and corrupted (--stats: the same counts as JSON, and with
--stats-interval one JSON line per interval).

SPEC is tc-netem syntax, for example:
  "loss random 10%"                       drop 10% of datagrams
  "delay 20ms 5ms distribution normal"    20 ms ± 5 ms one-way delay
  "delay 10ms reorder 25% 50%"            send 25% at once, ahead of delayed ones
  "loss gemodel 1% 10% 70% 0.1%"          bursty (Gilbert-Elliott) loss
  "duplicate 1% corrupt 0.1% rate 10mbit"
An empty SPEC, or "none", is a perfect link (in every subcommand).

Example, a receiver behind a lossy link:
  telewire recv --listen 127.0.0.1:9000 > out &
  telewire netem --listen 127.0.0.1:9100 --to 127.0.0.1:9000 --fwd "loss random 10%" &
  telewire send --to 127.0.0.1:9100 < in`, stderr)
	var cfg netem.RelayConfig
	fs.StringVar(&cfg.Listen, "listen", "", "address `HOST:PORT` clients send to (required; port 0 picks one, printed at start)")
	fs.StringVar(&cfg.To, "to", "", "server address `HOST:PORT` datagrams are forwarded to (required)")
	fwd := fs.String("fwd", "", "netem `SPEC` of the client→server direction (\"\" or \"none\" = perfect link)")
	rev := fs.String("rev", "", "netem `SPEC` of the server→client direction (\"\" or \"none\" = perfect link)")
	fs.Int64Var(&cfg.Seed, "seed", 1, "random seed: the same seed and traffic give the same decisions")
	fs.IntVar(&cfg.MaxClients, "max-clients", netem.DefaultMaxClients, "clients served at once; datagrams from more are dropped and counted")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", netem.DefaultIdleTimeout, "forget a client after this long without traffic either way")
	progress := fs.Bool("progress", app.IsTerminal(stderr), "show a live status line on stderr each second (default: on when stderr is a terminal)")
	stats := addStatsFlags(fs, false)
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error or disabled")
	hw := addWebFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.Listen == "" || cfg.To == "" {
		return usageError(fs, "--listen and --to are required")
	}
	if err := checkAddr(fs, "listen", cfg.Listen); err != nil {
		return err
	}
	if err := checkAddr(fs, "to", cfg.To); err != nil {
		return err
	}
	var err error
	if cfg.Fwd, err = netem.ParseSpec(*fwd); err != nil {
		return usageError(fs, "--fwd %q: %v", *fwd, err)
	}
	if cfg.Rev, err = netem.ParseSpec(*rev); err != nil {
		return usageError(fs, "--rev %q: %v", *rev, err)
	}
	if cfg.MaxClients <= 0 || cfg.IdleTimeout <= 0 {
		return usageError(fs, "--max-clients and --idle-timeout must be positive")
	}
	log, err := app.NewLogger(stderr, *logLevel)
	if err != nil {
		return usageError(fs, "--log-level: %v", err)
	}
	cfg.Logger = &log
	statsOut, err := stats.open(fs, stdout, false)
	if err != nil {
		return err
	}
	defer statsOut.Close()
	srv, err := hw.start(fs, "netem", stderr, log)
	if err != nil {
		return err
	}
	defer srv.Close()

	relay, err := netem.NewRelay(cfg)
	if errors.Is(err, netem.ErrRelayConfig) {
		return usageError(fs, "%v", err) // an unresolvable --listen or --to
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "netem: listening on %s, forwarding to %s\n  fwd: %s\n  rev: %s\n",
		relay.Addr(), cfg.To, specText(cfg.Fwd), specText(cfg.Rev))
	srv.AddRelay(relay)

	start := time.Now()
	var tick *time.Ticker
	var tickC <-chan time.Time
	if *progress {
		tick = time.NewTicker(time.Second)
		defer tick.Stop()
		tickC = tick.C
	}
	statsRun := app.StartNetemStats(statsOut, relay.Stats)
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	for running := true; running; {
		select {
		case <-tickC:
			fmt.Fprintf(stderr, "\r%s   ", netemLine(relay.Stats(), time.Since(start)))
		case err = <-done:
			running = false
		}
	}
	if *progress {
		fmt.Fprintln(stderr)
	}
	st := relay.Stats()
	fmt.Fprint(stderr, netemSummary(st, time.Since(start)))
	return errors.Join(err, statsRun.Finish(st))
}

func specText(sp netem.Spec) string {
	if s := sp.String(); s != "" {
		return s
	}
	return "perfect link"
}

// netemLine is the one-line live status.
func netemLine(st netem.RelayStats, elapsed time.Duration) string {
	d := func(s netem.DirStats) string {
		return fmt.Sprintf("in %d out %d drop %d delay %d reord %d dup %d corrupt %d",
			s.Received, s.Forwarded, s.Dropped, s.Delayed, s.Reordered, s.Duplicated, s.Corrupted)
	}
	return fmt.Sprintf("%s clients %d | fwd %s | rev %s", elapsed.Round(time.Second), st.Clients, d(st.Fwd), d(st.Rev))
}

// netemSummary is the report printed at exit, one line per direction.
func netemSummary(st netem.RelayStats, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "netem: relayed for %s; %d clients at the end, %d datagrams refused (client limit)\n",
		elapsed.Round(time.Millisecond), st.Clients, st.Rejected)
	for _, x := range []struct {
		name string
		s    netem.DirStats
	}{{"fwd", st.Fwd}, {"rev", st.Rev}} {
		fmt.Fprintf(&b, "  %s: received %d, forwarded %d, dropped %d (queue full %d), delayed %d, reordered %d, duplicated %d, corrupted %d, write errors %d, kernel drops %d\n",
			x.name, x.s.Received, x.s.Forwarded, x.s.Dropped, x.s.LimitDropped, x.s.Delayed, x.s.Reordered, x.s.Duplicated, x.s.Corrupted, x.s.WriteErrs, x.s.KernelDrops)
	}
	if st.Stray > 0 {
		fmt.Fprintf(&b, "  %d stray datagrams on the upstream sockets (not from the target) ignored\n", st.Stray)
	}
	return b.String()
}
