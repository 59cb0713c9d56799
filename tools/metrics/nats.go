package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telewire/telewire/tools/bridge"
)

// natsPrefix is the prefix of the NATS bridge's metrics: recv --publish
// and send --from run in different processes, so the publisher's and the
// forwarder's metrics share it, and so do their connection metrics.
const natsPrefix = "telewire_nats_"

// PublisherSource is what a PublisherCollector reads: *bridge.Publisher,
// or anything else that produces its Stats.
type PublisherSource interface{ Stats() bridge.PublisherStats }

// ForwarderSource is what a ForwarderCollector reads: *bridge.Forwarder,
// or anything else that produces its Stats.
type ForwarderSource interface{ Stats() bridge.ForwarderStats }

// ConnSource is the connection a ForwarderCollector reports on:
// *bridge.Conn.
type ConnSource interface {
	Disconnects() uint64
	Reconnects() uint64
	IsConnected() bool
}

// connMetrics are the connection's metrics, the same in both collectors.
type connMetrics struct{ disconnects, reconnects, connected metric }

func (f *family) conn() connMetrics {
	return connMetrics{
		disconnects: f.counter("disconnects_total", "Times the NATS connection was lost."),
		reconnects:  f.counter("reconnects_total", "Times a NATS connection was (re-)established after a loss or a failed first attempt."),
		connected:   f.gauge("connected", "1 while connected to NATS, else 0."),
	}
}

func (m connMetrics) emit(ch chan<- prometheus.Metric, disconnects, reconnects uint64, connected bool) {
	emit(ch, m.disconnects, disconnects)
	emit(ch, m.reconnects, reconnects)
	up := 0
	if connected {
		up = 1
	}
	emit(ch, m.connected, up)
}

// PublisherCollector is a prometheus.Collector of a NATS publisher's
// counters (telewire recv --publish). Every message offered ends up in one
// of published, dropped, rejected, abandoned or (still) buffered:
//
//	offered = published + dropped + rejected + abandoned + buffered
//
// Safe for concurrent use.
type PublisherCollector struct {
	src PublisherSource
	f   family

	offered, published, duplicates, dropped, rejected, abandoned metric
	buffered, inFlight                                           metric
	republished, ackFailures, blockedPuts                        metric
	conn                                                         connMetrics
}

// NewPublisherCollector returns a collector of src's counters.
func NewPublisherCollector(src PublisherSource) *PublisherCollector {
	c := &PublisherCollector{src: src, f: family{prefix: natsPrefix}}
	f := &c.f
	c.offered = f.counter("offered_total", "Messages handed to the NATS publisher.")
	c.published = f.counter("published_total", "Messages JetStream acknowledged.")
	c.duplicates = f.counter("duplicates_total", "Of published, messages JetStream already held (same message id).")
	c.dropped = f.counter("dropped_total", "Messages dropped because the publish buffer was full (--on-full drop).")
	c.rejected = f.counter("rejected_total", "Messages JetStream refused with an API error (too large, stream full …).")
	c.abandoned = f.counter("abandoned_total", "Messages still unacknowledged when the publisher gave up draining at exit.")
	c.buffered = f.gauge("buffered_messages", "Messages held now until JetStream acknowledges them, in flight included.")
	c.inFlight = f.gauge("in_flight_messages", "Messages published whose acknowledgement is awaited now.")
	c.republished = f.counter("republished_total", "Publishes repeated after a failure or an acknowledgement timeout.")
	c.ackFailures = f.counter("ack_failures_total", "JetStream acknowledgements that failed or timed out.")
	c.blockedPuts = f.counter("blocked_puts_total", "Messages that waited for room in the buffer (--on-full block).")
	c.conn = f.conn()
	return c
}

// Describe sends the descriptions of every metric the collector exports.
func (c *PublisherCollector) Describe(ch chan<- *prometheus.Desc) { c.f.describe(ch) }

// Collect reads one Stats snapshot and sends its metrics.
func (c *PublisherCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	emit(ch, c.offered, st.Offered)
	emit(ch, c.published, st.Published)
	emit(ch, c.duplicates, st.Duplicates)
	emit(ch, c.dropped, st.Dropped)
	emit(ch, c.rejected, st.Rejected)
	emit(ch, c.abandoned, st.Abandoned)
	emit(ch, c.buffered, st.Buffered)
	emit(ch, c.inFlight, st.InFlight)
	emit(ch, c.republished, st.Republished)
	emit(ch, c.ackFailures, st.AckFailures)
	emit(ch, c.blockedPuts, st.BlockedPuts)
	c.conn.emit(ch, st.Disconnects, st.Reconnects, st.Connected)
}

// ForwarderCollector is a prometheus.Collector of a NATS forwarder's
// counters (telewire send --from) and of its connection. Safe for
// concurrent use.
type ForwarderCollector struct {
	src  ForwarderSource
	conn ConnSource
	f    family

	received, redelivered, sent, sendErrors, acked, ackErrors metric
	unacked, coreDropped                                      metric
	connM                                                     connMetrics
}

// NewForwarderCollector returns a collector of src's counters and of
// conn's; conn is the connection src consumes from.
func NewForwarderCollector(src ForwarderSource, conn ConnSource) *ForwarderCollector {
	c := &ForwarderCollector{src: src, conn: conn, f: family{prefix: natsPrefix}}
	f := &c.f
	c.received = f.counter("received_total", "Messages taken from NATS.")
	c.redelivered = f.counter("redelivered_total", "Of received, messages JetStream delivered before (an earlier bridge did not acknowledge them).")
	c.sent = f.counter("sent_total", "Messages from NATS handed to the telewire sender.")
	c.sendErrors = f.counter("send_errors_total", "Messages from NATS the telewire sender refused (too large); acknowledged, never retried.")
	c.acked = f.counter("acked_total", "Messages acknowledged to JetStream.")
	c.ackErrors = f.counter("ack_errors_total", "Acknowledgements that could not be sent (JetStream delivers those messages again).")
	c.unacked = f.counter("unacked_total", "Messages sent but not acknowledged when forwarding stopped (JetStream delivers them again).")
	c.coreDropped = f.counter("core_dropped_total", "Messages the core NATS client dropped as a slow consumer (--core).")
	c.connM = f.conn()
	return c
}

// Describe sends the descriptions of every metric the collector exports.
func (c *ForwarderCollector) Describe(ch chan<- *prometheus.Desc) { c.f.describe(ch) }

// Collect reads one Stats snapshot and the connection's counters and
// sends their metrics.
func (c *ForwarderCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	emit(ch, c.received, st.Received)
	emit(ch, c.redelivered, st.Redelivered)
	emit(ch, c.sent, st.Sent)
	emit(ch, c.sendErrors, st.SendErrors)
	emit(ch, c.acked, st.Acked)
	emit(ch, c.ackErrors, st.AckErrors)
	emit(ch, c.unacked, st.Unacked)
	emit(ch, c.coreDropped, st.CoreDropped)
	c.connM.emit(ch, c.conn.Disconnects(), c.conn.Reconnects(), c.conn.IsConnected())
}
