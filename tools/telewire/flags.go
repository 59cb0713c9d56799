package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/telewire/telewire/tools/app"
)

// parseFlags parses args quietly: --help prints the command's full usage
// and returns flag.ErrHelp; a bad flag prints one line naming it (see
// usageError) and returns errUsage. Every float flag given must be finite.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.Usage()
		return err
	case err != nil:
		return usageError(fs, "%v", err)
	}
	return checkFinite(fs)
}

// checkFinite refuses NaN and ±Inf in every float flag that was set: no
// rate, speed or cap means anything at either.
func checkFinite(fs *flag.FlagSet) error {
	var bad *flag.Flag
	fs.Visit(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok && bad == nil {
			if x, ok := g.Get().(float64); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
				bad = f
			}
		}
	})
	if bad != nil {
		return usageError(fs, "--%s %s: not a finite number", bad.Name, bad.Value)
	}
	return nil
}

// settingsOf returns every flag's effective value, defaults included,
// for the "settings" member of the command's JSON output.
func settingsOf(fs *flag.FlagSet) map[string]string {
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { m[f.Name] = f.Value.String() })
	return m
}

// statsFlags are --stats and --stats-interval.
type statsFlags struct {
	path     string
	interval time.Duration
}

// addStatsFlags defines --stats and --stats-interval on fs.
func addStatsFlags(fs *flag.FlagSet) *statsFlags {
	s := new(statsFlags)
	fs.StringVar(&s.path, "stats", "", "write statistics as JSON to `FILE` (\"-\" = stdout), created at start (exit 2 if it cannot be): the final object at the end, and with --stats-interval one JSON line per interval before it (see docs/cli.md)")
	fs.DurationVar(&s.interval, "stats-interval", 0, "with --stats: every `DURATION`, append one JSON line of the interval's counts and the totals, per stream (JSON Lines; the final object is then the last line; 0 = final object only)")
	return s
}

// open validates the flags and opens the output, so a path that cannot be
// written fails now with exit status 2. stdoutTaken says the command
// writes its payload to stdout, where "-" would mix the two.
func (s *statsFlags) open(fs *flag.FlagSet, stdout io.Writer, stdoutTaken bool) (*app.StatsOutput, error) {
	switch {
	case s.interval < 0 || (s.interval > 0 && s.interval < time.Millisecond):
		return nil, usageError(fs, "--stats-interval %v: must be 0 or at least 1ms", s.interval)
	case s.interval > 0 && s.path == "":
		return nil, usageError(fs, "--stats-interval goes with --stats FILE")
	case s.path == "":
		return nil, nil
	case s.path == "-" && stdoutTaken:
		return nil, usageError(fs, "--stats -: stdout carries the messages; give a file (or /dev/stderr)")
	}
	out, err := app.OpenStats(app.StatsConfig{Path: s.path, Interval: s.interval, Stdout: stdout, Settings: settingsOf(fs)})
	if err != nil {
		return nil, usageError(fs, "--stats: %v", err)
	}
	return out, nil
}

// usageError prints msg as one line naming the command and pointing at its
// --help, and returns errUsage (exit status 2).
func usageError(fs *flag.FlagSet, format string, a ...any) error {
	msg := strings.TrimSpace(strings.ReplaceAll(fmt.Sprintf(format, a...), "\n", "; "))
	fmt.Fprintf(fs.Output(), "%s: %s (run '%s --help' for usage)\n", fs.Name(), msg, fs.Name())
	return errUsage
}
