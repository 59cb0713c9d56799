package udpio

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// reuseControl lets several sockets on this host bind one group and port:
// SO_REUSEADDR and SO_REUSEPORT (every socket bound to a multicast
// address receives every datagram sent to it).
func reuseControl(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

// limitToJoined clears IP_MULTICAST_ALL (IPV6_MULTICAST_ALL, Linux 4.20
// and later), so the socket receives only the groups it joined itself,
// not every group some socket on the host joined on its port. Best
// effort: without it (kernels before 4.20 for IPv6) the socket may also
// hear other groups joined on its port by other sockets.
func limitToJoined(uc *net.UDPConn, is6 bool) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		if is6 {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL, 0)
			return
		}
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_ALL, 0)
	})
}
