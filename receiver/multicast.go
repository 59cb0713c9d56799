package receiver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/telewire/telewire/internal/udpio"
	"github.com/telewire/telewire/packet"
)

// ErrMulticastKey is returned (wrapped with ErrConfig) by Listen for a
// multicast group with a key: sealed multicast is not supported yet.
var ErrMulticastKey = errors.New("multicast with a key is not supported yet")

// listen opens the receiver's sockets: for a unicast address one, which
// reads the data and writes the feedback; for a multicast group the
// group's socket (shared with other receivers on this host) and out, a
// socket of its own the feedback goes out of, so that the sender tells
// this receiver apart from others on the same host. A sender sends a
// multicast receiver everything to the group except a late joiner's
// history (Config.JoinHistory), which comes to out: the loop reads both.
func listen(cfg Config, ucfg udpio.Config) (conn, out *udpio.Conn, err error) {
	group, isGroup, err := multicastListen(cfg)
	if err != nil {
		return nil, nil, err
	}
	if !isGroup {
		conn, err := udpio.Listen(cfg.Listen, ucfg)
		if err != nil {
			return nil, nil, fmt.Errorf("receiver: listen %s: %w", cfg.Listen, err)
		}
		return conn, nil, nil
	}
	g := udpio.GroupConfig{Interface: cfg.Interface}
	if cfg.Source != "" {
		if g.Source, err = netip.ParseAddr(cfg.Source); err != nil {
			return nil, nil, fmt.Errorf("%w: Source %q: %v", ErrConfig, cfg.Source, err)
		}
	}
	if conn, err = udpio.ListenGroup(group, g, ucfg); err != nil {
		return nil, nil, fmt.Errorf("receiver: listen %s: %w", cfg.Listen, err)
	}
	local := "0.0.0.0:0"
	if group.Addr().Is6() {
		local = "[::]:0"
	}
	out, err = udpio.Listen(local, udpio.Config{
		BatchSize: ucfg.BatchSize,
		// Read only for what the sender sends this receiver alone: a
		// late joiner's history (Config.JoinHistory).
		ReadBufferBytes:  1 << 20,
		WriteBufferBytes: ucfg.WriteBufferBytes,
		MaxDatagram:      packet.MaxPacketLen,
		NoGRO:            true,
	})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("receiver: feedback socket: %w", err)
	}
	return conn, out, nil
}

// multicastListen reports whether cfg.Listen names a multicast group, and
// checks what a group allows.
func multicastListen(cfg Config) (netip.AddrPort, bool, error) {
	ap, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr("udp", cfg.Listen)
		if rerr != nil || ua.IP == nil {
			// Not an address a group could be: ":9000", or a name
			// that does not resolve; the unicast path reports errors.
			return netip.AddrPort{}, false, checkUnicastOptions(cfg)
		}
		ap = ua.AddrPort()
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsMulticast() {
		return ap, false, checkUnicastOptions(cfg)
	}
	if cfg.KeyFile != "" || cfg.Key != nil {
		return ap, true, fmt.Errorf("%w: %v: %w", ErrConfig, ap, ErrMulticastKey)
	}
	return ap, true, nil
}

// checkUnicastOptions refuses the multicast-only settings on a unicast
// Listen, where they would silently do nothing.
func checkUnicastOptions(cfg Config) error {
	if cfg.Interface != "" || cfg.Source != "" {
		return fmt.Errorf("%w: Interface and Source need a multicast Listen address, not %q", ErrConfig, cfg.Listen)
	}
	return nil
}
