package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telewire/telewire/receiver"
)

// ReceiverSource is what a ReceiverCollector reads: *receiver.Receiver, or
// anything else that produces its Stats.
type ReceiverSource interface{ Stats() receiver.Stats }

// ReceiverCollector is a prometheus.Collector of a receiver's statistics:
// receiver-wide counters without labels, per-stream ones with peer and
// stream labels (bounded, see the package doc), and the one-way delay as a
// histogram. Safe for concurrent use.
type ReceiverCollector struct {
	src    ReceiverSource
	labels *labeler
	f      family

	datagrams, bytes, malformed, delivered, reports, queueOverflow metric
	kernelDrops, sessions, sessionsExpired, sessionRestarts        metric
	refused, feedbackDropped, streams                              metric

	packets, retransmissions, repairedRTX, rebuilt, parity, nacks    metric
	skipped, duplicates, reordered, late, lost, unrecovered, held    metric
	jitter, repairRTT, intervalLoss, delaySamples, blocksUnrecovered metric
	delay                                                            *prometheus.Desc
}

// NewReceiverCollector returns a collector of src's statistics.
func NewReceiverCollector(src ReceiverSource, o Options) *ReceiverCollector {
	c := &ReceiverCollector{src: src, labels: newLabeler(o.maxStreams()), f: family{prefix: "telewire_receiver_"}}
	f := &c.f
	c.datagrams = f.counter("datagrams_total", "Datagrams read from the socket.")
	c.bytes = f.counter("bytes_total", "UDP payload bytes of the datagrams read.")
	c.malformed = f.counter("malformed_total", "Datagrams the decoder rejected.")
	c.delivered = f.counter("delivered_total", "Messages queued for the application.")
	c.reports = f.counter("reports_total", "REPORT packets queued to senders.")
	c.queueOverflow = f.counter("queue_overflow_total", "Messages dropped because the application fell behind.")
	c.kernelDrops = f.counter("kernel_drops_total", "Datagrams the kernel dropped from the full receive queue.")
	c.sessions = f.counter("sessions_total", "Sender sessions started.")
	c.sessionsExpired = f.counter("sessions_expired_total", "Sessions dropped after silence.")
	c.sessionRestarts = f.counter("session_restarts_total", "Senders seen restarting.")
	c.refused = f.counter("refused_total", "Datagrams refused, by reason.", "reason")
	c.feedbackDropped = f.counter("feedback_dropped_total", "Feedback packets not sent, by reason.", "reason")
	c.streams = f.gauge("streams", "Live streams.")

	c.packets = f.counter("packets_total", "Distinct DATA sequences received (first copy or retransmission).", streamLabels...)
	c.retransmissions = f.counter("retransmissions_total", "DATA packets received flagged as retransmissions, duplicates included.", streamLabels...)
	c.repairedRTX = f.counter("repaired_by_retransmission_total", "Missing sequences that arrived by retransmission.", streamLabels...)
	c.rebuilt = f.counter("rebuilt_total", "Missing sequences rebuilt from FEC parity.", streamLabels...)
	c.parity = f.counter("parity_total", "PARITY shards accepted by the FEC decoder.", streamLabels...)
	c.nacks = f.counter("nacks_total", "NACK packets sent.", streamLabels...)
	c.skipped = f.counter("skipped_total", "Sequences ordered delivery gave up waiting for.", streamLabels...)
	c.duplicates = f.counter("duplicates_total", "Extra copies dropped.", streamLabels...)
	c.reordered = f.counter("reordered_total", "Sequences that arrived after a later one.", streamLabels...)
	c.late = f.counter("late_total", "Sequences that arrived after delivery had passed them.", streamLabels...)
	c.blocksUnrecovered = f.counter("fec_blocks_unrecoverable_total", "FEC blocks given up with data missing.", streamLabels...)
	c.lost = f.gauge("lost_packets", "Sequences lost on the path before repair (revised down when one arrives late).", streamLabels...)
	c.unrecovered = f.gauge("unrecovered_packets", "Lost sequences not repaired (yet).", streamLabels...)
	c.held = f.gauge("held_messages", "Messages waiting in ordered delivery (queue depth).", streamLabels...)
	c.jitter = f.gauge("jitter_seconds", "RFC 3550 interarrival jitter.", streamLabels...)
	c.repairRTT = f.gauge("repair_rtt_seconds", "Smoothed time from NACK to retransmission.", streamLabels...)
	c.intervalLoss = f.gauge("interval_loss_ratio", "Loss before repair in the last report interval, 0..1.", streamLabels...)
	c.delaySamples = f.counter("delay_samples_total", "One-way delay samples taken (first copies only).", streamLabels...)
	c.delay = f.histogram("delay_seconds", "One-way delay above the smallest seen (clock offset cancels), first copies only.", streamLabels...)
	return c
}

// Describe sends the descriptions of every metric the collector exports.
func (c *ReceiverCollector) Describe(ch chan<- *prometheus.Desc) { c.f.describe(ch) }

