package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/framing"
)

// RecvOptions are the settings of `telewire recv`.
type RecvOptions struct {
	Listen string // local address, required
	// Output names where the messages go: "" or "-" for stdout, else a
	// file, created or truncated.
	Output    string
	Framing   framing.Framing // of the output (line, len32 or json); default line
	Count     uint64          // exit after this many messages (0 = no limit)
	Idle      time.Duration   // exit after this long without data once data arrived (0 = never)
	StatsFile string          // write final statistics as JSON here, if set
	Progress  bool            // live one-line status on Stderr each second
	// PcapOut, if set, is a pcap file ("-": stdout, when Output is not)
	// that also gets each delivered message as a UDP datagram, stamped
	// with its receive time, flushed with the output. Its addresses are
	// the original ones for streams FlowsFile maps (the --stats or
	// --flows-out JSON of `telewire replay`); any other stream gets source
	// = the sender's IP with port = stream id (low 16 bits), destination =
	// the receiver's address. FlowsFile is read when the first message
	// arrives (replay writes it before sending), retried every 100 ms
	// while it does not exist.
	PcapOut   string
	FlowsFile string // with PcapOut: the stream mapping, see PcapOut
	// Publish, if set, also puts every delivered message into NATS
	// JetStream (see PublishOptions and tools/bridge).
	Publish *PublishOptions

	Receiver receiver.Config // further receiver settings; Listen is filled in
	Logger   zerolog.Logger
	// Ready, if set, is called with the bound address once listening.
	Ready func(addr string)

	// Stats, if set, is the opened statistics output (--stats, with
	// --stats-interval); it replaces StatsFile. Recv writes its records and
	// closes it.
	Stats *StatsOutput
	// OnReceiver, if set, is called with the receiver once it listens
	// (to export its statistics, for instance).
	OnReceiver func(*receiver.Receiver)
	// OnPublisher, if set, is called with the NATS publisher once it
	// exists (with Publish only; to export its statistics, for instance).
	OnPublisher func(*bridge.Publisher)
}

// ErrBothStdout is returned when the payload and the pcap copy would both
// go to stdout.
var ErrBothStdout = errors.New("recv: --pcap-out - and the messages (--output -, the default) cannot both go to stdout")

