package sender

import "github.com/telewire/telewire/packet"

// Stats is a snapshot of a sender's counters. Counts are cumulative since
// start; figures named Nanos are durations in nanoseconds.
type Stats struct {
	Session  uint64 `json:"session"`
	Packets  uint64 `json:"packets"`  // DATA packets queued for sending (first transmissions)
	Messages uint64 `json:"messages"` // messages Send queued, in those packets
	// A sender taking subscribers (Config.Listen) with none sends
	// nowhere: MessagesNoDestination counts the messages Send took then
	// (they reached no one), NoDestination the DATA, PARITY and HEARTBEAT
	// datagrams not sent for want of a destination (with a key: of one
	// with keys). Messages, Packets and Heartbeats include them.
	MessagesNoDestination uint64 `json:"messages_no_destination"`
	NoDestination         uint64 `json:"no_destination"`
	Fragmented            uint64 `json:"fragmented"`       // messages among them split across several packets
	Packed                uint64 `json:"packed"`           // messages among them packed into a packet with others (not counting each packet's first)
	PayloadBytes          uint64 `json:"payload_bytes"`    // application bytes in them
	DatagramsSent         uint64 `json:"datagrams_sent"`   // every datagram written, any kind
	BytesSent             uint64 `json:"bytes_sent"`       // wire bytes written (UDP payload)
	WriteSyscalls         uint64 `json:"write_syscalls"`   // sendmmsg (or sendmsg) calls: datagrams/syscall is the batching
	Heartbeats            uint64 `json:"heartbeats"`       // HEARTBEATs queued
	Parity                uint64 `json:"parity"`           // PARITY packets queued
	ParityDropped         uint64 `json:"parity_dropped"`   // PARITY packets not queued: queue full
	QueueFull             uint64 `json:"queue_full"`       // Sends refused or delayed by a full queue
	Reports               uint64 `json:"reports"`          // REPORTs received
	NACKs                 uint64 `json:"nacks"`            // NACKs received
	Retransmits           uint64 `json:"retransmits"`      // DATA packets resent
	RetransmitBytes       uint64 `json:"retransmit_bytes"` // their wire bytes
	Suppressed            uint64 `json:"suppressed"`       // requests ignored: resent within a fraction of the RTT
	Throttled             uint64 `json:"throttled"`        // requests refused by the retransmit budget
	Unavailable           uint64 `json:"unavailable"`      // "unavailable" answers sent (NACK packets)
	FeedbackDropped       uint64 `json:"feedback_dropped"` // answers not queued: queue full
	Malformed             uint64 `json:"malformed"`        // datagrams that failed to decode
	ForeignSession        uint64 `json:"foreign_session"`  // feedback for another session
	Unexpected            uint64 `json:"unexpected"`       // valid packets a sender does not take
	WriteErrors           uint64 `json:"write_errors"`     // datagrams the kernel refused
	Queued                int    `json:"queued"`           // datagrams waiting for the socket now (the half of the queue being filled)

	// FeedbackSilenceNanos is how long the sender had gone without
	// feedback when the snapshot was taken: since the latest REPORT or
	// NACK, or since the first DATA while none has come (0 before it).
	// Filled in by Sender.Stats (see Core.FeedbackSilence). With Reports
	// == 0 and a silence of a second or more, the receiver has never been
	// heard from: nothing is listening at To, the two ends do not share
	// a key (or only one has one: then Unsealed, KeyMismatch or
	// AuthFailed may count feedback refused here), or a firewall drops
	// the datagrams one way or the other.
	FeedbackSilenceNanos int64 `json:"feedback_silence_ns"`

	NACKsRejected      uint64 `json:"nacks_rejected"`      // NACKs naming sequences never sent (or history requests for more than packet.MaxJoinHistory), rejected whole
	HistoryNACKs       uint64 `json:"history_nacks"`       // late joiners' requests for what was sent before they joined (packet.FlagHistory), answered to them alone
	RetransmitsBlocked uint64 `json:"retransmits_blocked"` // retransmissions refused by the address's amplification limit or per-RTT budget
	RetransmitsPaced   uint64 `json:"retransmits_paced"`   // retransmissions held back: they had spent their share of the pacing rate (see reliability.Pacer.ResendOK)
	AnswersBlocked     uint64 `json:"answers_blocked"`     // "unavailable" answers refused by the amplification limit
	AddressesValidated uint64 `json:"addresses_validated"` // feedback addresses other than the configured one that proved they receive the data
	// Without a key (see "Unauthenticated peers" in the receiver package):
	ReportsUnproven uint64 `json:"reports_unproven"` // REPORTs whose echo is no recent DATA's send time: ignored (no RTT, pacing or FEC change)
	NACKsUnproven   uint64 `json:"nacks_unproven"`   // NACKs without a valid proof of receipt: answered only within 3x the bytes their source sent
	Answers         uint64 `json:"answers"`          // challenges answered (HEARTBEATs with packet.FlagAnswer)

	// With encryption on (Config.KeyFile or Key):
	Unsealed          uint64 `json:"unsealed"`           // plain feedback refused
	KeyMismatch       uint64 `json:"key_mismatch"`       // WELCOMEs or RETRYs made with another pre-shared key
	Corrupted         uint64 `json:"corrupted"`          // WELCOMEs or RETRYs whose key id did not repeat: damaged on the way, not another key
	AuthFailed        uint64 `json:"auth_failed"`        // feedback that failed authentication
	Replayed          uint64 `json:"replayed"`           // authentic feedback seen before (or older than the replay window)
	NoKeys            uint64 `json:"no_keys"`            // feedback sealed under keys this sender does not hold (an earlier handshake's)
	HandshakeAttempts uint64 `json:"handshake_attempts"` // HELLOs sent (first attempts, retries, rekeys)
	Handshakes        uint64 `json:"handshakes"`         // handshakes completed
	Rekeys            uint64 `json:"rekeys"`             // of Handshakes, those that replaced live keys
	Rehandshakes      uint64 `json:"rehandshakes"`       // handshakes started because the receiver had lost the keys (RETRY)
	RetriesIgnored    uint64 `json:"retries_ignored"`    // authentic RETRYs that named old keys or came during a handshake
	Resent            uint64 `json:"resent"`             // DATA sent again under new keys after a RETRY (the receiver had lost the keys it went under), or to a fan-out destination whose keys came late
	HandshakeRTTNanos int64  `json:"handshake_rtt_ns"`   // the latest handshake's round trip (HELLO to WELCOME)
	Held              uint64 `json:"held"`               // packets held until the handshake completed
	HeldDropped       uint64 `json:"held_dropped"`       // packets dropped: the held queue was full
	SealErrors        uint64 `json:"seal_errors"`        // packets not sent because sealing failed (counter exhausted)
	// With a key and several destinations (unicast fan-out), each has a
	// handshake and keys of its own:
	KeysPending       int           `json:"keys_pending"`       // destinations with no keys yet (handshake under way)
	NotKeyed          uint64        `json:"not_keyed"`          // copies of DATA, PARITY or HEARTBEAT not sent to a destination that had no keys yet
	HandshakesExpired uint64        `json:"handshakes_expired"` // subscribers dropped because their handshake did not complete in time
	RTT               RTTStats      `json:"rtt"`
	Pacing            PacingStats   `json:"pacing"`
	Streams           []StreamStats `json:"streams"`

	// Receivers is the sender's view of each receiver heard from (one
	// for a unicast sender, any number for a multicast group), in the
	// order first heard; Group merges them. See Config.MaxReceivers.
	Receivers []ReceiverStats `json:"receivers"`
	Group     GroupStats      `json:"group"`
	// Subscribers counts the destinations of a fan-out sender (Config.To
	// a list, or Listen) and its subscription traffic; zero otherwise.
	Subscribers SubscriberStats `json:"subscribers"`
}

