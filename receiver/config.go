package receiver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/fec"
	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/reliability"
)

// Mode is a delivery discipline; see Config.Mode.
type Mode = reliability.Mode

// Delivery modes.
const (
	ModeOrdered   = reliability.ModeOrdered
	ModeUnordered = reliability.ModeUnordered
	ModeLatest    = reliability.ModeLatest
)

// ParseMode returns the mode named "ordered", "unordered" or "latest".
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{ModeOrdered, ModeUnordered, ModeLatest} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown delivery mode %q (want ordered, unordered or latest)", s)
}

// Config configures a Receiver. The zero value of every field is its
// default; only Listen is required.
type Config struct {
	// Listen is the local address, "host:port" (":0" picks a port). A
	// multicast group ("239.1.2.3:9000", "[ff15::1]:9000") makes the
	// receiver join the group (see Interface and Source) on a socket that
	// other receivers on this host may share, and send its feedback
	// unicast from a socket of its own. Multicast with a key is not
	// supported yet.
	Listen string
	// Subscribe, "host:port", subscribes this receiver to a sender that
	// takes subscribers (sender.Config.Listen; `telewire send --listen`),
	// from the receiver's own socket: Listen may then be left empty
	// (":0" of the sender's family). The receiver proves its address by
	// echoing the sender's token, renews the subscription every
	// SubscribeRenew, and leaves with a GOODBYE when it closes; a
	// GOODBYE from the sender ends it (Recv returns a
	// *SubscriptionEndedError). With a key (KeyFile, Key) the echo and
	// the GOODBYE carry a MAC under the pre-shared key, the sender then
	// makes a handshake with this receiver as with any, and, once it is
	// complete, only a sealed GOODBYE ends the subscription. Not with a
	// multicast Listen.
	Subscribe string
	// Interface names the interface a multicast Listen joins the group on
	// ("lo", "eth0"); empty takes the zone of an IPv6 group
	// ("[ff02::1%eth0]:9000") and without one lets the kernel choose.
	// Unused for unicast.
	Interface string
	// Source, with a multicast Listen, makes the join source-specific
	// (SSM): only the sender at this IP address is heard. Empty: any
	// source. The kernel must support it.
	Source string
	// NACKGroupSize is the number of receivers in the group the NACK
	// back-off assumes: with more than one, each request is delayed by a
	// random wait (reliability.GroupBackoff over a window of
	// NACKBackoffRTTs round trips, at most half of Latency) and cancelled
	// if the retransmission another receiver asked for arrives first.
	// Default: 1 (ask at once) for a unicast Listen; for a group (a
	// multicast Listen, or Group), the size the sender advertises in its
	// HEARTBEATs (packet.FlagGroup), DefaultGroupSize until it does. A
	// value set here overrides the advertised one.
	NACKGroupSize int
	// JoinHistory, for a receiver of a multicast group (see Group), is how
	// many sequences (DATA datagrams: a message each, or several packed)
	// sent before the first one this receiver hears it asks the sender
	// for, unicast, when it joins a running stream: those still in the
	// sender's retransmit buffer come back to it alone and are delivered
	// before the live ones (in order, with ModeOrdered). At most
	// packet.MaxJoinHistory. Default 0: start at the live edge.
	JoinHistory int
	// Group marks a receiver of a multicast group whatever Listen says:
	// for a Core fed a group's datagrams by other means (tools/sim). A
	// multicast Listen sets it.
	Group bool
	// NACKBackoffRTTs is the back-off window in round trips. Default 10.
	NACKBackoffRTTs float64
	// Rand is the randomness of the NACK back-off; default a PCG seeded
	// from crypto/rand. Simulations set it for runs that replay.
	Rand rand.Source

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
	// MaxStateBytes caps the bytes of all session and stream state
	// together: loss tracking, reorder rings, held messages, delay
	// histograms, FEC decoders. State starts small and grows with use,
	// each growth charged here; at the cap new sessions and streams are
	// refused (Stats.BudgetRefused) and growth is refused
	// (Stats.BudgetDenied: a message not held, the oldest gaps given up, a
	// stream without FEC). Senders not yet validated (plain mode: they
	// have not answered a challenge) share a quarter of it. Default
	// 64 MiB; at least 1 MiB. See "Unauthenticated peers" in the package
	// documentation.
	MaxStateBytes int
	// Window is the number of sequence numbers tracked per stream for loss
	// and duplicate detection (a power of two). Default 1<<15.
	Window int

	// Mode is the delivery discipline: ModeOrdered (the default) delivers
	// in sequence order, holding a message for missing earlier ones until
	// its deadline; ModeUnordered delivers each message on arrival;
	// ModeLatest delivers a message only if it is newer than the last one
	// delivered on its stream, and never waits for or requests data that
	// newer data has superseded.
	Mode Mode
	// Latency is the latency budget of ordered delivery: a message is due
	// at its send time plus Latency, mapped onto the receiver's clock
	// through the smallest one-way delay seen. A gap still open when a
	// later message is due is skipped and counted. Default 200 ms.
	Latency time.Duration
	// ReorderCapacity bounds, per stream, the messages ordered delivery
	// holds while waiting for gaps; it should cover the messages that
	// arrive within Latency. It is rounded down to a power of two (the
	// buffer is a ring). Default 8192.
	ReorderCapacity int
	// MaxMissing bounds, per stream, the missing sequences remembered for
	// NACKing; past it the oldest are given up (StreamStats.MissingOverflow).
	// Default 8192, at most reliability.MaxMaxMissing.
	MaxMissing int
	// FECMaxBlocks bounds, per stream, the FEC blocks the decoder tracks at
	// once; past it incomplete blocks are evicted
	// (StreamStats.FECBlocksEvicted). Default fec.DefaultMaxBlocks (64), at
	// most fec.MaxBlocks.
	FECMaxBlocks int
	// DisableNACK turns off retransmission requests. Default false: gaps
	// are NACKed once a reorder tolerance has passed (adaptive from the
	// reordering and jitter observed, at least 250 µs), all gaps at once,
	// retried with RTT-based backoff until the data arrives, the sender
	// says it is unavailable, or delivery no longer wants it.
	DisableNACK bool

	// DeliverGaps makes Recv return, besides messages, a gap marker for
	// each range of sequences ordered delivery passes over for good
	// (Message.Gap says why: the deadline, the reorder buffer, a resync, a
	// late start, a full queue), in order with the messages, so that a
	// reader sees loss where it happened. Only ModeOrdered skips; the other
	// modes never produce markers. A marker takes a queue slot and no
	// payload bytes. Default false: Recv returns messages only.
	DeliverGaps bool

	// MaxMessage is the largest message taken, in bytes: a sender splits
	// larger messages than its datagrams carry into fragments, and the
	// receiver reassembles them; fragments of a message announced larger
	// are refused (StreamStats.FragmentsRefused). Default 1 MiB (or
	// QueueBytes, if smaller), at most packet.MaxMessageLimit (16 MiB) and
	// at most QueueBytes.
	MaxMessage int
	// MaxReassemblyBytes caps, per stream, the bytes of messages being
	// reassembled from fragments; MaxSessionReassemblyBytes caps them per
	// session. A message whose first fragment would pass either drops the
	// oldest incomplete message first (StreamStats.ReassemblyDropped).
	// Both are charged to MaxStateBytes too. Defaults 4 and 8 times
	// MaxMessage; at least MaxMessage.
	MaxReassemblyBytes        int
	MaxSessionReassemblyBytes int

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
	// BusyPoll, when positive, makes the socket's reader spin instead of
	// parking when it runs out of datagrams: it polls the socket without
	// blocking, yielding to other goroutines between polls, for up to
	// BusyPoll before it blocks again. That saves a goroutine wake-up per
	// datagram that arrives within BusyPoll of the previous one, and costs
	// a CPU core while traffic keeps coming. Default 0: off, no cost. At
	// most 1 s. Linux only (elsewhere the reader blocks as usual).
	// telewire bench measures it as the tw-spin transport.
	BusyPoll time.Duration

	// KeyFile names a file holding the 32-byte pre-shared key that turns
	// encryption on (format: internal/seal.LoadKeyFile; `telewire keygen`
	// writes one). Each sender then makes an X25519 handshake with the
	// receiver, authenticated by the key, and every packet is sealed with
	// AES-256-GCM under that handshake's traffic keys; anything else is
	// dropped and counted before it touches any state, and no session
	// exists before a packet under the new keys arrives. The sender must
	// use the same key. Empty with Key nil: no encryption. See
	// docs/security.md.
	KeyFile string
	// Key is the pre-shared key itself (32 bytes), for programs that keep
	// it elsewhere than in a file. Set KeyFile or Key, not both.
	Key []byte

	// Clock supplies monotonic time; default the real monotonic clock.
	Clock clock.Clock
	// Logger receives rare events (never one per packet above debug). The
	// zero value discards.
	Logger zerolog.Logger

	// observeGroup: set by withDefaults for a group receiver whose
	// NACKGroupSize was left to the sender's advertisement.
	observeGroup bool
}

