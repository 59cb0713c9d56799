package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/framing"
	"github.com/telewire/telewire/tools/gen"
)

// SendOptions are the settings of `telewire send`.
type SendOptions struct {
	To        string          // receiver address, required
	Framing   framing.Framing // of stdin; default line
	Rate      float64         // messages per second cap; 0 = unlimited
	Linger    time.Duration   // keep answering feedback after the last message
	StatsFile string          // write final statistics as JSON here, if set
	Stream    uint32          // stream id
	Progress  bool            // live one-line status on Stderr each second

	Gen   gen.Kind // synthetic source instead of stdin, if set
	Count int      // with Gen: messages to send (0 = until cancelled)
	Size  int      // with Gen: message size in bytes (0 = natural size)
	Seed  uint64   // with Gen: random seed

	// From, if set, takes the messages from NATS instead of stdin (see
	// ForwardOptions and tools/bridge); Rate applies, Gen does not.
	From *ForwardOptions

	Sender sender.Config // further sender settings; To and Stream are filled in
	Logger zerolog.Logger
}

// Send runs `telewire send`: messages from stdin (or a generator) go to a
// sender until EOF, Count, or ctx is cancelled; then the sender lingers for
// feedback, prints its statistics to stderr and closes. A cancelled ctx is
// a normal end, not an error.
func Send(ctx context.Context, o SendOptions, stdin io.Reader, stderr io.Writer) error {
	if o.To == "" {
		return errors.New("send: --to is required")
	}
	if o.Framing == "" {
		o.Framing = framing.Line
	}
	if o.Rate < 0 {
		return fmt.Errorf("send: --rate %v is negative", o.Rate)
	}
	var next func() ([]byte, error)
	var nsrc *natsSource
	var err error
	if o.From != nil {
		o.From.Forwarder.SendStream, o.From.Forwarder.Rate = o.Stream, o.Rate
		if nsrc, err = openNATSSource(*o.From, o.Logger); err != nil {
			return err
		}
		defer nsrc.close()
	} else if next, err = source(o, stdin); err != nil {
		return err
	}
	cfg := o.Sender
	cfg.To, cfg.Stream, cfg.Logger = o.To, o.Stream, o.Logger
	// The sender outlives ctx by the linger time, so it gets its own.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := sender.New(sctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()

	start := time.Now()
	var progress *ticker
	if o.Progress {
		progress = startTicker(time.Second, func() {
			st := s.Stats()
			fmt.Fprintf(stderr, "\r%s", sendLine(st, time.Since(start)))
		})
	}
	var sent uint64
	if nsrc != nil {
		sent, err = nsrc.fwd.Run(ctx, s)
	} else {
		sent, err = pump(ctx, o, next, s)
	}
	progress.stop()
	if o.Progress {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	o.Logger.Info().Uint64("messages", sent).Dur("elapsed", time.Since(start)).Msg("input done, lingering for feedback")
	select {
	case <-time.After(o.Linger):
	case <-ctx.Done():
	}
	// Close flushes what is still queued, so the statistics count it.
	closeErr := s.Close()
	st := s.Stats()
	fmt.Fprintln(stderr, sendSummary(st, time.Since(start)))
	if nsrc != nil {
		fmt.Fprintln(stderr, nsrc.summary())
	}
	if o.StatsFile != "" {
		if err := writeJSON(o.StatsFile, nsrc.withNATS(st)); err != nil {
			return err
		}
	}
	return closeErr
}

// source returns a function yielding the next message, io.EOF at the end.
func source(o SendOptions, stdin io.Reader) (func() ([]byte, error), error) {
	if o.Gen == "" {
		r := framing.NewReader(stdin, o.Framing, o.Sender.MaxPayload())
		return r.Next, nil
	}
	g, err := gen.New(o.Gen, o.Size, o.Seed)
	if err != nil {
		return nil, err
	}
	if max := o.Sender.MaxPayload(); o.Size > max {
		return nil, fmt.Errorf("send: --size %d exceeds the maximum payload %d", o.Size, max)
	}
	buf := make([]byte, 0, max(o.Size, 256))
	n := 0
	return func() ([]byte, error) {
		if o.Count > 0 && n >= o.Count {
			return nil, io.EOF
		}
		n++
		buf = g.Next(buf[:0])
		return buf, nil
	}, nil
}

// pump moves messages into the sender at up to o.Rate per second.
func pump(ctx context.Context, o SendOptions, next func() ([]byte, error), s *sender.Sender) (uint64, error) {
	var sent uint64
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) / o.Rate)
	}
	start := time.Now()
	for {
		if ctx.Err() != nil {
			return sent, nil
		}
		msg, err := next()
		if errors.Is(err, io.EOF) {
			return sent, nil
		}
		if err != nil {
			return sent, fmt.Errorf("send: reading input: %w", err)
		}
		if interval > 0 {
			// Schedule message i at start + i*interval, so pacing does
			// not drift; sleep only when more than a millisecond ahead.
			due := start.Add(time.Duration(sent) * interval)
			if ahead := time.Until(due); ahead > time.Millisecond {
				select {
				case <-time.After(ahead):
				case <-ctx.Done():
					return sent, nil
				}
			}
		}
		if err := s.Send(msg); err != nil {
			return sent, fmt.Errorf("send: %w", err)
		}
		sent++
	}
}

func sendLine(st sender.Stats, elapsed time.Duration) string {
	line := fmt.Sprintf("sent %d (%s) rtt %s", st.Packets, rate(st.Packets, elapsed), ms(uint64(st.RTT.SmoothedNanos)))
	for _, x := range st.Streams {
		if x.Receiver.Reported {
			line += fmt.Sprintf(" | receiver: got %d lost %d jitter %s p99 %s",
				x.Receiver.Received, x.Receiver.Lost, ms(x.Receiver.JitterNanos), ms(x.Receiver.DelayP99Nanos))
		}
	}
	return line + "   "
}

func sendSummary(st sender.Stats, elapsed time.Duration) string {
	s := fmt.Sprintf("sender: %d messages, %d payload bytes, %d datagrams, %d wire bytes in %s; rtt %s (min %s, %d samples); %d reports, %d nacks",
		st.Packets, st.PayloadBytes, st.DatagramsSent, st.BytesSent, elapsed.Round(time.Millisecond),
		ms(uint64(st.RTT.SmoothedNanos)), ms(uint64(st.RTT.MinNanos)), st.RTT.Samples, st.Reports, st.NACKs)
	for _, x := range st.Streams {
		if r := x.Receiver; r.Reported {
			s += fmt.Sprintf("\n  stream %d: receiver got %d of %d, lost %d, dup %d, reordered %d, jitter %s, delay p50 %s p99 %s",
				x.Stream, r.Received, x.Sent, r.Lost, r.Duplicates, r.Reordered, ms(r.JitterNanos), ms(r.DelayP50Nanos), ms(r.DelayP99Nanos))
		}
	}
	return s
}

// ticker calls f every period until stop; a nil *ticker is a no-op.
type ticker struct {
	done chan struct{}
	wg   chan struct{}
}

func startTicker(period time.Duration, f func()) *ticker {
	t := &ticker{done: make(chan struct{}), wg: make(chan struct{})}
	go func() {
		defer close(t.wg)
		tk := time.NewTicker(period)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				f()
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *ticker) stop() {
	if t == nil {
		return
	}
	close(t.done)
	<-t.wg
}
