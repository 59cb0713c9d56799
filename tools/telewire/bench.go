package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/bench"
)

// peersModule is the nested module of the peer comparison, relative to
// the repository root.
const peersModule = "tools/bench/peers"

func runBench(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) >= 2 && (args[0] == "--worker" || args[0] == "-worker") {
		// Hidden: the parent re-executes this binary as a worker process.
		return bench.Serve(ctx, args[1], bench.Builtin(), stdin, stdout)
	}
	fs := newFlagSet("bench", "[flags]",
		`Measures telewire against raw UDP on loopback, sender and receiver in separate
processes, and prints a table (or --json). Transports: raw-single (one datagram per
syscall), raw-batch (the baseline: the plainest sendmmsg/recvmmsg loop, batch 64, on
blocking sockets of its own, the sender connected), raw-gso (with UDP GSO/GRO),
raw-pingpong (one-way = half a raw UDP echo's round trip; clean only), tw-nack
(telewire, FEC off), tw-fec (FEC 10,3), tw-auto (FEC auto), tw-sealed (tw-nack with
every packet sealed), all telewire rows in the default configuration (sender GSO off,
receiver GRO on), and, only when --only names them, raw-udpio (raw-batch's batches
through telewire's socket layer), raw-netpoll (the same in Go's netpoller), tw-gso
(tw-nack with sender GSO on), tw-spin (tw-nack with the receiver busy-polling),
tw-nopack (tw-nack with one message per datagram), the cross-checks of the baseline
ref-loop (the minimal loop: one unchanging batch sent over and over, only counted) and
ref-iperf3 (iperf3 -u -b 0, if installed), the commands end to end cmd-default,
cmd-nopack and cmd-gso ("telewire send --gen market --count N" into "telewire recv
--count N --framing len32 > /dev/null", default flags, --no-pack, --gso; N = --count),
and fan-out to 1, 10 and 50 receivers: multicast on lo fan-mcast1, fan-mcast10,
fan-mcast50, a static unicast list (send --to a,b,c) fan-ucast1, fan-ucast10,
fan-ucast50, and subscribers (send --listen, recv --subscribe) fan-sub1, fan-sub10,
fan-sub50 (reported as ratios to one receiver). Each at full speed and at 1k, 10k
and 100k msgs/s; each clean and through a userspace netem relay dropping 1% and 5%
each way. Worker RSS and heap are sampled through each case. Reports messages/s,
Mbit/s, completeness, CPU per message, one-way latency p50/p99/p99.9/max (both ends
read CLOCK_MONOTONIC), and every figure as a ratio to raw-batch in the same run. The
full matrix takes about 4 minutes; --only narrows it, for example --only
tw-nack,1k,loss5.

--peers adds kcp-go (NoDelay(1,10,2,1), window 1024, with and without FEC 10,3) by
running "go run ." in the nested module tools/bench/peers (found from the current
directory upwards, or given by --peers-dir); it needs the go command and kcp-go from
the module proxy or cache, and says so when it cannot run.

Workers: the bench re-executes this binary as "telewire bench --worker recv|send|relay",
one process per role, driven by JSON lines on stdin/stdout (see tools/bench).`, stderr)
	var cli bench.CLI
	cli.Register(fs)
	peers := fs.Bool("peers", false, "also run the kcp-go peer comparison (tools/bench/peers) and print it beside telewire")
	save := fs.String("save", "", "also write the JSON report to `FILE` (the table still goes to stdout; \"-\" = the JSON on stdout instead of the table, as --json)")
	peersDir := fs.String("peers-dir", "", "directory of the peers module (default: "+peersModule+" above the current directory)")
	if err := parse(fs, args); err != nil {
		return err
	}
	o, err := cli.Options(fs, bench.Builtin())
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if *save == "-" {
		cli.JSON, *save = true, ""
	}
	if err := checkWritable(fs, "save", *save); err != nil {
		return err
	}
	if err := checkDir(fs, "plot", cli.Plot); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot re-execute myself as a worker: %w", err)
	}
	o.Worker = func(ctx context.Context, role string) *exec.Cmd {
		return exec.CommandContext(ctx, exe, "bench", "--worker", role)
	}
	o.Exec = func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, exe, args...)
	}
	if cli.Progress {
		o.Progress = stderr
	}
	rep, runErr := bench.Run(ctx, o)
	if rep == nil {
		return runErr
	}
	if *peers && runErr == nil {
		rep.Peers, err = runPeers(ctx, cli, *peersDir, stderr)
		if err != nil {
			rep.PeersError = err.Error()
			fmt.Fprintf(stderr, "telewire bench: peer comparison not run: %v\n", err)
		}
	}
	if cli.Plot != "" {
		files, err := bench.WritePlots(cli.Plot, rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "charts: %s\n", strings.Join(files, " "))
	}
	if *save != "" {
		var b bytes.Buffer
		if err := app.EncodeJSON(&b, rep, settingsOf(fs)); err != nil {
			return err
		}
		if err := os.WriteFile(*save, b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	if cli.JSON {
		if err := app.EncodeJSON(stdout, rep, settingsOf(fs)); err != nil {
			return err
		}
	} else if err := bench.WriteTable(stdout, rep); err != nil {
		return err
	}
	if runErr != nil && ctx.Err() != nil {
		return nil // interrupted: what ran is printed
	}
	return runErr
}

// runPeers runs the peer comparison program with the same settings and
// returns its report.
func runPeers(ctx context.Context, cli bench.CLI, dir string, stderr io.Writer) (*bench.Report, error) {
	if dir == "" {
		var err error
		if dir, err = findPeers(); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return nil, fmt.Errorf("no peers module at %s (%v)", dir, err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the go command is not on PATH, needed to build %s: %w", peersModule, err)
	}
	fmt.Fprintf(stderr, "telewire bench: running the peer comparison (go run . in %s)...\n", dir)
	args := append([]string{"run", ".", "--json"}, cli.Args()...)
	if cli.Progress {
		args = append(args, "--progress")
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	var out strings.Builder
	errTail := &limitedWriter{w: stderr, max: 1 << 20}
	cmd.Stdout, cmd.Stderr = &out, errTail
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go run in %s failed (%v); if kcp-go cannot be fetched, run \"go mod download\" there with network access", dir, err)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out.String()), &rep); err != nil {
		return nil, fmt.Errorf("peers program printed no report: %w", err)
	}
	return &rep, nil
}

// findPeers looks for the peers module from the current directory
// upwards.
func findPeers() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, filepath.FromSlash(peersModule))
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no " + peersModule + "/go.mod in the current directory or above it (run from the repository, or give --peers-dir)")
		}
		dir = parent
	}
}

// limitedWriter passes at most max bytes to w and drops the rest.
type limitedWriter struct {
	w   io.Writer
	max int
	n   int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if room := l.max - l.n; room > 0 {
		q := p[:min(len(p), room)]
		l.n += len(q)
		if _, err := l.w.Write(q); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
