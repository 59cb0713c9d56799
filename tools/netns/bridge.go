package netns

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A Bridge is a LAN of network namespaces: a hub namespace holding a Linux
// bridge, and Members namespaces each joined to it by a veth pair, each
// member with the UDP loss of its own (nftables on its input hook, as a
// Pair's sides). It is what a test of one multicast sender and several
// receivers with independent losses needs: member 0 sends to a group,
// the bridge floods the group's datagrams to every other member (IGMP and
// MLD snooping are off, so no querier is needed), and each drops its own
// share.
//
// Every member has an IPv4 address ([Bridge.Addr]) and two IPv6 ones, a
// unique local address ([Bridge.Addr6]) and its link-local address
// ([Bridge.LinkLocal]), both usable at once (duplicate address detection
// is off in the members), so IPv4 and IPv6 multicast run alike.
//
// Methods are safe for concurrent use.
type Bridge struct {
	hub   string
	names []string
	loss  []float64
	// ifindex[i] is member i's BridgeIface index in its namespace.
	ifindex []int

	mu      sync.Mutex // guards the fields below and serialises Close
	created []bool     // members' namespaces created
	hubMade bool
	closed  bool
}

// BridgeIface is the name of every member's interface to the bridge.
const BridgeIface = "tw-m"

// MaxBridgeMembers bounds Members.
const MaxBridgeMembers = 32

// bridgeName is the bridge device inside the hub.
const bridgeName = "tw-br"

// LANOptions configure a Bridge.
type LANOptions struct {
	// LossPercent has one entry per member (2 to MaxBridgeMembers):
	// member i drops LossPercent[i] % of the UDP datagrams that arrive at
	// it, on its input hook.
	LossPercent []float64
	// SharedLossPercent, if positive, drops that share of the UDP frames
	// member 0 sends, in the bridge before it floods them: a loss every
	// other member shares (the path from a sender to its group).
	SharedLossPercent float64
	// Prefix starts every namespace name of the Bridge, so that tests
	// of different packages or branches tell theirs apart in "ip netns
	// list"; letters, digits and '-' only, at most 16 characters.
	// Default "twbr".
	Prefix string
}

// NewBridge returns a Bridge for the test, deleted by t.Cleanup; it skips
// the test, with the reason, when this process cannot build one (not
// root, ip or nft missing).
func NewBridge(t testing.TB, o LANOptions) *Bridge {
	t.Helper()
	b, err := NewLAN(o)
	switch {
	case errors.Is(err, ErrNotRoot), errors.Is(err, ErrToolMissing), errors.Is(err, ErrUnsupported):
		t.Skipf("bridged namespaces test skipped: %v", err)
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("netns cleanup: %v", err)
		}
	})
	return b
}

// NewLAN creates the hub and the members of o, checks that a datagram
// crosses from member 0 to each other member, then loads the loss rules.
// On error everything created is deleted.
func NewLAN(o LANOptions) (_ *Bridge, err error) {
	lossPercent := o.LossPercent
	if n := len(lossPercent); n < 2 || n > MaxBridgeMembers {
		return nil, fmt.Errorf("%w: %d members, want 2..%d", ErrOptions, n, MaxBridgeMembers)
	}
	for i, pct := range lossPercent {
		if err := validLoss(fmt.Sprintf("LossPercent[%d]", i), pct); err != nil {
			return nil, err
		}
	}
	if err := validLoss("SharedLossPercent", o.SharedLossPercent); err != nil {
		return nil, err
	}
	prefix := o.Prefix
	if prefix == "" {
		prefix = "twbr"
	}
	if !validPrefix(prefix) {
		return nil, fmt.Errorf("%w: Prefix %q: want 1..%d letters, digits or '-'", ErrOptions, prefix, maxPrefixLen)
	}
	if err := Check(false); err != nil {
		return nil, err
	}
	base := fmt.Sprintf("%s-%d-%d-%04x", prefix, os.Getpid(), pairSeq.Add(1), rand.Uint32()&0xffff)
	b := &Bridge{hub: base + "-hub", loss: append([]float64(nil), lossPercent...), created: make([]bool, len(lossPercent))}
	for i := range lossPercent {
		b.names = append(b.names, fmt.Sprintf("%s-%d", base, i))
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, b.Close())
		}
	}()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := ip("netns", "add", b.hub); err != nil {
		return nil, err
	}
	b.hubMade = true
	steps := [][]string{
		{"-n", b.hub, "link", "add", bridgeName, "type", "bridge", "mcast_snooping", "0"},
		{"-n", b.hub, "link", "set", bridgeName, "up"},
	}
	for i, name := range b.names {
		if err := ip("netns", "add", name); err != nil {
			return nil, err
		}
		b.created[i] = true
		// Before the member's veth exists, so that it inherits the
		// default: its addresses are usable as soon as it is up.
		if err := runIn(runDir+"/"+name, noDAD); err != nil {
			return nil, err
		}
		port := fmt.Sprintf("tw-p%d", i)
		mac := fmt.Sprintf("02:74:77:01:00:%02x", i+1)
		steps = append(steps,
			[]string{"link", "add", BridgeIface, "address", mac, "netns", name, "type", "veth", "peer", "name", port, "netns", b.hub},
			[]string{"-n", b.hub, "link", "set", port, "master", bridgeName},
			[]string{"-n", b.hub, "link", "set", port, "up"},
			[]string{"-n", name, "addr", "add", fmt.Sprintf("%s/24", b.Addr(i)), "dev", BridgeIface},
			[]string{"-n", name, "addr", "add", fmt.Sprintf("%s/64", b.Addr6(i)), "dev", BridgeIface, "nodad"},
			[]string{"-n", name, "link", "set", "lo", "up"},
			[]string{"-n", name, "link", "set", BridgeIface, "up"},
		)
	}
	for _, args := range steps {
		if err := ip(args...); err != nil {
			return nil, err
		}
	}
	b.ifindex = make([]int, len(b.names))
	for i, name := range b.names {
		if err := runIn(runDir+"/"+name, func() error {
			ifi, err := net.InterfaceByName(BridgeIface)
			if err != nil {
				return fmt.Errorf("netns: %w", err)
			}
			b.ifindex[i] = ifi.Index
			return nil
		}); err != nil {
			return nil, err
		}
	}
	for i := 1; i < len(b.names); i++ {
		for _, from := range []netip.Addr{b.Addr(0), b.Addr6(0), b.LinkLocal(0)} {
			if err := b.probe(from, i); err != nil {
				return nil, err
			}
		}
	}
	for i, name := range b.names {
		if err := run(strings.NewReader(ruleset(b.loss[i])), "ip", "netns", "exec", name, "nft", "-f", "-"); err != nil {
			return nil, err
		}
	}
	// On the bridge's prerouting hook a frame is seen once, before it is
	// flooded to every port: its loss is every member's.
	table := fmt.Sprintf("table bridge %s {\n\tcounter dropped {\n\t}\n"+
		"\tchain prerouting {\n\t\ttype filter hook prerouting priority filter; policy accept;\n\t}\n}\n", NFTTable)
	if err := run(strings.NewReader(table+sharedRule(o.SharedLossPercent)), "ip", "netns", "exec", b.hub, "nft", "-f", "-"); err != nil {
		return nil, err
	}
	return b, nil
}

