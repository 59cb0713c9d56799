package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure Run. Zero values of the optional fields are their
// defaults.
type Options struct {
	// Transports are the contestants, in table order. Exactly one should
	// be the Baseline for ratios to be computed.
	Transports []Transport
	// Rates are the offered loads in messages/s; 0 = as fast as possible.
	Rates []float64
	// Losses are the random loss rates in percent, applied each way by a
	// netem Relay in its own worker process; 0 = direct, no relay.
	Losses []float64
	// Runs repeats the whole matrix; medians are over runs. Default 3.
	Runs int
	// Duration is the sending time of each case. Default 1 s.
	Duration time.Duration
	// Warmup is sent at each case's rate before the measured messages and
	// left out of the figures. Default 100 ms; negative = none.
	Warmup time.Duration
	// Idle ends a case's drain after this long without a delivery once
	// the sender has stopped (for what was lost for good). Default 250 ms.
	Idle time.Duration
	// MaxWait ends a drain regardless. Default 5 s.
	MaxWait time.Duration
	// Seed seeds the relays' loss models (each case and run its own).
	Seed int64
	// Worker returns the command that starts a worker process for role
	// (RoleRecv, RoleSend or RoleRelay) serving Serve's protocol on its
	// stdin and stdout. Run sets Stdin, Stdout and Stderr. Required.
	Worker func(ctx context.Context, role string) *exec.Cmd
	// Progress, if set, receives one line per case as it finishes.
	Progress io.Writer
	// Tool names the program in the report. Default "telewire bench".
	Tool string
	// Size is the size of every message, in bytes: StampLen up to
	// MaxSize. Default MessageSize (200). Raw transports carry at most
	// RawMaxSize; their cases fail above it.
	Size int
	// Exec returns the command that runs the telewire binary with args,
	// for the cases that run the commands themselves (cmd-*); they fail
	// without it.
	Exec func(ctx context.Context, args ...string) *exec.Cmd
	// CommandCount is how many messages a cmd-* case sends. Default
	// DefaultCommandCount.
	CommandCount int
}

// DefaultCommandCount is the cmd-* cases' message count: issue #16's
// "1 000 000 × 200 B" through the commands.
const DefaultCommandCount = 1_000_000

// size returns the message size of the run.
func (o *Options) size() int {
	if o.Size == 0 {
		return MessageSize
	}
	return o.Size
}

// Errors of Run, to be tested with errors.Is.
var (
	// ErrOptions reports unusable Options.
	ErrOptions = errors.New("bench: bad options")
	// ErrWorker reports a worker process that failed, hung or broke the
	// protocol; the bench stops, since later cases would run on a broken
	// setup.
	ErrWorker = errors.New("bench: worker failed")
)

// Bounds of the matrix.
const (
	// maxRatePerSec sizes a full-speed case's sequence space (and the
	// receiver's SeqSet): no transport here comes near it.
	maxRatePerSec = 5e6
	// callSlack is how long a worker may take beyond a request's own time
	// before it is declared hung.
	callSlack = 30 * time.Second
	// maxReplyLine bounds a reply line read from a worker.
	maxReplyLine = 1 << 20
)

func (o *Options) withDefaults() error {
	if o.Runs == 0 {
		o.Runs = 3
	}
	if o.Duration == 0 {
		o.Duration = time.Second
	}
	if o.Size != 0 && (o.Size < StampLen || o.Size > MaxSize) {
		return fmt.Errorf("%w: Size %d outside %d..%d", ErrOptions, o.Size, StampLen, MaxSize)
	}
	if o.Warmup == 0 {
		o.Warmup = 100 * time.Millisecond
	}
	o.Warmup = max(o.Warmup, 0)
	if o.Idle == 0 {
		o.Idle = 250 * time.Millisecond
	}
	if o.MaxWait == 0 {
		o.MaxWait = 5 * time.Second
	}
	if o.Tool == "" {
		o.Tool = "telewire bench"
	}
	if o.CommandCount == 0 {
		o.CommandCount = DefaultCommandCount
	}
	switch {
	case len(o.Transports) == 0 || len(o.Rates) == 0 || len(o.Losses) == 0:
		return fmt.Errorf("%w: empty matrix", ErrOptions)
	case o.Worker == nil:
		return fmt.Errorf("%w: no Worker command", ErrOptions)
	case o.Runs < 1 || o.Duration <= 0 || o.Idle < 0 || o.MaxWait < 0:
		return fmt.Errorf("%w: runs %d, duration %v, idle %v, max wait %v", ErrOptions, o.Runs, o.Duration, o.Idle, o.MaxWait)
	}
	for _, r := range o.Rates {
		if r < 0 || math.IsNaN(r) || math.IsInf(r, 0) || r > maxRatePerSec {
			return fmt.Errorf("%w: rate %v outside 0..%g", ErrOptions, r, maxRatePerSec)
		}
	}
	for _, l := range o.Losses {
		if l < 0 || l >= 100 || math.IsNaN(l) {
			return fmt.Errorf("%w: loss %v%% outside [0, 100)", ErrOptions, l)
		}
	}
	return nil
}

