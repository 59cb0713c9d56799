package sender

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/fec"
	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// Config configures a Sender. The zero value of every field is its default;
// only To (or Listen) is required.
type Config struct {
	// To is the receiver's address, "host:port", or a comma-separated
	// list of them ("10.0.0.1:9000,10.0.0.2:9000": unicast fan-out, each
	// DATA, PARITY and HEARTBEAT sent once to each, repairs only to the
	// receiver that asked; each address checked as below, a duplicate
	// refused with ErrDuplicateDestination), or a multicast group
	// ("239.1.2.3:9000", "[ff15::1]:9000"): every DATA, PARITY and
	// retransmission is then sent once to the group, and the receivers'
	// feedback comes back unicast (see MulticastInterface,
	// MulticastTTL, NoMulticastLoopback). Required. New refuses (with a
	// [*DestinationError]) port 0, the unspecified address, a broadcast
	// address unless Broadcast is set, and a multicast group with a key
	// (not supported yet): see [CheckDestination].
	To string
	// MulticastInterface names the interface multicast goes out of ("lo",
	// "eth0"); empty takes the zone of an IPv6 To ("[ff02::1%eth0]:9000")
	// and without one lets the kernel choose by its routing table. Only
	// with a multicast To.
	MulticastInterface string
	// MulticastTTL is the IPv4 TTL / IPv6 hop limit of multicast
	// datagrams, 1..255. Default 1: the local link only.
	MulticastTTL int
	// NoMulticastLoopback stops the kernel from delivering the group's
	// datagrams to receivers on this host. Default false: same-host
	// receivers work.
	NoMulticastLoopback bool
	// Broadcast allows To to be a broadcast address. Default false: a
	// broadcast destination is refused, since it reaches every host on
	// the link and is more often a typo than a plan. The socket needs
	// SO_BROADCAST for it, which Go's net package sets on every UDP
	// socket it opens (Unix and Windows alike), so there is nothing more
	// to set.
	Broadcast bool
	// Local is the local address to bind, default ":0" of To's family.
	Local string
	// Listen, "host:port", makes the sender take subscribers: it binds
	// there (instead of Local; set one or the other) and streams to each
	// receiver that subscribes (recv --subscribe) once it has proved it
	// receives at its address (a token echo; see subscribers.go), until it
	// says goodbye or goes silent for ReceiverTimeout. Combines with To:
	// its addresses are destinations from the start and never expire.
	// Subscribers count against MaxReceivers. With a key, a subscriber
	// must also prove it holds the key (its echo carries a MAC under it,
	// packet.FlagAuth) and then gets a handshake and traffic keys of its
	// own, like every destination of a sealed fan-out sender. Not with a
	// multicast To.
	Listen string
	// JoinRate bounds the TOKENs a listening sender issues per second to
	// addresses not subscribed yet (a burst of as many is allowed;
	// subscribers' renewals are not counted); SUBSCRIBEs past it are not
	// answered and are counted (Subscribers.JoinsLimited).
	// Default DefaultJoinRate (200).
	JoinRate int
	// SlowReceiver is the policy for a subscriber that cannot keep up.
	// Default SlowLose: it loses what it cannot keep up with (the sender
	// counts, per receiver, the sequences it asked for too late,
	// ReceiverStats.Unavailable) and never holds back the others.
	// SlowDisconnect drops a subscriber (not a To address) whose
	// unrepairable losses go on for SlowReceiverTimeout, with a GOODBYE
	// that tells it why. See docs/fanout.md, "Slow receivers".
	SlowReceiver SlowPolicy
	// SlowReceiverTimeout is how long a subscriber's unrepairable losses
	// (none more than a second apart) must go on before SlowDisconnect
	// drops it. Default DefaultSlowReceiverTimeout (2 s).
	SlowReceiverTimeout time.Duration

	// Stream is the stream id Send uses. Default 0.
	Stream uint32
	// Session is the session id; default: random at start (crypto/rand), so
	// that a receiver recognises a restarted sender. Set it only for two
	// senders of one feed (the A/B pattern: the same messages on two paths,
	// which NATS bridges de-duplicate by session, stream and sequence), or
	// in tests.
	Session uint64
	// FirstSeq is the first sequence number of each stream. Default 0.
	FirstSeq uint64

	// MTU is the largest IP packet the sender emits, in bytes: every DATA
	// datagram, headers of IP (taken as IPv6's 40 bytes, whatever the
	// family) and UDP (8) included, fits in it, so that IP never
	// fragments one. Larger messages are split into fragments of their
	// own sequence numbers; smaller ones queued together are packed into
	// one datagram. Default 1280 (the IPv6 minimum, QUIC's choice), or
	// DefaultLoopbackMTU when To is a loopback address. Between MinMTU
	// and MaxMTU.
	MTU int
	// MaxMessage is the largest message Send takes, in bytes. Default
	// DefaultMaxMessage (1 MiB), at most packet.MaxMessageLimit (16 MiB).
	// The receiver's MaxMessage must be at least as large.
	MaxMessage int

	// DisablePacking sends every message that fits in a datagram in one
	// of its own. Default false: messages Send queues while the writer is
	// busy with the previous batch are packed into one DATA datagram, up
	// to the MTU, which multiplies the message rate of small messages;
	// an idle sender's message is written at once, alone, so packing
	// never adds latency.
	DisablePacking bool

	// QueuePackets bounds the datagrams queued between Send and the socket
	// (per half of the double buffer). Default 1024, or more if that does
	// not hold the fragments of a MaxMessage message and their parity. Send queues a
	// message's fragments all at once or not at all, so a message whose
	// fragments a set bound cannot hold is refused (ErrTooLarge).
	QueuePackets int
	// QueueBytes bounds the bytes so queued (per half). Default 4 MiB, or
	// more if that does not hold the fragments of a MaxMessage message
	// and their parity.
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

	// MaxReceivers bounds the receivers the sender keeps a view of
	// (Stats.Receivers): address, RTT, latest reports. Feedback that
	// proves it comes from a receiver of the data creates a view; past
	// the bound a new receiver gets none (its NACKs are still answered,
	// but its REPORTs steer neither pacing nor FEC) and Group.Refused
	// counts it. Default 256.
	MaxReceivers int
	// ReceiverTimeout is how long a receiver may go without feedback
	// before its view is dropped (Group.Expired counts it). Default 5 s.
	ReceiverTimeout time.Duration
	// FECLossPercentile is the percentile of the receivers' reported
	// loss that adaptive FEC and retransmission redundancy follow, in
	// (0, 100]: 90 (the default) protects nine receivers in ten by parity;
	// 100 follows the worst. With one receiver every value is the same.
	FECLossPercentile float64

	// DisableRetransmit turns retransmission off: no packets are kept and
	// every NACK is answered "unavailable", so receivers stop asking at
	// once. Default false: NACKs are answered from the retransmit buffer.
	DisableRetransmit bool
	// RetransmitPackets bounds the packets kept per stream for
	// retransmission (rounded up to a power of two). Default 16384, or
	// four MaxMessage messages' fragments if more.
	RetransmitPackets int
	// RetransmitBytes bounds the bytes kept per stream for retransmission,
	// allocated when the stream starts. Default 8 MiB, or four
	// MaxMessage messages' fragments if more.
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

	// FEC configures forward error correction; the zero value is FECAuto.
	FEC FECConfig

	// DisableCongestionControl turns the pacer off: Send then queues as
	// fast as it is called and only the queue bounds it. By default the
	// sender paces its datagrams at a rate it learns from the receiver's
	// REPORTs (RTT above the path's minimum means a queue is building;
	// random loss is not read as congestion; see reliability.Pacer), and
	// Send blocks while the rate is spent (or returns ErrQueueFull with
	// DropWhenFull).
	DisableCongestionControl bool
	// MaxRate caps the pacing rate in bytes per second of datagrams on the
	// wire (headers, parity and retransmissions included); 0 for no cap.
	MaxRate float64

	// GSO sends runs of same-sized datagrams to the receiver as one UDP
	// GSO message (Linux UDP_SEGMENT, detected at run time, with a
	// fallback): several times the packets per second of sendmmsg. Off by
	// default: the kernel keeps such a run as one packet until it is
	// segmented, so a drop on a virtual path (nftables or a qdisc on veth
	// or loopback) loses the whole run at once, turning random loss into
	// bursts of up to 64. Turn it on where segmentation happens in the
	// NIC or the driver, or where the path does not drop.
	GSO bool

	// BatchSize is the datagrams per sendmmsg/recvmmsg; 0 = the udpio default.
	BatchSize int
	// SocketBufferBytes is the SO_SNDBUF/SO_RCVBUF requested; 0 = udpio default.
	SocketBufferBytes int

	// KeyFile names a file holding the 32-byte pre-shared key that turns
	// encryption on (format: internal/seal.LoadKeyFile; `telewire keygen`
	// writes one). The sender then makes an X25519 handshake with the
	// receiver (with several destinations, with each: keys of its own),
	// authenticated by the key, before anything else (packets
	// sent meanwhile are held, bounded, for one round trip); every packet
	// is sealed with AES-256-GCM under the handshake's traffic keys, and
	// anything not sealed under them is dropped and counted before it
	// touches any state. The receiver must use the same key. Empty with
	// Key nil: no encryption. See docs/security.md.
	KeyFile string
	// Key is the pre-shared key itself (32 bytes), for programs that keep
	// it elsewhere than in a file. Set KeyFile or Key, not both.
	Key []byte
	// RekeyInterval is how long one handshake's traffic keys are used
	// before a new handshake replaces them (with a key only); default
	// RekeyAfter (2 minutes). RekeyPackets likewise bounds the packets
	// sealed under one key; default RekeyAfterPackets (2^32). Packets in
	// flight across a rekey are not lost: the old keys keep working for a
	// few seconds.
	RekeyInterval time.Duration
	RekeyPackets  uint64

	// Clock supplies monotonic time; default the real monotonic clock.
	Clock clock.Clock
	// Logger receives rare events (never one per packet above debug). The
	// zero value discards.
	Logger zerolog.Logger
}

