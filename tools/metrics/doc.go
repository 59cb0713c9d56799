// Package metrics exposes telewire's statistics to Prometheus: collectors
// ([prometheus.Collector]) for a [sender.Sender], a [receiver.Receiver], a
// [netem.Relay], and the NATS bridge's [bridge.Publisher] and
// [bridge.Forwarder], that a program registers with its own registry and
// serves however it likes. Nothing here starts a server; tools/web serves
// these collectors for the telewire command's --http flag.
//
// # Cost
//
// A collector reads the source's Stats snapshot when Prometheus scrapes,
// and only then: sending and receiving pay nothing per packet for being
// observed. A scrape costs one Stats call (a copy of the counters under the
// source's lock) plus, on a receiver, one pass over each stream's delay
// histogram.
//
// # Names and units
//
// Metric names follow the Prometheus conventions: the prefix names the role
// (telewire_sender_, telewire_receiver_, telewire_relay_, telewire_nats_
// for the NATS bridge), counters end in
// _total, and values are in base units (seconds, bytes, ratios 0..1).
// Figures that a receiver may revise downwards (a sequence counted lost
// that then arrives late on its own) are gauges, not counters. See
// docs/observability.md for the full list.
//
// # Labels, bounded
//
// Per-stream metrics carry two labels: stream (the stream id in decimal)
// and peer (the receiver's view of the sender's address, or the sender's
// destination). Both come from the network, so their number is capped:
// the first [Options.MaxStreams] distinct (peer, stream) pairs a collector
// sees keep their own labels for the collector's life; every further pair
// is added into the single series stream="other", peer="other" (counters
// summed, gauges at their maximum, histograms merged). A collector
// therefore exports at most MaxStreams+1 series per metric, whatever a
// peer sends.
//
// A series sums the sessions it covers: a sender that restarts with the
// same address and stream continues its series. When a session ends (or
// expires at the receiver) its counts leave the series, which Prometheus's
// rate() reads as a counter reset.
package metrics
