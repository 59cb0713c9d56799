package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
	"time"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/gen"
	"github.com/telewire/telewire/tools/netem"
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
	if err := checkFinite(fs); err != nil {
		return err
	}
	return checkKeyFile(fs)
}

// checkKeyFile loads the --key-file, if the command has one and it is
// set, so a missing or malformed key is a usage error at start. A key is
// never read from stdin: its file's mode is part of its protection.
func checkKeyFile(fs *flag.FlagSet) error {
	f := fs.Lookup("key-file")
	if f == nil || f.Value.String() == "" {
		return nil
	}
	if f.Value.String() == "-" {
		return usageError(fs, "--key-file -: a key is read from a file (mode 0600), not from stdin")
	}
	if _, err := seal.LoadKeyFile(f.Value.String()); err != nil {
		return usageError(fs, "--key-file: %v", err)
	}
	return nil
}

// checkAddr resolves the UDP address value of flag name, so an address
// without a port or a host that does not resolve is a usage error naming
// the flag, not a failure after the start.
func checkAddr(fs *flag.FlagSet, name, value string) error {
	if _, err := net.ResolveUDPAddr("udp", value); err != nil {
		return usageError(fs, "--%s %s: %v", name, value, err)
	}
	return nil
}

// checkGen validates --gen and --size for the synthetic sources.
func checkGen(fs *flag.FlagSet, kind string, size int) error {
	if _, err := gen.New(gen.Kind(kind), 0, 1); err != nil {
		return usageError(fs, "--gen: %v", err)
	}
	if size < 0 || (size > 0 && size < gen.MinSize) {
		return usageError(fs, "--size %d: 0 (natural size) or at least %d", size, gen.MinSize)
	}
	return nil
}

// checkWritable checks at start that the output file of flag name can be
// written at the end.
func checkWritable(fs *flag.FlagSet, name, path string) error {
	if path == "" {
		return nil
	}
	if err := app.CheckWritable(path); err != nil {
		return usageError(fs, "--%s: %v", name, err)
	}
	return nil
}

// checkDir checks at start that the output directory of flag name can be
// made and written (it is created, as the plots would create it).
func checkDir(fs *flag.FlagSet, name, dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return usageError(fs, "--%s: %v", name, err)
	}
	f, err := os.CreateTemp(dir, ".telewire-check-*")
	if err != nil {
		return usageError(fs, "--%s: %v", name, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// perfectIfEmpty turns an empty netem spec flag into "none": on the
// command line an empty spec is the perfect link in every subcommand,
// while the libraries' zero Options mean their default link.
func perfectIfEmpty(spec string) string {
	if netem.IsPerfect(spec) {
		return netem.PerfectSpec
	}
	return spec
}

// checkSpec parses the netem spec of flag name.
func checkSpec(fs *flag.FlagSet, name, spec string) (netem.Spec, error) {
	sp, err := netem.ParseSpec(spec)
	if err != nil {
		return sp, usageError(fs, "--%s %q: %v", name, spec, err)
	}
	return sp, nil
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

// addStatsFlags defines --stats and --stats-interval on fs. stdoutTaken
// says the command writes its payload to stdout, so "-" is refused.
func addStatsFlags(fs *flag.FlagSet, stdoutTaken bool) *statsFlags {
	s := new(statsFlags)
	dash := `"-" = stdout`
	if stdoutTaken {
		dash = `not "-": stdout carries the messages; /dev/stderr works`
	}
	fs.StringVar(&s.path, "stats", "", "write statistics as JSON to `FILE` ("+dash+"), created at start (exit 2 if it cannot be): the final object at the end, and with --stats-interval one JSON line per interval before it (see docs/cli.md)")
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
