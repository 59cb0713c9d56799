package metrics

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

type fakeReceiver struct{ st receiver.Stats }

func (f *fakeReceiver) Stats() receiver.Stats { return f.st }

type fakeSender struct{ st sender.Stats }

func (f *fakeSender) Stats() sender.Stats { return f.st }

type fakeRelay struct{ st netem.RelayStats }

func (f *fakeRelay) Stats() netem.RelayStats { return f.st }

// gather registers c in a fresh registry, which also checks that the
// collector's metrics are consistent with its descriptions, and returns
// the families by name.
func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

func labelsOf(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// TestReceiverLabelsBounded feeds 1000 streams from 10 addresses: the
// first MaxStreams keep their labels, the rest sum into "other", and no
// count is lost on the way.
func TestReceiverLabelsBounded(t *testing.T) {
	src := &fakeReceiver{}
	var total uint64
	for i := range 1000 {
		x := receiver.StreamStats{Source: fmt.Sprintf("10.0.0.%d:9", i%10), Stream: uint32(i), Received: uint64(i + 1), JitterNanos: uint64(i)}
		x.DelaySamples = 3
		x.DelayBuckets[receiver.NumDelayBuckets-1] = 3
		src.st.Streams = append(src.st.Streams, x)
		total += x.Received
	}
	c := NewReceiverCollector(src, Options{MaxStreams: 20})
	for range 2 { // the assignment is stable across scrapes
		fams := gather(t, c)
		pk := fams["telewire_receiver_packets_total"]
		if n := len(pk.GetMetric()); n != 21 {
			t.Fatalf("%d packets_total series, want 21", n)
		}
		var sum float64
		var other *dto.Metric
		for _, m := range pk.GetMetric() {
			sum += m.GetCounter().GetValue()
			if l := labelsOf(m); l["stream"] == Other {
				if l["peer"] != Other {
					t.Errorf("other series labelled %v", l)
				}
				other = m
			}
		}
		if sum != float64(total) {
			t.Errorf("packets sum %v, want %d", sum, total)
		}
		if other == nil || other.GetCounter().GetValue() != float64(total-20*21/2) {
			t.Errorf("other series %v", other)
		}
		for _, m := range fams["telewire_receiver_jitter_seconds"].GetMetric() {
			if labelsOf(m)["stream"] == Other && m.GetGauge().GetValue() != 999e-9 {
				t.Errorf("other jitter %v, want the maximum", m.GetGauge().GetValue())
			}
		}
		for _, m := range fams["telewire_receiver_delay_seconds"].GetMetric() {
			if labelsOf(m)["stream"] == Other && m.GetHistogram().GetSampleCount() != 980*3 {
				t.Errorf("other histogram count %d", m.GetHistogram().GetSampleCount())
			}
		}
	}
	if n := len(gather(t, NewReceiverCollector(src, Options{MaxStreams: -1}))["telewire_receiver_packets_total"].GetMetric()); n != 1 {
		t.Errorf("MaxStreams -1: %d series, want 1", n)
	}
}

func TestReceiverCounters(t *testing.T) {
	src := &fakeReceiver{st: receiver.Stats{Datagrams: 7, BytesRead: 700, Malformed: 2, AuthFailed: 3}}
	x := receiver.StreamStats{Source: "127.0.0.1:5", Stream: 4, Received: 10, RecoveredFEC: 2, RecoveredRTX: 3, Skipped: 1, NACKs: 5, Lost: 6, DelaySamples: 10, DelaySumNanos: 5e6}
	copy(x.DelayBuckets[:], []uint64{0, 0, 0, 0, 4, 4, 8, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10})
	src.st.Streams = []receiver.StreamStats{x}
	fams := gather(t, NewReceiverCollector(src, Options{}))
	val := func(name string, labels map[string]string) float64 {
		for _, m := range fams[name].GetMetric() {
			l := labelsOf(m)
			ok := true
			for k, v := range labels {
				ok = ok && l[k] == v
			}
			if ok {
				if m.Counter != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("%s%v missing", name, labels)
		return 0
	}
	s := map[string]string{"peer": "127.0.0.1:5", "stream": "4"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"telewire_receiver_datagrams_total", nil, 7},
		{"telewire_receiver_bytes_total", nil, 700},
		{"telewire_receiver_malformed_total", nil, 2},
		{"telewire_receiver_refused_total", map[string]string{"reason": "auth_failed"}, 3},
		{"telewire_receiver_packets_total", s, 10},
		{"telewire_receiver_rebuilt_total", s, 2},
		{"telewire_receiver_repaired_by_retransmission_total", s, 3},
		{"telewire_receiver_skipped_total", s, 1},
		{"telewire_receiver_nacks_total", s, 5},
		{"telewire_receiver_lost_packets", s, 6},
	} {
		if got := val(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	h := fams["telewire_receiver_delay_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 10 || h.GetSampleSum() != 5e-3 {
		t.Errorf("histogram count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 0.005 && b.GetCumulativeCount() != 8 {
			t.Errorf("bucket le=5ms: %d, want 8", b.GetCumulativeCount())
		}
	}
}

func TestSenderAndRelayCollectors(t *testing.T) {
	src := &fakeSender{st: sender.Stats{Packets: 100, Messages: 730, BytesSent: 5000, Retransmits: 4, Parity: 9}}
	src.st.RTT.SmoothedNanos = 2e6
	src.st.Pacing.RateBytesPerSec = 1e6
	src.st.Streams = []sender.StreamStats{{Stream: 1, Sent: 100, Messages: 730, FECK: 10, FECM: 2}}
	src.st.Streams[0].Receiver.DelayP99Nanos = 3e6
	fams := gather(t, NewSenderCollector(src, Options{Peer: "127.0.0.1:9000"}))
	for name, want := range map[string]float64{
		"telewire_sender_packets_total":                100,
		"telewire_sender_bytes_total":                  5000,
		"telewire_sender_retransmissions_total":        4,
		"telewire_sender_parity_total":                 9,
		"telewire_sender_rtt_seconds":                  0.002,
		"telewire_sender_pacing_rate_bytes_per_second": 1e6,
		"telewire_sender_fec_parity_shards":            2,
		"telewire_sender_stream_packets_total":         100,
		"telewire_sender_messages_total":               730,
		"telewire_sender_stream_messages_total":        730,
	} {
		m := fams[name].GetMetric()[0]
		got := m.GetCounter().GetValue() + m.GetGauge().GetValue()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
		if name == "telewire_sender_stream_packets_total" && labelsOf(m)["peer"] != "127.0.0.1:9000" {
			t.Errorf("peer label %v", labelsOf(m))
		}
	}
	rl := &fakeRelay{st: netem.RelayStats{Clients: 1}}
	rl.st.Fwd.Dropped = 12
	rf := gather(t, NewRelayCollector(rl))
	for _, m := range rf["telewire_relay_dropped_total"].GetMetric() {
		want := map[string]float64{"fwd": 12, "rev": 0}[labelsOf(m)["dir"]]
		if m.GetCounter().GetValue() != want {
			t.Errorf("relay dropped %v = %v, want %v", labelsOf(m), m.GetCounter().GetValue(), want)
		}
	}
	if n := len(rf); n != 13 {
		t.Errorf("relay exports %d metric families, want 13", n)
	}
}
