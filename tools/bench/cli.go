package bench

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The default matrix: full speed and three paced loads, clean and through
// 1% and 5% random loss each way.
var (
	DefaultRates  = []float64{0, 1e3, 1e4, 1e5}
	DefaultLosses = []float64{0, 1, 5}
)

// The --quick matrix: a smoke run of a few seconds for tests.
var (
	quickRates    = []float64{0, 1e4}
	quickLosses   = []float64{0, 5}
	quickDuration = 300 * time.Millisecond
)

// CLI holds the command-line settings that telewire bench and the peer
// comparison program share, so that the parent can pass its own settings
// on to the peers (Args) and both walk the same matrix.
type CLI struct {
	Runs     int           // --runs: repetitions of the matrix
	Duration time.Duration // --duration: sending time per case
	Quick    bool          // --quick: the smoke matrix
	Only     string        // --only: matrix selection, see ParseOnly
	Seed     int64         // --seed: relay loss models
	JSON     bool          // --json: print the Report as JSON
	Plot     string        // --plot: chart directory
	Progress bool          // --progress: a line per case on stderr
	Size     int           // --size: message size in bytes
	Count    int           // --count: messages per cmd-* case
}

// Register defines the shared flags on fs.
func (c *CLI) Register(fs *flag.FlagSet) {
	fs.IntVar(&c.Runs, "runs", 3, "repeat the whole matrix `N` times; figures are medians with min–max")
	fs.DurationVar(&c.Duration, "duration", time.Second, "sending time of each case")
	fs.BoolVar(&c.Quick, "quick", false, "smoke run: loads max and 10k, clean and 5% loss, 300ms per case, 1 run (explicit --runs/--duration win)")
	fs.StringVar(&c.Only, "only", "", "comma-separated `TERMS` selecting the matrix: transport names, loads (max, 1k, 50k, 2M) and losses (clean, loss1, loss2.5); the raw-batch baseline is always kept")
	fs.Int64Var(&c.Seed, "seed", 1, "seed of the relays' loss models")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON instead of the table")
	fs.StringVar(&c.Plot, "plot", "", "draw throughput and latency charts (SVG and PNG) into `DIR`")
	fs.BoolVar(&c.Progress, "progress", false, "print a line per case on stderr as it finishes")
	fs.IntVar(&c.Count, "count", DefaultCommandCount, "messages each cmd-* case (the telewire commands end to end) sends")
	fs.IntVar(&c.Size, "size", MessageSize, fmt.Sprintf("message size in `BYTES`, %d..%d: telewire packs small messages and fragments large ones; raw UDP carries at most %d (its cases fail above)", StampLen, MaxSize, RawMaxSize))
}

// Options turns the flags into Options over the transports all (worker
// command, progress writer and tool name are the caller's to set). fs is
// the parsed flag set, consulted for which flags were given explicitly.
func (c *CLI) Options(fs *flag.FlagSet, all []Transport) (Options, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o := Options{Runs: c.Runs, Duration: c.Duration, Seed: c.Seed, Rates: DefaultRates, Losses: DefaultLosses, Size: c.Size,
		CommandCount: c.Count}
	if c.Size < StampLen || c.Size > MaxSize {
		return o, fmt.Errorf("%w: --size %d outside %d..%d", ErrOptions, c.Size, StampLen, MaxSize)
	}
	if c.Count < 0 {
		return o, fmt.Errorf("%w: --count %d is negative", ErrOptions, c.Count)
	}
	for _, t := range all {
		if !t.Optional {
			o.Transports = append(o.Transports, t)
		}
	}
	if c.Quick {
		o.Rates, o.Losses = quickRates, quickLosses
		if !set["runs"] {
			o.Runs = 1
		}
		if !set["duration"] {
			o.Duration = quickDuration
		}
		o.Idle = 150 * time.Millisecond
		o.Warmup = 50 * time.Millisecond
	}
	if o.Runs < 1 || o.Duration <= 0 {
		return o, fmt.Errorf("%w: --runs must be >= 1 and --duration positive", ErrOptions)
	}
	sel, err := ParseOnly(c.Only, all)
	if err != nil {
		return o, err
	}
	if len(sel.Transports) > 0 {
		o.Transports = sel.Transports
	}
	if len(sel.Rates) > 0 {
		o.Rates = sel.Rates
	}
	if len(sel.Losses) > 0 {
		o.Losses = sel.Losses
	}
	return o, nil
}

