package metrics

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// natsWait bounds every wait in the NATS tests: generous for a loaded
// machine under -race.
const natsWait = 60 * time.Second

// value returns the value of the single series of family name.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: %v, want one series", name, f)
	}
	m := f.GetMetric()[0]
	if f.GetType() == dto.MetricType_GAUGE {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func publisherValues(st bridge.PublisherStats) map[string]float64 {
	return map[string]float64{
		"telewire_nats_offered_total":      float64(st.Offered),
		"telewire_nats_published_total":    float64(st.Published),
		"telewire_nats_duplicates_total":   float64(st.Duplicates),
		"telewire_nats_dropped_total":      float64(st.Dropped),
		"telewire_nats_rejected_total":     float64(st.Rejected),
		"telewire_nats_abandoned_total":    float64(st.Abandoned),
		"telewire_nats_buffered_messages":  float64(st.Buffered),
		"telewire_nats_in_flight_messages": float64(st.InFlight),
		"telewire_nats_republished_total":  float64(st.Republished),
		"telewire_nats_ack_failures_total": float64(st.AckFailures),
		"telewire_nats_blocked_puts_total": float64(st.BlockedPuts),
		"telewire_nats_disconnects_total":  float64(st.Disconnects),
		"telewire_nats_reconnects_total":   float64(st.Reconnects),
		"telewire_nats_connected":          b2f(st.Connected),
	}
}

func connectNATS(t *testing.T, url string) *bridge.Conn {
	t.Helper()
	c, err := bridge.Connect(bridge.ConnConfig{Servers: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	deadline := time.Now().Add(natsWait)
	for !c.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("not connected to NATS")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c
}

func ensureStream(t *testing.T, c *bridge.Conn, name, subject string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), natsWait)
	defer cancel()
	if _, err := bridge.EnsureStream(ctx, c, bridge.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
		t.Fatal(err)
	}
}

// TestPublisherCollector publishes to an embedded JetStream server, stops
// the server and fills a small buffer so that some messages are dropped,
// then scrapes the collector over HTTP: every metric equals the
// publisher's Stats, and the figures are those the scenario produces.
func TestPublisherCollector(t *testing.T) {
	srv := natstest.Start(t)
	conn := connectNATS(t, srv.URL)
	ensureStream(t, conn, "TW", "tw.>")
	tmpl, err := bridge.ParseTemplate("tw.{stream}")
	if err != nil {
		t.Fatal(err)
	}
	p, err := bridge.NewPublisher(conn, bridge.PublisherConfig{Subject: tmpl, BufferMessages: 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewPublisherCollector(p))
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()

	put := func(from, to uint64) {
		for seq := from; seq < to; seq++ {
			m := receiver.Message{Source: netip.MustParseAddrPort("127.0.0.1:9"), Session: 1, Seq: seq, Payload: []byte("tick")}
			if err := p.Put(&m); err != nil {
				t.Fatal(err)
			}
		}
	}
	put(0, 15)
	ctx, cancel := context.WithTimeout(context.Background(), natsWait)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (%+v)", err, p.Stats())
	}
	fams := scrape(t, hs.URL)
	for name, v := range publisherValues(p.Stats()) {
		if s := value(t, fams, name); s != v {
			t.Errorf("connected: %s scraped %v, Stats %v", name, s, v)
		}
	}
	if v := value(t, fams, "telewire_nats_published_total"); v != 15 {
		t.Errorf("published %v, want 15", v)
	}
	if v := value(t, fams, "telewire_nats_connected"); v != 1 {
		t.Errorf("connected %v, want 1", v)
	}

	srv.Stop()
	for deadline := time.Now().Add(natsWait); conn.IsConnected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still connected after the server stopped")
		}
	}
	put(15, 45) // 20 fit in the buffer, 10 are dropped
	before := p.Stats()
	fams = scrape(t, hs.URL)
	after := p.Stats()
	if before != after {
		t.Fatalf("stats moved while disconnected: %+v then %+v", before, after)
	}
	for name, v := range publisherValues(after) {
		if s := value(t, fams, name); s != v {
			t.Errorf("disconnected: %s scraped %v, Stats %v", name, s, v)
		}
	}
	want := map[string]float64{
		"telewire_nats_offered_total": 45, "telewire_nats_published_total": 15,
		"telewire_nats_dropped_total": 10, "telewire_nats_buffered_messages": 20,
		"telewire_nats_disconnects_total": 1, "telewire_nats_connected": 0,
	}
	for name, v := range want {
		if s := value(t, fams, name); s != v {
			t.Errorf("%s = %v, want %v", name, s, v)
		}
	}
}

// TestForwarderCollector replays a stream from an embedded JetStream
// server through a real sender to a real receiver and scrapes the
// collector over HTTP: every metric equals the forwarder's Stats and its
// connection's counters.
func TestForwarderCollector(t *testing.T) {
	const n = 200
	srv := natstest.Start(t)
	conn := connectNATS(t, srv.URL)
	ensureStream(t, conn, "TICKS", "ticks.>")
	js, err := jetstream.New(conn.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), natsWait)
	defer cancel()
	for i := range n {
		if _, err := js.Publish(ctx, "ticks.a", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := sender.New(ctx, sender.Config{To: r.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := bridge.NewForwarder(conn, bridge.ForwarderConfig{Subject: "ticks.>", UntilEmpty: true})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewForwarderCollector(f, conn))
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer hs.Close()
	if sent, err := f.Run(ctx, s); err != nil || sent != n {
		t.Fatalf("Run: %d sent, %v", sent, err)
	}
	fams := scrape(t, hs.URL)
	st := f.Stats()
	for name, v := range map[string]float64{
		"telewire_nats_received_total":     float64(st.Received),
		"telewire_nats_redelivered_total":  float64(st.Redelivered),
		"telewire_nats_sent_total":         float64(st.Sent),
		"telewire_nats_send_errors_total":  float64(st.SendErrors),
		"telewire_nats_acked_total":        float64(st.Acked),
		"telewire_nats_ack_errors_total":   float64(st.AckErrors),
		"telewire_nats_unacked_total":      float64(st.Unacked),
		"telewire_nats_core_dropped_total": float64(st.CoreDropped),
		"telewire_nats_disconnects_total":  float64(conn.Disconnects()),
		"telewire_nats_reconnects_total":   float64(conn.Reconnects()),
		"telewire_nats_connected":          b2f(conn.IsConnected()),
	} {
		if s := value(t, fams, name); s != v {
			t.Errorf("%s scraped %v, want %v", name, s, v)
		}
	}
	for _, name := range []string{"telewire_nats_received_total", "telewire_nats_sent_total", "telewire_nats_acked_total"} {
		if v := value(t, fams, name); v != n {
			t.Errorf("%s = %v, want %d", name, v, n)
		}
	}
}
