package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/telewire/telewire/tools/netem"
)

// Side names one end of a Pair.
type Side int

// The two ends of a Pair.
const (
	A Side = iota // 10.203.0.1, the sending side in the examples
	B             // 10.203.0.2, the receiving side in the examples
)

// String returns "A" or "B".
func (s Side) String() string {
	switch s {
	case A:
		return "A"
	case B:
		return "B"
	}
	return fmt.Sprintf("Side(%d)", int(s))
}

// The link's fixed names and addresses. They exist only inside the
// namespaces a Pair creates, so every Pair can use the same ones.
const (
	VethA     = "tw-a"          // A's end of the veth pair
	VethB     = "tw-b"          // B's end
	NFTTable  = "telewire_loss" // the inet table in each side holding its loss rule
	prefixLen = 30
	macA      = "02:74:77:00:00:01" // locally administered, fixed so neighbours can be static
	macB      = "02:74:77:00:00:02"
)

var (
	addrA = netip.MustParseAddr("10.203.0.1")
	addrB = netip.MustParseAddr("10.203.0.2")
)

// Errors, tested with errors.Is.
var (
	// ErrNotRoot: the process is not root, so it cannot create
	// namespaces.
	ErrNotRoot = errors.New("netns: needs root")
	// ErrToolMissing: ip, nft or tc is not installed (the error names
	// which, and the Debian package that provides it).
	ErrToolMissing = errors.New("netns: program not found")
	// ErrNoNetem: the kernel has no sch_netem, so Options.Netem or
	// RevNetem cannot be applied.
	ErrNoNetem = errors.New("netns: kernel has no sch_netem")
	// ErrOptions: Options out of range, or a netem spec that does not
	// parse (the *netem.SpecError is wrapped too).
	ErrOptions = errors.New("netns: bad options")
	// ErrClosed: the Pair was closed.
	ErrClosed = errors.New("netns: pair closed")
	// ErrUnsupported: not Linux.
	ErrUnsupported = errors.New("netns: network namespaces need Linux")
)

// CmdError is a failed ip, nft or tc command, with what it printed.
type CmdError struct {
	Args   []string // the command line
	Output string   // its combined output, trimmed
	Err    error    // usually an *exec.ExitError
}

// Error implements error.
func (e *CmdError) Error() string {
	return fmt.Sprintf("netns: %s: %v: %s", strings.Join(e.Args, " "), e.Err, e.Output)
}

// Unwrap returns the underlying error.
func (e *CmdError) Unwrap() error { return e.Err }

// Options configure the impairment of a Pair. The zero value is a clean
// link.
type Options struct {
	// LossPercent is the share of UDP datagrams from A to B that B's
	// input hook drops, in percent (0 to 100, resolution 0.01); default 0.
	LossPercent float64
	// RevLossPercent is the same for datagrams from B to A, dropped on
	// A's input hook; default 0.
	RevLossPercent float64
	// Netem, if set, is tc-netem options (e.g. "delay 5ms 1ms loss 2%")
	// for a netem qdisc on A's veth: it impairs A→B. Needs sch_netem in
	// the kernel; default none.
	Netem string
	// RevNetem is the same on B's veth, impairing B→A; default none.
	RevNetem string
}

func validLoss(name string, v float64) error {
	if !(v >= 0 && v <= 100) { // also rejects NaN
		return fmt.Errorf("%w: %s %v not in [0, 100]", ErrOptions, name, v)
	}
	return nil
}

func (o Options) validate() error {
	if err := validLoss("LossPercent", o.LossPercent); err != nil {
		return err
	}
	if err := validLoss("RevLossPercent", o.RevLossPercent); err != nil {
		return err
	}
	for _, x := range []struct{ name, spec string }{{"Netem", o.Netem}, {"RevNetem", o.RevNetem}} {
		if _, err := netem.ParseSpec(x.spec); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrOptions, x.name, err)
		}
	}
	return nil
}

// lossThreshold converts a percentage into the bound of "numgen random
// mod 10000 < N".
func lossThreshold(pct float64) int { return int(math.Round(pct * 100)) }

// ruleset is the nft script a side loads at creation: the table, its
// "dropped" counter, the input chain, and the loss rule.
func ruleset(pct float64) string {
	return fmt.Sprintf("table inet %s {\n\tcounter dropped {\n\t}\n"+
		"\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n%s",
		NFTTable, lossRule(pct))
}

// lossRule is the nft script that replaces a side's loss rule: pct % of
// the UDP datagrams arriving at the side are dropped on its input hook
// and counted. Zero leaves the chain empty.
func lossRule(pct float64) string {
	s := fmt.Sprintf("flush chain inet %s input\n", NFTTable)
	switch n := lossThreshold(pct); {
	case n >= 10000: // nft rejects "< 10000" as out of range for mod 10000
		s += fmt.Sprintf("add rule inet %s input meta l4proto udp counter name \"dropped\" drop\n", NFTTable)
	case n > 0:
		s += fmt.Sprintf("add rule inet %s input meta l4proto udp numgen random mod 10000 < %d counter name \"dropped\" drop\n", NFTTable, n)
	}
	return s
}

// parseCounter reads the packet count of the "dropped" counter from the
// output of "nft -j list counters table inet telewire_loss".
func parseCounter(out []byte) (uint64, error) {
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Table   string `json:"table"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("netns: nft counters: %w", err)
	}
	for _, o := range doc.Nftables {
		if c := o.Counter; c != nil && c.Table == NFTTable && c.Name == "dropped" {
			return c.Packets, nil
		}
	}
	return 0, fmt.Errorf("netns: nft counters: no %s dropped counter in %.200q", NFTTable, out)
}

// Check reports whether this process can build a Pair: ErrNotRoot,
// ErrToolMissing (naming the program), ErrUnsupported off Linux, or nil.
// tc is checked only when netem is true.
func Check(netem bool) error {
	if err := checkOS(); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w (euid %d)", ErrNotRoot, os.Geteuid())
	}
	tools := []struct{ name, pkg string }{{"ip", "iproute2"}, {"nft", "nftables"}}
	if netem {
		tools = append(tools, struct{ name, pkg string }{"tc", "iproute2"})
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool.name); err != nil {
			return fmt.Errorf("%w: %s (Debian package %s)", ErrToolMissing, tool.name, tool.pkg)
		}
	}
	return nil
}
