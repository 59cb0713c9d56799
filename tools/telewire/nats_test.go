package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// jsFor returns a JetStream client on url, closed at the end of the test.
func jsFor(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestRecvPublish runs `telewire recv --publish --create-stream` against a
// NATS server and `telewire send` into it: the stream the command created
// holds every line, in order, and both the summary and --stats report the
// publishing.
func TestRecvPublish(t *testing.T) {
	const n = 5000
	srv := natstest.Start(t)
	dir := t.TempDir()
	var in bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "tick-%d\n", i)
	}
	recv, addr, rerr := startRecv(t, new(bytes.Buffer), "--count", strconv.Itoa(n),
		"--publish", srv.URL, "--subject", "md.{stream}", "--create-stream", "MD", "--max-age", "24h",
		"--stats", filepath.Join(dir, "recv.json"))
	send := exec.Command(telewireBin, "send", "--to", addr, "--stream", "4", "--linger", "200ms")
	serr := new(lockedBuffer)
	send.Stdin, send.Stderr = bytes.NewReader(in.Bytes()), serr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	wait(t, send, serr, 60*time.Second)
	wait(t, recv, rerr, 60*time.Second)
	if !strings.Contains(rerr.String(), fmt.Sprintf("nats: %d offered, %d published", n, n)) {
		t.Errorf("summary lacks the publishing:\n%s", rerr)
	}
	st := readJSON(t, filepath.Join(dir, "recv.json"))
	ns, ok := st["nats"].(map[string]any)
	if !ok || ns["published"].(float64) != n || ns["dropped"].(float64) != 0 {
		t.Errorf("--stats nats = %v", st["nats"])
	}
	js := jsFor(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, "MD")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 24*time.Hour || info.Config.Subjects[0] != "md.*" || info.State.Msgs != n {
		t.Fatalf("stream: subjects %v, max age %v, %d messages", info.Config.Subjects, info.Config.MaxAge, info.State.Msgs)
	}
	for _, seq := range []uint64{1, n / 2, n} {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("tick-%d", seq-1); string(m.Data) != want || m.Subject != "md.4" {
			t.Errorf("stream seq %d: %q on %s, want %q on md.4", seq, m.Data, m.Subject, want)
		}
	}
}

// TestSendFromKilled kills `telewire send --from` with SIGKILL in the
// middle of a stream and starts it again: every message reaches the
// telewire receiver at least once (JetStream delivers again what the dead
// bridge had not acknowledged); the duplicates are counted.
func TestSendFromKilled(t *testing.T) {
	const n = 20000
	srv := natstest.Start(t)
	js := jsFor(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TICKS", Subjects: []string{"ticks.>"}}); err != nil {
		t.Fatal(err)
	}
	// In windows of 1000 acknowledgements: the client refuses a publish
	// once 4000 are outstanding and the server lags behind for 200 ms,
	// as a loaded CI host's does ("stalled with too many outstanding
	// async published messages").
	for i := 0; i < n; i++ {
		if _, err := js.PublishAsync("ticks.x", []byte(fmt.Sprintf("tick-%d", i))); err != nil {
			t.Fatal(err)
		}
		if i%1000 != 999 && i != n-1 {
			continue
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("filling the stream timed out")
		}
	}

	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", Mode: receiver.ModeUnordered})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	seen := make([]int, n)
	total := 0
	got := make(chan struct{})
	go func() {
		defer close(got)
		missing := n
		for missing > 0 {
			m, err := r.Recv(ctx)
			if err != nil {
				return
			}
			i, err := strconv.Atoi(strings.TrimPrefix(string(m.Payload), "tick-"))
			if err != nil || i < 0 || i >= n {
				t.Errorf("unexpected payload %q", m.Payload)
				return
			}
			if seen[i] == 0 {
				missing--
			}
			seen[i]++
			total++
		}
	}()

	bridgeArgs := []string{"send", "--to", r.Addr().String(), "--from", srv.URL, "--subject", "ticks.>",
		"--ack-wait", "2s", "--linger", "100ms", "--log-level", "info"}
	first := exec.Command(telewireBin, append(bridgeArgs, "--rate", "10000")...)
	ferr := new(lockedBuffer)
	first.Stderr = ferr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once part of the stream went out.
	deadline := time.Now().Add(time.Minute)
	for r.Stats().Delivered < n/4 {
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatalf("the first bridge did not get going: %s", ferr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	killedAt := r.Stats().Delivered

	second := exec.Command(telewireBin, append(bridgeArgs, "--until-empty")...)
	serr := new(lockedBuffer)
	second.Stderr = serr
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	wait(t, second, serr, 90*time.Second)
	select {
	case <-got:
	case <-time.After(30 * time.Second):
	}
	cancel()
	<-got
	missing := 0
	for i, c := range seen {
		if c == 0 {
			if missing < 5 {
				t.Errorf("message %d never arrived", i)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d messages never arrived\nsecond bridge: %s", missing, n, serr)
	}
	t.Logf("killed after %d deliveries; %d messages delivered %d times in all: %d duplicates\nsecond bridge: %s",
		killedAt, n, total, total-n, lastLines(serr.String(), 2))
	if !strings.Contains(serr.String(), "redelivered") {
		t.Errorf("the second bridge's summary does not count redeliveries: %s", serr)
	}
}
