package udpio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ErrNotMulticast is returned by [ListenGroup] for an address that is not
// a multicast group, and by [GroupConfig] checks for a source that is not
// a unicast address of the group's family.
var ErrNotMulticast = errors.New("udpio: not a multicast group")

// GroupConfig says how [ListenGroup] joins a multicast group. The zero
// value joins on the interface the kernel chooses for the group (its
// route), any source.
type GroupConfig struct {
	// Interface is the name of the interface to join on ("lo", "eth0");
	// empty takes the group's zone ("ff02::1%eth0": a name or an index),
	// and without one lets the kernel choose by its routing table.
	Interface string
	// Source, if valid, makes the join source-specific (SSM, RFC 4607):
	// only datagrams from this sender are delivered. The kernel must
	// support it (Linux does, for IPv4 IGMPv3 and IPv6 MLDv2); where it
	// does not, ListenGroup fails.
	Source netip.Addr
}

// ErrZoneConflict is returned by [ListenGroup] and [Conn.SetMulticastSend]
// when a group's zone ("ff02::1%eth0") and the interface configured
// beside it name different interfaces.
var ErrZoneConflict = errors.New("udpio: the group's zone and the interface differ")

// groupInterface returns the interface a group is joined on or sent out
// of: the one named, else the one the group's zone names (by name or
// index), else nil (the kernel's choice, by its routing table).
func groupInterface(name string, group netip.Addr) (*net.Interface, error) {
	ifi, err := interfaceByName(name)
	if err != nil {
		return nil, err
	}
	zone := group.Zone()
	if zone == "" {
		return ifi, nil
	}
	zi, err := interfaceByZone(zone)
	if err != nil {
		return nil, err
	}
	if ifi != nil && ifi.Index != zi.Index {
		return nil, fmt.Errorf("%w: %v and interface %s", ErrZoneConflict, group, name)
	}
	return zi, nil
}

// interfaceByName returns the named interface, nil for "".
func interfaceByName(name string) (*net.Interface, error) {
	if name == "" {
		return nil, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("udpio: interface %q: %w", name, err)
	}
	return ifi, nil
}

// interfaceByZone returns the interface an IPv6 zone names: by its index
// in decimal, or by name.
func interfaceByZone(zone string) (*net.Interface, error) {
	if n, err := strconv.ParseUint(zone, 10, 31); err == nil {
		ifi, err := net.InterfaceByIndex(int(n))
		if err != nil {
			return nil, fmt.Errorf("udpio: zone %q: %w", zone, err)
		}
		return ifi, nil
	}
	ifi, err := net.InterfaceByName(zone)
	if err != nil {
		return nil, fmt.Errorf("udpio: zone %q: %w", zone, err)
	}
	return ifi, nil
}

// ListenGroup opens a UDP socket that receives the multicast group at
// group (address and port) and wraps it with [New]. The socket allows
// other sockets on this host to bind the same group and port
// (SO_REUSEADDR and SO_REUSEPORT on Linux; every one of them receives
// every datagram sent to the group), and joins the group as g says.
// Closing the Conn leaves the group. The socket is bound to the wildcard
// address of the group's port (Go's net package binds a multicast address
// so, for portability), so [Conn.LocalAddr] is 0.0.0.0:port or [::]:port;
// on Linux IP_MULTICAST_ALL is cleared, so it receives the groups it
// joined itself and no other group some socket on the host joined on that
// port. Unicast datagrams to the port reach it too.
//
// Writing from this socket works, but a datagram it sends carries the
// group's port as its source, the same for every receiver on the host:
// give a receiver's feedback a socket of its own to tell them apart.
//
// Outside Linux the socket is bound without the reuse options, so only
// one receiver per host can listen to a group and port.
func ListenGroup(group netip.AddrPort, g GroupConfig, cfg Config) (*Conn, error) {
	a := group.Addr().Unmap()
	if !a.IsMulticast() {
		return nil, fmt.Errorf("%w: %v", ErrNotMulticast, group)
	}
	if g.Source.IsValid() && (g.Source.Unmap().Is4() != a.Is4() || g.Source.IsMulticast() || g.Source.IsUnspecified()) {
		return nil, fmt.Errorf("%w: source %v for group %v", ErrNotMulticast, g.Source, a)
	}
	ifi, err := groupInterface(g.Interface, a)
	if err != nil {
		return nil, err
	}
	network, bind := "udp4", netip.AddrPortFrom(netip.IPv4Unspecified(), group.Port())
	if a.Is6() {
		network, bind = "udp6", netip.AddrPortFrom(netip.IPv6Unspecified(), group.Port())
	}
	lc := net.ListenConfig{Control: reuseControl}
	pc, err := lc.ListenPacket(context.Background(), network, bind.String())
	if err != nil {
		return nil, fmt.Errorf("udpio: listen %v: %w", bind, err)
	}
	uc := pc.(*net.UDPConn)
	if err := joinGroup(uc, a, ifi, g.Source.Unmap()); err != nil {
		uc.Close()
		return nil, fmt.Errorf("udpio: join %v: %w", a, err)
	}
	return New(uc, cfg)
}

