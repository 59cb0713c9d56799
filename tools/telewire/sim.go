package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/simreport"
)

func runSim(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("sim", "[flags]",
		`Runs the real sender and receiver against each other through simulated lossy
links on a fake clock (no sockets, seconds of traffic in milliseconds) and sweeps
repair settings over loss scenarios. Prints a markdown table per scenario: raw and
residual loss, losses recovered by FEC and by retransmission, bandwidth overhead,
delivery latency p50/p99/p99.9/max, NACKs and retransmissions. The same scenario
file and seed always give the same numbers.

Without --scenarios it runs the built-in set (nine scenarios by eight settings, a
few seconds); --print-scenarios prints it in the file format, a starting point for
your own. What the simulator cannot express yet (an outage of the reverse link) is
listed as "not run" with the reason, or is an error with --strict.`, stderr)
	file := fs.String("scenarios", "", "scenario `FILE` (JSON; \"-\" = stdin); default: the built-in set")
	var o simreport.Options
	fs.StringVar(&o.Only, "only", "", "run only the scenario of this name")
	fs.IntVar(&o.Messages, "messages", 0, "messages per run, replacing each scenario's count (0 = keep)")
	fs.Int64Var(&o.Seed, "seed", 0, "seed for every scenario, replacing each scenario's own")
	fs.BoolVar(&o.Strict, "strict", false, "fail on a scenario or setting that is not supported yet")
	plotDir := fs.String("plot", "", "write latency, residual-loss and overhead plots (SVG and PNG) into this directory")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of markdown")
	printScenarios := fs.Bool("print-scenarios", false, "print the built-in scenario file and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "seed" {
			o.SetSeed = true
		}
	})
	if o.Messages < 0 || o.Messages > 1_000_000 {
		return usageError(fs, "--messages must be between 0 and 1000000")
	}
	if err := checkDir(fs, "plot", *plotDir); err != nil {
		return err
	}
	if *printScenarios {
		_, err := stdout.Write(simreport.DefaultJSON())
		return err
	}

	suite := simreport.Default()
	if *file != "" {
		data, err := readLimited(*file, stdin, 1<<20)
		if err != nil {
			return usageError(fs, "--scenarios: %v", err)
		}
		if suite, err = simreport.Parse(data); err != nil {
			return usageError(fs, "--scenarios %s: %v", *file, err)
		}
	}
	if o.Only != "" && !slices.ContainsFunc(suite.Scenarios, func(s simreport.Scenario) bool { return s.Name == o.Only }) {
		return usageError(fs, "--only: no scenario %q", o.Only)
	}
	rep, runErr := simreport.Run(ctx, suite, o)
	if *asJSON {
		if err := app.EncodeJSON(stdout, rep, settingsOf(fs)); err != nil {
			return err
		}
	} else if err := rep.WriteMarkdown(stdout); err != nil {
		return err
	}
	if runErr != nil {
		if ctx.Err() != nil {
			return nil // interrupted: what ran is printed
		}
		return runErr
	}
	if *plotDir != "" {
		files, err := simreport.WritePlots(*plotDir, rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "wrote %d plots to %s\n", len(files), *plotDir)
	}
	return nil
}

// readLimited reads a file ("-" = stdin) of at most limit bytes.
func readLimited(name string, stdin io.Reader, limit int64) ([]byte, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, limit)
	}
	return data, nil
}
