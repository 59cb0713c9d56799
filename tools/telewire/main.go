// Command telewire sends and receives real-time telemetry over UDP with
// the telewire transport, and runs a self-contained demo.
//
//	telewire demo                                  sender → lossy link → receiver on loopback, live table
//	telewire recv --listen 127.0.0.1:9000 > out    write delivered messages to stdout
//	telewire send --to 127.0.0.1:9000 < in         send stdin, one message per line
//
// Run `telewire help` or `telewire SUBCOMMAND --help` for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand: its name, a one-line summary, and its entry
// point, which parses args and returns an error; errUsage means "bad
// flags", exit status 2.
type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// exitCoder is an error that names its own exit status (such as
// app.IncompleteError: replay exits 3 or 4).
type exitCoder interface{ ExitCode() int }

// errUsage marks a command-line mistake; the flag package has already said
// what it was.
var errUsage = errors.New("usage")

func commands() []command {
	return []command{
		{"demo", "run a sender and a receiver on loopback through a lossy link, with live statistics", runDemo},
		{"send", "send messages from stdin (or a generator) to a receiver", runSend},
		{"recv", "receive messages and write them to stdout", runRecv},
		{"replay", "replay the UDP datagrams of a pcap/pcapng capture through telewire at their original timing", runReplay},
		{"bench", "measure throughput, CPU and latency against raw UDP (and kcp-go with --peers)", runBench},
		{"sim", "sweep repair settings over simulated loss scenarios and tabulate the results", runSim},
		{"keygen", "write a new pre-shared key file for --key-file (encryption)", runKeygen},
		{"netem", "relay UDP through an emulated lossy, delaying link (tc netem syntax)", runNetem},
		{"soak", "run a long, fast, lossy transfer in-process: memory over time and reconciled counters", runSoak},
		{"version", "print the module version and VCS revision of this binary", runVersion},
	}
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go onSignals(sigs, cancel, os.Stderr, os.Exit)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}

// onSignals implements the command's signal contract, the same for every
// subcommand: the first SIGINT or SIGTERM cancels the command's context,
// a normal end (send stops reading, lingers for feedback and prints its
// summary; recv, netem, replay, demo, soak, bench and sim stop and
// report); the second ends the process at once, without a summary, with
// the shell's status for death by that signal: 128 + its number (130
// for SIGINT, 143 for SIGTERM). exit is os.Exit outside tests.
func onSignals(sigs <-chan os.Signal, cancel context.CancelFunc, stderr io.Writer, exit func(int)) {
	<-sigs
	cancel()
	sig := <-sigs
	code := 1
	if s, ok := sig.(syscall.Signal); ok {
		code = 128 + int(s)
	}
	fmt.Fprintf(stderr, "telewire: second signal (%v): exiting at once\n", sig)
	exit(code)
}

// exitError ends a command with an exit status of its own, after printing
// err as the command's one-line error unless quiet (the command has
// already said it).
type exitError struct {
	code  int
	err   error
	quiet bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode returns the exit status; it makes exitError an exitCoder.
func (e *exitError) ExitCode() int { return e.code }

// run executes the command line and returns the exit status: 0 on
// success (including an end by signal), 1 on failure, 2 on bad usage, or
// the status an exitCoder error names.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "--version" || name == "-version" {
		name, args = "version", append([]string{"version"}, args[1:]...)
	}
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdin, stdout, stderr)
		}
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		var ec exitCoder
		var ee *exitError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.As(err, &ee) && ee.quiet:
			return ee.code // the command has said why
		case errors.As(err, &ec):
			fmt.Fprintf(stderr, "telewire %s: %v\n", name, err)
			return ec.ExitCode()
		default:
			fmt.Fprintf(stderr, "telewire %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "telewire: unknown command %q (run 'telewire help' for the list)\n", name)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `telewire moves real-time telemetry (market ticks, game state, sensor data) over UDP
with sequence numbers, timestamps, loss/jitter/latency measurement and feedback.

Usage:
  telewire COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "telewire COMMAND --help" for the flags of one command; "telewire --version"
prints the version. Quick start: "telewire demo" needs no flags.
`)
}

// newFlagSet returns a flag set that reports errors to stderr (with the
// command's usage) instead of exiting.
func newFlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("telewire "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: telewire %s %s\n\n%s\n\nFlags:\n", name, synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args (see parseFlags) and rejects positional arguments the
// command does not take.
func parse(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}
