package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/telewire/telewire/sender"
)

// ForwarderConfig configures a Forwarder. The zero value of every field is
// its default; Subject is required.
type ForwarderConfig struct {
	// Subject is the subject filter to consume ("ticks.>").
	Subject string
	// Stream is the JetStream stream to consume from. Default: the stream
	// whose subjects cover Subject.
	Stream string
	// Durable names the JetStream consumer, which the server keeps so that
	// a restarted bridge continues where the last one stopped: whatever it
	// had not acknowledged is delivered again. Default "telewire-send".
	Durable string
	// Core consumes plain core NATS instead of JetStream: no consumer, no
	// acknowledgements, nothing delivered again; messages the bridge cannot
	// take fast enough are dropped by the client and counted
	// (ForwarderStats.CoreDropped).
	Core bool
	// CoreBuffer bounds the messages a Core subscription holds. Default 65536.
	CoreBuffer int

	// AckDelivered acknowledges a message to JetStream only once the
	// receiver's REPORTs show its sequence number (the highest sequence the
	// receiver reported has reached it) instead of once the sender has
	// written it to its socket. A receiver that lost the message for good
	// still reports a higher sequence (its loss shows in the sender's Stats
	// as Unrecovered): "delivered" means reached the receiver or was given
	// up by telewire's repair, not "lost in the bridge".
	AckDelivered bool
	// StartTime, if set, makes a new consumer start at the first message
	// stored at or after it (replay from a point in time). StartSeq, if
	// set, starts it at that stream sequence. Neither: from the first
	// message. Both apply only when the durable consumer is created.
	StartTime time.Time
	StartSeq  uint64
	// MaxAckPending bounds the messages delivered and not yet
	// acknowledged. Default 4096.
	MaxAckPending int
	// AckWait is how long JetStream waits for an acknowledgement before
	// delivering again. Default 30 s.
	AckWait time.Duration
	// AckGrace bounds how long Run, when it ends, waits for the receiver's
	// reports to cover what was sent (AckDelivered). Default 2 s.
	AckGrace time.Duration

	// Count stops Run after this many messages (0 = no limit).
	Count uint64
	// UntilEmpty stops Run once the consumer has nothing left: no message
	// waiting and none delivered but unacknowledged (JetStream delivers a
	// crashed bridge's unacknowledged messages again after AckWait, and
	// Run waits for those too).
	UntilEmpty bool
	// Rate caps the messages sent per second (0 = as fast as the sender
	// takes them).
	Rate float64

	// SendStream is the telewire stream id the messages are sent on. The
	// Forwarder must be the only one sending on it through its sender.
	SendStream uint32

	// Logger receives rare events. The zero value discards.
	Logger zerolog.Logger
}

