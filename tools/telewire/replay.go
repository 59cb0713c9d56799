package main

import (
	"context"
	"flag"
	"io"
	"os"
	"time"

	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/capture"
	"github.com/telewire/telewire/tools/replay"
)

func runReplay(ctx context.Context, args []string, stdin io.Reader, _, stderr io.Writer) error {
	fs := newFlagSet("replay", "FILE --to HOST:PORT [flags]",
		`Replays the UDP datagrams of a capture (pcap or pcapng, optionally gzip-compressed;
FILE "-" reads it from stdin, to its end, before sending) through telewire: each datagram's payload becomes one telewire message, sent at the
capture's timing (or scaled, or at a fixed rate, or as fast as possible). Each flow
(source and destination address and port) gets its own stream, in order of first
appearance; every flow is replayed, however many the capture holds (up to 65536):
flows are spread over several sender sessions of up to --session-streams streams
each (64, what a default recv accepts per sender), so 1000 flows go out from 16
sessions. The mapping is printed at the start and written into --stats and
--flows-out.

The capture is read twice: once to map the flows and count the datagrams (so the
progress bar has an ETA), then to send. Link types Ethernet, Linux SLL/SLL2, raw IP
and BSD loopback are read, with VLAN tags; IPv4/IPv6 fragments are reassembled.
Frames that are not UDP, captured shorter than they were sent, or fragments that
never complete a datagram are skipped and counted by reason in the summary, as are
datagrams left out by --filter or --max-flows.

After the last message, replay lingers (up to --linger) until the receiver's reports
confirm every datagram, then prints what they confirm. Exit status:
  0  every datagram sent, and the receiver confirmed every one (or interrupted by a
     signal with everything sent so far confirmed)
  1  an error (unreadable capture, bad address, ...)
  2  bad usage
  3  no report came back from the receiver: nothing confirms delivery (no receiver
     at --to, a key on one end only, a firewall, or a receiver that stopped before
     reporting: end recv with --idle, not --count)
  4  incomplete: datagrams lost (missing after repair, or too late for delivery),
     unconfirmed when the linger ended, or not sent (over the largest telewire
     payload, or beyond 65536 flows); the summary lists the flows

A receiver writes what it delivers back into a capture with
  telewire recv --listen HOST:PORT --pcap-out out.pcap --flows flows.json
where flows.json is this command's --flows-out (or --stats) file, so out.pcap
carries the original addresses and ports. A default recv takes 64 senders: a
capture of more than 4096 flows needs recv --max-sessions N (replay says how many),
or recv --max-streams S with replay --session-streams S.

--filter takes a tcpdump-like expression over UDP datagrams:
  udp port 5000 and dst 233.54.12.0/24
  src host 10.0.0.1 or (portrange 6000-6100 and not ip6)
  flow 10.0.0.1:4000 10.0.0.2:5000
Primitives: [src|dst] host ADDR, [src|dst] net PREFIX, [src|dst] port N,
[src|dst] portrange LO-HI, src|dst ADDR-or-PREFIX, ip, ip6, and flow A:P B:P (both
directions between two endpoints; "[::1]:53" for IPv6); combined with and (&&), or
(||), not (!) and parentheses. "udp" is implied and accepted ("udp" alone matches
every datagram).`, stderr)
	var o app.ReplayOptions
	fs.StringVar(&o.To, "to", "", "receiver address `HOST:PORT` (required)")
	filter := fs.String("filter", "", "replay only the datagrams this `EXPR` matches (see above)")
	speed := fs.Float64("speed", 1, "multiply the pace: 2 replays twice as fast, 0.5 at half speed")
	topSpeed := fs.Bool("topspeed", false, "send every datagram as fast as possible")
	pps := fs.Float64("pps", 0, "send at this fixed rate in packets per second, ignoring capture timestamps")
	loops := fs.Int("loop", 1, "passes over the capture (0 = until interrupted)")
	maxGap := fs.Duration("max-gap", time.Second, "cap on one gap between consecutive datagrams, in capture time (0 = no cap)")
	fs.IntVar(&o.MaxFlows, "max-flows", 0, "replay only the first N flows; datagrams of further flows are skipped and counted (0 = every flow)")
	fs.IntVar(&o.SessionStreams, "session-streams", app.DefaultSessionStreams, "flows per sender session, one stream each: at most the receiver's streams per sender (recv --max-streams)")
	fs.DurationVar(&o.Linger, "linger", time.Second, "after the last message, keep answering feedback until the receiver confirms every datagram, this long at most")
	fs.StringVar(&o.StatsFile, "stats", "", "write the final statistics, stream mapping included, as JSON to `FILE` (\"-\" = stdout)")
	fs.StringVar(&o.Sender.KeyFile, "key-file", "", keyFileUsage)
	fs.StringVar(&o.FlowsFile, "flows-out", "", "write the stream mapping as JSON to `FILE` (\"-\" = stdout) before sending (for recv --flows)")
	progress := fs.Bool("progress", app.IsTerminal(stderr), "show a progress bar with packets, rate and ETA on stderr (default: on when stderr is a terminal)")
	repair := addRepairFlags(fs)
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error or disabled")
	hw := addWebFlags(fs)

	file, err := parseWithFile(fs, args)
	if err != nil {
		return err
	}
	if o.To == "" {
		return usageError(fs, "--to is required")
	}
	if err := checkAddr(fs, "to", o.To); err != nil {
		return err
	}
	if o.StatsFile == "-" && o.FlowsFile == "-" {
		return usageError(fs, "--flows-out - and --stats -: only one of them can go to stdout")
	}
	if err := checkWritable(fs, "stats", o.StatsFile); err != nil {
		return err
	}
	if err := checkWritable(fs, "flows-out", o.FlowsFile); err != nil {
		return err
	}
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return usageError(fs, "capture FILE: %v", err)
		}
		f.Close()
	}
	if err := repair(&o.Sender); err != nil {
		return err
	}
	if *filter != "" {
		if o.Filter, err = capture.ParseFilter(*filter); err != nil {
			return usageError(fs, "--filter: %v", err)
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *topSpeed && (set["speed"] || set["pps"]), set["speed"] && set["pps"]:
		return usageError(fs, "--speed, --pps and --topspeed are exclusive")
	case *speed <= 0 || *pps < 0:
		return usageError(fs, "--speed must be positive and --pps not negative")
	case *loops < 0 || *maxGap < 0 || o.Linger < 0:
		return usageError(fs, "--loop, --max-gap and --linger must not be negative")
	case o.MaxFlows < 0 || o.MaxFlows > app.MaxFlowsLimit:
		return usageError(fs, "--max-flows must be in 0..%d", app.MaxFlowsLimit)
	case o.SessionStreams < 1 || o.SessionStreams > app.MaxSessionStreams:
		return usageError(fs, "--session-streams must be in 1..%d", app.MaxSessionStreams)
	}
	o.Timing = replay.Config{TopSpeed: *topSpeed, PPS: *pps, Loops: *loops, MaxGapNanos: int64(*maxGap)}
	if !*topSpeed && *pps == 0 {
		o.Timing.Speed = *speed
	}
	if *loops == 0 {
		o.Timing.Loops = replay.Forever
	}
	if *maxGap == 0 {
		o.Timing.MaxGapNanos = replay.NoGapCap
	}
	o.File, o.Progress = file, *progress
	if o.Logger, err = app.NewLogger(stderr, *logLevel); err != nil {
		return usageError(fs, "--log-level: %v", err)
	}
	o.Settings = settingsOf(fs)
	if file == "-" {
		// Replay reads the capture more than once: keep stdin in a file.
		path, remove, err := app.SpoolInput(stdin, "telewire-replay-stdin-*")
		if err != nil {
			return err
		}
		defer remove()
		o.File = path
	}
	srv, err := hw.start(fs, "replay", stderr, o.Logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	o.OnSender = func(s *sender.Sender) { srv.AddSender(s, o.To) }
	_, err = app.Replay(ctx, o, stderr)
	return err
}

// parseWithFile parses args that hold exactly one positional FILE anywhere
// among the flags, and returns it.
func parseWithFile(fs *flag.FlagSet, args []string) (string, error) {
	var files []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(files) {
	case 0:
		return "", usageError(fs, "a capture FILE is required")
	case 1:
		return files[0], nil
	}
	return "", usageError(fs, "one capture FILE, not %d: %q", len(files), files)
}

// addRepairFlags defines the sender's repair flags (--nack, --fec,
// --fec-interleave) with the same meaning as `telewire send`'s, and returns
// the function that applies them to a sender configuration after parsing
// (a usage error for a bad value). runSend parses the same flags inline;
// it could use this instead.
func addRepairFlags(fs *flag.FlagSet) func(*sender.Config) error {
	nack := fs.String("nack", "on", "answer retransmission requests from a buffer of recent messages: on or off")
	fecFlag := fs.String("fec", "auto", "forward error correction: auto (parity chosen from the loss the receiver reports, none while there is none), off, or K,M (M parity packets per K data packets)")
	interleave := fs.Int("fec-interleave", 1, "with --fec K,M: spread consecutive packets over this many blocks, so bursts of up to D·M losses are repairable (repair waits up to D times longer)")
	return func(cfg *sender.Config) error {
		on, err := onOff(*nack)
		if err != nil {
			return usageError(fs, "--nack: %v", err)
		}
		cfg.DisableRetransmit = !on
		if cfg.FEC, err = sender.ParseFEC(*fecFlag); err != nil {
			return usageError(fs, "--fec: %v", err)
		}
		if *interleave < 1 || *interleave > 255 {
			return usageError(fs, "--fec-interleave %d: outside 1..255", *interleave)
		}
		if *interleave != 1 {
			if cfg.FEC.Mode != sender.FECFixed {
				return usageError(fs, "--fec-interleave goes with --fec K,M")
			}
			cfg.FEC.Interleave = *interleave
		}
		return nil
	}
}
