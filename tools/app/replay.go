package app

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/capture"
	"github.com/telewire/telewire/tools/replay"
)

// Replay limits and defaults.
const (
	// DefaultSessionStreams is the default number of flows one sender
	// session carries, one stream each: the receiver's default bound on
	// streams per sender (receiver.Config.MaxStreams), so that a default
	// `telewire recv` accepts every stream of every session.
	DefaultSessionStreams = 64
	// MaxSessionStreams caps ReplayOptions.SessionStreams.
	MaxSessionStreams = 1 << 16
	// MaxFlowsLimit is the most flows one replay sends (and caps
	// ReplayOptions.MaxFlows): datagrams of further flows are not sent, and
	// the replay is incomplete.
	MaxFlowsLimit = 1 << 16
	// maxTrackedFlows bounds the distinct flows a replay remembers, mapped
	// or not: beyond it, datagrams of new flows are skipped and counted
	// without remembering their flow (memory stays a few MiB whatever the
	// capture holds).
	maxTrackedFlows = 2 * MaxFlowsLimit
	// retransmitBudget is the retransmit memory a replay spreads over its
	// streams when the sender's RetransmitBytes is left at its default.
	retransmitBudget = 64 << 20
	// minStreamRetransmit and maxStreamRetransmit bound each stream's
	// share of retransmitBudget; a stream never gets more than its flow
	// sends, nor less than one largest packet (minRetransmitFloor).
	minStreamRetransmit = 256 << 10
	maxStreamRetransmit = 8 << 20
	minRetransmitFloor  = 64 << 10
	// spinNanos is how close to a send time the pacer stops sleeping and
	// polls the clock: a sleep overshoots by tens of microseconds, a poll
	// by well under one.
	spinNanos = 200_000
	// maxSleepNanos bounds one sleep, so that cancellation is noticed.
	maxSleepNanos = int64(50 * time.Millisecond)
	// maxFlowsFileBytes bounds the JSON read by LoadFlows.
	maxFlowsFileBytes = 64 << 20
	// maxMappingLines bounds the flows the mapping printed at the start
	// lists one by one; the files hold them all.
	maxMappingLines = 64
	// defaultReceiverSessions is the receiver's default bound on senders
	// (receiver.Config.MaxSessions).
	defaultReceiverSessions = 64
)

// ErrFlowsFile is wrapped by LoadFlows's errors for a file that is not a
// usable stream mapping.
var ErrFlowsFile = errors.New("flows file: not a stream mapping")

// ReplayOptions are the settings of `telewire replay`.
type ReplayOptions struct {
	File   string         // capture to replay (pcap or pcapng, optionally gzip), required
	To     string         // receiver address, required
	Filter capture.Filter // datagrams to replay; the zero Filter takes all
	// Timing paces the datagrams: Speed, TopSpeed, PPS, Loops (0 = 1,
	// replay.Forever = without end) and MaxGapNanos. LoopGapNanos is
	// honoured too.
	Timing replay.Config
	// MaxFlows replays only the first MaxFlows flows (in order of first
	// appearance); the datagrams of the others are skipped by choice and
	// counted. 0 = every flow, up to MaxFlowsLimit.
	MaxFlows int
	// SessionStreams is the number of flows one sender session carries,
	// one stream each; a capture with more flows is sent by
	// ceil(flows/SessionStreams) sessions. It must not exceed the
	// receiver's streams per sender (receiver.Config.MaxStreams). 0 =
	// DefaultSessionStreams (64).
	SessionStreams int
	// Linger is how long, at most, the senders keep answering feedback
	// after the last message: it ends as soon as the receiver's reports
	// confirm every datagram sent.
	Linger    time.Duration
	StatsFile string // write the final ReplayStats as JSON here, if set
	FlowsFile string // write the stream mapping as JSON here, if set
	Progress  bool   // live progress bar on stderr each second
	// Settings are the command's effective settings, written into the
	// StatsFile JSON beside the build's version.
	Settings map[string]string

	// Sender holds further sender settings, for every session; To,
	// MaxStreams and Logger are filled in. Left at zero,
	// RetransmitPackets, RetransmitBytes and QueueBytes are sized from what
	// each session's flows send (RetransmitBytes within a share of 64 MiB
	// over all streams, between 256 KiB and 8 MiB a stream).
	Sender sender.Config
	Logger zerolog.Logger
	// OnSender, if set, is called with each session's sender once it
	// exists (to export its statistics, for instance).
	OnSender func(*sender.Sender)
}

// Flow is one original UDP flow (source and destination address and port;
// the protocol is UDP) and the sender session and stream its datagrams are
// sent on.
type Flow struct {
	// Sender numbers the replay's sender sessions from 0; Session is that
	// sender's session id (16 hex digits), which the receiver sees
	// (receiver.Message.Session). A mapping without a session (written
	// before replays had several) names the stream of any session.
	Sender  int            `json:"sender"`
	Session string         `json:"session,omitempty"`
	Stream  uint32         `json:"stream"`
	Src     netip.AddrPort `json:"src"`
	Dst     netip.AddrPort `json:"dst"`
	Packets uint64         `json:"packets"` // datagrams in one pass over the capture
	Bytes   uint64         `json:"bytes"`   // their payload bytes
	// Lost and Unconfirmed are the flow's share of ReplayStats.Delivery
	// (the --stats file only: --flows-out is written before sending).
	Lost        uint64 `json:"lost,omitempty"`
	Unconfirmed uint64 `json:"unconfirmed,omitempty"`
}