// Message and datagram sizes.
const (
	// DefaultMTU is Config.MTU's default on paths other than loopback.
	DefaultMTU = 1280
	// DefaultLoopbackMTU is Config.MTU's default when To is a loopback
	// address: loopback carries 64 KiB packets, but a DATA payload of
	// this size (8 104 bytes) stays within the FEC decoder's default
	// protected payload (fec.DefaultMaxPayload, 8 KiB), so that FEC
	// repairs every datagram.
	DefaultLoopbackMTU = 8192
	// MinMTU and MaxMTU bound Config.MTU.
	MinMTU = 576
	MaxMTU = 65535
	// IPUDPOverhead is what the sender subtracts from the MTU for the IP
	// and UDP headers: IPv6 (40) and UDP (8), on IPv4 paths too.
	IPUDPOverhead = 48
	// DefaultMaxMessage is Config.MaxMessage's default: 1 MiB.
	DefaultMaxMessage = 1 << 20
)

// MaxPayload returns the largest message a sender with this configuration
// takes: MaxMessage (default 1 MiB).
func (c Config) MaxPayload() int {
	if c.MaxMessage == 0 {
		return DefaultMaxMessage
	}
	return c.MaxMessage
}

// sealOverhead returns what sealing adds to a datagram.
func (c Config) sealOverhead() int {
	if c.KeyFile != "" || c.Key != nil {
		return seal.ToReceiver.Overhead()
	}
	return 0
}