// sharedRule is the nft script that replaces the bridge's shared loss
// rule: pct % of the UDP frames member 0 sends, dropped and counted.
func sharedRule(pct float64) string {
	s := fmt.Sprintf("flush chain bridge %s prerouting\n", NFTTable)
	if n := lossThreshold(pct); n > 0 {
		s += fmt.Sprintf("add rule bridge %s prerouting iifname \"tw-p0\" meta l4proto udp numgen random mod 10000 < %d counter name \"dropped\" drop\n",
			NFTTable, min(n, 9999))
	}
	return s
}

// SetLoss replaces every loss rule: o's LossPercent (one per member, as
// at creation) and SharedLossPercent. The drop counters keep counting. A
// test can start clean, let the receivers hear the stream begin, then
// turn loss on.
func (b *Bridge) SetLoss(o LANOptions) error {
	if len(o.LossPercent) != len(b.names) {
		return fmt.Errorf("%w: %d loss figures for %d members", ErrOptions, len(o.LossPercent), len(b.names))
	}
	for i, pct := range o.LossPercent {
		if err := validLoss(fmt.Sprintf("LossPercent[%d]", i), pct); err != nil {
			return err
		}
	}
	if err := validLoss("SharedLossPercent", o.SharedLossPercent); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	for i, name := range b.names {
		if err := run(strings.NewReader(lossRule(o.LossPercent[i])), "ip", "netns", "exec", name, "nft", "-f", "-"); err != nil {
			return err
		}
	}
	copy(b.loss, o.LossPercent)
	return run(strings.NewReader(sharedRule(o.SharedLossPercent)), "ip", "netns", "exec", b.hub, "nft", "-f", "-")
}

// SharedDropped returns how many UDP frames from member 0 the bridge
// dropped (LANOptions.SharedLossPercent).
func (b *Bridge) SharedDropped() (uint64, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	args := []string{"ip", "netns", "exec", b.hub, "nft", "-j", "list", "counters", "table", "bridge", NFTTable}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return 0, &CmdError{Args: args, Err: err}
	}
	return parseCounter(out)
}

// Members returns the number of member namespaces.
func (b *Bridge) Members() int { return len(b.names) }

// Name returns member i's namespace, as "ip netns" knows it.
func (b *Bridge) Name(i int) string { return b.names[i] }

// Addr returns member i's address on the bridge: 10.204.0.(i+1).
func (b *Bridge) Addr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 204, 0, byte(i + 1)})
}

// Addr6 returns member i's IPv6 address on the bridge, a unique local
// address in fd74:7477:0:cc::/64: fd74:7477:0:cc::(i+1).
func (b *Bridge) Addr6(i int) netip.Addr {
	a := [16]byte{0xfd, 0x74, 0x74, 0x77, 0, 0, 0, 0xcc}
	a[15] = byte(i + 1)
	return netip.AddrFrom16(a)
}

