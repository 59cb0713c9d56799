// Command peers is telewire's peer comparison: it runs kcp-go v5 (with and
// without its FEC 10,3) through the same bench as `telewire bench` — the
// same 200-byte stamped messages, offered loads, netem relay losses,
// separate sender, receiver and relay processes — beside a raw batched UDP
// baseline of its own run, and prints the same table, or the same JSON
// report with --json. `telewire bench --peers` runs it ("go run ." in this
// directory) and prints its rows beside telewire's.
//
// It lives in a module of its own so that telewire's module never depends
// on kcp-go. Run it from this directory:
//
//	go run . [--quick] [--runs N] [--duration D] [--only kcp,1k,loss5] [--json] [--plot DIR]
//
// Like telewire bench, it re-executes its own binary as worker processes:
// "peers --worker recv|send|relay".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/telewire/telewire/tools/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the exit status: 0 on
// success, 1 on failure, 2 on bad usage.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) >= 2 && (args[0] == "--worker" || args[0] == "-worker") {
		if err := bench.Serve(ctx, args[1], Transports(), stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "peers worker: %v\n", err)
			return 1
		}
		return 0
	}
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cli bench.CLI
	cli.Register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o, err := cli.Options(fs, Transports())
	if err != nil {
		fmt.Fprintf(stderr, "peers: %v\n", err)
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "peers: cannot re-execute myself as a worker: %v\n", err)
		return 1
	}
	o.Worker = func(ctx context.Context, role string) *exec.Cmd {
		return exec.CommandContext(ctx, exe, "--worker", role)
	}
	o.Tool = "kcp-go peer comparison (tools/bench/peers)"
	if cli.Progress {
		o.Progress = stderr
	}
	rep, runErr := bench.Run(ctx, o)
	if rep == nil {
		fmt.Fprintf(stderr, "peers: %v\n", runErr)
		return 1
	}
	if cli.Plot != "" {
		files, err := bench.WritePlots(cli.Plot, rep)
		if err != nil {
			fmt.Fprintf(stderr, "peers: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "charts: %s\n", strings.Join(files, " "))
	}
	if cli.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = bench.WriteTable(stdout, rep)
	}
	if err == nil && ctx.Err() == nil {
		err = runErr
	}
	if err != nil {
		fmt.Fprintf(stderr, "peers: %v\n", err)
		return 1
	}
	return 0
}
