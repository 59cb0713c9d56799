//go:build !linux

package udpio

import (
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
)

// mmsgReader is Linux only; elsewhere x/net's ReadBatch reads.
type mmsgReader struct{ srcs []netip.AddrPort }

func newMmsgReader(syscall.RawConn, []ipv4.Message) *mmsgReader { return nil }

func (r *mmsgReader) read([]ipv4.Message) (int, error) { panic("udpio: no recvmmsg reader here") }