// ReplayStats is what a replay did; Replay prints it and writes it as JSON.
type ReplayStats struct {
	File string `json:"file"`
	To   string `json:"to"`
	Mode string `json:"mode"` // "speed 1", "topspeed" or "pps N"

	// Packets and Bytes count the datagrams sent as messages and their
	// payload bytes, over all passes.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Passes  int    `json:"passes"`
	// Interrupted is set when the replay was stopped (a signal) before
	// its last pass ended; Delivery then covers what was sent.
	Interrupted bool `json:"interrupted,omitempty"`
	// ElapsedNanos is the time from the first send to the last.
	ElapsedNanos int64 `json:"elapsed_ns"`
	// PacketsPerSecond is Packets over ElapsedNanos (0 for one packet).
	PacketsPerSecond float64 `json:"packets_per_second"`

	// Flows is the stream mapping, in order of first appearance.
	Flows []Flow `json:"flows"`
	// SessionStreams is the flows per sender session; Sessions the number
	// of sessions (ceil(len(Flows)/SessionStreams)).
	SessionStreams int `json:"session_streams"`
	Sessions       int `json:"sessions"`
	// SkippedFlows counts the distinct flows not replayed because
	// MaxFlows asked for fewer (a choice), UnsentFlows those beyond
	// MaxFlowsLimit (counted up to twice the limit in all).
	SkippedFlows uint64 `json:"skipped_flows"`
	UnsentFlows  uint64 `json:"unsent_flows"`
	// SkippedMaxFlows counts the datagrams of the SkippedFlows,
	// SkippedFlowLimit those of the UnsentFlows and of flows beyond
	// tracking, SkippedTooLarge those over the sender's MaxPayload. All
	// over all passes.
	SkippedMaxFlows  uint64 `json:"skipped_max_flows"`
	SkippedFlowLimit uint64 `json:"skipped_flow_limit"`
	SkippedTooLarge  uint64 `json:"skipped_too_large"`
	// Capture is what the reader did in one pass: records, datagrams,
	// reassembly, and every record skipped, by reason.
	Capture capture.Stats `json:"capture"`
	// FileError, if set, is why the capture ended early (a file cut short
	// is replayed up to the cut).
	FileError string `json:"file_error,omitempty"`
	// Schedule counts capped gaps and backward time steps, over all passes.
	Schedule replay.Stats `json:"schedule"`
	// Accuracy is |scheduled − actual| of the send times; empty with
	// TopSpeed, where every datagram is due at once.
	Accuracy replay.AccuracySummary `json:"accuracy"`

	// Delivery is what the receiver's reports say about the datagrams
	// sent, when the linger ended.
	Delivery Delivery `json:"delivery"`
	// Senders are the statistics of each sender session, in order.
	Senders []sender.Stats `json:"senders"`
}

// flowsDoc is the JSON document of a FlowsFile.
type flowsDoc struct {
	Flows []Flow `json:"flows"`
}