// Run measures every transport at every rate and loss, Runs times, with
// the receiving end, the sending end and the impairment relay each in a
// worker process of its own (started once with o.Worker and reused for
// every case), and returns the report. The matrix is walked run by run,
// so that each run's baseline is measured close in time to the cases it
// is compared with. A case that fails is recorded with its error; a
// worker that dies or hangs ends the bench with an error matching
// ErrWorker. When ctx is cancelled, Run stops and returns what it has
// with ctx's error.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.withDefaults(); err != nil {
		return nil, err
	}
	rep := &Report{
		Tool: o.Tool, Date: time.Now().UTC().Format(time.RFC3339), Host: hostInfo(),
		MessageSize: o.size(), Runs: o.Runs, DurationNanos: int64(o.Duration),
		Processes:  "sender, receiver and relay each in a worker process of their own (the bench binary re-executed), loopback",
		Transports: o.Transports,
	}
	for _, t := range o.Transports {
		if t.External != nil && t.Name != RefIperf3 {
			rep.CommandCount = o.CommandCount
		}
	}
	for _, loss := range o.Losses {
		for _, rate := range o.Rates {
			for _, t := range o.Transports {
				if (t.CleanOnly && loss > 0) || (t.FullSpeedOnly && rate > 0) {
					continue
				}
				rep.Cases = append(rep.Cases, Case{Transport: t.Name, Rate: rate, LossPercent: loss, Runs: make([]*Figures, o.Runs)})
			}
		}
	}
	needRelay := false
	for _, c := range rep.Cases {
		needRelay = needRelay || c.LossPercent > 0
	}
	ws, err := startWorkers(ctx, o.Worker, needRelay)
	if err != nil {
		return nil, err
	}
	defer ws.stop()

	var runErr error
loop:
	for run := range o.Runs {
		for i := range rep.Cases {
			if ctx.Err() != nil {
				runErr = ctx.Err()
				break loop
			}
			c := &rep.Cases[i]
			f, err := ws.runCase(ctx, &o, c, run, int64(i))
			if errors.Is(err, ErrWorker) {
				runErr = err
				break loop
			}
			if err != nil {
				if c.Errors == nil {
					c.Errors = map[int]string{}
				}
				c.Errors[run] = err.Error()
			}
			c.Runs[run] = f
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "run %d/%d %-28s %s\n", run+1, o.Runs, c.Key(), progressText(f, err))
			}
		}
	}
	rep.Host.LoadAfter = loadAvg()
	rep.finish()
	return rep, runErr
}

func progressText(f *Figures, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return fmt.Sprintf("%s msgs/s, %.2f%% complete, p50 %s p99 %s, cpu %s/msg",
		siCount(f.MsgsPerSec), 100*f.Completeness, fmtNanos(f.P50Nanos), fmtNanos(f.P99Nanos), fmtNanos(f.CPUNanos))
}

// LossSpec is the netem spec the relay applies each way for a loss rate.
func LossSpec(percent float64) string {
	return "loss random " + strconv.FormatFloat(percent, 'g', -1, 64) + "%"
}

