package receiver

import (
	"github.com/telewire/telewire/internal/stats"
)

// Stats is a snapshot of a receiver's counters and per-stream figures.
// Counts are cumulative since start; figures named Nanos are nanoseconds.
type Stats struct {
	Datagrams       uint64 `json:"datagrams"`        // datagrams read from the socket
	ReadSyscalls    uint64 `json:"read_syscalls"`    // recvmmsg (or recvmsg) calls: datagrams/syscall is the batching
	Malformed       uint64 `json:"malformed"`        // rejected by the decoder
	Unexpected      uint64 `json:"unexpected"`       // valid packets a receiver does not take
	Heartbeats      uint64 `json:"heartbeats"`       // HEARTBEATs received
	Delivered       uint64 `json:"delivered"`        // messages queued for Recv
	QueueOverflow   uint64 `json:"queue_overflow"`   // messages dropped: Recv fell behind
	Reports         uint64 `json:"reports"`          // REPORTs queued to senders
	NACKs           uint64 `json:"nacks"`            // NACK packets queued to senders
	Parity          uint64 `json:"parity"`           // PARITY packets received
	ParityRejected  uint64 `json:"parity_rejected"`  // PARITY packets that contradicted their block
	Unavailable     uint64 `json:"unavailable"`      // "unavailable" answers from senders
	FeedbackDropped uint64 `json:"feedback_dropped"` // feedback not queued: outbox full
	Sessions        uint64 `json:"sessions"`         // sessions started
	SessionRestarts uint64 `json:"session_restarts"` // senders seen restarting
	SessionsExpired uint64 `json:"sessions_expired"` // sessions dropped after silence
	SessionsRefused uint64 `json:"sessions_refused"` // datagrams dropped: session table full
	StreamsRefused  uint64 `json:"streams_refused"`  // datagrams dropped: stream table full
	KernelDrops     uint64 `json:"kernel_drops"`     // receive-queue overflows the kernel reported
	WriteErrors     uint64 `json:"write_errors"`     // feedback datagrams the kernel refused
	FeedbackBlocked uint64 `json:"feedback_blocked"` // feedback withheld: over 3x the bytes received from an unauthenticated sender

	// With encryption on (Config.KeyFile or Key):
	Unsealed            uint64 `json:"unsealed"`             // plain datagrams refused
	KeyMismatch         uint64 `json:"key_mismatch"`         // HELLOs made with another pre-shared key
	AuthFailed          uint64 `json:"auth_failed"`          // datagrams that failed authentication
	Replayed            uint64 `json:"replayed"`             // authentic datagrams (or HELLOs) seen before, or older than the replay window
	NoKeys              uint64 `json:"no_keys"`              // sealed datagrams under traffic keys this receiver does not hold (restart, replay)
	Retries             uint64 `json:"retries"`              // RETRYs sent: "handshake again"
	RetriesThrottled    uint64 `json:"retries_throttled"`    // RETRYs not sent: over their rate
	Welcomes            uint64 `json:"welcomes"`             // HELLOs answered with a new key agreement
	HelloRepeats        uint64 `json:"hello_repeats"`        // HELLOs seen again, answered with the same WELCOME
	HandshakesThrottled uint64 `json:"handshakes_throttled"` // authentic HELLOs not answered: key agreements over their rate
	Handshakes          uint64 `json:"handshakes"`           // handshakes completed (a packet under the new keys arrived)
	Rekeys              uint64 `json:"rekeys"`               // of Handshakes, those that replaced a live session's keys
	AddressChanges      uint64 `json:"address_changes"`      // authenticated senders seen moving to a new address

	Streams []StreamStats `json:"streams"`
}

// StreamStats describes one stream of one live session.
type StreamStats struct {
	Source       string `json:"source"`
	Session      string `json:"session"` // hex
	Stream       uint32 `json:"stream"`
	HighestSeq   uint64 `json:"highest_seq"`
	Received     uint64 `json:"received"`    // distinct sequences received
	Lost         uint64 `json:"lost"`        // lost on the path (before repair); reordering is not loss
	Unrecovered  uint64 `json:"unrecovered"` // of Lost, not repaired
	RecoveredRTX uint64 `json:"recovered_rtx"`
	RecoveredFEC uint64 `json:"recovered_fec"`
	Duplicates   uint64 `json:"duplicates"`  // extra copies dropped
	Reordered    uint64 `json:"reordered"`   // arrived after a later sequence
	Stale        uint64 `json:"stale"`       // too old for the window
	Resyncs      uint64 `json:"resyncs"`     // jumps beyond the window
	Retransmits  uint64 `json:"retransmits"` // DATA flagged as retransmission, duplicates included
	NACKs        uint64 `json:"nacks"`       // NACK packets sent
	Skipped      uint64 `json:"skipped"`     // ordered delivery gave up waiting for these (deadline)
	Late         uint64 `json:"late"`        // arrived after delivery had passed them
	Superseded   uint64 `json:"superseded"`  // latest mode: dropped for newer data
	Held         uint64 `json:"held"`        // waiting in ordered delivery now
	NACKRTTNanos int64  `json:"nack_rtt_ns"` // smoothed NACK-to-retransmission time

	ParityReceived         uint64 `json:"parity_received"`          // PARITY shards accepted by the FEC decoder
	FECBlocksUnrecoverable uint64 `json:"fec_blocks_unrecoverable"` // blocks given up with data missing

	// Bounds a sender can push on, counted when hit.
	ReorderDropped   uint64        `json:"reorder_dropped"`    // messages refused: reorder buffer (ReorderCapacity) full
	MissingOverflow  uint64        `json:"missing_overflow"`   // gaps given up: more missing sequences than the tracker keeps
	FECBlocksEvicted uint64        `json:"fec_blocks_evicted"` // incomplete FEC blocks pushed out of the decoder's table
	FECParityDropped uint64        `json:"fec_parity_dropped"` // parity shards not kept: the decoder's parity buffers were full
	IntervalLoss     float64       `json:"interval_loss"`
	JitterNanos      uint64        `json:"jitter_ns"` // RFC 3550 interarrival jitter
	Delay            stats.Summary `json:"delay"`     // one-way delay above the minimum seen
	DelaySamples     uint64        `json:"delay_samples"`
}
