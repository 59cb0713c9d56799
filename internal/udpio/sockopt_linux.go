package udpio

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// batchSupported reports whether x/net's ReadBatch/WriteBatch work here
// (recvmmsg/sendmmsg).
const batchSupported = true

// oobSize is the control-message buffer per receive slot, in bytes: room for
// the SO_RXQ_OVFL counter and the UDP_GRO segment size (unix.CmsgSpace(4) =
// 24 each on 64-bit) and spare messages that the caller may have enabled on
// a socket given to New. A coalesced read whose control data is cut short
// (MSG_CTRUNC) before its segment size cannot be split and is dropped.
const oobSize = 128

// Message flags Read looks at.
const (
	msgTrunc  = unix.MSG_TRUNC
	msgCtrunc = unix.MSG_CTRUNC
)

// gsoCmsgSpace is the size of one UDP_SEGMENT control message: the kernel
// wants its data to be exactly a __u16, the segment size.
var gsoCmsgSpace = unix.CmsgSpace(2)

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
	groSizeLength = 4 // the UDP_GRO segment size is an int
)

// probeOffload turns UDP GRO on or off as wantGRO says and reports which
// offloads the socket has: GSO when wantGSO and the kernel knows
// UDP_SEGMENT (Linux 4.18+; reading the option is the documented probe, as
// setting it would fix one segment size for every send), GRO when wantGRO
// and the kernel accepted UDP_GRO (Linux 5.0+). GRO is switched off
// explicitly otherwise, in case the socket given to New had it on.
func probeOffload(rc syscall.RawConn, wantGSO, wantGRO bool) (gso, gro bool) {
	_ = rc.Control(func(fd uintptr) {
		s := int(fd)
		if wantGSO {
			_, err := unix.GetsockoptInt(s, unix.SOL_UDP, unix.UDP_SEGMENT)
			gso = err == nil
		}
		on := 0
		if wantGRO {
			on = 1
		}
		err := unix.SetsockoptInt(s, unix.SOL_UDP, unix.UDP_GRO, on)
		gro = wantGRO && err == nil
	})
	return gso, gro
}

// gsoRefusal reports whether a failed send of a UDP_SEGMENT message may be
// GSO's fault: EIO (udp_send_skb: the device cannot checksum the segments)
// or EINVAL (a segment larger than the route's MTU, too many segments, or
// checksums turned off on the socket).
func gsoRefusal(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)
}

// gsoSizeRelated reports whether a GSO refusal may depend on the segment
// size, so that smaller segments may still be coalesced.
func gsoSizeRelated(err error) bool { return errors.Is(err, unix.EINVAL) }

// initSegmentCmsg writes the header of a UDP_SEGMENT control message into b
// (gsoCmsgSpace bytes); putSegmentSize fills in its data.
func initSegmentCmsg(b []byte) {
	clear(b)
	if cmsgLenSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(cmsgDataOff+2))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(cmsgDataOff+2))
	}
	binary.NativeEndian.PutUint32(b[cmsgLevelOff:], uint32(unix.SOL_UDP))
	binary.NativeEndian.PutUint32(b[cmsgTypeOff:], uint32(unix.UDP_SEGMENT))
}

// putSegmentSize sets the segment size of a UDP_SEGMENT control message
// made by initSegmentCmsg. size is at most MaxGSOBytes6, so it fits.
func putSegmentSize(b []byte, size int) {
	binary.NativeEndian.PutUint16(b[cmsgDataOff:], uint16(size))
}

// oobInfo is what Read uses from a message's control data.
type oobInfo struct {
	drops   uint32 // SO_RXQ_OVFL: the socket's cumulative drop count
	dropsOK bool   // drops was present
	gsoSize int    // UDP_GRO: the segment size of a coalesced read; 0 if absent
}

// parseOOB walks the control messages in oob. Where a kind appears more
// than once the last well-formed one wins. It never reads past oob, stops
// at the first malformed header and does not allocate.
func parseOOB(oob []byte) (info oobInfo) {
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
		switch {
		case level == unix.SOL_SOCKET && typ == unix.SO_RXQ_OVFL && msgLen >= cmsgDataOff+rxqOvflLength:
			info.drops, info.dropsOK = binary.NativeEndian.Uint32(oob[cmsgDataOff:]), true
		case level == unix.SOL_UDP && typ == unix.UDP_GRO && msgLen >= cmsgDataOff+groSizeLength:
			// An int; a segment size is at most 65535, anything else is
			// not one.
			size := int32(binary.NativeEndian.Uint32(oob[cmsgDataOff:]))
			info.gsoSize = 0
			if size > 0 && size <= DefaultMaxDatagram {
				info.gsoSize = int(size)
			}
		}
		next := (msgLen + cmsgAlign - 1) &^ (cmsgAlign - 1)
		if next >= uint64(len(oob)) {
			break
		}
		oob = oob[next:]
	}
	return info
}

// dropsFromOOB returns the SO_RXQ_OVFL drop counter in the control messages
// oob, and whether one was there. The kernel attaches it only once the
// counter is non-zero.
func dropsFromOOB(oob []byte) (drops uint32, ok bool) {
	info := parseOOB(oob)
	return info.drops, info.dropsOK
}

// busyPollSupported reports whether Config.BusyPoll is honoured here.
const busyPollSupported = true

// pollReadable reports whether the socket fd has something to read (or an
// error to report) now, without waiting: poll(2) with a zero timeout. It
// does not allocate.
func pollReadable(fd uintptr) bool {
	fds := [1]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds[:], 0)
	return err == nil && n > 0
}
