package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// settlePoll is how often the drain looks at the counters, and the fence
// period.
const settlePoll = 10 * time.Millisecond

// Summary is the outcome of a run.
type Summary struct {
	// The options run, defaults filled in (the two config templates
	// left out).
	Duration time.Duration `json:"duration_ns"`
	Interval time.Duration `json:"interval_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
	Drain    time.Duration `json:"drain_ns"`
	Rate     float64       `json:"rate"`
	Size     int           `json:"size"`
	ForceGC  bool          `json:"force_gc"`
	Fwd      string        `json:"fwd"`
	Rev      string        `json:"rev"`

	// Interrupted is true when the context ended the load early.
	Interrupted bool `json:"interrupted"`
	// LoadNanos is how long the load ran; DrainNanos how long the tail
	// took.
	LoadNanos  int64 `json:"load_ns"`
	DrainNanos int64 `json:"drain_ns_taken"`
	// AchievedRate is the load sent per second of LoadNanos.
	AchievedRate float64 `json:"achieved_rate"`
	// Samples is the time series; the last one is taken after the drain.
	// The JSON output carries them as lines of their own.
	Samples []Sample `json:"-"`
	// Reconciliation and Memory are the two verdicts.
	Reconciliation Reconciliation `json:"reconciliation"`
	Memory         Verdict        `json:"memory"`
	// GoroutinesBefore and GoroutinesAfter are counted before the run
	// starts anything and after it has stopped everything (given up to a
	// second to exit); more after than before is a leak.
	GoroutinesBefore uint64 `json:"goroutines_before"`
	GoroutinesAfter  uint64 `json:"goroutines_after"`
	// Sender, Receiver and Relay are the final statistics.
	Sender   sender.Stats     `json:"sender"`
	Receiver receiver.Stats   `json:"receiver"`
	Relay    netem.RelayStats `json:"relay"`
}

// Check returns nil when the counters reconcile and memory is flat, and
// otherwise an error wrapping ErrNotReconciled, ErrMemoryGrew or
// ErrInconclusive (joined when several apply).
func (s *Summary) Check() error {
	var errs []error
	if err := s.Reconciliation.Err(); err != nil {
		errs = append(errs, err)
	}
	switch s.Memory.Status {
	case VerdictGrowing:
		errs = append(errs, fmt.Errorf("%w: %s", ErrMemoryGrew, s.Memory.Reason))
	case VerdictInconclusive:
		errs = append(errs, fmt.Errorf("%w: %s", ErrInconclusive, s.Memory.Reason))
	}
	return errors.Join(errs...)
}

// Run soaks telewire as o says, writing each sample and then the summary
// to out (a table, or JSON lines with o.JSON), and returns the summary.
// Cancelling ctx stops the load early; the tail is still drained and
// reconciled, and the summary printed. The error is for a run that could
// not start or an output that failed; use Summary.Check for the verdicts.
func Run(ctx context.Context, o Options, out io.Writer) (*Summary, error) {
	o, sp, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	mem := newMemReader()
	sum := &Summary{
		Duration: o.Duration, Interval: o.Interval, Warmup: o.Warmup, Drain: o.Drain,
		Rate: o.Rate, Size: o.Size, ForceGC: o.ForceGC, Fwd: o.Fwd, Rev: o.Rev,
		GoroutinesBefore: mem.read().Goroutines,
	}
	rep := newReporter(out, o.JSON)

	// The ends get a context of their own: a cancelled ctx stops the load,
	// not the sender and receiver, which must stay up for the drain.
	ictx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()

	rc := o.Receiver
	rc.Listen, rc.Logger = "127.0.0.1:0", o.Logger
	rcv, err := receiver.Listen(ictx, rc)
	if err != nil {
		return nil, err
	}
	defer rcv.Close()
	relay, err := netem.NewRelay(netem.RelayConfig{
		Listen: "127.0.0.1:0", To: rcv.Addr().String(), Fwd: sp.fwd, Rev: sp.rev, Seed: o.Seed, Logger: &o.Logger,
	})
	if err != nil {
		return nil, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := relay.Run(ictx); err != nil {
			o.Logger.Error().Err(err).Msg("soak: link relay stopped")
		}
	}()
	sc := o.Sender
	sc.To, sc.Logger = relay.Addr().String(), o.Logger
	// The verifier checks each message's index against its transport
	// sequence, and the reconciliation counts datagrams as messages: one
	// message per datagram.
	sc.DisablePacking = true
	snd, err := sender.New(ictx, sc)
	if err != nil {
		return nil, err
	}
	defer snd.Close()

	ver := NewVerifier(o.Size)
	cctx, stopConsumer := context.WithCancel(ictx)
	defer stopConsumer()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := rcv.Recv(cctx)
			if err != nil {
				return
			}
			ver.Add(m.Payload, m.Seq)
		}
	}()

	r := &runner{o: o, mem: mem, snd: snd, rcv: rcv, relay: relay, ver: ver, buf: make([]byte, o.Size)}
	if err := rep.start(o); err != nil {
		return nil, err
	}
	r.start = time.Now()
	sum.Interrupted, err = r.load(ctx, rep)
	if err != nil {
		return nil, err
	}
	sum.LoadNanos = int64(time.Since(r.start))
	r.drain()
	sum.DrainNanos = int64(time.Since(r.start)) - sum.LoadNanos

	final := r.sample(false)
	sum.Samples = append(r.samples, final)
	sum.Sender, sum.Receiver, sum.Relay = r.ss, r.rs, relay.Stats()
	st := streamOf(r.rs)
	var senderSent uint64
	for _, x := range r.ss.Streams {
		senderSent += x.Sent
	}
	sum.Reconciliation = Reconcile(Counts{
		Load: r.sent, Fences: r.fences, SenderSent: senderSent, Consumer: ver.Counts(),
		Skipped: st.Skipped, QueueOverflow: r.rs.QueueOverflow, ReceiverDelivered: r.rs.Delivered,
		Unrecovered: st.Unrecovered, Late: st.Late, Resyncs: st.Resyncs,
	})
	sum.Memory = Judge(r.samples, o.Warmup)
	if sum.LoadNanos > 0 {
		sum.AchievedRate = float64(r.sent) / time.Duration(sum.LoadNanos).Seconds()
	}

	stopConsumer()
	rcv.Close()
	cancel()
	wg.Wait()
	sum.GoroutinesAfter = goroutinesAfter(sum.GoroutinesBefore)
	if err := rep.sample(final); err != nil {
		return sum, err
	}
	return sum, rep.summary(sum)
}

// goroutinesAfter counts the goroutines once the run has stopped,
// allowing up to a second for those that exit asynchronously (context
// callbacks fired by the final cancel) to return to the count before.
func goroutinesAfter(before uint64) uint64 {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(time.Second)
	n := uint64(runtime.NumGoroutine())
	for n > before && time.Now().Before(deadline) {
		<-tick.C
		n = uint64(runtime.NumGoroutine())
	}
	return n
}

// runner is the state of one run's load, samples and drain.
type runner struct {
	o     Options
	mem   *memReader
	snd   *sender.Sender
	rcv   *receiver.Receiver
	relay *netem.Relay
	ver   *Verifier
	buf   []byte

	start   time.Time
	sent    uint64 // load messages sent
	fences  uint64 // fences sent
	samples []Sample
	last    struct {
		at   time.Time
		sent uint64
	}
	ss sender.Stats   // latest sender stats
	rs receiver.Stats // latest receiver stats
}

// send sends message index (a fence when fence is set).
func (r *runner) send(index uint64, fence bool) error {
	var flags uint32
	if fence {
		flags = FlagFence
	}
	PutPayload(r.buf, index, flags)
	return r.snd.Send(r.buf)
}

// load sends at the offered rate until the duration ends or ctx is done,
// sampling every interval. Each millisecond it sends what is due; a
// sender that cannot keep up blocks Send, and the rate achieved shows it.
func (r *runner) load(ctx context.Context, rep *reporter) (interrupted bool, err error) {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	r.last.at = r.start
	nextSample := r.o.Interval
	perNano := r.o.Rate / 1e9
	// At most this many messages between looks at the clock and ctx.
	burst := uint64(max(64, r.o.Rate/200))
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-tick.C:
		}
		if ctx.Err() != nil { // both were ready: cancellation wins
			return true, nil
		}
		elapsed := time.Since(r.start)
		due := uint64(float64(min(elapsed, r.o.Duration)) * perNano)
		for n := uint64(0); r.sent < due && n < burst && ctx.Err() == nil; n++ {
			if err := r.send(r.sent, false); err != nil {
				return false, fmt.Errorf("soak: send: %w", err)
			}
			r.sent++
		}
		if ctx.Err() != nil {
			return true, nil
		}
		end := elapsed >= r.o.Duration
		if elapsed >= nextSample || end {
			s := r.sample(true)
			r.samples = append(r.samples, s)
			if err := rep.sample(s); err != nil {
				return false, err
			}
			for nextSample <= elapsed {
				nextSample += r.o.Interval
			}
		}
		if end {
			// A sender that fell behind is not waited for: the load
			// ends on time, and the achieved rate shows the shortfall.
			return false, nil
		}
	}
}

// drain settles the tail. While delivery has not moved past the last load
// message, it sends a fence every settlePoll, so that a gap at the end has
// something after it to be skipped against; then it closes the sender and
// waits until the receiver holds nothing and the consumer has read all it
// queued, unchanged over two polls. The whole is bounded by o.Drain.
func (r *runner) drain() {
	deadline := time.Now().Add(r.o.Drain)
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	for r.sent > 0 && r.ver.Counts().Top < r.sent && time.Now().Before(deadline) {
		if r.send(r.sent+r.fences, true) != nil {
			break
		}
		r.fences++
		<-tick.C
	}
	r.snd.Close()
	var prev VerifierCounts
	settled := 0
	for time.Now().Before(deadline) && settled < 2 {
		<-tick.C
		rs := r.rcv.Stats()
		c := r.ver.Counts()
		if streamOf(rs).Held == 0 && c.Received == rs.Delivered && c == prev {
			settled++
		} else {
			settled = 0
		}
		prev = c
	}
}

// sample reads the figures now and remembers the latest statistics.
func (r *runner) sample(load bool) Sample {
	if r.o.ForceGC {
		runtime.GC()
	}
	now := time.Now()
	r.ss, r.rs = r.snd.Stats(), r.rcv.Stats()
	st := streamOf(r.rs)
	c := r.ver.Counts()
	ls := r.relay.Stats()
	s := Sample{
		ElapsedNanos: int64(now.Sub(r.start)),
		Load:         load,
		Mem:          r.mem.read(),

		Sent: r.sent, Delivered: c.Loads,
		Corrupt: c.Corrupt, Misordered: c.Misordered, Duplicates: c.Duplicates,

		Skipped: st.Skipped, Unrecovered: st.Unrecovered, Lost: st.Lost,
		RecoveredFEC: st.RecoveredFEC, RecoveredRTX: st.RecoveredRTX,
		RecvDuplicates: st.Duplicates, Late: st.Late, Held: st.Held,
		QueueOverflow: r.rs.QueueOverflow, KernelDrops: r.rs.KernelDrops, RecvFeedbackDropped: r.rs.FeedbackDropped,

		Retransmits: r.ss.Retransmits, Unavailable: r.ss.Unavailable, Parity: r.ss.Parity,
		QueueFull: r.ss.QueueFull, ParityDropped: r.ss.ParityDropped,
		SendFeedbackDropped: r.ss.FeedbackDropped, WriteErrors: r.ss.WriteErrors,

		RelayFwdDropped: ls.Fwd.Dropped, RelayRevDropped: ls.Rev.Dropped,
	}
	if r.ss.DatagramsSent > ls.Fwd.Received {
		s.RelayUnread = r.ss.DatagramsSent - ls.Fwd.Received
	}
	if d := now.Sub(r.last.at); d > 0 {
		s.RatePerSec = float64(r.sent-r.last.sent) / d.Seconds()
	}
	r.last.at, r.last.sent = now, r.sent
	return s
}

// streamOf returns the stats of the soak's one stream (zero before data,
// and after the session expired).
func streamOf(st receiver.Stats) receiver.StreamStats {
	if len(st.Streams) == 0 {
		return receiver.StreamStats{}
	}
	return st.Streams[0]
}