func (c ForwarderConfig) withDefaults() (ForwarderConfig, error) {
	if c.Subject == "" {
		return c, fmt.Errorf("%w: Subject is required", ErrConfig)
	}
	if c.Durable == "" {
		c.Durable = "telewire-send"
	}
	if c.CoreBuffer == 0 {
		c.CoreBuffer = 65536
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 4096
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.AckGrace == 0 {
		c.AckGrace = 2 * time.Second
	}
	if c.CoreBuffer < 1 || c.MaxAckPending < 1 || c.AckWait < 0 || c.AckGrace < 0 || c.Rate < 0 {
		return c, fmt.Errorf("%w: negative size or duration", ErrConfig)
	}
	if c.Core && (c.AckDelivered || c.Stream != "" || c.UntilEmpty || !c.StartTime.IsZero() || c.StartSeq != 0) {
		return c, fmt.Errorf("%w: core NATS has no acknowledgements, streams or replay positions", ErrConfig)
	}
	return c, nil
}

// ForwarderStats counts what a Forwarder did.
type ForwarderStats struct {
	Received    uint64 `json:"received"`     // messages taken from NATS
	Redelivered uint64 `json:"redelivered"`  // of Received: JetStream delivered them before (an earlier bridge did not acknowledge)
	Sent        uint64 `json:"sent"`         // handed to the telewire sender
	SendErrors  uint64 `json:"send_errors"`  // refused by the sender (too large); acknowledged and counted, never retried
	Acked       uint64 `json:"acked"`        // acknowledged to JetStream
	AckErrors   uint64 `json:"ack_errors"`   // acknowledgements that could not be sent (JetStream delivers those again)
	Unacked     uint64 `json:"unacked"`      // sent but not acknowledged when Run ended (JetStream delivers them again)
	CoreDropped uint64 `json:"core_dropped"` // Core: dropped by the client as a slow consumer
}

// Forwarder feeds a telewire sender from NATS: each message's data becomes
// one telewire message. With JetStream (the default) it consumes through a
// durable consumer with explicit acknowledgement, and acknowledges a
// message only after it left the sender (Sender.Flush) or, with
// AckDelivered, after the receiver reported it; so a bridge that crashes
// loses nothing: JetStream delivers the unacknowledged messages again to
// the next one (at least once; the receiver may see a message twice).
type Forwarder struct {
	cfg  ForwarderConfig
	conn *Conn

	mu    sync.Mutex
	stats ForwarderStats
}

// NewForwarder returns a Forwarder on conn (which the caller keeps and
// closes after Run returned).
func NewForwarder(conn *Conn, cfg ForwarderConfig) (*Forwarder, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Forwarder{cfg: cfg, conn: conn}, nil
}

// Stats returns a snapshot of the counters. It is safe to call at any time.
func (f *Forwarder) Stats() ForwarderStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

func (f *Forwarder) count(fn func(*ForwarderStats)) {
	f.mu.Lock()
	fn(&f.stats)
	f.mu.Unlock()
}

// Run consumes and sends until ctx ends, Count messages were sent, or
// (UntilEmpty) the stream has nothing more; it returns the number sent.
// An ended ctx is a normal end, not an error.
func (f *Forwarder) Run(ctx context.Context, s *sender.Sender) (uint64, error) {
	if f.cfg.Core {
		return f.runCore(ctx, s)
	}
	return f.runJetStream(ctx, s)
}

func (f *Forwarder) runCore(ctx context.Context, s *sender.Sender) (uint64, error) {
	sub, err := f.conn.SubscribeSync(f.cfg.Subject)
	if err != nil {
		return 0, fmt.Errorf("bridge: subscribe %s: %w", f.cfg.Subject, err)
	}
	defer func() {
		dropped, _ := sub.Dropped()
		f.count(func(st *ForwarderStats) { st.CoreDropped = uint64(max(dropped, 0)) })
		_ = sub.Unsubscribe()
	}()
	if err := sub.SetPendingLimits(f.cfg.CoreBuffer, -1); err != nil {
		return 0, err
	}
	var sent uint64
	pace := newPacer(f.cfg.Rate)
	for f.cfg.Count == 0 || sent < f.cfg.Count {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return sent, nil
			}
			if errors.Is(err, nats.ErrSlowConsumer) {
				continue // counted by Dropped
			}
			return sent, fmt.Errorf("bridge: %w", err)
		}
		f.count(func(st *ForwarderStats) { st.Received++ })
		pace.wait(ctx)
		if err := s.SendStream(f.cfg.SendStream, m.Data); err != nil {
			if errors.Is(err, sender.ErrClosed) {
				return sent, err
			}
			f.count(func(st *ForwarderStats) { st.SendErrors++ })
			continue
		}
		sent++
		f.count(func(st *ForwarderStats) { st.Sent++ })
	}
	return sent, nil
}

// pendingAck is a sent message awaiting its acknowledgement.
type pendingAck struct {
	msg jetstream.Msg
	seq uint64 // telewire sequence number it was sent with
}