// Recv runs `telewire recv`: delivered payloads go to the output (stdout
// unless o.Output names a file) in the chosen framing until Count, Idle,
// or ctx is cancelled (a normal end); then the final statistics go to
// stderr and, if asked, to StatsFile.
//
// Output is prompt: the messages the receiver has ready are written as one
// batch, and the batch is handed to the kernel (one write) as soon as no
// further message is ready, so a message never waits in recv for one that
// may not come, and a `kill -9` loses only what was not yet delivered. The
// pcap copy is flushed with each batch.
func Recv(ctx context.Context, o RecvOptions, stdout, stderr io.Writer) error {
	if o.Listen == "" && o.Receiver.Subscribe == "" {
		return errors.New("recv: --listen (or --subscribe) is required")
	}
	if o.Framing == "" {
		o.Framing = framing.Line
	}
	toStdout := o.Output == "" || o.Output == "-"
	if o.PcapOut == "-" && toStdout {
		return ErrBothStdout
	}
	statsOut, err := openStatsOption(o.Stats, o.StatsFile)
	if err != nil {
		return err
	}
	defer statsOut.Close()
	cfg := o.Receiver
	cfg.Listen, cfg.Logger = o.Listen, o.Logger
	// json framing shows skipped gaps in band.
	cfg.DeliverGaps = cfg.DeliverGaps || o.Framing == framing.JSON
	// Receive times become pcap timestamps and json recv_ns through a
	// clock whose epoch is known; an injected clock's readings are taken
	// as Unix nanoseconds.
	wall := func(nanos int64) time.Time { return time.Unix(0, nanos) }
	if cfg.Clock == nil {
		c := newWallClock()
		cfg.Clock, wall = c, c.Wall
	}
	out := stdout
	if !toStdout {
		f, err := os.Create(o.Output)
		if err != nil {
			return fmt.Errorf("recv: --output: %w", err)
		}
		defer f.Close()
		out = f
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, err := receiver.Listen(rctx, cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	if o.OnReceiver != nil {
		o.OnReceiver(r)
	}
	var sink *pcapSink
	switch o.PcapOut {
	case "":
	case "-":
		if sink, err = openPcapSinkTo(stdout, "stdout", o.FlowsFile, r.Addr(), wall); err != nil {
			return err
		}
	default:
		if sink, err = openPcapSink(o.PcapOut, o.FlowsFile, r.Addr(), wall); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "telewire recv: listening on %s\n", r.Addr())
	var nsink *natsSink
	if o.Publish != nil {
		if nsink, err = openNATSSink(rctx, *o.Publish, o.Logger); err != nil {
			return err
		}
		if o.OnPublisher != nil {
			o.OnPublisher(nsink.pub)
		}
	}
	if o.Ready != nil {
		o.Ready(r.Addr().String())
	}

	// The idle watchdog cancels the receive loop once data has arrived and
	// then stopped for o.Idle.
	var lastData atomic.Int64 // unix nanos of the last batch, 0 before any
	var idleStop *ticker
	if o.Idle > 0 {
		idleStop = startTicker(max(o.Idle/4, time.Millisecond), func() {
			if t := lastData.Load(); t != 0 && time.Since(time.Unix(0, t)) >= o.Idle {
				cancel()
			}
		})
	}
	start := time.Now()
	rw := recvWriter{w: framing.NewWriter(out, o.Framing), sink: sink, wall: wall, stderr: stderr}
	statsRun := statsOut.begin(func() sample { return recvSample(r.Stats(), rw.written.Load()) })
	defer statsRun.stop()
	var progress *ticker
	if o.Progress {
		progress = startTicker(time.Second, func() {
			fmt.Fprintf(stderr, "\r%s", recvLine(r.Stats(), time.Since(start)))
		})
	}

	var loopErr error
	for loopErr == nil && (o.Count == 0 || rw.messages < o.Count) {
		m, err := r.Recv(rctx)
		if err != nil {
			var ended *receiver.SubscriptionEndedError
			switch {
			case errors.As(err, &ended) && ended.Reason == packet.ReasonClosing:
				// The sender closed: the stream is over, a normal end.
			case !errors.Is(err, context.Canceled) && !errors.Is(err, receiver.ErrClosed):
				loopErr = err
			}
			break
		}
		// Write what is ready as one batch, then hand it to the kernel.
		for ok := true; ok; m, ok = r.TryRecv() {
			if loopErr = rw.write(&m); loopErr != nil {
				break
			}
			if nsink != nil && m.Gap == receiver.GapNone {
				if loopErr = nsink.put(&m); loopErr != nil {
					break
				}
			}
			if o.Count != 0 && rw.messages >= o.Count {
				break
			}
		}
		if err := rw.flush(); err != nil && loopErr == nil {
			loopErr = err
		}
		if o.Idle > 0 {
			lastData.Store(time.Now().UnixNano())
		}
	}
	idleStop.stop()
	progress.stop()
	if o.Progress {
		fmt.Fprintln(stderr)
	}
	if err := rw.flush(); err != nil && loopErr == nil {
		loopErr = err
	}
	if nsink != nil {
		if err := nsink.close(); err != nil && loopErr == nil {
			loopErr = err
		}
	}
	st := r.Stats()
	fmt.Fprintln(stderr, recvSummary(st, &rw, time.Since(start)))
	if nsink != nil {
		fmt.Fprintln(stderr, nsink.summary())
	}
	if sink != nil {
		if err := sink.close(); err != nil && loopErr == nil {
			loopErr = err
		}
		fmt.Fprintln(stderr, sink.summary())
	}
	if f, ok := out.(*os.File); ok && !toStdout {
		if err := f.Close(); err != nil && loopErr == nil {
			loopErr = fmt.Errorf("recv: --output: %w", err)
		}
	}
	if err := statsRun.finish(recvSample(st, rw.written.Load()), nsink.withNATS(st)); err != nil && loopErr == nil {
		loopErr = err
	}
	if err := r.Close(); err != nil && loopErr == nil {
		loopErr = err
	}
	return loopErr
}

// recvWriter turns the receiver's messages and gap markers into output
// records and counts what it wrote and refused.
type recvWriter struct {
	w      *framing.Writer
	sink   *pcapSink
	wall   func(int64) time.Time
	stderr io.Writer
	meta   framing.Meta
	gap    framing.Gap

	messages uint64        // messages taken from the receiver (gap markers not counted)
	refused  uint64        // of messages, refused by line framing (newline)
	gaps     uint64        // gap markers written (json)
	written  atomic.Uint64 // payload bytes written, read by the statistics records
	skipped  uint64        // sequences they cover
}

// write writes one message or gap marker into the current batch. It does
// not allocate.
func (rw *recvWriter) write(m *receiver.Message) error {
	if m.Gap != receiver.GapNone {
		rw.gap = framing.Gap{
			Source: m.Source, Session: m.Session, Stream: m.Stream, First: m.Seq, Last: m.GapLast,
			Reason: m.Gap.String(), ReceiveNanos: rw.wall(m.ReceiveNanos).UnixNano(),
		}
		rw.gaps++
		rw.skipped += m.GapLast - m.Seq + 1
		if err := rw.w.WriteGap(&rw.gap); err != nil {
			return fmt.Errorf("recv: writing output: %w", err)
		}
		return nil
	}
	rw.messages++
	rw.meta = framing.Meta{
		Source: m.Source, Session: m.Session, Stream: m.Stream, Seq: m.Seq, SentNanos: m.SentNanos,
		ReceiveNanos: rw.wall(m.ReceiveNanos).UnixNano(), Origin: m.Origin.String(),
	}
	if err := rw.w.WriteMessage(&rw.meta, m.Payload); errors.Is(err, framing.ErrNewline) {
		if rw.refused++; rw.refused == 1 {
			fmt.Fprintf(rw.stderr, "telewire recv: refusing payloads that contain a newline (stream %d seq %d is the first): line framing would split them into several lines; they are counted in the summary (use --framing len32 or json to carry them)\n", m.Stream, m.Seq)
		}
	} else if err != nil {
		return fmt.Errorf("recv: writing output: %w", err)
	} else {
		rw.written.Add(uint64(len(m.Payload)))
	}
	if rw.sink != nil {
		return rw.sink.write(m)
	}
	return nil
}

// flush hands the batch to the kernel: the output, then the pcap copy.
func (rw *recvWriter) flush() error {
	if err := rw.w.Flush(); err != nil {
		return fmt.Errorf("recv: writing output: %w", err)
	}
	if rw.sink != nil {
		return rw.sink.flush()
	}
	return nil
}

func recvLine(st receiver.Stats, elapsed time.Duration) string {
	line := fmt.Sprintf("delivered %d (%s) malformed %d", st.Delivered, rate(st.Delivered, elapsed), st.Malformed)
	for _, x := range st.Streams {
		line += fmt.Sprintf(" | stream %d lost %d reord %d jitter %s p50 %s p99 %s",
			x.Stream, x.Lost, x.Reordered, ms(x.JitterNanos), ms(x.Delay.P50), ms(x.Delay.P99))
	}
	return line + "   "
}

// recvSummary is the report printed at exit: what was written, everything
// refused, dropped or skipped anywhere (not only in the --stats JSON), and
// a line per stream.
func recvSummary(st receiver.Stats, rw *recvWriter, elapsed time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "receiver: %d messages written in %s; %d datagrams, %d malformed, %d queue overflow, %d kernel drops",
		rw.messages-rw.refused, elapsed.Round(time.Millisecond), st.Datagrams, st.Malformed, st.QueueOverflow, st.KernelDrops)
	var skipped, late, reorderDropped, missingOverflow, unrecovered, held, superseded, stale, fecEvicted, fecParityDropped, fecUnrecoverable, resyncs, budgetDropped, reasmDropped, reasmExpired, fragRefused uint64
	for _, x := range st.Streams {
		skipped += x.Skipped
		late += x.Late
		reorderDropped += x.ReorderDropped
		missingOverflow += x.MissingOverflow
		unrecovered += x.Unrecovered
		held += x.Held
		superseded += x.Superseded
		stale += x.Stale
		fecEvicted += x.FECBlocksEvicted
		fecParityDropped += x.FECParityDropped
		fecUnrecoverable += x.FECBlocksUnrecoverable
		resyncs += x.Resyncs
		budgetDropped += x.BudgetDropped
		reasmDropped += x.ReassemblyDropped
		reasmExpired += x.ReassemblyExpired
		fragRefused += x.FragmentsRefused
	}
	var refused []string
	add := func(n uint64, what string) {
		if n > 0 {
			refused = append(refused, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(rw.refused, "messages refused by line framing (payload contains a newline)")
	add(st.QueueOverflow, "messages dropped: queue full (the output could not keep up)")
	add(skipped, "sequences skipped by ordered delivery (never delivered)")
	add(unrecovered, "lost and not repaired")
	add(late, "messages arrived after delivery had passed them")
	add(reorderDropped, "messages refused: reorder buffer full")
	add(superseded, "messages superseded (latest mode)")
	add(stale, "datagrams too old for the window")
	add(missingOverflow, "gaps given up: missing-set full")
	add(fecEvicted, "FEC blocks evicted")
	add(fecParityDropped, "FEC parity shards not kept")
	add(fecUnrecoverable, "FEC blocks given up with data missing")
	add(st.ParityRejected, "parity packets rejected (contradicted their block)")
	add(reasmDropped, "incomplete messages dropped: reassembly memory full")
	add(reasmExpired, "incomplete messages given up: past their deadline")
	add(fragRefused, "fragments refused (message over --max-message, or inconsistent)")
	add(held, "messages still held for ordering at exit (not delivered)")
	add(st.SessionsRefused, "datagrams refused: session table full")
	add(st.StreamsRefused, "datagrams refused: stream table full")
	add(st.Unexpected, "unexpected packets")
	add(st.Unsealed, "unencrypted datagrams refused")
	add(st.KeyMismatch, "datagrams sealed under another key")
	add(st.AuthFailed, "datagrams failed authentication")
	add(st.Replayed, "replayed datagrams")
	add(st.NoKeys, "sealed datagrams under keys this receiver does not hold (sender restarted elsewhere, or a replay)")
	add(st.HandshakesThrottled, "handshakes not answered: key agreements over their rate")
	add(st.RetriesThrottled, "RETRYs not sent: over their rate")
	add(st.BudgetRefused, "sessions or streams refused: state budget spent (--max-state)")
	add(st.BudgetDenied, "state growths refused by the budget (messages not held, gaps given up, no FEC)")
	add(budgetDropped, "messages not held for ordering: state budget spent")
	add(st.ParityDropped, "parity packets dropped: no FEC decoder within the budget")
	add(st.SessionsEvicted, "unvalidated sessions evicted to admit new ones")
	add(st.Corrupted, "datagrams damaged on the way (foreign key id that did not repeat)")
	add(st.AnswersRejected, "challenge answers rejected (not issued here, or too old)")
	add(st.FeedbackDropped, "feedback packets dropped: outbox full")
	add(st.WriteErrors, "feedback packets the kernel refused")
	if len(refused) == 0 {
		b.WriteString("\n  nothing refused, dropped or skipped")
	} else {
		b.WriteString("\n  refused, dropped or skipped: " + strings.Join(refused, ", "))
	}
	// Events that lose no data but explain what happened.
	refused = refused[:0]
	add(st.FeedbackBlocked, "feedback packets withheld until the sender had sent more (anti-amplification)")
	add(st.SessionsExpired, "sessions expired after silence")
	add(st.SessionRestarts, "sender restarts")
	add(st.Rekeys, "rekeys")
	add(st.AddressChanges, "sender address changes")
	add(st.AnswersOthers, "answers to other receivers' challenges (a multicast group's, not for this receiver)")
	add(st.GroupSize, "receivers in the multicast group, as its sender last said")
	add(st.HistoryRequested, "sequences of history asked for on joining (--join-history)")
	add(st.Unavailable, "\"unavailable\" answers from senders (asked too late to retransmit)")
	add(resyncs, "stream resyncs (jumps beyond the window)")
	if len(refused) > 0 {
		b.WriteString("\n  also: " + strings.Join(refused, ", "))
	}
	if sub := st.Subscription; sub.To != "" {
		state := "subscribed until exit (a goodbye goes to the sender as recv closes)"
		switch {
		case sub.Ended && sub.EndReason != packet.ReasonLeaving:
			state = receiver.ReasonText(sub.EndReason)
		case sub.Ended:
			state = "left"
		case !sub.Admitted:
			state = "never admitted (no TOKEN answered, or no data came)"
		}
		fmt.Fprintf(&b, "\n  subscription to %s: %s; %d SUBSCRIBEs sent, %d TOKENs taken", sub.To, state, sub.Subscribes, sub.Tokens)
	}
	if rw.gaps > 0 {
		fmt.Fprintf(&b, "\n  %d gap records written (%d sequences)", rw.gaps, rw.skipped)
	}
	for _, x := range st.Streams {
		fmt.Fprintf(&b, "\n  %s stream %d: received %d, lost %d, skipped %d, dup %d, reordered %d, jitter %s, delay p50 %s p90 %s p99 %s max %s",
			x.Source, x.Stream, x.Received, x.Lost, x.Skipped, x.Duplicates, x.Reordered, ms(x.JitterNanos),
			ms(x.Delay.P50), ms(x.Delay.P90), ms(x.Delay.P99), ms(x.Delay.Max))
	}
	return b.String()
}
