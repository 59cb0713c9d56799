package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

type fakeReceiver struct {
	mu sync.Mutex
	st receiver.Stats
}

func (f *fakeReceiver) Stats() receiver.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

type fakeSender struct{ st sender.Stats }

func (f *fakeSender) Stats() sender.Stats { return f.st }

type fakeRelay struct{ st netem.RelayStats }

func (f *fakeRelay) Stats() netem.RelayStats { return f.st }

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:80": true, "[::1]:80": true, "localhost:0": true, "127.1.2.3:9": true,
		"0.0.0.0:80": false, ":80": false, "[::]:80": false, "10.1.2.3:80": false, "192.0.2.1:0": false,
	} {
		got, err := isLoopback(addr)
		if err != nil || got != want {
			t.Errorf("isLoopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := isLoopback("no-port"); !errors.Is(err, ErrConfig) {
		t.Errorf("address without port: %v", err)
	}
}

func TestStartRefuses(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want error
	}{
		{Config{Addr: "0.0.0.0:0"}, ErrInsecure},
		{Config{Addr: ":0"}, ErrInsecure},
		{Config{Addr: "127.0.0.1:0", CertFile: "x.pem"}, ErrConfig},
		{Config{Addr: "127.0.0.1:0", CertFile: "/nonexistent", KeyFile: "/nonexistent"}, ErrConfig},
	} {
		if s, err := Start(c.cfg); !errors.Is(err, c.want) {
			s.Close()
			t.Errorf("Start(%+v) = %v, want %v", c.cfg, err, c.want)
		}
	}
}

// TestSnapshotMergesAndBounds: in one process with a sender and a
// receiver of the same stream, one entry carries both sides; beyond
// MaxStreams the rest is summed into "other".
func TestSnapshotMergesAndBounds(t *testing.T) {
	rcv := &fakeReceiver{}
	for i := range 5 {
		rcv.st.Streams = append(rcv.st.Streams, receiver.StreamStats{Source: "127.0.0.1:5", Stream: uint32(i), Received: 10, Lost: 2, JitterNanos: uint64(i)})
	}
	snd := &fakeSender{}
	snd.st.RTT.SmoothedNanos = 3e6
	snd.st.Streams = []sender.StreamStats{{Stream: 0, Sent: 12, FECK: 8, FECM: 2}}
	srcs := &sources{senders: []senderSource{{snd, "127.0.0.1:9"}}, receivers: []interface{ Stats() receiver.Stats }{rcv}}
	s := snapshot(srcs, "demo", 1, 3)
	if len(s.Streams) != 4 || s.Omitted != 2 {
		t.Fatalf("%d streams, %d omitted; want 3 + other, 2 omitted", len(s.Streams), s.Omitted)
	}
	first := s.Streams[0]
	if !first.HasSender || !first.HasReceiver || first.Sent != 12 || first.Received != 10 || first.RTTNanos != 3e6 || first.FECM != 2 {
		t.Errorf("merged stream 0: %+v", first)
	}
	other := s.Streams[3]
	if other.Key != "other" || other.Received != 20 || other.Lost != 4 || other.JitterNanos != 4 {
		t.Errorf("other: %+v", other)
	}
	// A sender alone shows the receiver's reported view.
	snd.st.Streams[0].Receiver = sender.ReceiverView{Reported: true, Received: 11, DelayP99Nanos: 7}
	s = snapshot(&sources{senders: srcs.senders}, "send", 1, 16)
	if v := s.Streams[0]; !v.HasReceiver || v.Received != 11 || v.DelayP99 != 7 || v.Key != "127.0.0.1:9/0" {
		t.Errorf("sender-only stream: %+v", v)
	}
}

// TestServerPushesAndCloses serves fake sources, reads /stats, the page,
// /metrics and a few WebSocket pushes, then closes the server with the
// WebSocket open: Close returns and leaves no handler behind.
func TestServerPushesAndCloses(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start(Config{Addr: "127.0.0.1:0", Role: "test", Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rcv := &fakeReceiver{st: receiver.Stats{Datagrams: 1, Streams: []receiver.StreamStats{{Source: "127.0.0.1:5", Stream: 1}}}}
	s.AddReceiver(rcv)
	s.AddRelay(&fakeRelay{st: netem.RelayStats{Clients: 1}})
	s.AddReceiver(&fakeReceiver{}) // a second one: on the page, not in /metrics

	get := func(path string) string {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /%s: %s", path, resp.Status)
		}
		return string(b)
	}
	if page := get(""); !strings.Contains(page, "app.js") || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Errorf("page refers outside itself or lacks its script:\n%s", page)
	}
	if js := get("app.js"); strings.Contains(js, "http://") || strings.Contains(js, "https://") {
		t.Errorf("app.js refers outside the server")
	}
	if m := get("metrics"); !strings.Contains(m, "telewire_receiver_datagrams_total 1") || !strings.Contains(m, `telewire_relay_clients 1`) {
		t.Errorf("metrics lack the sources")
	}
	var snap Snapshot
	if err := json.Unmarshal([]byte(get("stats")), &snap); err != nil || snap.Role != "test" || len(snap.Streams) != 1 || snap.Relay == nil {
		t.Errorf("/stats: %+v, %v", snap, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.Addr().String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	var last int64
	for i := range 3 {
		var got Snapshot
		if err := wsjson.Read(ctx, c, &got); err != nil {
			t.Fatal(err)
		}
		if i > 0 && got.TimeMillis < last {
			t.Errorf("pushes go back in time: %d after %d", got.TimeMillis, last)
		}
		last = got.TimeMillis
		rcv.mu.Lock()
		rcv.st.Datagrams++
		rcv.mu.Unlock()
	}
	// A cross-origin page may not open the socket.
	h := http.Header{"Origin": {"http://evil.example"}}
	if c2, _, err := websocket.Dial(ctx, "ws://"+s.Addr().String()+"/ws", &websocket.DialOptions{HTTPHeader: h}); err == nil {
		c2.CloseNow()
		t.Errorf("cross-origin WebSocket accepted")
	}

	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs with a WebSocket open")
	}
	c.CloseNow()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before+1; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left (before: %d):\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	var nilServer *Server
	nilServer.AddReceiver(rcv) // no --http: wiring calls these on nil
	if err := nilServer.Close(); err != nil {
		t.Error(err)
	}
}

// TestAddCollector: a collector added to a running server is scraped at
// /metrics, read at each scrape; on a nil Server AddCollector does nothing.
func TestAddCollector(t *testing.T) {
	var none *Server
	none.AddCollector(prometheus.NewCounter(prometheus.CounterOpts{Name: "unused_total", Help: "Unused."}))

	s, err := Start(Config{Addr: "127.0.0.1:0", Role: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "telewire_test_extra_total", Help: "A test counter."})
	s.AddCollector(c)
	for _, want := range []string{"telewire_test_extra_total 0\n", "telewire_test_extra_total 7\n"} {
		resp, err := http.Get(s.URL() + "metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
		c.Add(7)
	}
}
