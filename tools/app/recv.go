package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/framing"
)

// RecvOptions are the settings of `telewire recv`.
type RecvOptions struct {
	Listen    string          // local address, required
	Framing   framing.Framing // of stdout; default line
	Count     uint64          // exit after this many messages (0 = no limit)
	Idle      time.Duration   // exit after this long without data once data arrived (0 = never)
	StatsFile string          // write final statistics as JSON here, if set
	Progress  bool            // live one-line status on Stderr each second
	// PcapOut, if set, is a pcap file that also gets each delivered message
	// as a UDP datagram, stamped with its receive time. Its addresses are
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
}

// Recv runs `telewire recv`: delivered payloads go to stdout in the chosen
// framing until Count, Idle, or ctx is cancelled (a normal end); then the
// final statistics go to stderr and, if asked, to StatsFile.
func Recv(ctx context.Context, o RecvOptions, stdout, stderr io.Writer) error {
	if o.Listen == "" {
		return errors.New("recv: --listen is required")
	}
	if o.Framing == "" {
		o.Framing = framing.Line
	}
	cfg := o.Receiver
	cfg.Listen, cfg.Logger = o.Listen, o.Logger
	// Receive times become pcap timestamps through a clock whose epoch is
	// known; an injected clock's readings are taken as Unix nanoseconds.
	wall := func(nanos int64) time.Time { return time.Unix(0, nanos) }
	if o.PcapOut != "" && cfg.Clock == nil {
		c := newWallClock()
		cfg.Clock, wall = c, c.Wall
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r, err := receiver.Listen(rctx, cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	var sink *pcapSink
	if o.PcapOut != "" {
		if sink, err = openPcapSink(o.PcapOut, o.FlowsFile, r.Addr(), wall); err != nil {
			return err
		}
	}
	var nsink *natsSink
	if o.Publish != nil {
		if nsink, err = openNATSSink(rctx, *o.Publish, o.Logger); err != nil {
			return err
		}
	}
	if o.Ready != nil {
		o.Ready(r.Addr().String())
	}

	// The idle watchdog cancels the receive loop once data has arrived and
	// then stopped for o.Idle.
	var lastData atomic.Int64 // unix nanos of the last message, 0 before any
	var idleStop *ticker
	if o.Idle > 0 {
		idleStop = startTicker(max(o.Idle/4, time.Millisecond), func() {
			if t := lastData.Load(); t != 0 && time.Since(time.Unix(0, t)) >= o.Idle {
				cancel()
			}
		})
	}
	start := time.Now()
	var progress *ticker
	if o.Progress {
		progress = startTicker(time.Second, func() {
			fmt.Fprintf(stderr, "\r%s", recvLine(r.Stats(), time.Since(start)))
		})
	}

	w := framing.NewWriter(stdout, o.Framing)
	var got uint64
	var loopErr error
	for o.Count == 0 || got < o.Count {
		m, err := r.Recv(rctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, receiver.ErrClosed) {
				loopErr = err
			}
			break
		}
		if got%64 == 0 || o.Idle > 0 {
			lastData.Store(time.Now().UnixNano())
		}
		if err := w.Write(m.Payload); err != nil {
			loopErr = fmt.Errorf("recv: writing output: %w", err)
			break
		}
		if sink != nil {
			if err := sink.write(&m); err != nil {
				loopErr = err
				break
			}
		}
		if nsink != nil {
			if err := nsink.put(&m); err != nil {
				loopErr = err
				break
			}
		}
		got++
	}
	idleStop.stop()
	progress.stop()
	if o.Progress {
		fmt.Fprintln(stderr)
	}
	if err := w.Flush(); err != nil && loopErr == nil {
		loopErr = fmt.Errorf("recv: writing output: %w", err)
	}
	if nsink != nil {
		if err := nsink.close(); err != nil && loopErr == nil {
			loopErr = err
		}
	}
	st := r.Stats()
	fmt.Fprintln(stderr, recvSummary(st, got, time.Since(start)))
	if nsink != nil {
		fmt.Fprintln(stderr, nsink.summary())
	}
	if sink != nil {
		if err := sink.close(); err != nil && loopErr == nil {
			loopErr = err
		}
		fmt.Fprintln(stderr, sink.summary())
	}
	if o.StatsFile != "" {
		if err := writeJSON(o.StatsFile, nsink.withNATS(st)); err != nil && loopErr == nil {
			loopErr = err
		}
	}
	if err := r.Close(); err != nil && loopErr == nil {
		loopErr = err
	}
	return loopErr
}

func recvLine(st receiver.Stats, elapsed time.Duration) string {
	line := fmt.Sprintf("delivered %d (%s) malformed %d", st.Delivered, rate(st.Delivered, elapsed), st.Malformed)
	for _, x := range st.Streams {
		line += fmt.Sprintf(" | stream %d lost %d reord %d jitter %s p50 %s p99 %s",
			x.Stream, x.Lost, x.Reordered, ms(x.JitterNanos), ms(x.Delay.P50), ms(x.Delay.P99))
	}
	return line + "   "
}

func recvSummary(st receiver.Stats, got uint64, elapsed time.Duration) string {
	s := fmt.Sprintf("receiver: %d messages written in %s; %d datagrams, %d malformed, %d queue overflow, %d kernel drops",
		got, elapsed.Round(time.Millisecond), st.Datagrams, st.Malformed, st.QueueOverflow, st.KernelDrops)
	for _, x := range st.Streams {
		s += fmt.Sprintf("\n  %s stream %d: received %d, lost %d, dup %d, reordered %d, jitter %s, delay p50 %s p90 %s p99 %s max %s",
			x.Source, x.Stream, x.Received, x.Lost, x.Duplicates, x.Reordered, ms(x.JitterNanos),
			ms(x.Delay.P50), ms(x.Delay.P90), ms(x.Delay.P99), ms(x.Delay.Max))
	}
	return s
}
