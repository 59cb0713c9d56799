package udpio

import (
	"encoding/binary"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// batchSupported reports whether x/net's ReadBatch/WriteBatch work here
// (recvmmsg/sendmmsg).
const batchSupported = true

// oobSize is the control-message buffer per receive slot, in bytes: room for
// the SO_RXQ_OVFL counter (unix.CmsgSpace(4) = 24 on 64-bit) and a spare
// message or two that the caller may have enabled on a socket given to New.
const oobSize = 64

// setBufferSizes requests SO_RCVBUF and SO_SNDBUF, forcing past the sysctl
// caps when the process may.
func setBufferSizes(uc *net.UDPConn, read, write int) error {
	rc, err := uc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		s := int(fd)
		if serr = setBuffer(s, unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, read); serr != nil {
			return
		}
		serr = setBuffer(s, unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, write)
	})
	if err != nil {
		return err
	}
	return serr
}

func setBuffer(fd, opt, forceOpt, want int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, want); err != nil {
		return err
	}
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	if err != nil {
		return err
	}
	// Linux stores (and reports) twice the value asked for, after capping the
	// request at net.core.rmem_max (wmem_max for SO_SNDBUF). Less than twice
	// means it was capped. The FORCE option skips the cap but needs
	// CAP_NET_ADMIN; without it the call fails with EPERM and the capped size
	// stays, which is the best an unprivileged process can have.
	if got/2 < want {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, forceOpt, want)
	}
	return nil
}

// grantedBufferSizes reads SO_RCVBUF and SO_SNDBUF back; 0 on failure.
func grantedBufferSizes(rc syscall.RawConn) (read, write int) {
	_ = rc.Control(func(fd uintptr) {
		var err error
		if read, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF); err != nil {
			read = 0
		}
		if write, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil {
			write = 0
		}
	})
	return read, write
}

// enableDropCounter asks the kernel to attach the socket's receive-queue
// drop count to received datagrams (SO_RXQ_OVFL, Linux 2.6.33+). It reports
// whether the kernel accepted.
func enableDropCounter(rc syscall.RawConn) bool {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	})
	return err == nil && serr == nil
}

// Layout of a control message (struct cmsghdr): cmsg_len is a size_t, then
// two ints, cmsg_level and cmsg_type; data starts at the next size_t
// boundary and each message is padded to one.
const (
	cmsgLenSize   = unix.SizeofCmsghdr - 8 // 8 on 64-bit, 4 on 32-bit
	cmsgLevelOff  = cmsgLenSize
	cmsgTypeOff   = cmsgLenSize + 4
	cmsgAlign     = cmsgLenSize
	cmsgDataOff   = (unix.SizeofCmsghdr + cmsgAlign - 1) &^ (cmsgAlign - 1)
	rxqOvflLength = 4 // the counter is a __u32
)

// dropsFromOOB returns the SO_RXQ_OVFL drop counter in the control messages
// oob, and whether one was there. The kernel attaches it only once the
// counter is non-zero. It never reads past oob and stops at the first
// malformed header.
func dropsFromOOB(oob []byte) (drops uint32, ok bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		var msgLen uint64
		if cmsgLenSize == 8 {
			msgLen = binary.NativeEndian.Uint64(oob)
		} else {
			msgLen = uint64(binary.NativeEndian.Uint32(oob))
		}
		if msgLen < unix.SizeofCmsghdr || msgLen > uint64(len(oob)) {
			break
		}
		level := int32(binary.NativeEndian.Uint32(oob[cmsgLevelOff:]))
		typ := int32(binary.NativeEndian.Uint32(oob[cmsgTypeOff:]))
		if level == unix.SOL_SOCKET && typ == unix.SO_RXQ_OVFL && msgLen >= cmsgDataOff+rxqOvflLength {
			drops, ok = binary.NativeEndian.Uint32(oob[cmsgDataOff:]), true
		}
		next := (msgLen + cmsgAlign - 1) &^ (cmsgAlign - 1)
		if next >= uint64(len(oob)) {
			break
		}
		oob = oob[next:]
	}
	return drops, ok
}