func (f *Forwarder) consumer(ctx context.Context) (jetstream.Consumer, error) {
	js, err := jetstream.New(f.conn.Conn)
	if err != nil {
		return nil, err
	}
	stream := f.cfg.Stream
	if stream == "" {
		if stream, err = js.StreamNameBySubject(ctx, f.cfg.Subject); err != nil {
			return nil, fmt.Errorf("bridge: no stream stores %s: %w", f.cfg.Subject, err)
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:       f.cfg.Durable,
		FilterSubject: f.cfg.Subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       f.cfg.AckWait,
		MaxAckPending: f.cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	switch {
	case f.cfg.StartSeq != 0:
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, f.cfg.StartSeq
	case !f.cfg.StartTime.IsZero():
		t := f.cfg.StartTime
		cc.DeliverPolicy, cc.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	}
	if c, err := js.Consumer(ctx, stream, f.cfg.Durable); err == nil {
		return c, nil // exists: continue where it stopped
	}
	c, err := js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("bridge: consumer %s on %s: %w", f.cfg.Durable, stream, err)
	}
	return c, nil
}

func (f *Forwarder) runJetStream(ctx context.Context, s *sender.Sender) (uint64, error) {
	var cons jetstream.Consumer
	for {
		var err error
		if cons, err = f.consumer(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return 0, nil
		}
		if f.conn.IsConnected() && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) &&
			!errors.Is(err, jetstream.ErrJetStreamNotEnabled) && !errors.Is(err, nats.ErrNoResponders) {
			return 0, err
		}
		f.cfg.Logger.Warn().Err(err).Msg("waiting for NATS")
		select {
		case <-ctx.Done():
			return 0, nil
		case <-f.conn.Connected():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if f.cfg.UntilEmpty {
		if info, err := cons.Info(ctx); err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			return 0, nil // nothing to replay
		}
	}
	batch := min(f.cfg.MaxAckPending, 1024)
	if f.cfg.Count > 0 {
		batch = int(min(uint64(batch), f.cfg.Count))
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(batch))
	if err != nil {
		return 0, fmt.Errorf("bridge: consume: %w", err)
	}
	acks := make(chan pendingAck, f.cfg.MaxAckPending)
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		f.acker(s, acks)
	}()

	fw := forwarding{f: f, s: s, acks: acks, pace: newPacer(f.cfg.Rate)}
	var runErr error
	caughtUp := false // UntilEmpty: a message said nothing more is waiting
	for f.cfg.Count == 0 || fw.sent < f.cfg.Count {
		nctx, cancel := ctx, context.CancelFunc(func() {})
		if caughtUp {
			// Wait briefly for more, then ask whether anything is still out.
			nctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
		}
		m, err := iter.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			if caughtUp && errors.Is(err, context.DeadlineExceeded) {
				if f.finished(ctx, cons) {
					break
				}
				continue
			}
			runErr = fmt.Errorf("bridge: consume: %w", err)
			break
		}
		meta, _ := m.Metadata()
		if err := fw.forward(ctx, m, meta); err != nil {
			runErr = err
			break
		}
		if f.cfg.UntilEmpty && meta != nil && meta.NumPending == 0 {
			caughtUp = true
		}
	}
	sent := fw.sent
	// Messages fetched but not sent would wait out AckWait before anyone
	// got them again: hand them back at once.
	iter.Drain()
	for {
		m, err := iter.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			break
		}
		_ = m.Nak()
	}
	close(acks)
	<-ackerDone
	// Acknowledgements are published without waiting; make sure they left.
	_ = f.conn.FlushTimeout(2 * time.Second)
	return sent, runErr
}

// forwarding is the state of one JetStream Run.
type forwarding struct {
	f    *Forwarder
	s    *sender.Sender
	acks chan<- pendingAck
	pace *pacer
	sent uint64
}