// Args renders the settings as flags for another program sharing CLI
// (the peers program), without --json, --plot and --progress, which the
// caller chooses.
func (c *CLI) Args() []string {
	args := []string{"--runs", strconv.Itoa(c.Runs), "--duration", c.Duration.String(), "--seed", strconv.FormatInt(c.Seed, 10)}
	if c.Size != 0 && c.Size != MessageSize {
		args = append(args, "--size", strconv.Itoa(c.Size))
	}
	if c.Count != 0 && c.Count != DefaultCommandCount {
		args = append(args, "--count", strconv.Itoa(c.Count))
	}
	if c.Quick {
		args = append(args, "--quick")
	}
	if c.Only != "" {
		args = append(args, "--only", c.Only)
	}
	return args
}

// Selection is a parsed --only: the transports, loads and losses named.
type Selection struct {
	Transports []Transport
	Rates      []float64
	Losses     []float64
}

// ParseOnly parses a --only list against the transports all. Each
// comma-separated term is a transport name, a load ("max", "1k", "2.5M",
// "500"), or a loss ("clean", "loss5"). Terms naming transports of the
// other program (Builtin, PeerTransports) are accepted and select nothing
// here, so one list serves telewire bench and the peers program alike; any
// other term is an error matching ErrOptions. When any transport is named, the baseline is
// added (first) if missing.
func ParseOnly(only string, all []Transport) (Selection, error) {
	var sel Selection
	if strings.TrimSpace(only) == "" {
		return sel, nil
	}
	named := map[string]bool{}
	anyTransport := false
	for _, term := range strings.Split(only, ",") {
		term = strings.TrimSpace(term)
		switch {
		case term == "":
		case isTransportName(term):
			if !knownTransport(term, all) {
				return sel, fmt.Errorf("%w: --only term %q: no such transport", ErrOptions, term)
			}
			anyTransport = true
			named[term] = true
		case term == "clean":
			sel.Losses = append(sel.Losses, 0)
		case strings.HasPrefix(term, "loss"):
			l, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(term, "loss"), "%"), 64)
			if err != nil || l < 0 || l >= 100 {
				return sel, fmt.Errorf("%w: --only term %q: want lossN with 0 <= N < 100", ErrOptions, term)
			}
			sel.Losses = append(sel.Losses, l)
		default:
			r, err := ParseRate(term)
			if err != nil {
				return sel, fmt.Errorf("%w: --only term %q is not a transport, load or loss", ErrOptions, term)
			}
			sel.Rates = append(sel.Rates, r)
		}
	}
	if anyTransport {
		for _, t := range all {
			if named[t.Name] || t.Baseline {
				sel.Transports = append(sel.Transports, t)
			}
		}
		if len(sel.Transports) == 0 {
			return sel, fmt.Errorf("%w: --only names no transport of this program", ErrOptions)
		}
	}
	return sel, nil
}

// PeerTransports names the transports of the peer comparison
// (tools/bench/peers), so that one --only list is valid for both programs.
var PeerTransports = []string{"kcp", "kcp-fec"}

func knownTransport(name string, all []Transport) bool {
	for _, t := range append(Builtin(), all...) {
		if t.Name == name {
			return true
		}
	}
	for _, n := range PeerTransports {
		if n == name {
			return true
		}
	}
	return false
}

// isTransportName reports whether a term looks like a transport name
// rather than a load or loss: it contains a letter other than a unit
// suffix and is not "max", "clean" or "lossN".
func isTransportName(term string) bool {
	if term == "max" || term == "clean" || strings.HasPrefix(term, "loss") {
		return false
	}
	_, err := ParseRate(term)
	return err != nil && strings.ContainsAny(term, "abcdefghijklmnopqrstuvwxyz")
}

// ParseRate parses a load: "max" (0, as fast as possible) or a positive
// number of messages/s with an optional k or M suffix ("1k", "2.5M").
func ParseRate(s string) (float64, error) {
	if s == "max" {
		return 0, nil
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 || v*mult > maxRatePerSec {
		return 0, fmt.Errorf("%w: load %q: want max or a rate in 1..%g msgs/s", ErrOptions, s, maxRatePerSec)
	}
	return v * mult, nil
}