// Replay runs `telewire replay`: it reads the capture once to map its flows
// to sender sessions and streams (printed to stderr), starts the sessions,
// then sends each UDP datagram's payload as one telewire message on its
// flow's stream, at the capture's timing as o.Timing scales it, for the
// passes asked; then the senders linger for feedback until the receiver's
// reports confirm every datagram or o.Linger ends, and the summary
// (packets, bytes, flows, skips by reason, delivery, timing accuracy and
// the senders' statistics) goes to stderr.
//
// A cancelled ctx stops the sending, not the linger: the summary and the
// verdict cover what was sent. The error is an *IncompleteError when the
// replay was not whole: datagrams lost or unconfirmed, or not sent because
// of a limit (see ReplayStats.Delivery).
func Replay(ctx context.Context, o ReplayOptions, stderr io.Writer) (ReplayStats, error) {
	st := ReplayStats{File: o.File, To: o.To, Mode: modeName(o.Timing)}
	if o.File == "" || o.To == "" {
		return st, errors.New("replay: a capture file and --to are required")
	}
	if o.MaxFlows < 0 || o.MaxFlows > MaxFlowsLimit {
		return st, fmt.Errorf("replay: --max-flows %d outside 0..%d", o.MaxFlows, MaxFlowsLimit)
	}
	if o.SessionStreams == 0 {
		o.SessionStreams = DefaultSessionStreams
	}
	if o.SessionStreams < 1 || o.SessionStreams > MaxSessionStreams {
		return st, fmt.Errorf("replay: --session-streams %d outside 1..%d", o.SessionStreams, MaxSessionStreams)
	}
	if o.Linger < 0 {
		return st, fmt.Errorf("replay: --linger %v is negative", o.Linger)
	}
	if _, err := replay.New(o.Timing, 0); err != nil {
		return st, err
	}
	st.SessionStreams = o.SessionStreams

	// Pass 0: map the flows, count the datagrams, find the schedule's end.
	sc, err := scanCapture(o)
	if err != nil {
		return st, err
	}
	st.Flows, st.Capture = sc.table.flows, sc.capture
	st.SkippedFlows, st.UnsentFlows = sc.table.skipped, sc.table.unsent
	st.Sessions = sessionCount(len(st.Flows), o.SessionStreams)
	if sc.fileErr != nil {
		st.FileError = sc.fileErr.Error()
		o.Logger.Warn().Err(sc.fileErr).Msg("capture cut short; replaying what it holds")
	}
	if len(st.Flows) == 0 || sc.sendable == 0 {
		fmt.Fprint(stderr, mappingText(o, sc))
		if o.FlowsFile != "" {
			if err := writeJSON(o.FlowsFile, flowsDoc{Flows: st.Flows}); err != nil {
				return st, err
			}
		}
		fmt.Fprintln(stderr, "replay: nothing to replay")
		return st, finishStats(o, &st, stderr, nil)
	}

	// The senders outlive ctx by the linger time, so they get their own.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := newWallClock()
	ss, err := startSessions(sctx, o, st.Flows, clk, passNanos(o, sc))
	if err != nil {
		return st, err
	}
	defer ss.close()
	fmt.Fprint(stderr, mappingText(o, sc))
	if o.FlowsFile != "" {
		if err := writeJSON(o.FlowsFile, flowsDoc{Flows: st.Flows}); err != nil {
			return st, err
		}
	}

	run, err := newReplayRun(o, sc, ss.clock, ss.send)
	if err != nil {
		return st, err
	}
	var progress *ticker
	if o.Progress {
		progress = startTicker(time.Second, func() { fmt.Fprintf(stderr, "\r%s", run.progressLine()) })
	}
	runErr := run.replayAll(ctx)
	progress.stop()
	if o.Progress {
		fmt.Fprintf(stderr, "\r%s\n", run.progressLine())
	}
	run.fill(&st)
	if runErr != nil {
		return st, runErr
	}
	st.Interrupted = ctx.Err() != nil && run.unfinished()
	o.Logger.Info().Uint64("messages", st.Packets).Msg("replay done, lingering for feedback")
	ss.linger(o.Linger)
	// Close flushes what is still queued, so the statistics count it.
	closeErr := ss.close()
	st.Senders = ss.stats()
	st.Delivery = judge(st.Flows, st.Senders, o.SessionStreams)
	if closeErr == nil {
		closeErr = verdict(&st)
	}
	return st, finishStats(o, &st, stderr, closeErr)
}

