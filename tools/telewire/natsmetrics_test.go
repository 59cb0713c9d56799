package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// TestRecvPublishMetrics runs `telewire recv --publish --http` against an
// embedded NATS server, sends it lines with `telewire send`, and scrapes
// /metrics until telewire_nats_published_total counts every line; after
// an interrupt, --stats holds the same figures the last scrape showed.
func TestRecvPublishMetrics(t *testing.T) {
	const n = 2000
	srv := natstest.Start(t)
	stats := filepath.Join(t.TempDir(), "recv.json")
	recv, addr, rerr := startRecv(t, new(bytes.Buffer), "--publish", srv.URL, "--subject", "md.{stream}",
		"--create-stream", "MD", "--http", "127.0.0.1:0", "--stats", stats)
	url := liveURL(t, rerr) + "metrics"
	var in bytes.Buffer
	for i := range n {
		fmt.Fprintf(&in, "tick-%d\n", i)
	}
	send := exec.Command(telewireBin, "send", "--to", addr, "--linger", "200ms")
	serr := new(lockedBuffer)
	send.Stdin, send.Stderr = bytes.NewReader(in.Bytes()), serr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	wait(t, send, serr, 60*time.Second)

	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fams = scrapeURL(t, http.DefaultClient, url)
		if v, _ := value(fams, "telewire_nats_published_total"); v == n {
			break
		}
		if time.Now().After(deadline) {
			v, ok := value(fams, "telewire_nats_published_total")
			t.Fatalf("telewire_nats_published_total = %v (exported: %v), want %d\n%s", v, ok, n, rerr)
		}
	}
	for name, want := range map[string]float64{
		"telewire_nats_offered_total": n, "telewire_nats_dropped_total": 0,
		"telewire_nats_buffered_messages": 0, "telewire_nats_connected": 1,
	} {
		if v, ok := value(fams, name); !ok || v != want {
			t.Errorf("%s = %v (exported: %v), want %v", name, v, ok, want)
		}
	}
	if err := recv.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	wait(t, recv, rerr, 60*time.Second)
	ns, ok := readJSON(t, stats)["nats"].(map[string]any)
	if !ok {
		t.Fatalf("--stats has no nats figures")
	}
	for key, name := range map[string]string{
		"offered": "telewire_nats_offered_total", "published": "telewire_nats_published_total",
		"dropped": "telewire_nats_dropped_total", "rejected": "telewire_nats_rejected_total",
		"abandoned": "telewire_nats_abandoned_total",
	} {
		if v, _ := value(fams, name); ns[key] != v {
			t.Errorf("--stats nats.%s = %v, scraped %s = %v", key, ns[key], name, v)
		}
	}
}

// TestSendFromMetrics runs `telewire send --from --http` against an
// embedded NATS server holding a stream and scrapes /metrics until the
// forwarder's counters show every stored message received, sent and
// acknowledged.
func TestSendFromMetrics(t *testing.T) {
	const n = 500
	srv := natstest.Start(t)
	js := jsFor(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TICKS", Subjects: []string{"ticks.>"}}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := js.Publish(ctx, "ticks.x", []byte(fmt.Sprintf("tick-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", Mode: receiver.ModeUnordered})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	send := exec.Command(telewireBin, "send", "--to", r.Addr().String(), "--from", srv.URL, "--subject", "ticks.>",
		"--http", "127.0.0.1:0")
	serr := new(lockedBuffer)
	send.Stderr = serr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { send.Process.Kill(); send.Wait() }()
	url := liveURL(t, serr) + "metrics"
	want := map[string]float64{
		"telewire_nats_received_total": n, "telewire_nats_sent_total": n, "telewire_nats_acked_total": n,
		"telewire_nats_send_errors_total": 0, "telewire_nats_connected": 1,
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		fams := scrapeURL(t, http.DefaultClient, url)
		var wrong []string
		for name, w := range want {
			if v, ok := value(fams, name); !ok || v != w {
				wrong = append(wrong, fmt.Sprintf("%s = %v (exported: %v), want %v", name, v, ok, w))
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v\n%s", wrong, serr)
		}
	}
}