// DataRoom returns the DATA payload (message map included) one datagram
// to remote carries under this configuration: the MTU less the IP, UDP,
// telewire and DATA headers and, with a key, the sealing overhead.
func (c Config) DataRoom(remoteLoopback bool) int {
	mtu := c.MTU
	if mtu == 0 {
		mtu = DefaultMTU
		if remoteLoopback {
			mtu = DefaultLoopbackMTU
		}
	}
	return min(mtu-IPUDPOverhead, packet.MaxPacketLen) - packet.HeaderLen - packet.DataHeaderLen - c.sealOverhead()
}

// fragmentsOf returns how many datagrams a message of n bytes takes, and
// their wire bytes in all, with DATA payloads of room bytes.
func (c Config) fragmentsOf(n, room int) (count, bytes int) {
	if packet.MessagesHeaderLen+packet.EntryLen(n, 0) <= room {
		return 1, packet.HeaderLen + packet.DataHeaderLen + packet.MessagesHeaderLen + packet.EntryLen(n, 0) + c.sealOverhead()
	}
	chunk := room - packet.FragmentHeaderLen
	count = (n + chunk - 1) / chunk
	return count, n + count*(packet.HeaderLen+packet.DataHeaderLen+packet.FragmentHeaderLen+c.sealOverhead())
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("sender: invalid config")

func (c Config) withDefaults() (Config, error) {
	if c.MaxMessage == 0 {
		c.MaxMessage = DefaultMaxMessage
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		return c, fmt.Errorf("%w: MTU %d outside %d..%d", ErrConfig, c.MTU, MinMTU, MaxMTU)
	}
	if c.MaxMessage < 0 || c.MaxMessage > packet.MaxMessageLimit {
		return c, fmt.Errorf("%w: MaxMessage %d outside 0..%d", ErrConfig, c.MaxMessage, packet.MaxMessageLimit)
	}
	// The queue must hold a largest message's fragments at once, and the
	// parity they make (as much again, at the most FEC overhead FECAuto
	// and the default K,M use): Send queues them all or none. The
	// smallest room (a path other than loopback) decides.
	frags, fragBytes := c.fragmentsOf(c.MaxMessage, c.DataRoom(false))
	if c.QueuePackets == 0 {
		c.QueuePackets = max(1024, 2*frags+64)
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = max(4<<20, 2*fragBytes+64<<10)
	}
	if c.RetransmitPackets == 0 {
		c.RetransmitPackets = max(16384, 4*frags)
	}
	if c.RetransmitBytes == 0 {
		c.RetransmitBytes = max(8<<20, 4*fragBytes)
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
	if c.RetransmitMaxAge == 0 {
		c.RetransmitMaxAge = time.Second
	}
	if c.RekeyInterval == 0 {
		c.RekeyInterval = RekeyAfter
	}
	if c.RekeyPackets == 0 {
		c.RekeyPackets = RekeyAfterPackets
	}
	if c.MaxReceivers == 0 {
		c.MaxReceivers = DefaultMaxReceivers
	}
	if c.ReceiverTimeout == 0 {
		c.ReceiverTimeout = DefaultReceiverTimeout
	}
	if c.FECLossPercentile == 0 {
		c.FECLossPercentile = DefaultFECLossPercentile
	}
	if c.JoinRate == 0 {
		c.JoinRate = DefaultJoinRate
	}
	if c.SlowReceiverTimeout == 0 {
		c.SlowReceiverTimeout = DefaultSlowReceiverTimeout
	}
	if c.Clock == nil {
		c.Clock = clock.NewMono()
	}
	switch {
	case c.RekeyInterval < 0:
		return c, fmt.Errorf("%w: RekeyInterval %v < 0", ErrConfig, c.RekeyInterval)
	case c.QueuePackets < 1:
		return c, fmt.Errorf("%w: QueuePackets %d < 1", ErrConfig, c.QueuePackets)
	case c.QueueBytes < packet.MaxPacketLen:
		return c, fmt.Errorf("%w: QueueBytes %d < one maximal packet (%d)", ErrConfig, c.QueueBytes, packet.MaxPacketLen)
	case c.HeartbeatInterval < 0 || c.MaxHeartbeatInterval < c.HeartbeatInterval:
		return c, fmt.Errorf("%w: heartbeat interval %v, max %v", ErrConfig, c.HeartbeatInterval, c.MaxHeartbeatInterval)
	case c.MaxStreams < 1:
		return c, fmt.Errorf("%w: MaxStreams %d < 1", ErrConfig, c.MaxStreams)
	case c.MaxReceivers < 1 || c.MaxReceivers > 1<<16:
		return c, fmt.Errorf("%w: MaxReceivers %d not in [1, 65536]", ErrConfig, c.MaxReceivers)
	case c.JoinRate < 0 || c.SlowReceiverTimeout < 0 || c.SlowReceiver > SlowDisconnect:
		return c, fmt.Errorf("%w: JoinRate %d, SlowReceiver %d, SlowReceiverTimeout %v", ErrConfig, c.JoinRate, c.SlowReceiver, c.SlowReceiverTimeout)
	case c.Local != "" && c.Listen != "":
		return c, fmt.Errorf("%w: set Local or Listen, not both", ErrConfig)
	case c.ReceiverTimeout < 0:
		return c, fmt.Errorf("%w: ReceiverTimeout %v < 0", ErrConfig, c.ReceiverTimeout)
	case !(c.FECLossPercentile > 0 && c.FECLossPercentile <= 100):
		return c, fmt.Errorf("%w: FECLossPercentile %v not in (0, 100]", ErrConfig, c.FECLossPercentile)
	case c.FEC.validate() != nil:
		return c, c.FEC.validate()
	case c.MaxRate < 0:
		return c, fmt.Errorf("%w: MaxRate %v < 0", ErrConfig, c.MaxRate)
	case c.KeyFile != "" && c.Key != nil:
		return c, fmt.Errorf("%w: set KeyFile or Key, not both", ErrConfig)
	case c.RetransmitPackets < 1 || c.RetransmitBytes < packet.MaxPacketLen || c.RetransmitMaxAge < 0:
		return c, fmt.Errorf("%w: retransmit buffer of %d packets, %d bytes, %v", ErrConfig,
			c.RetransmitPackets, c.RetransmitBytes, c.RetransmitMaxAge)
	}
	return c, nil
}

// FECMode selects how a sender protects its streams with Reed-Solomon
// parity.
type FECMode uint8

// FEC modes.
const (
	// FECAuto (the default) chooses K, M and the interleaving depth from
	// the loss rate and burst lengths the receiver reports, for a residual
	// loss of 0.1% with the least overhead, within FECConfig.MaxOverhead;
	// it sends no parity while no loss is reported. Protection rises at
	// the first report that shows more loss and falls slowly.
	FECAuto FECMode = iota
	// FECOff sends no parity: losses are repaired by retransmission only.
	FECOff
	// FECFixed always sends M parity packets per block of K.
	FECFixed
)

// FECConfig configures forward error correction. The zero value is FECAuto
// with the defaults below.
type FECConfig struct {
	Mode FECMode
	// K and M are the data and parity packets per block with FECFixed;
	// defaults 10 and 3. K+M <= 256.
	K, M int
	// Interleave spreads consecutive packets over this many blocks, so a
	// burst of up to Interleave·M consecutive losses is repairable, at the
	// cost of repair taking up to Interleave times longer. FECFixed only;
	// FECAuto chooses it (up to 8). Default 1.
	Interleave int
	// MaxDelay is the block time limit: a block not full this long after
	// its first packet is protected with the packets it has, so a slow
	// stream is not held waiting for a block to fill. Default 50 ms.
	MaxDelay time.Duration
	// MaxOverhead caps FECAuto's parity per data packet, M/K. Default 0.5.
	MaxOverhead float64
}

// ParseFEC parses the command-line form of an FEC setting: "auto", "off",
// or "K,M" (e.g. "10,3").
func ParseFEC(s string) (FECConfig, error) {
	switch s {
	case "auto":
		return FECConfig{Mode: FECAuto}, nil
	case "off":
		return FECConfig{Mode: FECOff}, nil
	}
	var k, m int
	if n, err := fmt.Sscanf(s, "%d,%d", &k, &m); err != nil || n != 2 || fmt.Sprintf("%d,%d", k, m) != s {
		return FECConfig{}, fmt.Errorf("FEC setting %q is not auto, off or K,M", s)
	}
	if k < 1 || m < 1 {
		return FECConfig{}, fmt.Errorf("%w: FEC K=%d M=%d (want K, M >= 1 and K+M <= 256)", ErrConfig, k, m)
	}
	cfg := FECConfig{Mode: FECFixed, K: k, M: m}
	if err := cfg.validate(); err != nil {
		return FECConfig{}, err
	}
	return cfg, nil
}

func (f FECConfig) withDefaults() FECConfig {
	if f.K == 0 {
		f.K = fec.DefaultK
	}
	if f.M == 0 {
		f.M = fec.DefaultM
	}
	if f.Interleave == 0 {
		f.Interleave = 1
	}
	if f.MaxDelay == 0 {
		f.MaxDelay = time.Duration(fec.DefaultMaxDelayNanos)
	}
	if f.MaxOverhead == 0 {
		f.MaxOverhead = 0.5
	}
	return f
}

func (f FECConfig) validate() error {
	f = f.withDefaults()
	switch {
	case f.Mode > FECFixed:
		return fmt.Errorf("%w: unknown FEC mode %d", ErrConfig, f.Mode)
	case f.K < 1 || f.M < 1 || f.K+f.M > 256:
		return fmt.Errorf("%w: FEC K=%d M=%d (want K, M >= 1 and K+M <= 256)", ErrConfig, f.K, f.M)
	case f.Interleave < 1 || f.Interleave > 255:
		return fmt.Errorf("%w: FEC interleave %d outside 1..255", ErrConfig, f.Interleave)
	case f.MaxDelay < 0 || f.MaxOverhead <= 0:
		return fmt.Errorf("%w: FEC MaxDelay %v, MaxOverhead %v", ErrConfig, f.MaxDelay, f.MaxOverhead)
	}
	return nil
}