// runCase runs one case once. An error wrapping ErrWorker means a worker
// is unusable; any other error is this case's failure.
func (ws *workers) runCase(ctx context.Context, o *Options, c *Case, run int, index int64) (*Figures, error) {
	var t Transport
	for _, tt := range o.Transports {
		if tt.Name == c.Transport {
			t = tt
		}
	}
	if t.External != nil {
		return runExternal(ctx, o, t)
	}
	maxMsgs := uint64(math.Ceil(o.Duration.Seconds()*maxRatePerSec)) + maxBurst
	if c.Rate > 0 {
		maxMsgs = uint64(math.Ceil(o.Duration.Seconds()*c.Rate)) + maxBurst
	}
	maxMsgs = min(maxMsgs, maxMessagesCap)
	short := callSlack
	closeSender := func() error {
		_, err := ws.send.call(ctx, Request{Op: OpClose}, short)
		if errors.Is(err, ErrProtocol) { // nothing was open: that is fine
			err = nil
		}
		return err
	}
	var subscribeTo string
	if t.Subscribe {
		// The sender listens first; the receivers subscribe to it, and
		// send waits for them to join.
		if c.LossPercent > 0 {
			return nil, fmt.Errorf("%s subscribes directly to the sender: no relay", t.Name)
		}
		r, err := ws.send.call(ctx, Request{Op: OpOpen, Transport: c.Transport, Size: o.Size}, short)
		if err != nil {
			return nil, errors.Join(err, closeSender())
		}
		subscribeTo = r.Addr
	}
	rep, err := ws.recv.call(ctx, Request{Op: OpListen, Transport: c.Transport, Addr: subscribeTo, MaxMessages: maxMsgs, Size: o.Size}, short)
	if err != nil {
		if t.Subscribe {
			err = errors.Join(err, closeSender())
		}
		return nil, err
	}
	target := rep.Addr
	if t.Subscribe {
		target = subscribeTo
	}
	var relay *RelayResult
	drain := func(sent uint64) (*RecvResult, error) {
		d, err := ws.recv.call(ctx, Request{Op: OpDrain, Sent: sent, IdleNanos: int64(o.Idle), MaxWaitNanos: int64(o.MaxWait)},
			o.MaxWait+short)
		if err != nil {
			return nil, err
		}
		if d.Recv == nil {
			return nil, fmt.Errorf("%w: drain reply without a result", ErrWorker)
		}
		return d.Recv, nil
	}
	stopRelay := func() error {
		if c.LossPercent <= 0 {
			return nil
		}
		r, err := ws.relay.call(ctx, Request{Op: OpRelayStop}, short)
		if err == nil {
			relay = r.Relay
		}
		return err
	}
	if c.LossPercent > 0 {
		spec := LossSpec(c.LossPercent)
		r, err := ws.relay.call(ctx, Request{Op: OpRelay, Addr: target, Fwd: spec, Rev: spec,
			Seed: o.Seed + int64(run)<<20 + index}, short)
		if err != nil {
			_, derr := drain(0)
			return nil, errors.Join(err, derr)
		}
		target = r.Addr
	}
	sr, err := ws.send.call(ctx, Request{Op: OpSend, Transport: c.Transport, Addr: target, Rate: c.Rate,
		DurationNanos: int64(o.Duration), WarmupNanos: int64(o.Warmup), MaxMessages: maxMsgs, Size: o.Size},
		JoinWait+o.Warmup+o.Duration+short)
	if err != nil {
		cerr := closeSender()
		_, derr := drain(0)
		return nil, errors.Join(err, cerr, derr, stopRelay())
	}
	recv, derr := drain(sr.Send.Sent) // the sender stays open meanwhile, to answer NACKs
	cr, cerr := ws.send.call(ctx, Request{Op: OpClose}, short)
	if err := errors.Join(derr, cerr, stopRelay()); err != nil {
		return nil, err
	}
	if cr.Send == nil {
		return nil, fmt.Errorf("%w: close reply without a result", ErrWorker)
	}
	f := figuresFrom(cr.Send, recv, relay, o.size())
	if cr.Send.Sent == 0 {
		return f, fmt.Errorf("nothing sent: %s", cr.Send.FirstError)
	}
	return f, nil
}

