//go:build !linux

package udpio

import (
	"errors"
	"net"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// directSupported: elsewhere than Linux the Conn keeps its net.UDPConn.
const directSupported = false

// direct is Linux only (see direct_linux.go); these are never called.
type direct struct{}

var errNoDirect = errors.New("udpio: no direct socket here")

func newDirect(*net.UDPConn, int, int, *atomic.Int64) (*direct, error) { return nil, errNoDirect }

func (*direct) read(*mmsgReader, []ipv4.Message) (int, error) { return 0, errNoDirect }
func (*direct) ReadBatch([]ipv4.Message, int) (int, error)    { return 0, errNoDirect }
func (*direct) WriteBatch([]ipv4.Message, int) (int, error)   { return 0, errNoDirect }
func (*direct) wakeReader() error                             { return errNoDirect }
func (*direct) sendTo([]byte, *net.UDPAddr) error             { return errNoDirect }
func (*direct) bufferSizes() (int, int)                       { return 0, 0 }
func (*direct) isV6() bool                                    { return false }
func (*direct) withUDPConn(func(*net.UDPConn) error) error    { return errNoDirect }
func (*direct) close() error                                  { return errNoDirect }