// LinkLocal returns member i's IPv6 link-local address, without a zone:
// the kernel's address derived from the member's fixed MAC address
// (02:74:77:01:00:xx gives fe80::74:77ff:fe01:xx). Used from member j,
// it needs the zone Zone(j).
func (b *Bridge) LinkLocal(i int) netip.Addr {
	a := [16]byte{0xfe, 0x80, 8: 0x00, 9: 0x74, 10: 0x77, 11: 0xff, 12: 0xfe, 13: 0x01, 14: 0x00}
	a[15] = byte(i + 1)
	return netip.AddrFrom16(a)
}

// Zone returns the index of member i's BridgeIface in its namespace, in
// decimal ("2"): the zone of a link-local address used there. (A zone
// given by name is looked up in the namespace of whichever thread
// resolves it, which for a goroutine is not the member's.)
func (b *Bridge) Zone(i int) string { return strconv.Itoa(b.ifindex[i]) }

// Run runs fn on an OS thread locked into member i's namespace, as
// Pair.Run does (sockets fn creates stay in it).
func (b *Bridge) Run(i int, fn func() error) error {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return runIn(runDir+"/"+b.names[i], fn)
}

// Dropped returns how many UDP datagrams member i's loss rule dropped.
func (b *Bridge) Dropped(i int) (uint64, error) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	args := []string{"ip", "netns", "exec", b.names[i], "nft", "-j", "list", "counters", "table", "inet", NFTTable}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		return 0, &CmdError{Args: args, Err: err}
	}
	return parseCounter(out)
}

// maxPrefixLen bounds LANOptions.Prefix.
const maxPrefixLen = 16

func validPrefix(p string) bool {
	if p == "" || len(p) > maxPrefixLen {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// noDAD turns duplicate address detection off for the interfaces created
// after it in the calling thread's namespace: an IPv6 address is
// "tentative", unusable, until DAD ends, about a second after the link
// comes up; on a LAN of namespaces with fixed addresses nothing can
// collide.
func noDAD() error {
	for _, conf := range []string{"all", "default"} {
		f := "/proc/sys/net/ipv6/conf/" + conf + "/accept_dad"
		if err := os.WriteFile(f, []byte("0"), 0); err != nil {
			return fmt.Errorf("netns: %w", err)
		}
	}
	return nil
}

// probe sends datagrams from member 0's address from (of Addr, Addr6 or
// LinkLocal) to member i's address of the same kind until one arrives.
func (b *Bridge) probe(from netip.Addr, i int) error {
	var rx, tx net.PacketConn
	defer func() {
		for _, c := range []net.PacketConn{rx, tx} {
			if c != nil {
				c.Close()
			}
		}
	}()
	to, bindTo := b.Addr(i), b.Addr(i)
	switch {
	case from.IsLinkLocalUnicast():
		to, bindTo = b.LinkLocal(i).WithZone(b.Zone(0)), b.LinkLocal(i).WithZone(b.Zone(i))
		from = from.WithZone(b.Zone(0))
	case from.Is6():
		to, bindTo = b.Addr6(i), b.Addr6(i)
	}
	deadline := time.Now().Add(probeTimeout)
	c, err := bindWhenPresent(b.names[i], netip.AddrPortFrom(bindTo, 0), deadline)
	if err != nil {
		return err
	}
	rx = c
	port := c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	c, err = bindWhenPresent(b.names[0], netip.AddrPortFrom(from, 0), deadline)
	if err != nil {
		return err
	}
	tx = c
	buf := make([]byte, 16)
	for time.Now().Before(deadline) {
		if _, err := tx.WriteTo([]byte("telewire probe"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(to, port))); err != nil {
			return fmt.Errorf("netns: probe: %w", err)
		}
		rx.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if n, _, err := rx.ReadFrom(buf); err == nil && string(buf[:n]) == "telewire probe" {
			return nil
		}
	}
	return fmt.Errorf("netns: probe: no datagram crossed the bridge from %v to member %d (%v) within %v", from, i, to, probeTimeout)
}

// bindWhenPresent binds a UDP socket to a in namespace ns, trying again
// until deadline while a is not (yet) an address of the namespace: the
// kernel adds an interface's link-local address only once its carrier is
// up, which a veth's is some time after "ip link set up" returns.
func bindWhenPresent(ns string, a netip.AddrPort, deadline time.Time) (*net.UDPConn, error) {
	for {
		var c *net.UDPConn
		err := runIn(runDir+"/"+ns, func() (err error) {
			c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
			return err
		})
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRNOTAVAIL) || time.Now().After(deadline) {
			return nil, fmt.Errorf("netns: probe: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close deletes the members' namespaces (taking their veths and nft
// tables with them) and the hub with its bridge. It is safe to call more
// than once.
func (b *Bridge) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	var errs []error
	for i, ok := range b.created {
		if ok {
			errs = append(errs, ip("netns", "del", b.names[i]))
		}
	}
	if b.hubMade {
		errs = append(errs, ip("netns", "del", b.hub))
	}
	return errors.Join(errs...)
}
