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
	QueueOverflow   uint64 `json:"queue_overflow"`   // messages dropped: Recv fell behind (with Config.DeliverGaps, also "start" gap markers that found no room)
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
	BytesRead       uint64 `json:"bytes_read"`       // UDP payload bytes of the datagrams read
	WriteErrors     uint64 `json:"write_errors"`     // feedback datagrams the kernel refused
	FeedbackBlocked uint64 `json:"feedback_blocked"` // feedback withheld: over 3x the bytes received from an unauthenticated sender
	// Subscription is this receiver's side of its subscription
	// (Config.Subscribe); zero without one.
	Subscription SubscriptionStats `json:"subscription"`

	// State budget (Config.MaxStateBytes) and unauthenticated senders (see
	// the package documentation, "Unauthenticated peers"):
	StateBytes            uint64 `json:"state_bytes"`             // bytes of session and stream state charged now (a gauge)
	UnvalidatedStateBytes uint64 `json:"unvalidated_state_bytes"` // of them, held by senders not yet validated (a gauge)
	BudgetRefused         uint64 `json:"budget_refused"`          // new sessions or streams refused: the budget was spent
	BudgetDenied          uint64 `json:"budget_denied"`           // growths of existing state refused by the budget (messages not held, gaps given up, no FEC)
	SessionsEvicted       uint64 `json:"sessions_evicted"`        // unvalidated sessions dropped after their grace time to admit a new one
	SessionsValidated     uint64 `json:"sessions_validated"`      // plain-mode senders that answered a challenge
	Challenges            uint64 `json:"challenges"`              // REPORTs sent with a challenge
	Answers               uint64 `json:"answers"`                 // valid answers to challenges
	AnswersRejected       uint64 `json:"answers_rejected"`        // answers this receiver did not issue to that address and session, or too old
	AnswersOthers         uint64 `json:"answers_others"`          // in a multicast group (NACKGroupSize > 1): answers not for this receiver, as to other receivers' challenges
	ParityDropped         uint64 `json:"parity_dropped"`          // PARITY dropped: the budget refused its stream an FEC decoder
	GroupSize             uint64 `json:"group_size"`              // in a multicast group: the receivers the sender last said it hears (HEARTBEAT FlagGroup), 0 before it does (a gauge)
	HistoryRequested      uint64 `json:"history_requested"`       // sequences a late joiner asked for, sent before it joined (Config.JoinHistory)

	// With encryption on (Config.KeyFile or Key):
	Unsealed            uint64 `json:"unsealed"`             // plain datagrams refused
	KeyMismatch         uint64 `json:"key_mismatch"`         // HELLOs made with another pre-shared key
	Corrupted           uint64 `json:"corrupted"`            // HELLOs whose pre-shared key id did not repeat: damaged on the way, not another key
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
	Received     uint64 `json:"received"`    // distinct sequences (DATA packets) received
	Delivered    uint64 `json:"delivered"`   // messages delivered to the queue Recv reads
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
	// Messages not held for ordering because the state budget was spent.
	BudgetDropped uint64 `json:"budget_dropped"`

	// Messages sent in fragments (see Config.MaxMessage).
	Reassembled       uint64 `json:"reassembled"`        // messages reassembled whole
	ReassemblyDropped uint64 `json:"reassembly_dropped"` // incomplete messages dropped for room: MaxReassemblyBytes, MaxSessionReassemblyBytes or 64 at once hit
	ReassemblyExpired uint64 `json:"reassembly_expired"` // incomplete messages lost: a fragment missing at the deadline, or (latest) superseded
	FragmentsRefused  uint64 `json:"fragments_refused"`  // fragments not taken: message over MaxMessage, lengths disagreeing, budget spent
	ReassemblyBytes   uint64 `json:"reassembly_bytes"`   // bytes held in reassembly now (a gauge)

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

	// DelayBuckets[i] counts the delay samples (of DelaySamples) at most
	// DelayBucketNanos[i] above the minimum, cumulatively, within the
	// histogram's 0.8% precision; DelaySumNanos estimates their sum to
	// the same precision. They are what a Prometheus histogram needs
	// (tools/metrics) and stay out of the JSON.
	DelayBuckets  [NumDelayBuckets]uint64 `json:"-"`
	DelaySumNanos float64                 `json:"-"`
}

// NumDelayBuckets is the number of bounds in DelayBucketNanos.
const NumDelayBuckets = 17

// DelayBucketNanos are the upper bounds of StreamStats.DelayBuckets in
// nanoseconds: 50 µs to 10 s in 1-2.5-5 steps.
var DelayBucketNanos = [NumDelayBuckets]uint64{
	50e3, 100e3, 250e3, 500e3,
	1e6, 2.5e6, 5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9,
}