// PacingStats is the congestion controller's state (all zero with
// Config.DisableCongestionControl).
type PacingStats struct {
	Enabled          bool    `json:"enabled"`
	RateBytesPerSec  float64 `json:"rate_bytes_per_sec"`     // current pacing rate, wire bytes/s
	DeliveryPerSec   float64 `json:"delivery_bytes_per_sec"` // latest delivery rate the receiver's counts show
	MinRTTNanos      int64   `json:"min_rtt_ns"`             // the path's minimum RTT as the controller sees it
	RTTJitterNanos   int64   `json:"rtt_jitter_ns"`          // the RTT's sample-to-sample variation; widens the queue target
	CongestionEvents uint64  `json:"congestion_events"`      // times a standing queue lowered the rate
	Waits            uint64  `json:"waits"`                  // times Send waited for the pacer
	Startup          bool    `json:"startup"`                // no congestion seen yet
}

// RTTStats is the round-trip time measured from REPORT echoes.
type RTTStats struct {
	SmoothedNanos int64  `json:"smoothed_ns"`
	VarianceNanos int64  `json:"variance_ns"`
	MinNanos      int64  `json:"min_ns"`
	Samples       uint64 `json:"samples"`
}

// StreamStats is one stream's sending state and the receiver's latest view.
type StreamStats struct {
	Stream   uint32       `json:"stream"`
	NextSeq  uint64       `json:"next_seq"`
	Sent     uint64       `json:"sent"`     // DATA packets (sequences) sent
	Messages uint64       `json:"messages"` // messages sent, packed or fragmented into those
	Receiver ReceiverView `json:"receiver"`

	// FEC in use now (M = 0: no parity) and what it has cost.
	FECK             int    `json:"fec_k"`
	FECM             int    `json:"fec_m"`
	FECInterleave    int    `json:"fec_interleave"`
	FECBlocks        uint64 `json:"fec_blocks"`
	FECOverheadBytes uint64 `json:"fec_overhead_bytes"` // PARITY wire bytes

	// The retransmit buffer's bounds (RetransmitPackets, RetransmitBytes,
	// RetransmitMaxAge): packets evicted by each.
	RetransmitEvictedCapacity uint64 `json:"retransmit_evicted_capacity"`
	RetransmitEvictedBytes    uint64 `json:"retransmit_evicted_bytes"`
	RetransmitEvictedAge      uint64 `json:"retransmit_evicted_age"`
}

