//go:build !linux

package udpio

import (
	"net"
	"syscall"
)

// reuseControl sets nothing outside Linux: the socket options that let
// several sockets share a port differ by platform, so one receiver per
// group and port per host is what works portably.
func reuseControl(_, _ string, _ syscall.RawConn) error { return nil }

// limitToJoined has no portable equivalent outside Linux.
func limitToJoined(*net.UDPConn, bool) {}
