package netns

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telewire/telewire/tools/netem"
)

// runDir is where "ip netns add" binds its namespaces (iproute2's
// NETNS_RUN_DIR).
const runDir = "/var/run/netns"

// probeTimeout bounds how long New waits for the new link to carry a
// datagram.
const probeTimeout = 5 * time.Second

var pairSeq atomic.Uint64

// Pair is two network namespaces joined by a veth pair, with the
// configured loss applied in the kernel. Create it with New (or NewPair in
// a test) and Close it to delete everything it created.
//
// Methods are safe for concurrent use.
type Pair struct {
	names [2]string
	opts  Options

	mu      sync.Mutex // guards the fields below and serialises Close
	created [2]bool
	nft     [2]bool
	qdisc   [2]bool
	closed  bool
}

// NewPair returns a Pair for the test, deleted by t.Cleanup. It skips the
// test, with the reason, when this process cannot build one (not root, ip
// or nft missing, or netem asked for and the kernel lacks sch_netem); any
// other failure fails the test.
func NewPair(t testing.TB, o Options) *Pair {
	t.Helper()
	p, err := New(o)
	switch {
	case errors.Is(err, ErrNotRoot), errors.Is(err, ErrToolMissing), errors.Is(err, ErrUnsupported), errors.Is(err, ErrNoNetem):
		t.Skipf("kernel-level loss test skipped: %v", err)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("netns cleanup: %v", err)
		}
	})
	return p
}

// New creates the two namespaces, the veth pair with static addresses and
// neighbours, checks that a datagram crosses it, then loads the loss
// rules and netem qdiscs of o. On error everything created is deleted.
func New(o Options) (_ *Pair, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := Check(o.Netem != "" || o.RevNetem != ""); err != nil {
		return nil, err
	}
	base := fmt.Sprintf("twns-%d-%d-%04x", os.Getpid(), pairSeq.Add(1), rand.Uint32()&0xffff)
	p := &Pair{names: [2]string{base + "-a", base + "-b"}, opts: o}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	for s := range 2 {
		if err := ip("netns", "add", p.names[s]); err != nil {
			return nil, err
		}
		p.created[s] = true
	}
	a, b := p.names[A], p.names[B]
	steps := [][]string{
		{"link", "add", VethA, "address", macA, "netns", a, "type", "veth", "peer", "name", VethB, "address", macB, "netns", b},
		{"-n", a, "addr", "add", prefix(addrA), "dev", VethA},
		{"-n", b, "addr", "add", prefix(addrB), "dev", VethB},
		{"-n", a, "neigh", "add", addrB.String(), "lladdr", macB, "dev", VethA, "nud", "permanent"},
		{"-n", b, "neigh", "add", addrA.String(), "lladdr", macA, "dev", VethB, "nud", "permanent"},
		{"-n", a, "link", "set", "lo", "up"},
		{"-n", b, "link", "set", "lo", "up"},
		{"-n", a, "link", "set", VethA, "up"},
		{"-n", b, "link", "set", VethB, "up"},
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return nil, err
		}
	}
	// The kernel attaches the veth's queue discipline when the carrier
	// comes up, asynchronously: wait until a datagram actually crosses,
	// before any loss is applied.
	if err := p.probe(); err != nil {
		return nil, err
	}
	// Loss is applied where datagrams arrive, on the input hook, so that
	// a sender never sees an error (a drop on the output path would
	// return EPERM from sendto).
	for s, pct := range []float64{o.RevLossPercent, o.LossPercent} {
		if err := run(strings.NewReader(ruleset(pct)), "ip", "netns", "exec", p.names[s], "nft", "-f", "-"); err != nil {
			return nil, err
		}
		p.nft[s] = true
	}
	for s, spec := range []string{o.Netem, o.RevNetem} {
		if netem.IsPerfect(spec) { // "" and "none": no qdisc
			continue
		}
		dev := [2]string{VethA, VethB}[s]
		args := append([]string{"netns", "exec", p.names[s], "tc", "qdisc", "add", "dev", dev, "root", "netem"}, strings.Fields(spec)...)
		if err := ip(args...); err != nil {
			var ce *CmdError
			if errors.As(err, &ce) && (strings.Contains(ce.Output, "qdisc kind is unknown") || strings.Contains(ce.Output, "Unknown qdisc")) {
				return nil, fmt.Errorf("%w: %w", ErrNoNetem, err)
			}
			return nil, err
		}
		p.qdisc[s] = true
	}
	return p, nil
}

func prefix(a netip.Addr) string { return fmt.Sprintf("%s/%d", a, prefixLen) }

