//go:build !linux

package udpio

import (
	"net"
	"runtime"
	"syscall"
)

// batchSupported reports whether x/net's ReadBatch/WriteBatch work here.
// Elsewhere than Linux they move one message per call; on Windows they are
// not implemented at all.
const batchSupported = runtime.GOOS != "windows"

// oobSize is 0: no control messages are read outside Linux.
const oobSize = 0

// setBufferSizes requests SO_RCVBUF and SO_SNDBUF; there is no portable way
// past the system's caps.
func setBufferSizes(uc *net.UDPConn, read, write int) error {
	if err := uc.SetReadBuffer(read); err != nil {
		return err
	}
	return uc.SetWriteBuffer(write)
}

// grantedBufferSizes cannot be answered portably: 0, 0.
func grantedBufferSizes(syscall.RawConn) (read, write int) { return 0, 0 }

// enableDropCounter: no kernel drop counter outside Linux.
func enableDropCounter(syscall.RawConn) bool { return false }

// dropsFromOOB: no kernel drop counter outside Linux.
func dropsFromOOB([]byte) (drops uint32, ok bool) { return 0, false }