// finishStats prints the summary and writes the stats file.
func finishStats(o ReplayOptions, st *ReplayStats, stderr io.Writer, err error) error {
	fmt.Fprintln(stderr, replaySummary(st))
	if len(st.Senders) > 0 {
		fmt.Fprintln(stderr, sendersSummary(st.Senders, time.Duration(st.ElapsedNanos)))
	}
	if o.StatsFile != "" {
		if werr := writeJSONWith(o.StatsFile, st, o.Settings); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// modeName names the pacing of cfg for the summary.
func modeName(cfg replay.Config) string {
	switch {
	case cfg.TopSpeed:
		return "topspeed"
	case cfg.PPS > 0:
		return fmt.Sprintf("pps %g", cfg.PPS)
	case cfg.Speed == 0:
		return "speed 1"
	}
	return fmt.Sprintf("speed %g", cfg.Speed)
}

// flowKey is a UDP flow: the protocol is always UDP.
type flowKey struct{ src, dst netip.AddrPort }

// flowTable numbers flows in order of first appearance, up to max flows,
// and remembers at most maxTrackedFlows flows in all. A flow's number
// names its sender session and stream (sessionOf).
type flowTable struct {
	max      int
	chosen   bool              // max was asked for (ReplayOptions.MaxFlows), not the limit
	ids      map[flowKey]int32 // flow number, or -1 for a flow beyond max
	flows    []Flow
	skipped  uint64 // distinct flows beyond max when chosen
	unsent   uint64 // distinct flows beyond max when not chosen (MaxFlowsLimit)
	untraced bool   // some flows were beyond maxTrackedFlows
}

// newFlowTable returns a table of up to maxFlows flows (0 = MaxFlowsLimit).
func newFlowTable(maxFlows int) *flowTable {
	t := &flowTable{max: maxFlows, chosen: maxFlows > 0 && maxFlows < MaxFlowsLimit, ids: make(map[flowKey]int32)}
	if maxFlows <= 0 || maxFlows > MaxFlowsLimit {
		t.max = MaxFlowsLimit
	}
	return t
}

// add returns the number of d's flow, numbering a new flow if there is
// room.
func (t *flowTable) add(d *capture.Datagram) (uint32, bool) {
	k := flowKey{d.Src, d.Dst}
	id, ok := t.ids[k]
	switch {
	case ok:
	case len(t.ids) >= maxTrackedFlows:
		t.untraced = true
		return 0, false
	case len(t.flows) < t.max:
		id = int32(len(t.flows))
		t.flows = append(t.flows, Flow{Stream: uint32(id), Src: d.Src, Dst: d.Dst})
		t.ids[k] = id
	default:
		id = -1
		t.ids[k] = id
		if t.chosen {
			t.skipped++
		} else {
			t.unsent++
		}
	}
	if id < 0 {
		return 0, false
	}
	t.flows[id].Packets++
	t.flows[id].Bytes += uint64(len(d.Payload))
	return uint32(id), true
}

// lookup returns the number of the flow src → dst, if it has one.
func (t *flowTable) lookup(src, dst netip.AddrPort) (uint32, bool) {
	id, ok := t.ids[flowKey{src, dst}]
	return uint32(id), ok && id >= 0
}

// known reports whether the flow src → dst was seen by the scan (mapped
// or not): a datagram of an unknown flow is beyond maxTrackedFlows.
func (t *flowTable) known(src, dst netip.AddrPort) bool {
	_, ok := t.ids[flowKey{src, dst}]
	return ok
}

// scan is what a first pass over the capture found.
type scan struct {
	table    *flowTable
	capture  capture.Stats
	fileErr  error  // ErrFileTruncated: the file ends mid-record
	sendable uint64 // datagrams of one pass that will be sent
	// passEndNanos is, for a timed replay, when the last datagram of one
	// pass is due relative to the first, after speed and the gap cap.
	passEndNanos int64
}

// scanCapture reads the capture once: flows, counts, and the length of one
// pass. A damaged file (not merely cut short) is an error before anything
// is sent.
func scanCapture(o ReplayOptions) (*scan, error) {
	r, err := capture.Open(o.File, capture.Options{Filter: o.Filter})
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer r.Close()
	timing := o.Timing
	timing.Loops = 1
	sched, err := replay.New(timing, 0)
	if err != nil {
		return nil, err
	}
	sc := &scan{table: newFlowTable(o.MaxFlows)}
	for {
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, capture.ErrFileTruncated) {
			sc.fileErr = err
			break
		}
		if err != nil {
			return nil, fmt.Errorf("replay: %s: %w", o.File, err)
		}
		if _, ok := sc.table.add(&d); !ok || len(d.Payload) > o.Sender.MaxPayload() {
			continue
		}
		sc.sendable++
		sc.passEndNanos = sched.Next(d.Time.UnixNano())
	}
	sc.capture = r.Stats()
	per := sessionStreams(o)
	for i := range sc.table.flows {
		sc.table.flows[i].Sender, sc.table.flows[i].Stream = i/per, uint32(i%per)
	}
	return sc, nil
}

// sessionStreams is o.SessionStreams with its default.
func sessionStreams(o ReplayOptions) int {
	if o.SessionStreams <= 0 {
		return DefaultSessionStreams
	}
	return o.SessionStreams
}

// passNanos is how long one pass over the capture takes when sent, 0 when
// unknown (top speed).
func passNanos(o ReplayOptions, sc *scan) int64 {
	switch {
	case o.Timing.TopSpeed:
		return 0
	case o.Timing.PPS > 0:
		return int64(float64(sc.sendable) / o.Timing.PPS * 1e9)
	}
	return sc.passEndNanos
}

// sessionCount is the number of sessions that carry flows flows, per to a
// session.
func sessionCount(flows, per int) int { return (flows + per - 1) / per }

// mappingText is the stream mapping printed before the replay starts: up
// to maxMappingLines flows one by one (the files list them all).
func mappingText(o ReplayOptions, sc *scan) string {
	var b strings.Builder
	t := sc.table
	all := uint64(len(t.flows)) + t.skipped + t.unsent
	fmt.Fprintf(&b, "replay: %s: %d datagrams in %d flows", o.File, sc.capture.Datagrams, all)
	if t.untraced {
		b.WriteString(" and more")
	}
	if !o.Timing.TopSpeed && o.Timing.PPS == 0 {
		fmt.Fprintf(&b, ", one pass takes %s", time.Duration(sc.passEndNanos).Round(time.Millisecond))
	}
	fmt.Fprintf(&b, "; sending to %s (%s)", o.To, modeName(o.Timing))
	per := sessionStreams(o)
	sessions := sessionCount(len(t.flows), per)
	if sessions > 1 {
		fmt.Fprintf(&b, " from %d sender sessions of up to %d streams", sessions, per)
	}
	b.WriteByte('\n')
	for i, f := range t.flows {
		if i == maxMappingLines {
			fmt.Fprintf(&b, "  ... and %d more flows (all listed in --flows-out and --stats)\n", len(t.flows)-i)
			break
		}
		if sessions > 1 {
			fmt.Fprintf(&b, "  sender %d ", f.Sender)
		} else {
			b.WriteString("  ")
		}
		fmt.Fprintf(&b, "stream %d: %s -> %s (%d datagrams, %d bytes)\n", f.Stream, f.Src, f.Dst, f.Packets, f.Bytes)
	}
	if t.skipped > 0 {
		fmt.Fprintf(&b, "  %d further flows exceed --max-flows %d: their datagrams are skipped and counted\n", t.skipped, o.MaxFlows)
	}
	if sessions > defaultReceiverSessions {
		fmt.Fprintf(&b, "  note: %d sender sessions; a receiver with default limits takes %d senders of %d streams: start it with --max-sessions %d, or use --session-streams N with recv --max-streams N\n",
			sessions, defaultReceiverSessions, DefaultSessionStreams, sessions)
	}
	if t.unsent > 0 || t.untraced {
		fmt.Fprintf(&b, "  further flows exceed the %d flows one replay sends: their datagrams are NOT sent, and the replay will be incomplete (split the capture with --filter)\n", MaxFlowsLimit)
	}
	return b.String()
}

// nanoClock is a monotonic clock in nanoseconds (sender.Config.Clock).
type nanoClock interface{ Now() int64 }

// wallClock is a monotonic clock whose zero is a known wall-clock instant,
// so that its readings convert to wall time (pcap timestamps).
type wallClock struct{ epoch time.Time }

func newWallClock() wallClock { return wallClock{epoch: time.Now()} }

// Now returns the nanoseconds elapsed since the epoch, monotonically.
func (c wallClock) Now() int64 { return int64(time.Since(c.epoch)) }

// Wall returns the wall-clock time of a reading.
func (c wallClock) Wall(nanos int64) time.Time { return c.epoch.Add(time.Duration(nanos)) }

// replayRun sends the passes of a replay. Its counters are atomic so the
// progress line can read them while the run goes on.
type replayRun struct {
	o     ReplayOptions
	sc    *scan
	clk   nanoClock
	send  func(flow uint32, payload []byte) error   // flow: the number flowTable gave
	wait  func(ctx context.Context, at int64) error // returns at or after at, or ctx.Err()
	sched *replay.Scheduler
	acc   replay.Accuracy
	timed bool // record accuracy: not TopSpeed

	start, first, last            int64
	sent, bytes                   atomic.Uint64
	skipChosen, skipFlow, skipBig uint64
	passDone                      bool // the last pass ended (not cut short by ctx)
}

func newReplayRun(o ReplayOptions, sc *scan, clk nanoClock, send func(uint32, []byte) error) (*replayRun, error) {
	r := &replayRun{o: o, sc: sc, clk: clk, send: send, timed: !o.Timing.TopSpeed}
	r.wait = r.sleepUntil
	r.start = clk.Now()
	var err error
	r.sched, err = replay.New(o.Timing, r.start)
	return r, err
}

// replayAll sends every pass; it returns nil when ctx is cancelled.
func (r *replayRun) replayAll(ctx context.Context) error {
	for {
		if err := r.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if !r.sched.NextPass() {
			r.passDone = true
			return nil
		}
	}
}

// pass reads the capture once more and sends its datagrams.
func (r *replayRun) pass(ctx context.Context) error {
	rd, err := capture.Open(r.o.File, capture.Options{Filter: r.o.Filter})
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer rd.Close()
	for i := 0; ; i++ {
		// A wait notices cancellation; at top speed nothing waits.
		if i%1024 == 1023 && ctx.Err() != nil {
			return ctx.Err()
		}
		d, err := rd.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, capture.ErrFileTruncated) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("replay: %s: %w", r.o.File, err)
		}
		if err := r.step(ctx, &d); err != nil {
			return err
		}
	}
}

