package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telewire/telewire/sender"
)

// SenderSource is what a SenderCollector reads: *sender.Sender, or anything
// else that produces its Stats.
type SenderSource interface{ Stats() sender.Stats }

// SenderCollector is a prometheus.Collector of a sender's statistics:
// sender-wide counters and gauges without labels, per-stream ones (what
// the sender sent, its FEC, and the figures the receiver last reported)
// with peer = Options.Peer and stream labels, bounded as the package doc
// says. Safe for concurrent use.
type SenderCollector struct {
	src    SenderSource
	peer   string
	labels *labeler
	f      family

	packets, messages, payloadBytes, datagrams, bytes, parity         metric
	parityDropped, streamMessages                                     metric
	heartbeats, retransmissions, retransmitBytes, nacks, reports      metric
	malformed, refused, rtxRefused, queueFull, writeErrors, unavail   metric
	queued                                                            metric
	rtt, rttMin, rttVar, pacingRate, deliveryRate, congestion, waits  metric
	streamPackets, fecBlocks, fecBytes, fecK, fecM, fecInterleave     metric
	evicted, repReceived, repLost, repUnrecovered, repRTX, repFEC     metric
	repJitter, repDelay, repLoss, repMalformed, repDuplicates, repReo metric
}

// NewSenderCollector returns a collector of src's statistics; o.Peer
// labels its streams (typically the sender's destination address).
func NewSenderCollector(src SenderSource, o Options) *SenderCollector {
	c := &SenderCollector{src: src, peer: o.Peer, labels: newLabeler(o.maxStreams()), f: family{prefix: "telewire_sender_"}}
	f := &c.f
	c.packets = f.counter("packets_total", "DATA packets queued for sending (first transmissions).")
	c.messages = f.counter("messages_total", "Messages Send queued, packed or fragmented into those packets.")
	c.payloadBytes = f.counter("payload_bytes_total", "Application bytes in those packets.")
	c.datagrams = f.counter("datagrams_total", "Datagrams written, any kind.")
	c.bytes = f.counter("bytes_total", "Wire bytes written (UDP payload).")
	c.parity = f.counter("parity_total", "PARITY packets queued.")
	c.parityDropped = f.counter("parity_dropped_total", "PARITY packets not queued because the queue was full.")
	c.heartbeats = f.counter("heartbeats_total", "HEARTBEAT packets queued.")
	c.retransmissions = f.counter("retransmissions_total", "DATA packets resent in answer to NACKs.")
	c.retransmitBytes = f.counter("retransmitted_bytes_total", "Wire bytes of those retransmissions.")
	c.nacks = f.counter("nacks_total", "NACK packets received.")
	c.reports = f.counter("reports_total", "REPORT packets received.")
	c.malformed = f.counter("malformed_total", "Datagrams that failed to decode.")
	c.refused = f.counter("refused_total", "Feedback datagrams refused, by reason.", "reason")
	c.rtxRefused = f.counter("retransmissions_refused_total", "Retransmission requests not answered, by reason.", "reason")
	c.unavail = f.counter("unavailable_total", "Unavailable answers sent (sequences no longer buffered).")
	c.queueFull = f.counter("queue_full_total", "Sends refused or delayed by a full queue.")
	c.writeErrors = f.counter("write_errors_total", "Datagrams the kernel refused.")
	c.queued = f.gauge("queued_datagrams", "Datagrams waiting for the socket now (queue depth).")
	c.rtt = f.gauge("rtt_seconds", "Smoothed round-trip time from REPORT echoes.")
	c.rttMin = f.gauge("rtt_min_seconds", "Smallest round-trip time seen.")
	c.rttVar = f.gauge("rtt_variance_seconds", "Round-trip time variation (RFC 6298 RTTVAR).")
	c.pacingRate = f.gauge("pacing_rate_bytes_per_second", "Current pacing rate, wire bytes per second (0 with congestion control off).")
	c.deliveryRate = f.gauge("delivery_rate_bytes_per_second", "Latest delivery rate the receiver's counts show.")
	c.congestion = f.counter("congestion_events_total", "Times a standing queue lowered the pacing rate.")
	c.waits = f.counter("pacer_waits_total", "Times Send waited for the pacer.")

	c.streamPackets = f.counter("stream_packets_total", "DATA packets sent on the stream (first transmissions).", streamLabels...)
	c.streamMessages = f.counter("stream_messages_total", "Messages sent on the stream, packed or fragmented into its packets.", streamLabels...)
	c.fecBlocks = f.counter("fec_blocks_total", "FEC blocks completed.", streamLabels...)
	c.fecBytes = f.counter("fec_parity_bytes_total", "PARITY wire bytes.", streamLabels...)
	c.evicted = f.counter("retransmit_evicted_total", "Packets pushed out of the retransmit buffer, by bound.", append([]string{"bound"}, streamLabels...)...)
	c.fecK = f.gauge("fec_data_shards", "FEC data shards per block in use now (K).", streamLabels...)
	c.fecM = f.gauge("fec_parity_shards", "FEC parity shards per block in use now (M; 0 = no parity).", streamLabels...)
	c.fecInterleave = f.gauge("fec_interleave", "FEC interleaving depth in use now.", streamLabels...)
	c.repReceived = f.gauge("reported_received_packets", "Distinct sequences the receiver last reported received.", streamLabels...)
	c.repLost = f.gauge("reported_lost_packets", "Sequences the receiver last reported lost before repair.", streamLabels...)
	c.repUnrecovered = f.gauge("reported_unrecovered_packets", "Sequences the receiver last reported lost after repair.", streamLabels...)
	c.repRTX = f.gauge("reported_repaired_by_retransmission_packets", "Sequences the receiver last reported repaired by retransmission.", streamLabels...)
	c.repFEC = f.gauge("reported_rebuilt_packets", "Sequences the receiver last reported rebuilt from parity.", streamLabels...)
	c.repDuplicates = f.gauge("reported_duplicate_packets", "Duplicates the receiver last reported.", streamLabels...)
	c.repReo = f.gauge("reported_reordered_packets", "Reordered sequences the receiver last reported.", streamLabels...)
	c.repMalformed = f.gauge("reported_malformed_datagrams", "Datagrams from this sender the receiver last reported malformed.", streamLabels...)
	c.repJitter = f.gauge("reported_jitter_seconds", "Interarrival jitter the receiver last reported.", streamLabels...)
	c.repLoss = f.gauge("reported_interval_loss_ratio", "Loss before repair in the receiver's last interval, 0..1.", streamLabels...)
	c.repDelay = f.gauge("reported_delay_seconds", "One-way delay percentiles the receiver last reported (above the minimum).", append([]string{"quantile"}, streamLabels...)...)
	return c
}

