package sender

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/packet"
)

// Config configures a Sender. The zero value of every field is its default;
// only To is required.
type Config struct {
	// To is the receiver's address, "host:port". Required.
	To string
	// Local is the local address to bind, default ":0" of To's family.
	Local string

	// Stream is the stream id Send uses. Default 0.
	Stream uint32
	// Session is the session id; default: random at start (crypto/rand), so
	// that a receiver recognises a restarted sender. Set it only in tests.
	Session uint64
	// FirstSeq is the first sequence number of each stream. Default 0.
	FirstSeq uint64

	// QueuePackets bounds the datagrams queued between Send and the socket
	// (per half of the double buffer). Default 1024.
	QueuePackets int
	// QueueBytes bounds the bytes so queued (per half). Default 4 MiB.
	QueueBytes int
	// DropWhenFull selects the back-pressure policy when the queue is full:
	// false (default) makes Send block until the writer frees room; true
	// makes Send return ErrQueueFull at once and count the drop.
	DropWhenFull bool

	// HeartbeatInterval is how long a stream may be idle before a HEARTBEAT
	// tells the receiver the highest sequence sent; while it stays idle the
	// interval doubles up to MaxHeartbeatInterval. Default 20 ms.
	HeartbeatInterval time.Duration
	// MaxHeartbeatInterval caps the idle heartbeat backoff. Default 1 s.
	MaxHeartbeatInterval time.Duration
	// MaxStreams bounds the number of streams. Default 256.
	MaxStreams int

	// DisableRetransmit turns retransmission off: no packets are kept and
	// every NACK is answered "unavailable", so receivers stop asking at
	// once. Default false: NACKs are answered from the retransmit buffer.
	DisableRetransmit bool
	// RetransmitPackets bounds the packets kept per stream for
	// retransmission (rounded up to a power of two). Default 16384.
	RetransmitPackets int
	// RetransmitBytes bounds the bytes kept per stream for retransmission,
	// allocated when the stream starts. Default 8 MiB.
	RetransmitBytes int
	// RetransmitMaxAge bounds how long a packet is kept for
	// retransmission; a NACK for an older one is answered "unavailable".
	// Default 1 s, which covers a 200 ms latency budget with room for
	// several round trips.
	RetransmitMaxAge time.Duration
	// RetransmitShare caps retransmitted bytes per second at this percent
	// of the stream's own send rate (with a floor of 256 KiB/s so a slow
	// stream can still repair); negative means no cap. Default 50.
	RetransmitShare int

	// BatchSize is the datagrams per sendmmsg/recvmmsg; 0 = the udpio default.
	BatchSize int
	// SocketBufferBytes is the SO_SNDBUF/SO_RCVBUF requested; 0 = udpio default.
	SocketBufferBytes int

	// Clock supplies monotonic time; default the real monotonic clock.
	Clock clock.Clock
	// Logger receives rare events (never one per packet above debug). The
	// zero value discards.
	Logger zerolog.Logger
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("sender: invalid config")

func (c Config) withDefaults() (Config, error) {
	if c.QueuePackets == 0 {
		c.QueuePackets = 1024
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 4 << 20
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 20 * time.Millisecond
	}
	if c.MaxHeartbeatInterval == 0 {
		c.MaxHeartbeatInterval = time.Second
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = 256
	}
	if c.RetransmitPackets == 0 {
		c.RetransmitPackets = 16384
	}
	if c.RetransmitBytes == 0 {
		c.RetransmitBytes = 8 << 20
	}
	if c.RetransmitMaxAge == 0 {
		c.RetransmitMaxAge = time.Second
	}
	if c.Clock == nil {
		c.Clock = clock.NewMono()
	}
	switch {
	case c.QueuePackets < 1:
		return c, fmt.Errorf("%w: QueuePackets %d < 1", ErrConfig, c.QueuePackets)
	case c.QueueBytes < packet.MaxPacketLen:
		return c, fmt.Errorf("%w: QueueBytes %d < one maximal packet (%d)", ErrConfig, c.QueueBytes, packet.MaxPacketLen)
	case c.HeartbeatInterval < 0 || c.MaxHeartbeatInterval < c.HeartbeatInterval:
		return c, fmt.Errorf("%w: heartbeat interval %v, max %v", ErrConfig, c.HeartbeatInterval, c.MaxHeartbeatInterval)
	case c.MaxStreams < 1:
		return c, fmt.Errorf("%w: MaxStreams %d < 1", ErrConfig, c.MaxStreams)
	case c.RetransmitPackets < 1 || c.RetransmitBytes < packet.MaxPacketLen || c.RetransmitMaxAge < 0:
		return c, fmt.Errorf("%w: retransmit buffer of %d packets, %d bytes, %v", ErrConfig,
			c.RetransmitPackets, c.RetransmitBytes, c.RetransmitMaxAge)
	}
	return c, nil
}