// DefaultMaxMessage is Config.MaxMessage's default: 1 MiB.
const DefaultMaxMessage = 1 << 20

// defaultMaxStateBytes is Config.MaxStateBytes's default.
const defaultMaxStateBytes = 64 << 20

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("receiver: invalid config")

func (c Config) withDefaults() (Config, error) {
	if l, err := netip.ParseAddrPort(c.Listen); c.Subscribe != "" && err == nil && l.Addr().IsMulticast() {
		return c, fmt.Errorf("%w: Subscribe with a multicast Listen", ErrConfig)
	}
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
	def(&c.MaxStateBytes, defaultMaxStateBytes)
	def(&c.Window, 1<<15)
	def(&c.QueueMessages, 1<<16)
	def(&c.ReorderCapacity, 8192)
	def(&c.MaxMissing, reliability.DefaultMaxMissing)
	def(&c.FECMaxBlocks, fec.DefaultMaxBlocks)
	if c.Latency == 0 {
		c.Latency = 200 * time.Millisecond
	}
	def(&c.QueueBytes, 32<<20)
	def(&c.MaxMessage, min(DefaultMaxMessage, max(c.QueueBytes, 1)))
	def(&c.MaxReassemblyBytes, 4*c.MaxMessage)
	def(&c.MaxSessionReassemblyBytes, 8*c.MaxMessage)
	if c.Clock == nil {
		c.Clock = clock.NewMono()
	}
	if a, err := netip.ParseAddrPort(c.Listen); err == nil && a.Addr().IsMulticast() {
		c.Group = true
	}
	if c.NACKGroupSize == 0 {
		c.NACKGroupSize = 1
		if c.Group {
			c.NACKGroupSize = DefaultGroupSize
			c.observeGroup = true
		}
	}
	if c.NACKBackoffRTTs == 0 {
		c.NACKBackoffRTTs = defaultBackoffRTTs
	}
	switch {
	case c.NACKGroupSize < 1 || c.NACKGroupSize > 1<<20:
		return c, fmt.Errorf("%w: NACKGroupSize %d outside 1..2^20", ErrConfig, c.NACKGroupSize)
	case !(c.NACKBackoffRTTs > 0 && c.NACKBackoffRTTs <= 1000):
		return c, fmt.Errorf("%w: NACKBackoffRTTs %v outside (0, 1000]", ErrConfig, c.NACKBackoffRTTs)
	case c.JoinHistory < 0 || c.JoinHistory > packet.MaxJoinHistory:
		return c, fmt.Errorf("%w: JoinHistory %d outside 0..%d", ErrConfig, c.JoinHistory, packet.MaxJoinHistory)
	case c.JoinHistory > 0 && !c.Group:
		return c, fmt.Errorf("%w: JoinHistory needs a multicast group (Listen or Group)", ErrConfig)
	case c.ReportInterval < time.Millisecond:
		return c, fmt.Errorf("%w: ReportInterval %v below 1ms", ErrConfig, c.ReportInterval)
	case c.SessionTimeout < c.ReportInterval:
		return c, fmt.Errorf("%w: SessionTimeout %v shorter than ReportInterval", ErrConfig, c.SessionTimeout)
	case c.MaxSessions < 1, c.MaxStreams < 1, c.QueueMessages < 1:
		return c, fmt.Errorf("%w: MaxSessions, MaxStreams and QueueMessages must be positive", ErrConfig)
	case c.Window < 64 || c.Window&(c.Window-1) != 0:
		return c, fmt.Errorf("%w: Window %d is not a power of two >= 64", ErrConfig, c.Window)
	case c.Mode > ModeLatest:
		return c, fmt.Errorf("%w: unknown Mode %d", ErrConfig, c.Mode)
	case c.Latency < time.Millisecond:
		return c, fmt.Errorf("%w: Latency %v below 1ms", ErrConfig, c.Latency)
	case c.MaxMissing < 1 || c.MaxMissing > reliability.MaxMaxMissing:
		return c, fmt.Errorf("%w: MaxMissing %d outside 1..%d", ErrConfig, c.MaxMissing, reliability.MaxMaxMissing)
	case c.FECMaxBlocks < 1 || c.FECMaxBlocks > fec.MaxBlocks:
		return c, fmt.Errorf("%w: FECMaxBlocks %d outside 1..%d", ErrConfig, c.FECMaxBlocks, fec.MaxBlocks)
	case c.ReorderCapacity < 1 || c.ReorderCapacity > reliability.MaxDeliveryCapacity:
		return c, fmt.Errorf("%w: ReorderCapacity %d outside 1..%d", ErrConfig, c.ReorderCapacity, reliability.MaxDeliveryCapacity)
	case c.BusyPoll < 0 || c.BusyPoll > time.Second: // udpio.MaxBusyPoll
		return c, fmt.Errorf("%w: BusyPoll %v outside 0..1s", ErrConfig, c.BusyPoll)
	case c.MaxStateBytes < 1<<20:
		return c, fmt.Errorf("%w: MaxStateBytes %d below 1 MiB", ErrConfig, c.MaxStateBytes)
	case c.MaxMessage < 1 || c.MaxMessage > packet.MaxMessageLimit:
		return c, fmt.Errorf("%w: MaxMessage %d outside 1..%d", ErrConfig, c.MaxMessage, packet.MaxMessageLimit)
	case c.MaxReassemblyBytes < c.MaxMessage || c.MaxSessionReassemblyBytes < c.MaxMessage:
		return c, fmt.Errorf("%w: reassembly caps %d (stream), %d (session) below MaxMessage %d", ErrConfig,
			c.MaxReassemblyBytes, c.MaxSessionReassemblyBytes, c.MaxMessage)
	case c.QueueBytes < packet.MaxPayload || c.QueueBytes < c.MaxMessage:
		return c, fmt.Errorf("%w: QueueBytes %d smaller than one maximal message", ErrConfig, c.QueueBytes)
	}
	return c, nil
}