// Describe sends the descriptions of every metric the collector exports.
func (c *SenderCollector) Describe(ch chan<- *prometheus.Desc) { c.f.describe(ch) }

// sendSeries is one labelled series' figures, summed over its streams.
type sendSeries struct {
	sent, messages, fecBlocks, fecBytes, evCap, evBytes   uint64
	evAge                                                 uint64
	k, m, interleave                                      int
	received, lost, unrecovered, rtx, fec, dup, reo, malf uint64
	jitter, p50, p90, p99, pmax                           uint64
	loss                                                  float64
}

func (s *sendSeries) add(x *sender.StreamStats) {
	s.sent += x.Sent
	s.messages += x.Messages
	s.fecBlocks += x.FECBlocks
	s.fecBytes += x.FECOverheadBytes
	s.evCap += x.RetransmitEvictedCapacity
	s.evBytes += x.RetransmitEvictedBytes
	s.evAge += x.RetransmitEvictedAge
	s.k, s.m, s.interleave = max(s.k, x.FECK), max(s.m, x.FECM), max(s.interleave, x.FECInterleave)
	r := &x.Receiver
	s.received += r.Received
	s.lost += r.Lost
	s.unrecovered += r.Unrecovered
	s.rtx += r.RecoveredRTX
	s.fec += r.RecoveredFEC
	s.dup += r.Duplicates
	s.reo += r.Reordered
	s.malf = max(s.malf, r.MalformedAtPeer) // one count per sender address, repeated in every stream
	s.jitter = max(s.jitter, r.JitterNanos)
	s.p50, s.p90, s.p99, s.pmax = max(s.p50, r.DelayP50Nanos), max(s.p90, r.DelayP90Nanos), max(s.p99, r.DelayP99Nanos), max(s.pmax, r.DelayMaxNanos)
	s.loss = max(s.loss, r.IntervalLoss)
}

