package soak

// Sample is one row of the soak's time series. Counts are cumulative from
// the start of the run.
type Sample struct {
	// ElapsedNanos is the time since the load started.
	ElapsedNanos int64 `json:"elapsed_ns"`
	// Load is true for samples taken while the load ran; the samples
	// after the drain are not judged for memory.
	Load bool `json:"load"`
	Mem

	// Load and delivery, as the soak's own sender and consumer saw them.
	Sent      uint64 `json:"sent"`      // load messages sent (Send returned nil)
	Delivered uint64 `json:"delivered"` // load messages the consumer received for the first time
	// RatePerSec is the load sent per second since the previous sample.
	RatePerSec float64 `json:"rate_per_s"`
	Corrupt    uint64  `json:"corrupt"`    // payloads that failed their check (VerifierCounts.Corrupt)
	Misordered uint64  `json:"misordered"` // VerifierCounts.Misordered
	Duplicates uint64  `json:"duplicates"` // delivered twice (VerifierCounts.Duplicates)

	// The receiver's counters for the stream (receiver.StreamStats) and
	// its queue-related ones (receiver.Stats).
	Skipped             uint64 `json:"skipped"`               // StreamStats.Skipped: given up by ordered delivery
	Unrecovered         uint64 `json:"unrecovered"`           // StreamStats.Unrecovered: lost and not repaired
	Lost                uint64 `json:"lost"`                  // StreamStats.Lost: lost on the path, before repair
	RecoveredFEC        uint64 `json:"recovered_fec"`         // StreamStats.RecoveredFEC
	RecoveredRTX        uint64 `json:"recovered_rtx"`         // StreamStats.RecoveredRTX
	RecvDuplicates      uint64 `json:"recv_duplicates"`       // StreamStats.Duplicates: extra copies the receiver dropped
	Late                uint64 `json:"late"`                  // StreamStats.Late
	Held                uint64 `json:"held"`                  // StreamStats.Held: waiting in ordered delivery now
	QueueOverflow       uint64 `json:"queue_overflow"`        // Stats.QueueOverflow: dropped because the consumer fell behind
	KernelDrops         uint64 `json:"kernel_drops"`          // Stats.KernelDrops: receive-queue overflows
	RecvFeedbackDropped uint64 `json:"recv_feedback_dropped"` // Stats.FeedbackDropped

	// The sender's counters (sender.Stats).
	Retransmits         uint64 `json:"retransmits"`           // DATA packets resent
	Unavailable         uint64 `json:"unavailable"`           // NACKed packets no longer kept
	Parity              uint64 `json:"parity"`                // PARITY packets queued
	QueueFull           uint64 `json:"queue_full"`            // Sends delayed by a full queue
	ParityDropped       uint64 `json:"parity_dropped"`        // PARITY not queued: queue full
	SendFeedbackDropped uint64 `json:"send_feedback_dropped"` // answers to NACKs not queued: queue full
	WriteErrors         uint64 `json:"write_errors"`          // datagrams the kernel refused

	// The relay's drops each way (netem.DirStats.Dropped).
	RelayFwdDropped uint64 `json:"relay_fwd_dropped"`
	RelayRevDropped uint64 `json:"relay_rev_dropped"`
	// RelayUnread is the sender's datagrams the relay never read
	// (sender.Stats.DatagramsSent - netem.DirStats.Received of Fwd): lost
	// in the kernel at the relay's socket when the relay fell behind, or
	// in flight. The netem model does not see these losses; the transport
	// does, and repairs them like any other.
	RelayUnread uint64 `json:"relay_unread"`
}
