package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telewire/telewire/tools/netem"
)

// RelaySource is what a RelayCollector reads: *netem.Relay, or anything
// else that produces its Stats.
type RelaySource interface{ Stats() netem.RelayStats }

// RelayCollector is a prometheus.Collector of a netem relay's counters,
// per direction (label dir: fwd client→server, rev server→client). Safe
// for concurrent use.
type RelayCollector struct {
	src RelaySource
	f   family

	received, forwarded, dropped, queueDropped, delayed, reordered metric
	duplicated, corrupted, writeErrors, kernelDrops                metric
	clients, refused, stray                                        metric
}

// NewRelayCollector returns a collector of src's counters.
func NewRelayCollector(src RelaySource) *RelayCollector {
	c := &RelayCollector{src: src, f: family{prefix: "telewire_relay_"}}
	f := &c.f
	c.received = f.counter("received_total", "Datagrams read.", "dir")
	c.forwarded = f.counter("forwarded_total", "Datagrams written out after impairment.", "dir")
	c.dropped = f.counter("dropped_total", "Datagrams dropped by the loss model or a full queue.", "dir")
	c.queueDropped = f.counter("queue_dropped_total", "Of those, datagrams a full queue dropped.", "dir")
	c.delayed = f.counter("delayed_total", "Datagrams delayed.", "dir")
	c.reordered = f.counter("reordered_total", "Datagrams sent ahead of delayed ones.", "dir")
	c.duplicated = f.counter("duplicated_total", "Datagrams duplicated.", "dir")
	c.corrupted = f.counter("corrupted_total", "Datagrams corrupted.", "dir")
	c.writeErrors = f.counter("write_errors_total", "Datagrams whose write failed.", "dir")
	c.kernelDrops = f.counter("kernel_drops_total", "Datagrams the kernel dropped from a full receive queue.", "dir")
	c.clients = f.gauge("clients", "Clients served now.")
	c.refused = f.counter("refused_total", "Datagrams dropped because the client limit was reached.")
	c.stray = f.counter("stray_total", "Datagrams on upstream sockets from an address other than the server.")
	return c
}

// Describe sends the descriptions of every metric the collector exports.
func (c *RelayCollector) Describe(ch chan<- *prometheus.Desc) { c.f.describe(ch) }

// Collect reads one Stats snapshot and sends its metrics.
func (c *RelayCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	for _, d := range []struct {
		dir string
		s   *netem.DirStats
	}{{"fwd", &st.Fwd}, {"rev", &st.Rev}} {
		emit(ch, c.received, d.s.Received, d.dir)
		emit(ch, c.forwarded, d.s.Forwarded, d.dir)
		emit(ch, c.dropped, d.s.Dropped, d.dir)
		emit(ch, c.queueDropped, d.s.LimitDropped, d.dir)
		emit(ch, c.delayed, d.s.Delayed, d.dir)
		emit(ch, c.reordered, d.s.Reordered, d.dir)
		emit(ch, c.duplicated, d.s.Duplicated, d.dir)
		emit(ch, c.corrupted, d.s.Corrupted, d.dir)
		emit(ch, c.writeErrors, d.s.WriteErrs, d.dir)
		emit(ch, c.kernelDrops, d.s.KernelDrops, d.dir)
	}
	emit(ch, c.clients, st.Clients)
	emit(ch, c.refused, st.Rejected)
	emit(ch, c.stray, st.Stray)
}
