package soak

import (
	"errors"
	"fmt"
)

// Errors of Summary.Check, to be tested with errors.Is.
var (
	// ErrNotReconciled: the counters do not add up (Reconciliation.Problems
	// says how).
	ErrNotReconciled = errors.New("soak: counters do not reconcile")
	// ErrMemoryGrew: the memory verdict is "growing".
	ErrMemoryGrew = errors.New("soak: memory not flat")
	// ErrInconclusive: too few samples to judge memory.
	ErrInconclusive = errors.New("soak: memory verdict inconclusive")
)

// Counts are the figures Reconcile compares, taken once the tail has
// drained.
type Counts struct {
	// Load is the number of load messages sent: indices 0 to Load-1.
	Load uint64 `json:"load"`
	// Fences is the number of fences sent after them (indices from Load).
	Fences uint64 `json:"fences"`
	// SenderSent is sender.StreamStats.Sent for the stream: it must be
	// Load + Fences.
	SenderSent uint64 `json:"sender_sent"`
	// Consumer is what the consumer verified.
	Consumer VerifierCounts `json:"consumer"`
	// Skipped is receiver.StreamStats.Skipped: sequences ordered delivery
	// gave up on.
	Skipped uint64 `json:"skipped"`
	// QueueOverflow is receiver.Stats.QueueOverflow: messages delivered
	// but dropped because the consumer fell behind.
	QueueOverflow uint64 `json:"queue_overflow"`
	// ReceiverDelivered is receiver.Stats.Delivered: messages queued for
	// Recv, which the consumer must all have read.
	ReceiverDelivered uint64 `json:"receiver_delivered"`
	// Unrecovered, Late and Resyncs are receiver.StreamStats figures kept
	// for the record: Unrecovered counts losses never repaired (a skipped
	// message whose repair came too late is repaired but still skipped,
	// and is Late), and a Resync would skip without counting.
	Unrecovered uint64 `json:"unrecovered"`
	Late        uint64 `json:"late"`
	Resyncs     uint64 `json:"resyncs"`
}

// Reconciliation is the outcome of Reconcile.
type Reconciliation struct {
	Counts
	// Delivered is the load delivered exactly once (Consumer.Loads).
	Delivered uint64 `json:"delivered"`
	// Missing is the load never delivered: Load - Delivered.
	Missing uint64 `json:"missing"`
	// FenceGaps are fence indices the consumer saw passed over, between
	// Load and the highest fence delivered: they are in Skipped or
	// QueueOverflow but are not load.
	FenceGaps uint64 `json:"fence_gaps"`
	// Accounted is the load the receiver counted as given up:
	// Skipped + QueueOverflow - FenceGaps.
	Accounted int64 `json:"accounted"`
	// Difference is Missing - Accounted: load neither delivered nor
	// counted (positive) or counted twice (negative). 0 when exact.
	Difference int64 `json:"difference"`
	// Unsettled is the load at the tail that delivery had not moved past
	// when the drain ended: Load - Consumer.Top when positive.
	Unsettled uint64 `json:"unsettled"`
	// OK is true when every check passed; Problems lists the failures.
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}

// Reconcile checks that every load message was delivered exactly once or
// counted by the receiver as skipped (or dropped at its queue), and that
// the consumer saw nothing corrupt, duplicated or out of order:
//
//	Load = Consumer.Loads + (Skipped + QueueOverflow - FenceGaps)
//	Consumer.Received = ReceiverDelivered
//	SenderSent = Load + Fences
//	Consumer.Top >= Load, and Corrupt = Duplicates = Misordered = 0
//
// Every failed check is a line in Problems with its figures.
func Reconcile(c Counts) Reconciliation {
	r := Reconciliation{Counts: c, Delivered: c.Consumer.Loads}
	bad := func(format string, a ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, a...)) }

	if r.Delivered > c.Load {
		bad("consumer received %d distinct load messages but only %d were sent", r.Delivered, c.Load)
	} else {
		r.Missing = c.Load - r.Delivered
	}
	if top := c.Consumer.FenceTop; top > 0 {
		if top-1 < c.Load || top-c.Load < c.Consumer.Fences {
			bad("fence indices do not fit: highest fence %d, %d fences delivered, load %d", top-1, c.Consumer.Fences, c.Load)
		} else {
			r.FenceGaps = top - c.Load - c.Consumer.Fences
		}
	}
	r.Accounted = int64(c.Skipped) + int64(c.QueueOverflow) - int64(r.FenceGaps)
	r.Difference = int64(r.Missing) - r.Accounted
	switch {
	case r.Difference > 0:
		bad("%d load messages neither delivered nor counted: %d missing, %d skipped + %d queue overflow - %d fence gaps = %d accounted",
			r.Difference, r.Missing, c.Skipped, c.QueueOverflow, r.FenceGaps, r.Accounted)
	case r.Difference < 0:
		bad("receiver counted %d more given-up messages than are missing: %d missing, %d skipped + %d queue overflow - %d fence gaps = %d accounted",
			-r.Difference, r.Missing, c.Skipped, c.QueueOverflow, r.FenceGaps, r.Accounted)
	}
	if c.Consumer.Top < c.Load {
		r.Unsettled = c.Load - c.Consumer.Top
		bad("%d load messages at the tail unsettled when the drain ended (delivery had not moved past them)", r.Unsettled)
	}
	if c.Consumer.Received != c.ReceiverDelivered {
		bad("consumer read %d messages, receiver queued %d (receiver.Stats.Delivered)", c.Consumer.Received, c.ReceiverDelivered)
	}
	if c.SenderSent != c.Load+c.Fences {
		bad("sender counted %d messages sent, the soak sent %d load + %d fences", c.SenderSent, c.Load, c.Fences)
	}
	if c.Consumer.Corrupt > 0 {
		bad("%d corrupt payloads", c.Consumer.Corrupt)
	}
	if c.Consumer.Duplicates > 0 {
		bad("%d messages delivered twice", c.Consumer.Duplicates)
	}
	if c.Consumer.Misordered > 0 {
		bad("%d messages delivered out of order", c.Consumer.Misordered)
	}
	if c.Resyncs > 0 {
		bad("%d receiver resyncs (a resync skips without counting)", c.Resyncs)
	}
	r.OK = len(r.Problems) == 0
	return r
}

// Err returns nil when the reconciliation passed, else an error wrapping
// ErrNotReconciled that lists the problems.
func (r Reconciliation) Err() error {
	if r.OK {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrNotReconciled, r.Problems)
}
