package metrics

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// scrape fetches url with a real HTTP client and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// TestThousandStreamsBounded sends one message on each of 1000 streams
// from a real sender to a real receiver over loopback and scrapes both
// collectors over HTTP: each exports at most DefaultMaxStreams+1 series
// per metric, and the series add up to every message.
func TestThousandStreamsBounded(t *testing.T) {
	const streams = 1000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", MaxStreams: streams, Mode: receiver.ModeUnordered})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := sender.New(ctx, sender.Config{To: r.Addr().String(), MaxStreams: streams, DisableCongestionControl: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewReceiverCollector(r, Options{}), NewSenderCollector(s, Options{Peer: r.Addr().String()}))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	for i := range streams {
		if err := s.SendStream(uint32(i), []byte("tick")); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	for deadline := time.Now().Add(30 * time.Second); got < streams; {
		rctx, c := context.WithDeadline(ctx, deadline)
		_, err := r.Recv(rctx)
		c()
		if err != nil {
			t.Fatalf("received %d of %d messages: %v", got, streams, err)
		}
		got++
	}
	fams := scrape(t, srv.URL)
	for _, name := range []string{"telewire_receiver_packets_total", "telewire_sender_stream_packets_total"} {
		f := fams[name]
		if f == nil {
			t.Fatalf("%s missing", name)
		}
		var sum float64
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
		if n := len(f.GetMetric()); n != DefaultMaxStreams+1 || sum != streams {
			t.Errorf("%s: %d series summing to %v, want %d summing to %d", name, n, sum, DefaultMaxStreams+1, streams)
		}
	}
	if h := fams["telewire_receiver_delay_seconds"]; h == nil || len(h.GetMetric()) != DefaultMaxStreams+1 {
		t.Errorf("delay histogram series: %v", h)
	}
}
