package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
)

// workerEnv makes the test binary a worker process: TestMain serves the
// role it names instead of running tests ("die" exits at once).
const workerEnv = "TELEWIRE_BENCH_TEST_WORKER"

func TestMain(m *testing.M) {
	if role := os.Getenv(workerEnv); role != "" {
		if role == "die" {
			os.Exit(3)
		}
		if err := Serve(context.Background(), role, Builtin(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// testWorker starts this test binary as a worker; override replaces the
// role in the environment (to make one die).
func testWorker(override map[string]string) func(context.Context, string) *exec.Cmd {
	return func(ctx context.Context, role string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		r := role
		if o, ok := override[role]; ok {
			r = o
		}
		cmd.Env = append(os.Environ(), workerEnv+"="+r)
		return cmd
	}
}

func pick(names ...string) []Transport {
	var out []Transport
	for _, t := range Builtin() {
		for _, n := range names {
			if t.Name == n {
				out = append(out, t)
			}
		}
	}
	return out
}

func findCase(t *testing.T, rep *Report, key string) *Case {
	t.Helper()
	for i := range rep.Cases {
		if rep.Cases[i].Key() == key {
			return &rep.Cases[i]
		}
	}
	t.Fatalf("no case %s", key)
	return nil
}

// TestRunEndToEnd runs a small matrix through real worker processes:
// raw batched UDP and telewire (NACK only), paced, clean and through the
// relay at 5% loss.
func TestRunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes and runs for a few seconds")
	}
	var progress strings.Builder
	rep, err := Run(context.Background(), Options{
		Transports: pick(RawBatch, TwNACK), Rates: []float64{5000}, Losses: []float64{0, 5},
		Runs: 1, Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Idle: 150 * time.Millisecond,
		Worker: testWorker(nil), Progress: &progress,
	})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	if got := strings.Count(progress.String(), "\n"); got != 4 {
		t.Errorf("%d progress lines, want 4:\n%s", got, progress.String())
	}
	for _, key := range []string{"raw-batch/5k/clean", "tw-nack/5k/clean", "raw-batch/5k/loss5", "tw-nack/5k/loss5"} {
		c := findCase(t, rep, key)
		if len(c.Errors) > 0 || c.Median == nil {
			t.Fatalf("%s failed: %v", key, c.Errors)
		}
		m := c.Median
		// 300 ms at 5000/s, paced from the start: at most 1500 messages
		// (+1), and the goodput cannot exceed the offered rate by more
		// than that one message. There are no floors: the workers run
		// -race instrumented beside other tests, and on a loaded
		// two-core machine they were seen to send 596 in the 300 ms
		// (767 msgs/s); how fast is what the bench measures, not what
		// this test checks.
		if m.Sent < 1 || m.Sent > 1600 {
			t.Errorf("%s: sent %v, want at most about 1500", key, m.Sent)
		}
		if m.MsgsPerSec <= 0 || m.MsgsPerSec > 6000 || m.Mbps <= 0 {
			t.Errorf("%s: %v msgs/s, %v Mbit/s at an offered 5000/s", key, m.MsgsPerSec, m.Mbps)
		}
		if !(0 < m.P50Nanos && m.P50Nanos <= m.P99Nanos && m.P99Nanos <= m.P999Nanos && m.P999Nanos <= m.MaxNanos) {
			t.Errorf("%s: latency p50 %v p99 %v p99.9 %v max %v", key, m.P50Nanos, m.P99Nanos, m.P999Nanos, m.MaxNanos)
		}
		if m.SendCPUNanos <= 0 || m.RecvCPUNanos <= 0 {
			t.Errorf("%s: CPU per message %v (send) %v (recv)", key, m.SendCPUNanos, m.RecvCPUNanos)
		}
		if r := c.Runs[0].RecvResult; r.Warmup == 0 || r.Invalid != 0 || r.Duplicates != 0 {
			t.Errorf("%s: warm-up %d, invalid %d, duplicates %d", key, r.Warmup, r.Invalid, r.Duplicates)
		}
		if strings.HasPrefix(key, "tw-") {
			if m.Completeness != 1 {
				t.Errorf("%s: completeness %v, want 1 (NACK repairs the loss)", key, m.Completeness)
			}
			if c.VsRaw == nil || c.VsRaw.Median.MsgsPerSec <= 0 {
				t.Errorf("%s: no ratio to the baseline", key)
			}
		}
	}
	lossy := findCase(t, rep, "raw-batch/5k/loss5").Median
	// No lower bound: a slow (race-instrumented, busy) relay also loses
	// datagrams to its own socket's overflow.
	if lossy.RelayDropped == 0 || lossy.Completeness >= 1 {
		t.Errorf("raw through 5%% loss: relay dropped %v, completeness %v", lossy.RelayDropped, lossy.Completeness)
	}
	if rep.Host.CPUs < 1 || rep.Runs != 1 || rep.MessageSize != MessageSize {
		t.Errorf("report header %+v", rep.Host)
	}
}

// TestRunPingPongAndSpin runs the latency cases through real worker
// processes: the ping-pong baseline (clean only), telewire with and
// without the busy-polling receiver, and what each adds to the
// ping-pong's p50; memory is sampled on both sides.
func TestRunPingPongAndSpin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	rep, err := Run(context.Background(), Options{
		Transports: pick(RawBatch, TwNACK, RawPingPong, TwSpin), Rates: []float64{2000}, Losses: []float64{0, 5},
		Runs: 1, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond, Idle: 150 * time.Millisecond,
		Worker: testWorker(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Cases {
		if c.Transport == RawPingPong && c.LossPercent > 0 {
			t.Errorf("ping-pong ran on a lossy link: %s", c.Key())
		}
	}
	pp := findCase(t, rep, "raw-pingpong/2k/clean")
	if pp.Median == nil || pp.Median.Completeness != 1 || pp.Runs[0].SendResult.HalfRTT == nil || pp.Median.P50Nanos <= 0 {
		t.Fatalf("ping-pong: %+v %v", pp.Median, pp.Errors)
	}
	for _, key := range []string{"tw-nack/2k/clean", "tw-spin/2k/clean"} {
		c := findCase(t, rep, key)
		if c.Median == nil || c.Median.Completeness != 1 {
			t.Fatalf("%s: %+v %v", key, c.Median, c.Errors)
		}
		if c.VsPingPong == nil || c.VsPingPong.MedianNanos != c.Median.P50Nanos-pp.Median.P50Nanos {
			t.Errorf("%s: added p50 %+v", key, c.VsPingPong)
		}
		if m := c.Median; m.SendRSSEndBytes <= 0 || m.RecvRSSEndBytes <= 0 || m.RecvHeapEndBytes <= 0 || m.SendRSSGrowth <= 0 {
			t.Errorf("%s: memory figures %+v", key, m)
		}
	}
	if findCase(t, rep, "tw-nack/2k/loss5").VsPingPong != nil {
		t.Error("added p50 without a ping-pong at that loss")
	}
	var buf strings.Builder
	if err := WriteTable(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "added p50 vs raw ping-pong") || !strings.Contains(buf.String(), "memory, after warm-up") {
		t.Errorf("table:\n%s", buf.String())
	}
}

func TestRunWorkerDies(t *testing.T) {
	_, err := Run(context.Background(), Options{
		Transports: pick(RawBatch), Rates: []float64{1000}, Losses: []float64{0}, Runs: 1,
		Duration: 50 * time.Millisecond, Worker: testWorker(map[string]string{RoleRecv: "die"}),
	})
	if !errors.Is(err, ErrWorker) {
		t.Fatalf("Run with a dead worker: %v, want ErrWorker", err)
	}
}

func TestRunOptionErrors(t *testing.T) {
	good := Options{Transports: pick(RawBatch), Rates: []float64{0}, Losses: []float64{0}, Worker: testWorker(nil)}
	for name, mod := range map[string]func(*Options){
		"no transports": func(o *Options) { o.Transports = nil },
		"no worker":     func(o *Options) { o.Worker = nil },
		"negative rate": func(o *Options) { o.Rates = []float64{-1} },
		"loss 100":      func(o *Options) { o.Losses = []float64{100} },
		"runs":          func(o *Options) { o.Runs = -1 },
	} {
		o := good
		mod(&o)
		if _, err := Run(context.Background(), o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: %v, want ErrOptions", name, err)
		}
	}
}

// TestWorkerProtocolErrors drives one worker process with requests it
// must refuse, and checks it keeps serving.
func TestWorkerProtocolErrors(t *testing.T) {
	ctx := context.Background()
	w, err := startWorker(ctx, testWorker(nil), RoleRecv)
	if err != nil {
		t.Fatal(err)
	}
	defer w.stop()
	for _, req := range []Request{
		{Op: "dance"},
		{Op: OpSend, Transport: RawBatch},
		{Op: OpDrain},
		{Op: OpListen, Transport: "carrier-pigeon", MaxMessages: 10},
		{Op: OpListen, Transport: RawBatch, MaxMessages: 0},
	} {
		if _, err := w.call(ctx, req, 10*time.Second); !errors.Is(err, ErrProtocol) {
			t.Errorf("%+v: %v, want ErrProtocol", req, err)
		}
	}
	rep, err := w.call(ctx, Request{Op: OpListen, Transport: RawBatch, MaxMessages: 10}, 10*time.Second)
	if err != nil || !strings.HasPrefix(rep.Addr, "127.0.0.1:") {
		t.Fatalf("listen after errors: %+v, %v", rep, err)
	}
	rep, err = w.call(ctx, Request{Op: OpDrain, IdleNanos: 1, MaxWaitNanos: 1}, 10*time.Second)
	if err != nil || rep.Recv == nil || rep.Recv.Delivered != 0 {
		t.Fatalf("drain: %+v, %v", rep, err)
	}
}

// TestServeInProcess runs a receiving and a sending worker as goroutines
// over pipes: telewire end to end, then nothing left running.
func TestServeInProcess(t *testing.T) {
	testutil.NoLeaks(t)
	ctx := context.Background()
	call := func(in io.Writer, out *lineReader, req string) string {
		t.Helper()
		if _, err := io.WriteString(in, req+"\n"); err != nil {
			t.Fatal(err)
		}
		return out.next(t)
	}
	start := func(role string) (io.WriteCloser, *lineReader, chan error) {
		inR, inW := io.Pipe()
		outR, outW := io.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- Serve(ctx, role, Builtin(), inR, outW)
			outW.Close()
		}()
		// A test that fails half-way still ends its worker (the end of
		// its input), so that NoLeaks reports the failure, not the
		// worker's goroutines.
		t.Cleanup(func() { inW.Close(); outR.Close() })
		return inW, newLineReader(outR), done
	}
	rin, rout, rdone := start(RoleRecv)
	sin, sout, sdone := start(RoleSend)
	addr := call(rin, rout, `{"op":"listen","transport":"tw-auto","max_messages":10000}`)
	a := strings.Split(addr, `"`)
	if len(a) < 4 || a[1] != "addr" {
		t.Fatalf("listen reply %s", addr)
	}
	sent := call(sin, sout, `{"op":"send","transport":"tw-auto","addr":"`+a[3]+`","rate":20000,"duration_ns":100000000,"max_messages":10000}`)
	var rep Reply
	if err := json.Unmarshal([]byte(sent), &rep); err != nil || rep.Send == nil {
		t.Fatalf("send reply %s: %v", sent, err)
	}
	// 100 ms at 20k/s: the pacer never runs ahead of the rate, so at most
	// 2001. There is no lower bound beyond one: a loaded two-core machine
	// under -race sends as few as a third of them in the 100 ms (a stress
	// run sent 642), and what this test checks is that every message sent
	// is delivered, not how fast (the bench itself measures that).
	n := rep.Send.Sent
	if n == 0 || n > 2001 || rep.Send.SendErrors != 0 {
		t.Fatalf("send reply %s", sent)
	}
	drained := call(rin, rout, fmt.Sprintf(`{"op":"drain","sent":%d,"idle_ns":1000000000,"max_wait_ns":5000000000}`, n))
	if !strings.Contains(drained, fmt.Sprintf(`"delivered":%d,`, n)) {
		t.Errorf("drain reply %s, want %d delivered", drained, n)
	}
	if closed := call(sin, sout, `{"op":"close"}`); !strings.Contains(closed, `"wire_bytes"`) || strings.Contains(closed, `"err"`) {
		t.Errorf("close reply %s", closed)
	}
	rin.Close()
	sin.Close()
	if err := <-rdone; err != nil {
		t.Error(err)
	}
	if err := <-sdone; err != nil {
		t.Error(err)
	}
}

type lineReader struct{ lines chan string }

func newLineReader(r io.Reader) *lineReader {
	l := &lineReader{lines: make(chan string, 16)}
	go func() {
		defer close(l.lines)
		buf := make([]byte, 0, 1<<16)
		one := make([]byte, 1)
		for {
			if _, err := r.Read(one); err != nil {
				return
			}
			if one[0] == '\n' {
				l.lines <- string(buf)
				buf = buf[:0]
				continue
			}
			buf = append(buf, one[0])
		}
	}()
	return l
}

func (l *lineReader) next(t *testing.T) string {
	t.Helper()
	select {
	case s, ok := <-l.lines:
		if !ok {
			t.Fatal("worker output ended")
		}
		return s
	case <-time.After(20 * time.Second):
		t.Fatal("no reply from worker")
	}
	return ""
}

// stallSender blocks in Send, as a sender whose pacer is deep in debt
// does, until unblockSend.
type stallSender struct {
	once    sync.Once
	unblock chan struct{}
}

func (s *stallSender) Send([]byte) error {
	<-s.unblock
	return errors.New("stallSender: closed")
}
func (s *stallSender) unblockSend()                              { s.once.Do(func() { close(s.unblock) }) }
func (s *stallSender) Flush() error                              { return nil }
func (s *stallSender) Close() error                              { s.unblockSend(); return nil }
func (s *stallSender) Wire() (uint64, uint64, map[string]uint64) { return 0, 0, nil }

// TestSendStallFailsTheCase: a Send that blocks past the case's end by
// stallGrace is unblocked (the sender closed), and the send op fails with
// ErrStalled instead of hanging the worker, which goes on serving.
func TestSendStallFailsTheCase(t *testing.T) {
	testutil.NoLeaks(t)
	defer func(g time.Duration) { stallGrace = g }(stallGrace)
	stallGrace = 50 * time.Millisecond
	tr := []Transport{{Name: "stall", Dial: func(context.Context, string) (Sender, error) {
		return &stallSender{unblock: make(chan struct{})}, nil
	}}}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), RoleSend, tr, inR, outW)
		outW.Close()
	}()
	t.Cleanup(func() { inW.Close(); outR.Close() })
	out := newLineReader(outR)
	var rep Reply
	for _, req := range []string{`{"op":"send","transport":"stall","addr":"127.0.0.1:9","duration_ns":10000000,"max_messages":100}`, `{"op":"close"}`} {
		if _, err := io.WriteString(inW, req+"\n"); err != nil {
			t.Fatal(err)
		}
		line := out.next(t)
		rep = Reply{}
		if err := json.Unmarshal([]byte(line), &rep); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if strings.Contains(req, `"send"`) && !strings.Contains(rep.Err, ErrStalled.Error()) {
			t.Errorf("send reply %s, want %v", line, ErrStalled)
		}
	}
	if rep.Err != "" || rep.Send == nil {
		t.Errorf("close after the stall: %+v", rep)
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