// step sends one datagram at its time. It does not allocate.
func (r *replayRun) step(ctx context.Context, d *capture.Datagram) error {
	flow, ok := r.sc.table.lookup(d.Src, d.Dst)
	if !ok {
		if r.sc.table.chosen && r.sc.table.known(d.Src, d.Dst) {
			r.skipChosen++
		} else {
			r.skipFlow++
		}
		return nil
	}
	if len(d.Payload) > r.o.Sender.MaxPayload() {
		r.skipBig++
		return nil
	}
	at := r.sched.Next(d.Time.UnixNano())
	if err := r.wait(ctx, at); err != nil {
		return err
	}
	now := r.clk.Now()
	if err := r.send(flow, d.Payload); err != nil {
		return fmt.Errorf("replay: send: %w", err)
	}
	if r.timed {
		r.acc.Record(at, now)
	}
	if r.sent.Load() == 0 {
		r.first = now
	}
	r.last = now
	r.bytes.Add(uint64(len(d.Payload)))
	r.sent.Add(1)
	return nil
}

// sleepUntil waits for the clock to reach at: it sleeps until spinNanos
// before, in steps of at most maxSleepNanos, then polls the clock.
func (r *replayRun) sleepUntil(ctx context.Context, at int64) error {
	for {
		d := at - r.clk.Now()
		if d <= spinNanos {
			break
		}
		sleepNanos(min(d-spinNanos, maxSleepNanos))
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	for r.clk.Now() < at {
		runtime.Gosched()
	}
	return nil
}

// fill copies the run's results into st.
func (r *replayRun) fill(st *ReplayStats) {
	st.Packets, st.Bytes = r.sent.Load(), r.bytes.Load()
	st.SkippedMaxFlows, st.SkippedFlowLimit, st.SkippedTooLarge = r.skipChosen, r.skipFlow, r.skipBig
	st.Schedule = r.sched.Stats()
	st.Passes = st.Schedule.Passes
	if st.Packets > 1 {
		st.ElapsedNanos = r.last - r.first
		if st.ElapsedNanos > 0 {
			st.PacketsPerSecond = float64(st.Packets-1) / (float64(st.ElapsedNanos) / 1e9)
		}
	}
	if r.timed {
		st.Accuracy = r.acc.Summary()
	}
}

// unfinished reports whether passes the replay asked for were left unsent
// (the context was cancelled first).
func (r *replayRun) unfinished() bool { return !r.passDone }

// total returns the datagrams the whole replay sends, 0 if without end.
func (r *replayRun) total() uint64 {
	loops := r.o.Timing.Loops
	if loops == replay.Forever {
		return 0
	}
	return r.sc.sendable * uint64(max(loops, 1))
}

// progressLine is the live progress bar: packets, rate and ETA.
func (r *replayRun) progressLine() string {
	sent := r.sent.Load()
	now := r.clk.Now()
	elapsed := time.Duration(now - r.start)
	var pps float64
	if elapsed > 0 {
		pps = float64(sent) / elapsed.Seconds()
	}
	total := r.total()
	if total == 0 {
		return fmt.Sprintf("replay: %d packets, %.0f/s, %s   ", sent, pps, elapsed.Round(time.Second))
	}
	frac := min(float64(sent)/float64(total), 1)
	const width = 24
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	return fmt.Sprintf("[%s] %3.0f%% %d/%d packets, %.0f/s, ETA %s   ", bar, 100*frac, sent, total, pps, r.eta(sent, total, pps, now))
}

// eta estimates the time left: from the schedule when it has one, else
// from the rate so far.
func (r *replayRun) eta(sent, total uint64, pps float64, now int64) string {
	var left float64 // seconds
	switch {
	case sent >= total:
		return "0s"
	case r.o.Timing.PPS > 0:
		left = float64(total-1)/r.o.Timing.PPS - float64(now-r.start)/1e9
	case !r.o.Timing.TopSpeed:
		end := float64(r.start) + float64(max(r.o.Timing.Loops, 1))*float64(r.sc.passEndNanos)
		left = (end - float64(now)) / 1e9
	case pps > 0:
		left = float64(total-sent) / pps
	default:
		return "?"
	}
	return time.Duration(max(left, 0) * 1e9).Round(time.Second).String()
}

// replaySummary is the end-of-run text.
func replaySummary(st *ReplayStats) string {
	var b strings.Builder
	fmt.Fprintf(&b, "replay: sent %d messages, %d payload bytes, %d flows", st.Packets, st.Bytes, len(st.Flows))
	if st.Sessions > 1 {
		fmt.Fprintf(&b, " from %d sender sessions", st.Sessions)
	}
	fmt.Fprintf(&b, ", passes %d, in %s (%.0f packets/s, %s)",
		st.Passes, time.Duration(st.ElapsedNanos).Round(time.Millisecond), st.PacketsPerSecond, st.Mode)
	if st.Interrupted {
		b.WriteString("; interrupted before the end")
	}
	c := st.Capture
	fmt.Fprintf(&b, "\n  capture: %d records, %d UDP datagrams (%d reassembled from fragments), %d filtered out",
		c.Records, c.Datagrams, c.Reassembled, c.Filtered)
	fmt.Fprintf(&b, "\n  skipped: %s", skippedText(st))
	if ns := notSentText(st); ns != "" {
		fmt.Fprintf(&b, "\n  NOT sent: %s", ns)
	}
	if st.FileError != "" {
		fmt.Fprintf(&b, "\n  the capture ends early: %s", st.FileError)
	}
	if a := st.Accuracy; a.Count > 0 {
		fmt.Fprintf(&b, "\n  timing: |scheduled - actual| p50 %s p99 %s max %s over %d sends (%d late, %d early)",
			us(a.P50Nanos), us(a.P99Nanos), us(a.MaxNanos), a.Count, a.Late, a.Early)
	}
	if s := st.Schedule; s.CappedGaps > 0 || s.BackwardSteps > 0 {
		fmt.Fprintf(&b, "\n  schedule: %d gaps capped (%s removed), %d backward time steps sent without a gap",
			s.CappedGaps, time.Duration(s.CappedNanos).Round(time.Millisecond), s.BackwardSteps)
	}
	if st.Packets > 0 {
		fmt.Fprintf(&b, "\n  delivery: %s", deliveryText(st))
	}
	return b.String()
}

// skippedText lists every non-zero count of what the replay left out by
// choice (--filter, --max-flows) or because the capture does not hold a
// whole UDP datagram, by reason, or "none". The capture's counts are of
// one pass.
func skippedText(st *ReplayStats) string {
	c := st.Capture
	return countsText([]reason{
		{c.Filtered, "filtered out by --filter"},
		{st.SkippedMaxFlows, "of flows beyond --max-flows"},
		{c.NotIP, "not IP"},
		{c.NotUDP, "not UDP"},
		{c.Truncated, "truncated (captured shorter than sent)"},
		{c.Malformed, "malformed"},
		{c.UnsupportedLinkType, "unsupported link type"},
		{c.FragmentsInvalid, "invalid fragments"},
		{c.FragmentsDuplicate, "duplicate fragments"},
		{c.FragmentsExpired, "incomplete fragmented datagrams (not reassembled)"},
	}, "none")
}

// notSentText lists the whole UDP datagrams of the capture that a limit
// kept from being sent, or "": any makes the replay incomplete.
func notSentText(st *ReplayStats) string {
	return countsText([]reason{
		{st.SkippedFlowLimit, fmt.Sprintf("of flows beyond the %d flows one replay sends", MaxFlowsLimit)},
		{st.SkippedTooLarge, "over the largest telewire payload"},
	}, "")
}

// reason is a count and what it counts.
type reason struct {
	n    uint64
	what string
}

// countsText joins the non-zero reasons, or returns none.
func countsText(reasons []reason, none string) string {
	var parts []string
	for _, r := range reasons {
		if r.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", r.n, r.what))
		}
	}
	if len(parts) == 0 {
		return none
	}
	return strings.Join(parts, ", ")
}