// recvSeries is one labelled series' figures, summed over its streams.
type recvSeries struct {
	packets, retransmissions, repairedRTX, rebuilt, parity, nacks uint64
	skipped, duplicates, reordered, late, lost, unrecovered, held uint64
	blocksUnrecovered, delaySamples                               uint64
	jitter, repairRTT                                             int64
	intervalLoss                                                  float64
	buckets                                                       [receiver.NumDelayBuckets]uint64
	delaySum                                                      float64
}

func (s *recvSeries) add(x *receiver.StreamStats) {
	s.packets += x.Received
	s.retransmissions += x.Retransmits
	s.repairedRTX += x.RecoveredRTX
	s.rebuilt += x.RecoveredFEC
	s.parity += x.ParityReceived
	s.nacks += x.NACKs
	s.skipped += x.Skipped
	s.duplicates += x.Duplicates
	s.reordered += x.Reordered
	s.late += x.Late
	s.lost += x.Lost
	s.unrecovered += x.Unrecovered
	s.held += x.Held
	s.blocksUnrecovered += x.FECBlocksUnrecoverable
	s.delaySamples += x.DelaySamples
	s.jitter = max(s.jitter, int64(x.JitterNanos))
	s.repairRTT = max(s.repairRTT, x.NACKRTTNanos)
	s.intervalLoss = max(s.intervalLoss, x.IntervalLoss)
	for i, n := range x.DelayBuckets {
		s.buckets[i] += n
	}
	s.delaySum += x.DelaySumNanos
}

// Collect reads one Stats snapshot and sends its metrics.
func (c *ReceiverCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	emit(ch, c.datagrams, st.Datagrams)
	emit(ch, c.bytes, st.BytesRead)
	emit(ch, c.malformed, st.Malformed)
	emit(ch, c.delivered, st.Delivered)
	emit(ch, c.reports, st.Reports)
	emit(ch, c.queueOverflow, st.QueueOverflow)
	emit(ch, c.kernelDrops, st.KernelDrops)
	emit(ch, c.sessions, st.Sessions)
	emit(ch, c.sessionsExpired, st.SessionsExpired)
	emit(ch, c.sessionRestarts, st.SessionRestarts)
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"session_table_full", st.SessionsRefused},
		{"stream_table_full", st.StreamsRefused},
		{"unexpected_kind", st.Unexpected},
		{"parity_contradicts_block", st.ParityRejected},
		{"unsealed", st.Unsealed},
		{"key_mismatch", st.KeyMismatch},
		{"auth_failed", st.AuthFailed},
		{"replayed", st.Replayed},
		{"corrupted", st.Corrupted},
		{"no_keys", st.NoKeys},
		{"handshakes_throttled", st.HandshakesThrottled},
		{"state_budget", st.BudgetRefused},
	} {
		emit(ch, c.refused, r.n, r.reason)
	}
	emit(ch, c.feedbackDropped, st.FeedbackDropped, "outbox_full")
	emit(ch, c.feedbackDropped, st.FeedbackBlocked, "amplification_limit")
	emit(ch, c.streams, len(st.Streams))

	series := make(map[labelKey]*recvSeries, len(st.Streams))
	var order []labelKey
	for i := range st.Streams {
		x := &st.Streams[i]
		k := c.labels.key(x.Source, x.Stream)
		s := series[k]
		if s == nil {
			s = new(recvSeries)
			series[k] = s
			order = append(order, k)
		}
		s.add(x)
	}
	for _, k := range order {
		s := series[k]
		l := []string{k.peer, k.stream}
		emit(ch, c.packets, s.packets, l...)
		emit(ch, c.retransmissions, s.retransmissions, l...)
		emit(ch, c.repairedRTX, s.repairedRTX, l...)
		emit(ch, c.rebuilt, s.rebuilt, l...)
		emit(ch, c.parity, s.parity, l...)
		emit(ch, c.nacks, s.nacks, l...)
		emit(ch, c.skipped, s.skipped, l...)
		emit(ch, c.duplicates, s.duplicates, l...)
		emit(ch, c.reordered, s.reordered, l...)
		emit(ch, c.late, s.late, l...)
		emit(ch, c.blocksUnrecovered, s.blocksUnrecovered, l...)
		emit(ch, c.delaySamples, s.delaySamples, l...)
		emit(ch, c.lost, s.lost, l...)
		emit(ch, c.unrecovered, s.unrecovered, l...)
		emit(ch, c.held, s.held, l...)
		ch <- prometheus.MustNewConstMetric(c.jitter.desc, c.jitter.kind, seconds(s.jitter), l...)
		ch <- prometheus.MustNewConstMetric(c.repairRTT.desc, c.repairRTT.kind, seconds(s.repairRTT), l...)
		emit(ch, c.intervalLoss, s.intervalLoss, l...)
		buckets := make(map[float64]uint64, receiver.NumDelayBuckets) // kept by the metric: one each
		for i, n := range s.buckets {
			buckets[float64(receiver.DelayBucketNanos[i])/1e9] = n
		}
		ch <- prometheus.MustNewConstHistogram(c.delay, s.delaySamples, s.delaySum/1e9, buckets, l...)
	}
}