func joinGroup(uc *net.UDPConn, group netip.Addr, ifi *net.Interface, source netip.Addr) error {
	gaddr := &net.UDPAddr{IP: group.AsSlice()}
	if group.Is4() {
		p := ipv4.NewPacketConn(uc)
		limitToJoined(uc, false)
		if source.IsValid() {
			return p.JoinSourceSpecificGroup(ifi, gaddr, &net.UDPAddr{IP: source.AsSlice()})
		}
		return p.JoinGroup(ifi, gaddr)
	}
	p := ipv6.NewPacketConn(uc)
	limitToJoined(uc, true)
	if source.IsValid() {
		return p.JoinSourceSpecificGroup(ifi, gaddr, &net.UDPAddr{IP: source.AsSlice()})
	}
	return p.JoinGroup(ifi, gaddr)
}

// MulticastSend configures how a Conn sends to multicast groups. The zero
// value is the kernel's defaults but with loopback on: hop limit 1 (the
// local link), the interface of the group's route, and a copy of each
// datagram delivered to receivers on this host.
type MulticastSend struct {
	// Interface names the interface multicast goes out of; empty takes
	// the group's zone ("ff02::1%eth0"), and without one lets the kernel
	// choose by its routing table.
	Interface string
	// TTL is the IPv4 time to live / IPv6 hop limit of multicast
	// datagrams, 1..255; 0 means 1 (stays on the local link).
	TTL int
	// NoLoopback stops the kernel from delivering a copy of each
	// datagram to receivers of the group on this host. Default false:
	// same-host receivers work.
	NoLoopback bool
}

// SetMulticastSend sets the multicast interface, TTL and loopback of the
// Conn's socket for datagrams it sends to group (its family, and its zone
// if m names no interface). Call it before the first write.
func (c *Conn) SetMulticastSend(group netip.Addr, m MulticastSend) error {
	if m.TTL < 0 || m.TTL > 255 {
		return fmt.Errorf("%w: multicast TTL %d, want 0..255", ErrInvalidConfig, m.TTL)
	}
	ttl := max(m.TTL, 1)
	group = group.Unmap()
	ifi, err := groupInterface(m.Interface, group)
	if err != nil {
		return err
	}
	return c.withUDPConn(func(uc *net.UDPConn) error {
		if group.Is6() {
			p := ipv6.NewPacketConn(uc)
			if ifi != nil {
				if err := p.SetMulticastInterface(ifi); err != nil {
					return fmt.Errorf("udpio: multicast interface %s: %w", ifi.Name, err)
				}
			}
			if err := p.SetMulticastHopLimit(ttl); err != nil {
				return fmt.Errorf("udpio: multicast hop limit: %w", err)
			}
			return p.SetMulticastLoopback(!m.NoLoopback)
		}
		p := ipv4.NewPacketConn(uc)
		if ifi != nil {
			if err := p.SetMulticastInterface(ifi); err != nil {
				return fmt.Errorf("udpio: multicast interface %s: %w", ifi.Name, err)
			}
		}
		if err := p.SetMulticastTTL(ttl); err != nil {
			return fmt.Errorf("udpio: multicast TTL: %w", err)
		}
		return p.SetMulticastLoopback(!m.NoLoopback)
	})
}