// probe sends datagrams from A to B until one arrives.
func (p *Pair) probe() error {
	var rx, tx net.PacketConn
	defer func() {
		for _, c := range []net.PacketConn{rx, tx} {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := p.run(B, func() (err error) {
		rx, err = net.ListenPacket("udp4", addrB.String()+":0")
		return err
	}); err != nil {
		return fmt.Errorf("netns: probe: %w", err)
	}
	if err := p.run(A, func() (err error) {
		tx, err = net.ListenPacket("udp4", addrA.String()+":0")
		return err
	}); err != nil {
		return fmt.Errorf("netns: probe: %w", err)
	}
	buf := make([]byte, 16)
	deadline := time.Now().Add(probeTimeout)
	for time.Now().Before(deadline) {
		if _, err := tx.WriteTo([]byte("telewire probe"), rx.LocalAddr()); err != nil {
			return fmt.Errorf("netns: probe: %w", err)
		}
		rx.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if n, _, err := rx.ReadFrom(buf); err == nil && string(buf[:n]) == "telewire probe" {
			return nil
		}
	}
	return fmt.Errorf("netns: probe: no datagram crossed the veth pair within %v", probeTimeout)
}

// Name returns the name of side s's namespace, as "ip netns" knows it.
func (p *Pair) Name(s Side) string { return p.names[s&1] }

// Addr returns side s's address on the link: 10.203.0.1 for A,
// 10.203.0.2 for B.
func (p *Pair) Addr(s Side) netip.Addr {
	if s == A {
		return addrA
	}
	return addrB
}

// Options returns the Pair's options, with the loss last set by SetLoss.
func (p *Pair) Options() Options {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts
}

// Run runs fn on an OS thread locked into side s's network namespace and
// returns its error. Sockets fn creates belong to that namespace for good;
// goroutines it starts run outside it (see the package doc). fn runs on
// another goroutine than Run's caller, so it must report failure by its
// result, not with t.Fatal; if it ends its goroutine anyway
// (runtime.Goexit, as t.Fatal does), Run returns an error and the thread
// is still moved back. If the thread cannot be moved back, it is
// discarded rather than returned to the scheduler.
func (p *Pair) Run(s Side, fn func() error) error {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return p.run(s, fn)
}

// errGoexit is Run's result when fn ends its goroutine (runtime.Goexit,
// as t.FailNow does) instead of returning.
var errGoexit = errors.New("netns: Run: fn called runtime.Goexit (t.Fatal inside Run?)")

func (p *Pair) run(s Side, fn func() error) error {
	return runIn(runDir+"/"+p.Name(s), fn)
}

// runIn runs fn on an OS thread locked into the namespace bound at path
// (see Pair.Run).
func runIn(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		result := errGoexit
		var stranded bool
		runtime.LockOSThread()
		// Deferred, so that it runs when fn calls runtime.Goexit too:
		// enterAndRun has moved the thread back by then. A goroutine that
		// ends locked would not return its thread to the scheduler, and
		// Go ends that thread unless it is the process's main thread,
		// which it parks for good, still inside the namespace.
		defer func() {
			if !stranded {
				runtime.UnlockOSThread()
			}
			// A stranded thread stays locked: it ends with this
			// goroutine.
			errc <- result
		}()
		result = enterAndRun(path, fn, &stranded)
	}()
	return <-errc
}

// Command returns a command that runs name with args inside side s's
// namespace ("ip netns exec"). The caller starts it and sets its I/O.
func (p *Pair) Command(s Side, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", p.Name(s), name}, args...)...)
}

// Dropped returns how many UDP datagrams the nftables rules have dropped
// from A to B (fwd, counted in B) and from B to A (rev, counted in A). Losses made by netem qdiscs are
// not included.
func (p *Pair) Dropped() (fwd, rev uint64, err error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return 0, 0, ErrClosed
	}
	var n [2]uint64
	for s := range 2 {
		args := []string{"ip", "netns", "exec", p.names[s], "nft", "-j", "list", "counters", "table", "inet", NFTTable}
		out, err := exec.Command(args[0], args[1:]...).Output()
		if err != nil {
			return 0, 0, &CmdError{Args: args, Err: err}
		}
		if n[s], err = parseCounter(out); err != nil {
			return 0, 0, err
		}
	}
	return n[B], n[A], nil
}

// SetLoss replaces the nftables loss of each direction, in percent (0 to
// 100); the drop counters keep counting. The two sides are updated one
// after the other (B, for A→B, last). A test can
// start clean, let a session establish itself, then turn loss on.
func (p *Pair) SetLoss(fwdPercent, revPercent float64) error {
	if err := validLoss("fwdPercent", fwdPercent); err != nil {
		return err
	}
	if err := validLoss("revPercent", revPercent); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	for s, pct := range []float64{revPercent, fwdPercent} {
		if err := run(strings.NewReader(lossRule(pct)), "ip", "netns", "exec", p.names[s], "nft", "-f", "-"); err != nil {
			return err
		}
	}
	p.opts.LossPercent, p.opts.RevLossPercent = fwdPercent, revPercent
	return nil
}

// Close deletes the nft table, the qdiscs and the namespaces (which takes
// the veth pair with them). It is safe to call more than once.
func (p *Pair) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for s := range 2 {
		if p.nft[s] {
			errs = append(errs, ip("netns", "exec", p.names[s], "nft", "delete", "table", "inet", NFTTable))
		}
	}
	for s, dev := range []string{VethA, VethB} {
		if p.qdisc[s] {
			errs = append(errs, ip("netns", "exec", p.names[s], "tc", "qdisc", "del", "dev", dev, "root"))
		}
	}
	for s := range 2 {
		if p.created[s] {
			errs = append(errs, ip("netns", "del", p.names[s]))
		}
	}
	return errors.Join(errs...)
}

func ip(args ...string) error { return run(nil, "ip", args...) }

// run runs a command, returning a *CmdError with its output on failure.
func run(stdin *strings.Reader, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return &CmdError{Args: append([]string{name}, args...), Output: strings.TrimSpace(out.String()), Err: err}
	}
	return nil
}
