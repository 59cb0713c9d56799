package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/bridge"
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

	// Stats, if set, is the opened statistics output (--stats, with
	// --stats-interval or "-"); it replaces StatsFile. Send writes its
	// records and closes it.
	Stats *StatsOutput
	// OnSender, if set, is called with the sender once it exists (to
	// export its statistics, for instance).
	OnSender func(*sender.Sender)
	// OnForwarder, if set, is called with the NATS forwarder and its
	// connection once they exist (with From only; to export their
	// statistics, for instance).
	OnForwarder func(*bridge.Forwarder, *bridge.Conn)
}

// ErrNoReport is returned by Send when it sent messages but the receiver
// never reported on them: nothing confirms that anything arrived. The
// summary on stderr has said so; `telewire send` exits with status 3.
var ErrNoReport = errors.New("send: the receiver never reported")

// feedbackGrace is how long after its first message the sender waits to
// hear from the receiver before it warns that it has not; and, at the
// end, the least time since the first message that Send waits for a
// first report before it concludes none will come (so that --linger 0
// does not make a live receiver look absent).
const feedbackGrace = time.Second

// Send runs `telewire send`: messages from stdin (or a generator) go to a
// sender until EOF, Count, or ctx is cancelled; then the sender lingers
// for feedback (o.Linger, and at least until feedbackGrace after the
// first message while the receiver has not reported yet), prints its
// statistics to stderr and closes.
//
// A cancelled ctx ends the input, not the run: the messages already read
// are sent (with a Rate, those read ahead of it are dropped and counted
// instead), the linger still follows, and the end is a normal one. Stdin
// is read in a goroutine of its own, so a cancellation is seen at once
// even while a read of stdin is blocked; see inputReader.Stop for what
// happens to that read.
//
// While sending it warns on stderr, once each, when the receiver has not
// been heard from within feedbackGrace of the first message, and when
// feedback fails authentication. It returns ErrNoReport when messages
// were sent and the receiver never reported; a *sender.DestinationError
// for a destination no receiver can be at; and an error wrapping
// framing.ErrTooLong for an input message over the limit (after the
// summary of what was sent before it).
func Send(ctx context.Context, o SendOptions, stdin io.Reader, stderr io.Writer) error {
	if o.To == "" && o.Sender.Listen == "" {
		return errors.New("send: --to (or --listen) is required")
	}
	if o.Framing == "" {
		o.Framing = framing.Line
	}
	if o.Rate < 0 {
		return fmt.Errorf("send: --rate %v is negative", o.Rate)
	}
	var err error
	var nsrc *natsSource
	if o.From != nil {
		o.From.Forwarder.SendStream, o.From.Forwarder.Rate = o.Stream, o.Rate
		if nsrc, err = openNATSSource(*o.From, o.Logger); err != nil {
			return err
		}
		defer nsrc.close()
		if o.OnForwarder != nil {
			o.OnForwarder(nsrc.fwd, nsrc.conn)
		}
	}
	statsOut, err := openStatsOption(o.Stats, o.StatsFile)
	if err != nil {
		return err
	}
	defer statsOut.Close()
	var gen func() ([]byte, error)
	if o.Gen != "" && nsrc == nil {
		if gen, err = generator(o); err != nil {
			return err
		}
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
	if o.OnSender != nil {
		o.OnSender(s)
	}
	if cfg.Listen != "" {
		fmt.Fprintf(stderr, "telewire send: taking subscribers on %s\n", s.LocalAddr())
	}
	maxMsg := o.Sender.MaxPayload()
	next := func(context.Context) ([]byte, error) { return gen() }
	var in *inputReader
	if gen == nil && nsrc == nil {
		in = newInputReader(stdin, o.Framing, maxMsg)
		defer in.Stop()
		next = in.Next
	}

	start := time.Now()
	statsRun := statsOut.begin(func() sample { return sendSample(s.Stats()) })
	defer statsRun.stop()
	mon := startMonitor(s, o, stderr, start)
	var sent uint64
	var held int
	var inErr error
	if nsrc != nil {
		sent, inErr = nsrc.fwd.Run(ctx, s)
	} else {
		sent, held, inErr = pump(ctx, o, next, s)
	}
	if errors.Is(inErr, framing.ErrTooLong) {
		inErr = tooLong(o.Framing, sent+1, maxMsg, inErr)
	}
	if ctx.Err() != nil && inErr == nil {
		unsent := ""
		if in != nil {
			if n := in.Discard() + held; n > 0 {
				unsent = fmt.Sprintf(" (%d more read ahead of the --rate and not sent)", n)
			}
		}
		if sent == 0 {
			mon.say("send: interrupted: input closed before any message was sent" + unsent)
		} else {
			mon.say(fmt.Sprintf("send: interrupted: input closed after %d messages%s; lingering up to %s for feedback (signal again to exit at once)", sent, unsent, o.Linger))
		}
	}
	o.Logger.Info().Uint64("messages", sent).Dur("elapsed", time.Since(start)).Msg("input done, lingering for feedback")
	linger(s, o.Linger)
	mon.stop()
	// Close flushes what is still queued, so the statistics count it.
	closeErr := s.Close()
	st := s.Stats()
	fmt.Fprintln(stderr, sendSummary(st, time.Since(start)))
	if nsrc != nil {
		fmt.Fprintln(stderr, nsrc.summary())
	}
	if err := statsRun.finish(sendSample(st), nsrc.withNATS(st)); err != nil {
		return errors.Join(inErr, err)
	}
	switch {
	case inErr != nil:
		return inErr
	case closeErr != nil:
		return closeErr
	case reachedSomeone(st) && st.Reports == 0:
		return ErrNoReport
	}
	return nil
}

// reachedSomeone reports whether messages were sent to a destination: not
// all of them while a sender taking subscribers had none. A publisher
// (send --listen) nobody subscribed to sent nowhere, by design, as a
// multicast sender with no group members: that is told in the summary,
// not an exit status 3, which says messages went to receivers and
// nothing confirms they arrived.
func reachedSomeone(st sender.Stats) bool {
	return st.Messages > st.MessagesNoDestination
}

// linger keeps the sender answering feedback for d after the input ended
// (if it sent anything at all), and then, while the receiver has not
// reported, until feedbackGrace after the first message (sooner if a
// report comes). A signal does not cut it short: the command's second
// signal ends the process.
func linger(s *sender.Sender, d time.Duration) {
	if s.Stats().Messages == 0 {
		return // no stream was opened: there is no feedback to wait for
	}
	time.Sleep(d)
	for {
		st := s.Stats()
		if st.Messages == 0 || st.Reports > 0 || st.FeedbackSilenceNanos >= int64(feedbackGrace) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inputTooLong is an input message over the largest a packet carries.
type inputTooLong struct {
	msg string
	err error // wraps framing.ErrTooLong
}

func (e *inputTooLong) Error() string { return e.msg }
func (e *inputTooLong) Unwrap() error { return e.err }

func tooLong(f framing.Framing, n uint64, max int, err error) error {
	if f == framing.Len32 {
		return &inputTooLong{fmt.Sprintf("send: frame %d of the input is longer than the largest message, %d bytes (%v)", n, max, err), err}
	}
	return &inputTooLong{fmt.Sprintf("send: line %d of the input is longer than the largest message, %d bytes (without its newline)", n, max), err}
}

// generator returns a function yielding the next synthetic message,
// io.EOF after o.Count.
func generator(o SendOptions) (func() ([]byte, error), error) {
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

// pump moves messages into the sender at up to o.Rate per second until the
// input ends or ctx is done. Once ctx is done, next(ctx) returns the
// messages already read, without waiting for more (then errStopped):
// without a rate they are sent, as they would have been a moment later;
// with one, pump returns at once, leaving them unsent, rather than send
// in a burst what the rate would have spread over a long time.
//
// It returns the messages sent, and how many it took from next and did
// not send (0 or 1).
func pump(ctx context.Context, o SendOptions, next func(context.Context) ([]byte, error), s *sender.Sender) (sent uint64, held int, err error) {
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) / o.Rate)
	}
	start := time.Now()
	for {
		if o.Gen != "" && ctx.Err() != nil {
			return sent, 0, nil // a generator has nothing read ahead
		}
		msg, err := next(ctx)
		if errors.Is(err, io.EOF) || errors.Is(err, errStopped) {
			return sent, 0, nil
		}
		if err != nil {
			if errors.Is(err, framing.ErrTooLong) {
				return sent, 0, err
			}
			return sent, 0, fmt.Errorf("send: reading input: %w", err)
		}
		if interval > 0 {
			// Schedule message i at start + i*interval, so pacing does
			// not drift; sleep only when more than a millisecond ahead.
			due := start.Add(time.Duration(sent) * interval)
			if ahead := time.Until(due); ahead > time.Millisecond && ctx.Err() == nil {
				select {
				case <-time.After(ahead):
				case <-ctx.Done():
				}
			}
			if ctx.Err() != nil {
				return sent, 1, nil // msg and the rest read ahead: see Discard
			}
		}
		if err := s.Send(msg); err != nil {
			return sent, 0, fmt.Errorf("send: %w", err)
		}
		sent++
	}
}

func sendLine(st sender.Stats, elapsed time.Duration) string {
	line := fmt.Sprintf("sent %d (%s) rtt %s", st.Messages, rate(st.Messages, elapsed), ms(uint64(st.RTT.SmoothedNanos)))
	for _, x := range st.Streams {
		if x.Receiver.Reported {
			line += fmt.Sprintf(" | receiver: got %d lost %d jitter %s p99 %s",
				x.Receiver.Received, x.Receiver.Lost, ms(x.Receiver.JitterNanos), ms(x.Receiver.DelayP99Nanos))
		}
	}
	return line + "   "
}

// sendSummary is the sender's closing statement: what it sent, what the
// receiver reported, and everything it refused or dropped.
func sendSummary(st sender.Stats, elapsed time.Duration) string {
	s := fmt.Sprintf("sender: %d messages (%d DATA packets: %d messages packed, %d fragmented), %d payload bytes, %d datagrams, %d wire bytes in %s; rtt %s (min %s, %d samples); %d reports, %d nacks",
		st.Messages, st.Packets, st.Packed, st.Fragmented, st.PayloadBytes, st.DatagramsSent, st.BytesSent, elapsed.Round(time.Millisecond),
		ms(uint64(st.RTT.SmoothedNanos)), ms(uint64(st.RTT.MinNanos)), st.RTT.Samples, st.Reports, st.NACKs)
	for _, x := range st.Streams {
		if r := x.Receiver; r.Reported {
			s += fmt.Sprintf("\n  stream %d: receiver got %d of %d DATA packets, lost %d, dup %d, reordered %d, jitter %s, delay p50 %s p99 %s",
				x.Stream, r.Received, x.Sent, r.Lost, r.Duplicates, r.Reordered, ms(r.JitterNanos), ms(r.DelayP50Nanos), ms(r.DelayP99Nanos))
		}
	}
	if g := st.Group; g.Receivers > 1 || g.Refused > 0 || g.Expired > 0 {
		s += fmt.Sprintf("\n  group: %d receivers (%d refused, %d expired), loss p%g %.2f%% mean %.2f%% max %.2f%%, rtt %s..%s",
			g.Receivers, g.Refused, g.Expired, g.LossPercentile, 100*g.LossAtPct, 100*g.LossMean, 100*g.LossMax, ms(uint64(g.RTTMinNanos)), ms(uint64(g.RTTMaxNanos)))
	}
	if line := subscribersLine(st); line != "" {
		s += "\n  " + line
	}
	if reachedSomeone(st) && st.Reports == 0 {
		s += "\n  the receiver never reported: nothing confirms that any message arrived (" + silenceCauses + ")"
	}
	s += "\n  " + refusedLine(st)
	if line := evictedLine(st); line != "" {
		s += "\n  " + line
	}
	return s
}

// subscribersLine sums up a fan-out sender's destinations and its
// subscription traffic, and names the receivers that asked for data too
// late to be repaired (lost to them: slow or far behind); empty for a
// sender with one destination and no such receiver.
func subscribersLine(st sender.Stats) string {
	var b strings.Builder
	if sub := st.Subscribers; sub.Listening || sub.Destinations > 1 {
		fmt.Fprintf(&b, "destinations: %d now (%d subscribed)", sub.Destinations, sub.Subscribed)
		if sub.Listening {
			fmt.Fprintf(&b, "; subscribers joined %d, left %d, expired %d, dropped as too slow %d, refused (full) %d; %d tokens sent, %d bad tokens, %d subscribe requests over the join rate",
				sub.Joined, sub.Left, sub.Expired, sub.DroppedSlow, sub.RefusedFull, sub.TokensSent, sub.BadTokens, sub.JoinsLimited)
			if sub.Unauthenticated+sub.RefusedPending+st.HandshakesExpired > 0 {
				fmt.Fprintf(&b, "; without the key's MAC %d, handshakes expired %d, refused (handshakes pending) %d", sub.Unauthenticated, st.HandshakesExpired, sub.RefusedPending)
			}
		}
		switch {
		case sub.Listening && sub.Joined == 0 && sub.Destinations == 0:
			fmt.Fprintf(&b, "\n  nobody subscribed: the %d messages reached no one (%d datagrams not sent)", st.MessagesNoDestination, st.NoDestination)
		case st.MessagesNoDestination > 0 || st.NoDestination > 0:
			fmt.Fprintf(&b, "\n  %d of the %d messages were sent while nobody was subscribed and reached no one (%d datagrams not sent)", st.MessagesNoDestination, st.Messages, st.NoDestination)
		}
	}
	var lost []string
	for _, r := range st.Receivers {
		if r.Unavailable > 0 {
			lost = append(lost, fmt.Sprintf("%s %d", r.Addr, r.Unavailable))
		}
	}
	if len(lost) > 0 {
		if b.Len() > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString("sequences asked for too late to resend (lost to that receiver): " + strings.Join(lost, ", "))
	}
	return b.String()
}

// evictedLine tells how the retransmit buffer made room, if it had to:
// a message evicted is one a NACK can no longer get resent. Evictions
// by age are routine; by the packet or byte bound, they mean the buffer
// held less than Config.RetransmitMaxAge of history at this rate.
func evictedLine(st sender.Stats) string {
	var evCap, evBytes, evAge uint64
	for _, x := range st.Streams {
		evCap += x.RetransmitEvictedCapacity
		evBytes += x.RetransmitEvictedBytes
		evAge += x.RetransmitEvictedAge
	}
	if evCap+evBytes+evAge == 0 {
		return ""
	}
	return fmt.Sprintf("retransmit buffer: %d messages evicted by its packet bound, %d by its byte bound, %d by age (no longer resendable)", evCap, evBytes, evAge)
}

// silenceCauses names the usual reasons a sender hears nothing back.
const silenceCauses = "likely causes: no receiver listening at that address and port; " +
	"a --key-file on one end only, or different keys on the two ends; " +
	"a firewall dropping UDP on the way there or back"

// refusedLine lists every counter of something the sender refused,
// dropped or could not do, with its count, or says there was nothing.
// (Retransmit buffer evictions have a line of their own: evictedLine.)
func refusedLine(st sender.Stats) string {
	items := []struct {
		n    uint64
		what string
	}{
		{st.QueueFull, "sends held or refused by a full queue"},
		{st.ParityDropped, "parity packets not queued (queue full)"},
		{st.FeedbackDropped, "answers to NACKs not queued (queue full)"},
		{st.Throttled, "retransmissions refused by the retransmit budget"},
		{st.RetransmitsBlocked, "retransmissions refused by the amplification limit"},
		{st.RetransmitsPaced, "retransmissions held back (repairs had spent their share of the pacing rate)"},
		{st.AnswersBlocked, "\"unavailable\" answers refused by the amplification limit"},
		{st.Unavailable, "\"unavailable\" answers sent (asked for what was no longer kept)"},
		{st.NACKsRejected, "NACKs rejected (named messages never sent)"},
		{st.WriteErrors, "datagrams the kernel refused to send"},
		{st.SealErrors, "packets not sent because sealing failed"},
		{st.Malformed, "feedback datagrams malformed"},
		{st.ForeignSession, "feedback for another session"},
		{st.Unexpected, "unexpected packets"},
		{st.Unsealed, "unencrypted feedback refused"},
		{st.KeyMismatch, "handshake answers under another key refused"},
		{st.Corrupted, "handshake answers damaged on the way"},
		{st.AuthFailed, "feedback failing authentication"},
		{st.Replayed, "replayed feedback"},
		{st.NoKeys, "feedback under keys this sender does not hold"},
		{st.HeldDropped, "messages dropped while waiting for the handshake (held queue full)"},
		{st.RetriesIgnored, "RETRYs ignored (stale, or during a handshake)"},
		{st.NotKeyed, "copies not sent to destinations still handshaking"},
		{st.HandshakesExpired, "subscribers dropped: their handshake did not complete"},
	}
	var b strings.Builder
	for _, it := range items {
		if it.n == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d %s", it.n, it.what)
	}
	if b.Len() == 0 {
		return "refused or dropped: nothing"
	}
	return "refused or dropped: " + b.String()
}

// monitor watches a running sender from a goroutine of its own: the live
// progress line and the feedback warnings; say prints a line between
// them. A nil *monitor's methods do nothing.
type monitor struct {
	mu       sync.Mutex
	out      io.Writer
	progress bool // a progress line without its newline may be on screen
	watch    feedbackWatch
	t        *ticker
}

// monitorPeriod is how often the monitor looks at the sender's Stats.
const monitorPeriod = 100 * time.Millisecond

func startMonitor(s *sender.Sender, o SendOptions, out io.Writer, start time.Time) *monitor {
	to := o.To
	if to == "" {
		to = "subscribers of " + o.Sender.Listen
	}
	m := &monitor{out: out, watch: feedbackWatch{to: to, grace: feedbackGrace}}
	lastProgress := start
	m.t = startTicker(monitorPeriod, func() {
		st := s.Stats()
		for _, w := range m.watch.check(st) {
			m.say(w)
		}
		if now := time.Now(); o.Progress && now.Sub(lastProgress) >= time.Second {
			lastProgress = now
			m.mu.Lock()
			fmt.Fprintf(m.out, "\r%s", sendLine(st, now.Sub(start)))
			m.progress = true
			m.mu.Unlock()
		}
	})
	return m
}

// say prints line on a line of its own.
func (m *monitor) say(line string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.progress {
		fmt.Fprintln(m.out)
		m.progress = false
	}
	fmt.Fprintln(m.out, line)
}

// stop stops the monitor and ends its progress line.
func (m *monitor) stop() {
	m.t.stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.progress {
		fmt.Fprintln(m.out)
		m.progress = false
	}
}

// feedbackWatch turns successive Stats of a sender into its warnings:
// once when the receiver has not been heard from within grace of the
// first message (and a note if it is heard from after all), once when
// feedback is refused for failing authentication.
type feedbackWatch struct {
	to    string        // the destination, as the user gave it
	grace time.Duration // silence before the warning

	warnedSilent, heardLate, warnedAuth bool
}

// check returns the warnings st calls for, each at most once.
func (w *feedbackWatch) check(st sender.Stats) []string {
	var out []string
	heard := st.Reports+st.NACKs > 0
	// A sender taking subscribers that has none yet expects no feedback.
	nobody := st.Subscribers.Listening && st.Subscribers.Destinations == 0
	if !w.warnedSilent && !heard && !nobody && st.Messages > 0 && st.FeedbackSilenceNanos >= int64(w.grace) {
		w.warnedSilent = true
		out = append(out, fmt.Sprintf("send: warning: no feedback from the receiver at %s within %s of the first message; %s. "+
			"Sending goes on; if no report ever comes, send exits with status 3.", w.to, w.grace, silenceCauses))
	}
	if w.warnedSilent && !w.heardLate && heard {
		w.heardLate = true
		out = append(out, fmt.Sprintf("send: feedback from the receiver at %s arrived after all", w.to))
	}
	if !w.warnedAuth && st.Unsealed+st.KeyMismatch+st.AuthFailed > 0 {
		w.warnedAuth = true
		var why []string
		if st.KeyMismatch > 0 {
			why = append(why, fmt.Sprintf("%d sealed under a different key (the receiver's --key-file is not this sender's)", st.KeyMismatch))
		}
		if st.Unsealed > 0 {
			why = append(why, fmt.Sprintf("%d not encrypted (the receiver has no --key-file; give it this sender's)", st.Unsealed))
		}
		if st.AuthFailed > 0 {
			why = append(why, fmt.Sprintf("%d failing authentication (altered on the way, forged, or under another key)", st.AuthFailed))
		}
		out = append(out, "send: warning: feedback fails authentication and is refused: "+strings.Join(why, "; "))
	}
	return out
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
