package receiver

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/packet"
)

// Config configures a Receiver. The zero value of every field is its
// default; only Listen is required.
type Config struct {
	// Listen is the local address, "host:port" (":0" picks a port).
	Listen string

	// ReportInterval is how often a REPORT goes back to each sender for
	// each stream. Default 100 ms.
	ReportInterval time.Duration
	// SessionTimeout is how long a sender may stay silent (no DATA and no
	// HEARTBEAT) before its state is dropped. Default 10 s.
	SessionTimeout time.Duration
	// MaxSessions bounds the senders tracked at once; DATA from further
	// senders is dropped and counted. Default 64.
	MaxSessions int
	// MaxStreams bounds the streams per session. Default 64.
	MaxStreams int
	// Window is the number of sequence numbers tracked per stream for loss
	// and duplicate detection (a power of two). Default 1<<15.
	Window int

	// QueueMessages bounds the messages waiting for Recv. Default 65536.
	QueueMessages int
	// QueueBytes bounds the payload bytes waiting for Recv. Default 32 MiB.
	// When either bound is hit, arriving messages are dropped and counted
	// (QueueOverflow): a reader that falls behind loses the newest data
	// rather than stalling the socket and the feedback loop.
	QueueBytes int

	// BatchSize is the datagrams per recvmmsg/sendmmsg; 0 = the udpio default.
	BatchSize int
	// SocketBufferBytes is the SO_RCVBUF/SO_SNDBUF requested; 0 = udpio default.
	SocketBufferBytes int

	// Clock supplies monotonic time; default the real monotonic clock.
	Clock clock.Clock
	// Logger receives rare events (never one per packet above debug). The
	// zero value discards.
	Logger zerolog.Logger
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("receiver: invalid config")

func (c Config) withDefaults() (Config, error) {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.ReportInterval == 0 {
		c.ReportInterval = 100 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	def(&c.MaxSessions, 64)
	def(&c.MaxStreams, 64)
	def(&c.Window, 1<<15)
	def(&c.QueueMessages, 1<<16)
	def(&c.QueueBytes, 32<<20)
	if c.Clock == nil {
		c.Clock = clock.NewMono()
	}
	switch {
	case c.ReportInterval < time.Millisecond:
		return c, fmt.Errorf("%w: ReportInterval %v below 1ms", ErrConfig, c.ReportInterval)
	case c.SessionTimeout < c.ReportInterval:
		return c, fmt.Errorf("%w: SessionTimeout %v shorter than ReportInterval", ErrConfig, c.SessionTimeout)
	case c.MaxSessions < 1, c.MaxStreams < 1, c.QueueMessages < 1:
		return c, fmt.Errorf("%w: MaxSessions, MaxStreams and QueueMessages must be positive", ErrConfig)
	case c.Window < 64 || c.Window&(c.Window-1) != 0:
		return c, fmt.Errorf("%w: Window %d is not a power of two >= 64", ErrConfig, c.Window)
	case c.QueueBytes < packet.MaxPayload:
		return c, fmt.Errorf("%w: QueueBytes %d smaller than one maximal payload", ErrConfig, c.QueueBytes)
	}
	return c, nil
}
