package sender

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Reasons a destination address is refused, each wrapped in a
// [*DestinationError] (which also matches [ErrConfig]).
var (
	// ErrZeroPort: port 0 names no socket; nothing can receive there.
	ErrZeroPort = errors.New("port 0 is not a destination")
	// ErrUnspecified: 0.0.0.0 and :: mean "any local address" to bind,
	// not a destination (Linux would quietly deliver to this host).
	ErrUnspecified = errors.New("the unspecified address (0.0.0.0 or ::) is not a destination")
	// ErrBroadcast: a broadcast address (255.255.255.255, or the
	// directed broadcast of a local IPv4 subnet) reaches every host on the
	// link; it is refused unless Config.Broadcast is set.
	ErrBroadcast = errors.New("a broadcast address (set Broadcast to send to it)")
	// ErrMulticast: a multicast group with a key. Sealed multicast (one
	// key for a group, with its handshake) is not supported yet; plain
	// multicast is.
	ErrMulticast = errors.New("multicast with a key is not supported yet")
)

// DestinationError is returned by [New] and [CheckDestination] for an
// address a sender must not send to. errors.Is matches both [ErrConfig]
// and the reason (ErrZeroPort, ErrUnspecified, ErrBroadcast,
// ErrMulticast).
type DestinationError struct {
	Addr   netip.AddrPort // the destination, as resolved
	Reason error          // one of the sentinels above
}

// Error implements error.
func (e *DestinationError) Error() string {
	return fmt.Sprintf("%v: destination %v: %v", ErrConfig, e.Addr, e.Reason)
}

// Unwrap returns ErrConfig and the reason.
func (e *DestinationError) Unwrap() []error { return []error{ErrConfig, e.Reason} }

// CheckDestination reports whether a sender may send to addr: not port 0,
// not the unspecified address, and not a broadcast
// address unless allowBroadcast. Broadcast addresses are the limited
// broadcast 255.255.255.255 and the directed broadcast of every IPv4
// subnet configured on a local interface (a /24 on 192.0.2.0 makes
// 192.0.2.255 one); a directed broadcast of a subnet this host is not on
// cannot be recognised and is let through. [New] calls it on Config.To.
func CheckDestination(addr netip.AddrPort, allowBroadcast bool) error {
	return checkDestination(addr, allowBroadcast, localBroadcast)
}

// checkDestination is CheckDestination with the local subnets' broadcast
// addresses given by isLocalBroadcast, so that tests do not depend on the
// host's interfaces.
func checkDestination(addr netip.AddrPort, allowBroadcast bool, isLocalBroadcast func(netip.Addr) bool) error {
	a := addr.Addr().Unmap()
	var reason error
	switch {
	case !a.IsValid() || a.IsUnspecified():
		reason = ErrUnspecified
	case addr.Port() == 0:
		reason = ErrZeroPort
	case !allowBroadcast && a.Is4() && (a == limitedBroadcast || isLocalBroadcast(a)):
		reason = ErrBroadcast
	default:
		return nil
	}
	return &DestinationError{Addr: netip.AddrPortFrom(a, addr.Port()), Reason: reason}
}

// limitedBroadcast is 255.255.255.255, the broadcast of the local link.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// localBroadcast reports whether a is the directed broadcast address of an
// IPv4 subnet on a local interface. Interfaces that cannot be listed are
// skipped: the check is a courtesy to catch a mistake, not a guarantee.
func localBroadcast(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		n, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		if b, ok := directedBroadcast(n); ok && b == a {
			return true
		}
	}
	return false
}

// directedBroadcast returns the broadcast address of IPv4 subnet n: all
// host bits set. /31 and /32 subnets have none (RFC 3021).
func directedBroadcast(n *net.IPNet) (netip.Addr, bool) {
	ip4 := n.IP.To4()
	if ip4 == nil {
		return netip.Addr{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 8*net.IPv6len && ones >= 96 {
		ones, bits = ones-96, 32 // an IPv4 mask in 16-byte form
	}
	if bits != 32 || ones > 30 {
		return netip.Addr{}, false
	}
	mask := net.CIDRMask(ones, 32)
	var b [4]byte
	for i := range b {
		b[i] = ip4[i] | ^mask[i]
	}
	return netip.AddrFrom4(b), true
}