// forward sends m and queues it for acknowledgement. Only a closed sender
// is an error; a message telewire cannot carry (too large) is terminated
// in JetStream, counted and skipped.
func (fw *forwarding) forward(ctx context.Context, m jetstream.Msg, meta *jetstream.MsgMetadata) error {
	f := fw.f
	f.count(func(st *ForwarderStats) {
		st.Received++
		if meta != nil && meta.NumDelivered > 1 {
			st.Redelivered++
		}
	})
	fw.pace.wait(ctx)
	if err := fw.s.SendStream(f.cfg.SendStream, m.Data()); err != nil {
		if errors.Is(err, sender.ErrClosed) {
			_ = m.Nak()
			return err
		}
		f.count(func(st *ForwarderStats) { st.SendErrors++ })
		f.cfg.Logger.Warn().Err(err).Msg("message not sendable; terminated and skipped")
		_ = m.Term()
		return nil
	}
	// The datagram it went into: packing puts several messages in one,
	// and fragmenting one message in several.
	seq, _ := fw.s.LastSeq(f.cfg.SendStream)
	fw.acks <- pendingAck{msg: m, seq: seq}
	fw.sent++
	f.count(func(st *ForwarderStats) { st.Sent++ })
	return nil
}

// finished asks JetStream whether the consumer has nothing left: nothing
// waiting, nothing delivered and unacknowledged. Run's own messages are
// acknowledged within moments; a crashed predecessor's come again after
// AckWait.
func (f *Forwarder) finished(ctx context.Context, cons jetstream.Consumer) bool {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ictx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// pacer spaces sends at a rate: message i is due at start + i/rate. A
// nil *pacer does not wait.
type pacer struct {
	interval time.Duration
	start    time.Time
	n        int64
}

func newPacer(rate float64) *pacer {
	if rate <= 0 {
		return nil
	}
	return &pacer{interval: time.Duration(float64(time.Second) / rate)}
}

func (p *pacer) wait(ctx context.Context) {
	if p == nil {
		return
	}
	if p.n == 0 {
		p.start = time.Now()
	}
	due := p.start.Add(time.Duration(p.n) * p.interval)
	p.n++
	if ahead := time.Until(due); ahead > time.Millisecond {
		t := time.NewTimer(ahead)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// ackPoll is how often the acker looks at the receiver's reports with
// AckDelivered.
const ackPoll = 5 * time.Millisecond

// acker acknowledges what arrives on acks once it left the sender (or was
// reported by the receiver), until acks is closed and everything is
// acknowledged (or, with AckDelivered, AckGrace has passed).
func (f *Forwarder) acker(s *sender.Sender, acks <-chan pendingAck) {
	var pending []pendingAck
	ack := func(n int) {
		var ok, bad uint64
		for _, p := range pending[:n] {
			if err := p.msg.Ack(); err != nil {
				bad++
			} else {
				ok++
			}
		}
		pending = append(pending[:0], pending[n:]...)
		f.count(func(st *ForwarderStats) { st.Acked += ok; st.AckErrors += bad })
	}
	tk := time.NewTicker(ackPoll)
	defer tk.Stop()
	var grace <-chan time.Time
	for {
		if acks != nil {
			// Take what is there; wait for more only with nothing pending.
			if len(pending) == 0 {
				p, ok := <-acks
				if !ok {
					return
				}
				pending = append(pending, p)
			}
		drain:
			for {
				select {
				case p, ok := <-acks:
					if !ok {
						acks = nil
						grace = time.After(f.cfg.AckGrace)
						break drain
					}
					pending = append(pending, p)
				default:
					break drain
				}
			}
		}
		if !f.cfg.AckDelivered {
			_ = s.Flush() // on ErrClosed all was written that will be
			ack(len(pending))
			if acks == nil {
				return
			}
			continue
		}
		if v := receiverView(s.Stats(), f.cfg.SendStream); v.Reported {
			n := 0
			for n < len(pending) && pending[n].seq <= v.HighestSeq {
				n++
			}
			ack(n)
		}
		if acks == nil && len(pending) == 0 {
			return
		}
		select {
		case <-tk.C:
		case <-grace:
			f.count(func(st *ForwarderStats) { st.Unacked += uint64(len(pending)) })
			return
		}
	}
}

func receiverView(st sender.Stats, stream uint32) sender.ReceiverView {
	for _, x := range st.Streams {
		if x.Stream == stream {
			return x.Receiver
		}
	}
	return sender.ReceiverView{}
}