// runExternal runs one case of an External transport in this process.
func runExternal(ctx context.Context, o *Options, t Transport) (*Figures, error) {
	dir, err := os.MkdirTemp("", "telewire-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	s, r, err := t.External(ctx, ExternalCase{Size: o.size(), Duration: o.Duration, Count: o.CommandCount, Exec: o.Exec, TempDir: dir})
	if err != nil {
		return nil, err
	}
	return figuresFrom(s, r, nil, o.size()), nil
}

// workers are the three worker processes.
type workers struct {
	recv, send, relay *workerProc
}

func startWorkers(ctx context.Context, mk func(context.Context, string) *exec.Cmd, relay bool) (*workers, error) {
	ws := &workers{}
	var err error
	if ws.recv, err = startWorker(ctx, mk, RoleRecv); err != nil {
		return nil, err
	}
	if ws.send, err = startWorker(ctx, mk, RoleSend); err != nil {
		ws.stop()
		return nil, err
	}
	if relay {
		if ws.relay, err = startWorker(ctx, mk, RoleRelay); err != nil {
			ws.stop()
			return nil, err
		}
	}
	return ws, nil
}

func (ws *workers) stop() {
	for _, w := range []*workerProc{ws.recv, ws.send, ws.relay} {
		if w != nil {
			w.stop()
		}
	}
}

// workerProc is one worker process and the goroutine reading its replies.
type workerProc struct {
	role    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	replies chan []byte // closed when stdout ends
	stderr  *tailBuffer
}

func startWorker(ctx context.Context, mk func(context.Context, string) *exec.Cmd, role string) (*workerProc, error) {
	cmd := mk(ctx, role)
	w := &workerProc{role: role, cmd: cmd, replies: make(chan []byte, 1), stderr: &tailBuffer{max: 8 << 10}}
	var err error
	if w.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrWorker, role, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrWorker, role, err)
	}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting %s worker: %v", ErrWorker, role, err)
	}
	go func() {
		defer close(w.replies)
		br := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := readLine(br, maxReplyLine)
			if err != nil {
				return
			}
			w.replies <- line
		}
	}()
	return w, nil
}

// readLine reads one line of at most limit bytes.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// call sends req and waits up to timeout for the reply. A reply with Err
// set is returned as an error (which wraps ErrProtocol when the worker
// said so); a dead, hung or garbled worker gives an error wrapping
// ErrWorker.
func (w *workerProc) call(ctx context.Context, req Request, timeout time.Duration) (Reply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Reply{}, err
	}
	if _, err := w.stdin.Write(append(b, '\n')); err != nil {
		return Reply{}, w.failed("writing request: %v", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-w.replies:
		if !ok {
			return Reply{}, w.failed("exited during %s", req.Op)
		}
		var rep Reply
		if err := json.Unmarshal(line, &rep); err != nil {
			return Reply{}, w.failed("bad reply to %s: %v", req.Op, err)
		}
		if rep.Err != "" {
			if strings.HasPrefix(rep.Err, ErrProtocol.Error()) {
				return rep, fmt.Errorf("%s worker: %w%s", w.role, ErrProtocol, strings.TrimPrefix(rep.Err, ErrProtocol.Error()))
			}
			return rep, fmt.Errorf("%s worker: %s: %s", w.role, req.Op, rep.Err)
		}
		return rep, nil
	case <-t.C:
		return Reply{}, w.failed("no reply to %s within %v", req.Op, timeout)
	case <-ctx.Done():
		return Reply{}, ctx.Err()
	}
}

func (w *workerProc) failed(format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	if tail := strings.TrimSpace(w.stderr.String()); tail != "" {
		msg += "; its stderr ends:\n" + tail
	}
	return fmt.Errorf("%w: %s worker: %s", ErrWorker, w.role, msg)
}

// stop closes the worker's stdin, which ends it, and kills it if it has
// not exited within a few seconds.
func (w *workerProc) stop() {
	w.stdin.Close()
	exited := make(chan struct{})
	go func() {
		_ = w.cmd.Wait()
		close(exited)
	}()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		_ = w.cmd.Process.Kill()
		<-exited
	}
	for range w.replies { // unblock and wait for the reader
	}
}

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// use.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// hostInfo describes this machine as well as it can be read.
func hostInfo() HostInfo {
	h := HostInfo{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range bytes.Lines(b) {
			if k, v, ok := strings.Cut(string(line), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

// loadAvg reads the 1, 5 and 15-minute load averages (zeros where
// /proc/loadavg does not exist).
func loadAvg() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	for i, f := range strings.Fields(string(b)) {
		if i >= 3 {
			break
		}
		l[i], _ = strconv.ParseFloat(f, 64)
	}
	return l
}