// us formats nanoseconds as microseconds.
func us(nanos int64) string { return fmt.Sprintf("%.1fµs", float64(nanos)/1e3) }

// LoadFlows reads a stream mapping written by `telewire replay` (its
// --stats or --flows-out file): a JSON object whose "flows" member lists
// objects with "stream", "src" and "dst". Errors about the content wrap
// ErrFlowsFile.
func LoadFlows(path string) ([]Flow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFlowsFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFlowsFileBytes {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrFlowsFile, path, maxFlowsFileBytes)
	}
	return parseFlows(b)
}

// parseFlows decodes and checks a stream mapping.
func parseFlows(b []byte) ([]Flow, error) {
	var doc struct {
		Flows *[]Flow `json:"flows"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFlowsFile, err)
	}
	if doc.Flows == nil {
		return nil, fmt.Errorf("%w: no \"flows\" member", ErrFlowsFile)
	}
	flows := *doc.Flows
	if len(flows) > maxTrackedFlows {
		return nil, fmt.Errorf("%w: %d flows, at most %d", ErrFlowsFile, len(flows), maxTrackedFlows)
	}
	seen := make(map[flowID]bool, len(flows))
	for _, f := range flows {
		src, dst := f.Src.Addr().Unmap(), f.Dst.Addr().Unmap()
		if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
			return nil, fmt.Errorf("%w: stream %d: %v -> %v are not two addresses of one family", ErrFlowsFile, f.Stream, f.Src, f.Dst)
		}
		id, err := f.id()
		if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: session %q stream %d listed twice", ErrFlowsFile, f.Session, f.Stream)
		}
		seen[id] = true
	}
	return flows, nil
}

// flowID is what names a flow on the receiving side: its session id and
// stream, or only the stream when the mapping has no session (any
// session).
type flowID struct {
	session    uint64
	stream     uint32
	anySession bool
}

// id parses f's session into its flowID.
func (f *Flow) id() (flowID, error) {
	if f.Session == "" {
		return flowID{stream: f.Stream, anySession: true}, nil
	}
	v, err := strconv.ParseUint(f.Session, 16, 64)
	if err != nil || len(f.Session) > 16 {
		return flowID{}, fmt.Errorf("%w: stream %d: session %q is not up to 16 hex digits", ErrFlowsFile, f.Stream, f.Session)
	}
	return flowID{session: v, stream: f.Stream}, nil
}

// flowsRetryNanos is how often a recv whose --flows file does not exist yet
// looks for it again, while messages of unmapped streams arrive.
const flowsRetryNanos = int64(100 * time.Millisecond)

// pcapSink writes delivered messages as UDP datagrams in a pcap file for
// `telewire recv --pcap-out`.
//
// Addresses: a message whose session and stream the flows mapping (from
// `telewire replay`) lists is written with its original source and
// destination (an entry without a session matches its stream in any
// session); any other message with source = the sender's IP address and
// port = the stream id (its low 16 bits), destination = the receiver's
// address. Timestamps are the receive times.
//
// The mapping file is read when the first message arrives, not at start:
// a receiver is started before the replay, and the replay writes its
// --flows-out file before it sends anything (atomically, by rename), so on
// one host the file read is the current replay's, never one left by an
// earlier run. While a message finds no flow, the file is looked at again
// at most every 100 ms, and read again when it has changed (another
// replay into the same receiver): its flows join those already known (up
// to maxTrackedFlows; past that the new file replaces them). Messages
// written before their mapping appeared get the fallback addresses.
type pcapSink struct {
	path      string
	f         *os.File
	bw        *bufio.Writer
	w         *capture.Writer
	flowsFile string      // "" when there is none
	nextTry   int64       // receive time of the next look at it
	flowsInfo fs.FileInfo // of the file last read, nil before

	flows   map[flowID]Flow
	local   netip.AddrPort
	wall    func(nanos int64) time.Time
	written uint64
	mapped  uint64 // of written, with the original addresses
}

// openPcapSink creates the pcap file at path. flowsFile, if set, is the
// mapping LoadFlows reads; local is the receiver's address; wall converts a
// receive time to wall-clock time.
func openPcapSink(path, flowsFile string, local netip.AddrPort, wall func(int64) time.Time) (*pcapSink, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	p, err := openPcapSinkTo(f, path, flowsFile, local, wall)
	if err != nil {
		f.Close()
		return nil, err
	}
	p.f = f
	return p, nil
}

// openPcapSinkTo is openPcapSink onto w (which it does not close), named
// name in messages. The file header is flushed at once, so that a reader
// of a pipe (wireshark -k -i -) starts before the first datagram.
func openPcapSinkTo(w io.Writer, name, flowsFile string, local netip.AddrPort, wall func(int64) time.Time) (*pcapSink, error) {
	p := &pcapSink{path: name, flowsFile: flowsFile, local: local, wall: wall}
	p.bw = bufio.NewWriterSize(w, 256<<10)
	var err error
	if p.w, err = capture.NewWriter(p.bw, capture.WriterOptions{Nanosecond: true}); err != nil {
		return nil, err
	}
	if err := p.flush(); err != nil {
		return nil, err
	}
	return p, nil
}

// flush hands what was written to the kernel; recv calls it with each
// batch of output.
func (p *pcapSink) flush() error {
	if err := p.bw.Flush(); err != nil {
		return fmt.Errorf("recv: --pcap-out %s: %w", p.path, err)
	}
	return nil
}

// write appends m as one datagram (several records if the Writer
// fragments; it does not). It does not allocate.
func (p *pcapSink) write(m *receiver.Message) error {
	d := capture.Datagram{Time: p.wall(m.ReceiveNanos), Payload: m.Payload}
	f, ok := p.lookup(m)
	if !ok && p.flowsFile != "" && m.ReceiveNanos >= p.nextTry {
		if err := p.loadFlows(); err != nil {
			return err
		}
		p.nextTry = m.ReceiveNanos + flowsRetryNanos
		f, ok = p.lookup(m)
	}
	if ok {
		d.Src, d.Dst = f.Src, f.Dst
		p.mapped++
	} else {
		d.Src, d.Dst = fallbackAddrs(m.Source, m.Stream, p.local)
	}
	if err := p.w.WriteDatagram(d); err != nil {
		return fmt.Errorf("recv: --pcap-out %s: %w", p.path, err)
	}
	p.written++
	return nil
}

// loadFlows reads the mapping file if it exists and changed since it was
// last read; a file that exists but is not a mapping is an error.
func (p *pcapSink) loadFlows() error {
	fi, err := os.Stat(p.flowsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recv: --flows: %w", err)
	}
	if old := p.flowsInfo; old != nil && os.SameFile(fi, old) && fi.ModTime().Equal(old.ModTime()) && fi.Size() == old.Size() {
		return nil // unchanged (replay writes a new file and renames it)
	}
	flows, err := LoadFlows(p.flowsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("recv: --flows: %w", err)
	}
	if p.flows == nil || len(p.flows)+len(flows) > maxTrackedFlows {
		p.flows = make(map[flowID]Flow, len(flows))
	}
	for _, f := range flows {
		id, _ := f.id() // checked by LoadFlows
		p.flows[id] = f
	}
	p.flowsInfo = fi
	return nil
}

// lookup returns the flow of m's session and stream, or of its stream in
// any session when the mapping names no session.
func (p *pcapSink) lookup(m *receiver.Message) (Flow, bool) {
	if f, ok := p.flows[flowID{session: m.Session, stream: m.Stream}]; ok {
		return f, true
	}
	f, ok := p.flows[flowID{stream: m.Stream, anySession: true}]
	return f, ok
}

// fallbackAddrs returns the addresses of a stream without a mapping: the
// sender's IP with port = the stream id's low 16 bits, to the receiver's
// address (the unspecified address of the sender's family, with the
// receiver's port, when the families differ, as with a dual-stack socket).
func fallbackAddrs(from netip.AddrPort, stream uint32, local netip.AddrPort) (src, dst netip.AddrPort) {
	sa, la := from.Addr().Unmap(), local.Addr().Unmap()
	if !sa.IsValid() {
		sa = netip.IPv4Unspecified()
	}
	if !la.IsValid() || la.Is4() != sa.Is4() {
		la = netip.IPv4Unspecified()
		if sa.Is6() {
			la = netip.IPv6Unspecified()
		}
	}
	return netip.AddrPortFrom(sa, uint16(stream&math.MaxUint16)), netip.AddrPortFrom(la, local.Port())
}

// close flushes and closes the file (not a writer given to openPcapSinkTo).
func (p *pcapSink) close() error {
	err := p.bw.Flush()
	if p.f != nil { // nil: a writer given to openPcapSinkTo, not ours to close
		if cerr := p.f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("recv: --pcap-out %s: %w", p.path, err)
	}
	return nil
}

// summary is the line recv prints about the pcap file.
func (p *pcapSink) summary() string {
	s := fmt.Sprintf("pcap: %d datagrams written to %s, %d of them with their original addresses", p.written, p.path, p.mapped)
	if p.flowsFile != "" && p.flowsInfo == nil {
		s += fmt.Sprintf(" (--flows %s never appeared)", p.flowsFile)
	}
	return s
}