// Collect reads one Stats snapshot and sends its metrics.
func (c *SenderCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	emit(ch, c.packets, st.Packets)
	emit(ch, c.messages, st.Messages)
	emit(ch, c.payloadBytes, st.PayloadBytes)
	emit(ch, c.datagrams, st.DatagramsSent)
	emit(ch, c.bytes, st.BytesSent)
	emit(ch, c.parity, st.Parity)
	emit(ch, c.parityDropped, st.ParityDropped)
	emit(ch, c.heartbeats, st.Heartbeats)
	emit(ch, c.retransmissions, st.Retransmits)
	emit(ch, c.retransmitBytes, st.RetransmitBytes)
	emit(ch, c.nacks, st.NACKs)
	emit(ch, c.reports, st.Reports)
	emit(ch, c.malformed, st.Malformed)
	emit(ch, c.unavail, st.Unavailable)
	emit(ch, c.queueFull, st.QueueFull)
	emit(ch, c.writeErrors, st.WriteErrors)
	emit(ch, c.queued, st.Queued)
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"foreign_session", st.ForeignSession},
		{"unexpected_kind", st.Unexpected},
		{"nack_names_unsent", st.NACKsRejected},
		{"unsealed", st.Unsealed},
		{"key_mismatch", st.KeyMismatch},
		{"auth_failed", st.AuthFailed},
		{"replayed", st.Replayed},
		{"corrupted", st.Corrupted},
		{"no_keys", st.NoKeys},
		{"held_dropped", st.HeldDropped},
	} {
		emit(ch, c.refused, r.n, r.reason)
	}
	emit(ch, c.rtxRefused, st.Suppressed, "recently_resent")
	emit(ch, c.rtxRefused, st.Throttled, "retransmit_budget")
	emit(ch, c.rtxRefused, st.RetransmitsBlocked, "amplification_limit")
	emit(ch, c.rtxRefused, st.RetransmitsPaced, "pacing_share")
	emit(ch, c.rtt, seconds(st.RTT.SmoothedNanos))
	emit(ch, c.rttMin, seconds(st.RTT.MinNanos))
	emit(ch, c.rttVar, seconds(st.RTT.VarianceNanos))
	emit(ch, c.pacingRate, st.Pacing.RateBytesPerSec)
	emit(ch, c.deliveryRate, st.Pacing.DeliveryPerSec)
	emit(ch, c.congestion, st.Pacing.CongestionEvents)
	emit(ch, c.waits, st.Pacing.Waits)

	series := make(map[labelKey]*sendSeries, len(st.Streams))
	var order []labelKey
	for i := range st.Streams {
		x := &st.Streams[i]
		k := c.labels.key(c.peer, x.Stream)
		s := series[k]
		if s == nil {
			s = new(sendSeries)
			series[k] = s
			order = append(order, k)
		}
		s.add(x)
	}
	for _, k := range order {
		s := series[k]
		l := []string{k.peer, k.stream}
		emit(ch, c.streamPackets, s.sent, l...)
		emit(ch, c.streamMessages, s.messages, l...)
		emit(ch, c.fecBlocks, s.fecBlocks, l...)
		emit(ch, c.fecBytes, s.fecBytes, l...)
		emit(ch, c.evicted, s.evCap, "capacity", k.peer, k.stream)
		emit(ch, c.evicted, s.evBytes, "bytes", k.peer, k.stream)
		emit(ch, c.evicted, s.evAge, "age", k.peer, k.stream)
		emit(ch, c.fecK, s.k, l...)
		emit(ch, c.fecM, s.m, l...)
		emit(ch, c.fecInterleave, s.interleave, l...)
		emit(ch, c.repReceived, s.received, l...)
		emit(ch, c.repLost, s.lost, l...)
		emit(ch, c.repUnrecovered, s.unrecovered, l...)
		emit(ch, c.repRTX, s.rtx, l...)
		emit(ch, c.repFEC, s.fec, l...)
		emit(ch, c.repDuplicates, s.dup, l...)
		emit(ch, c.repReo, s.reo, l...)
		emit(ch, c.repMalformed, s.malf, l...)
		emit(ch, c.repJitter, seconds(s.jitter), l...)
		emit(ch, c.repLoss, s.loss, l...)
		for _, q := range []struct {
			q string
			v uint64
		}{{"0.5", s.p50}, {"0.9", s.p90}, {"0.99", s.p99}, {"1", s.pmax}} {
			emit(ch, c.repDelay, seconds(q.v), q.q, k.peer, k.stream)
		}
	}
}
