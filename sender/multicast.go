package sender

import (
	"fmt"
	"net/netip"

	"github.com/telewire/telewire/internal/udpio"
)

// checkMulticast refuses what a multicast destination does not allow yet
// (a key), and the multicast settings with a unicast one, where they
// would silently do nothing.
func checkMulticast(remote netip.AddrPort, cfg Config) error {
	if !remote.Addr().Unmap().IsMulticast() {
		if cfg.MulticastInterface != "" || cfg.MulticastTTL != 0 || cfg.NoMulticastLoopback {
			return fmt.Errorf("%w: MulticastInterface, MulticastTTL and NoMulticastLoopback need a multicast To, not %v", ErrConfig, remote)
		}
		return nil
	}
	if cfg.KeyFile != "" || cfg.Key != nil {
		return &DestinationError{Addr: remote, Reason: ErrMulticast}
	}
	if cfg.MulticastTTL < 0 || cfg.MulticastTTL > 255 {
		return fmt.Errorf("%w: MulticastTTL %d not in 1..255", ErrConfig, cfg.MulticastTTL)
	}
	return nil
}

// setMulticast sets the socket's multicast interface, TTL and loopback
// for a multicast destination.
func setMulticast(conn *udpio.Conn, remote netip.AddrPort, cfg Config) error {
	a := remote.Addr().Unmap()
	if !a.IsMulticast() {
		return nil
	}
	err := conn.SetMulticastSend(a, udpio.MulticastSend{
		Interface: cfg.MulticastInterface, TTL: cfg.MulticastTTL, NoLoopback: cfg.NoMulticastLoopback,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}