// ReceiverView is the latest REPORT from a receiver for a stream. In
// StreamStats it is the latest from any receiver; Stats.Receivers has
// each receiver's own.
type ReceiverView struct {
	Reported        bool    `json:"reported"` // false until a REPORT arrived
	Received        uint64  `json:"received"`
	Lost            uint64  `json:"lost"`
	Unrecovered     uint64  `json:"unrecovered"`
	Late            uint64  `json:"late"` // received after their delivery deadline: not delivered
	Duplicates      uint64  `json:"duplicates"`
	Reordered       uint64  `json:"reordered"`
	IntervalLoss    float64 `json:"interval_loss"` // fraction 0..1, last report interval
	JitterNanos     uint64  `json:"jitter_ns"`
	DelayP50Nanos   uint64  `json:"delay_p50_ns"`
	DelayP90Nanos   uint64  `json:"delay_p90_ns"`
	DelayP99Nanos   uint64  `json:"delay_p99_ns"`
	DelayMaxNanos   uint64  `json:"delay_max_ns"`
	HighestSeq      uint64  `json:"highest_seq"`
	RecoveredRTX    uint64  `json:"recovered_rtx"`
	RecoveredFEC    uint64  `json:"recovered_fec"`
	MalformedAtPeer uint64  `json:"malformed_at_receiver"`
}

func receiverView(r *packet.Report, ok bool) ReceiverView {
	if !ok {
		return ReceiverView{}
	}
	return ReceiverView{
		Reported:        true,
		Received:        r.Received,
		Lost:            r.Lost,
		Unrecovered:     r.Unrecovered,
		Late:            r.Late,
		Duplicates:      r.Duplicates,
		Reordered:       r.Reordered,
		IntervalLoss:    float64(r.IntervalLossPPM) / packet.MaxLossPPM,
		JitterNanos:     r.JitterNanos,
		DelayP50Nanos:   r.DelayP50Nanos,
		DelayP90Nanos:   r.DelayP90Nanos,
		DelayP99Nanos:   r.DelayP99Nanos,
		DelayMaxNanos:   r.DelayMaxNanos,
		HighestSeq:      r.HighestSeq,
		RecoveredRTX:    r.RecoveredRTX,
		RecoveredFEC:    r.RecoveredFEC,
		MalformedAtPeer: r.Malformed,
	}
}
