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

// Message flags: not looked at outside Linux, where GRO is never on.
const (
	msgTrunc  = 0
	msgCtrunc = 0
)

// gsoCmsgSpace is 0: GSO is never on outside Linux.
const gsoCmsgSpace = 0

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

// probeOffload: UDP GSO and GRO are Linux features.
func probeOffload(syscall.RawConn, bool, bool) (gso, gro bool) { return false, false }

// gsoRefusal: GSO is never on, so nothing is its fault.
func gsoRefusal(error) bool { return false }

// gsoSizeRelated: see gsoRefusal.
func gsoSizeRelated(error) bool { return false }

// initSegmentCmsg: unused outside Linux.
func initSegmentCmsg([]byte) {}

// putSegmentSize: unused outside Linux.
func putSegmentSize([]byte, int) {}

// oobInfo is what Read uses from a message's control data: nothing
// outside Linux.
type oobInfo struct {
	drops   uint32
	dropsOK bool
	gsoSize int
}

// parseOOB: no control messages are read outside Linux.
func parseOOB([]byte) oobInfo { return oobInfo{} }

// dropsFromOOB: no kernel drop counter outside Linux.
func dropsFromOOB([]byte) (drops uint32, ok bool) { return 0, false }

// busyPollSupported: Config.BusyPoll is honoured on Linux only; elsewhere
// Read blocks at once.
const busyPollSupported = false

// pollReadable is never called outside Linux.
func pollReadable(uintptr) bool { return false }
