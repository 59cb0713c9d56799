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
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit status: 0 on
// success (including an end by signal), 1 on failure, 2 on bad usage, or
// the status an exitCoder error names.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
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
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.As(err, &ec):
			fmt.Fprintf(stderr, "telewire %s: %v\n", name, err)
			return ec.ExitCode()
		default:
			fmt.Fprintf(stderr, "telewire %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "telewire: unknown command %q\n\n", name)
	usage(stderr)
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
		fmt.Fprintf(w, "  %-6s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "telewire COMMAND --help" for the flags of one command.
Quick start: "telewire demo" needs no flags.
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

// parse parses args, turning flag errors into errUsage and rejecting
// positional arguments the command does not take.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}

// usageError prints msg and the usage, and returns errUsage.
func usageError(fs *flag.FlagSet, format string, a ...any) error {
	fmt.Fprintf(fs.Output(), format+"\n", a...)
	fs.Usage()
	return errUsage
}
