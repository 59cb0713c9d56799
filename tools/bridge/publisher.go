package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/telewire/telewire/receiver"
)

// Headers the Publisher sets on every message, beside jetstream.MsgIDHeader
// ("Nats-Msg-Id" = MsgID(session, stream, seq, index)).
const (
	HeaderSession  = "Telewire-Session"     // sender's session id, 16 lower-case hex digits
	HeaderStream   = "Telewire-Stream"      // stream id, decimal
	HeaderSeq      = "Telewire-Seq"         // sequence number in the stream, decimal
	HeaderIndex    = "Telewire-Index"       // the message's place among those packed into datagram Seq, decimal; only when not 0
	HeaderSent     = "Telewire-Sent-Ns"     // sender's clock at sending, nanoseconds, decimal
	HeaderReceived = "Telewire-Received-Ns" // receiver's clock at arrival, nanoseconds, decimal
	HeaderOrigin   = "Telewire-Origin"      // first, retransmit or fec (receiver.Origin)
	HeaderSource   = "Telewire-Source"      // sender's address, "ip:port"
)

// MsgID returns the JetStream de-duplication id of a telewire message:
// "<session as 16 hex digits>/<stream>/<seq>", and ".<index>" after it for
// a message packed into datagram seq behind others (receiver.Message.Index
// above 0). A retransmission, a bridge restart, or a second bridge
// receiving the same feed yields the same id, so a stream stores the
// message once within its duplicate window.
func MsgID(session uint64, stream uint32, seq uint64, index uint16) string {
	return string(appendMsgID(make([]byte, 0, 56), session, stream, seq, index))
}

func appendMsgID(b []byte, session uint64, stream uint32, seq uint64, index uint16) []byte {
	b = appendHex16(b, session)
	b = append(b, '/')
	b = strconv.AppendUint(b, uint64(stream), 10)
	b = append(b, '/')
	b = strconv.AppendUint(b, seq, 10)
	if index > 0 {
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(index), 10)
	}
	return b
}

// ErrClosed is returned by Put after Close.
var ErrClosed = errors.New("bridge: closed")

// PublisherConfig configures a Publisher. The zero value of every field is
// its default; Subject is required.
type PublisherConfig struct {
	// Subject is where each message is published (see Template).
	Subject Template

	// BufferMessages bounds the messages held between Put and their
	// acknowledgement by JetStream: those in flight and those waiting,
	// for example while the server is unreachable. Default 65536 (at
	// 10 000 messages/s, six and a half seconds of outage).
	BufferMessages int
	// BufferBytes bounds the payload bytes so held. Default 64 MiB.
	// Memory grows with use up to about BufferMessages × the largest
	// payload plus BufferBytes.
	BufferBytes int
	// Block selects what Put does when the buffer is full: false (default)
	// drops the new message and counts it (PublisherStats.Dropped), right
	// for real-time data where the receiver must not stall; true makes Put
	// wait for room, pushing back on the receiver (whose own queue then
	// overflows and counts, see receiver.Stats.QueueOverflow).
	Block bool
	// MaxInFlight bounds the messages published and not yet acknowledged.
	// Default 1024.
	MaxInFlight int
	// AckTimeout is how long an acknowledgement may take before the
	// message is published again (with the same Nats-Msg-Id, so JetStream
	// keeps one copy). Default 5 s.
	AckTimeout time.Duration
	// RetryMin and RetryMax bound the back-off between attempts after a
	// failure that is not a disconnection (no stream for the subject, a
	// timeout): doubled per consecutive failure, with jitter. Defaults
	// 100 ms and 2 s.
	RetryMin, RetryMax time.Duration
	// DrainTimeout bounds how long Close waits for what is buffered to be
	// acknowledged; what is left then is counted as Abandoned. Default 5 s.
	DrainTimeout time.Duration

	// Logger receives rare events (failures, rejections; never one per
	// message above debug). The zero value discards.
	Logger zerolog.Logger
}

func (c PublisherConfig) withDefaults() (PublisherConfig, error) {
	if len(c.Subject.parts) == 0 {
		return c, fmt.Errorf("%w: Subject is required", ErrConfig)
	}
	if c.BufferMessages == 0 {
		c.BufferMessages = 65536
	}
	if c.BufferBytes == 0 {
		c.BufferBytes = 64 << 20
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 5 * time.Second
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 5 * time.Second
	}
	if c.BufferMessages < 1 || c.BufferBytes < 1 || c.MaxInFlight < 1 || c.AckTimeout < 0 ||
		c.RetryMin < 0 || c.RetryMax < c.RetryMin || c.DrainTimeout < 0 {
		return c, fmt.Errorf("%w: negative size or duration, or RetryMax below RetryMin", ErrConfig)
	}
	return c, nil
}

// PublisherStats counts what a Publisher did. Every message handed to Put
// ends up in exactly one of Published, Dropped, Rejected, Abandoned or
// (still) Buffered:
//
//	Offered = Published + Dropped + Rejected + Abandoned + Buffered
type PublisherStats struct {
	Offered    uint64 `json:"offered"`    // messages handed to Put
	Published  uint64 `json:"published"`  // acknowledged by JetStream
	Duplicates uint64 `json:"duplicates"` // of Published: JetStream already held the id
	Dropped    uint64 `json:"dropped"`    // refused by Put: buffer full (Block false)
	Rejected   uint64 `json:"rejected"`   // refused by JetStream with an API error (too large, stream full …)
	Abandoned  uint64 `json:"abandoned"`  // still unacknowledged when Close gave up
	Buffered   uint64 `json:"buffered"`   // held now, in flight included
	InFlight   uint64 `json:"in_flight"`  // published, acknowledgement awaited

	Republished uint64 `json:"republished"`  // publishes repeated after a failure
	AckFailures uint64 `json:"ack_failures"` // acknowledgements that failed or timed out
	BlockedPuts uint64 `json:"blocked_puts"` // Puts that waited for room (Block true)
	Disconnects uint64 `json:"disconnects"`  // connection losses
	Reconnects  uint64 `json:"reconnects"`   // connections (re-)established after a loss or a failed first attempt
	Connected   bool   `json:"connected"`    // connected now
}

// entry is one buffered message; its slices are reused.
type entry struct {
	subject  []byte
	payload  []byte
	session  uint64
	stream   uint32
	seq      uint64
	index    uint16
	sent     int64
	received int64
	origin   receiver.Origin
	source   netip.AddrPort
	attempts int
	future   jetstream.PubAckFuture
}

// Publisher puts telewire messages into JetStream. Put copies a message
// into a bounded buffer and returns; one goroutine publishes asynchronously
// with up to MaxInFlight unacknowledged, in order, and removes a message
// only when JetStream acknowledged it. A failed or timed-out
// acknowledgement, or a lost connection, makes it publish again from the
// oldest unacknowledged message once the connection is back: the
// Nats-Msg-Id header keeps the stream free of duplicates.
//
// Put, Stats, Flush and Close are safe for concurrent use. Put does not
// allocate once the buffer's slots have grown to the payload sizes seen;
// publishing allocates the NATS message, its headers and a copy of the
// payload per message (the NATS client's API takes them so).
type Publisher struct {
	cfg  PublisherConfig
	conn *Conn
	js   jetstream.JetStream
	log  zerolog.Logger

	mu    sync.Mutex
	space *sync.Cond // signalled when entries are freed or on close
	ring  []entry
	// head: oldest unacknowledged; next: next to publish; tail: next free.
	// All count messages since start; the slot is index % len(ring).
	head, next, tail uint64
	bytes            int
	stats            PublisherStats
	closing          bool

	wake chan struct{} // capacity 1: Put → run
	done chan struct{} // closed by Close
	exit chan struct{} // closed when run returns
}

// NewPublisher starts a Publisher on conn (which the caller keeps and
// closes after the Publisher).
func NewPublisher(conn *Conn, cfg PublisherConfig) (*Publisher, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conn.Conn,
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout),
		// Acknowledgements abandoned by a rewind still count against the
		// client's own limit until they resolve; leave them room.
		jetstream.WithPublishAsyncMaxPending(4*cfg.MaxInFlight))
	if err != nil {
		return nil, fmt.Errorf("bridge: jetstream: %w", err)
	}
	p := &Publisher{
		cfg: cfg, conn: conn, js: js, log: cfg.Logger,
		ring: make([]entry, cfg.BufferMessages),
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
		exit: make(chan struct{}),
	}
	p.space = sync.NewCond(&p.mu)
	go p.run()
	return p, nil
}

// Put queues m for publishing; m.Payload is copied. With the buffer full
// it drops m and counts it (returning nil), or, with Config.Block, waits
// for room. It returns ErrClosed after Close.
func (p *Publisher) Put(m *receiver.Message) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return ErrClosed
	}
	p.stats.Offered++
	blocked := false
	for p.tail-p.head == uint64(len(p.ring)) || p.bytes+len(m.Payload) > p.cfg.BufferBytes {
		if !p.cfg.Block || len(m.Payload) > p.cfg.BufferBytes {
			p.stats.Dropped++
			p.mu.Unlock()
			return nil
		}
		if !blocked {
			blocked = true
			p.stats.BlockedPuts++
		}
		p.space.Wait()
		if p.closing {
			p.stats.Dropped++
			p.mu.Unlock()
			return ErrClosed
		}
	}
	e := &p.ring[p.tail%uint64(len(p.ring))]
	e.subject = p.cfg.Subject.AppendSubject(e.subject[:0], m.Session, m.Stream, m.Source)
	e.payload = append(e.payload[:0], m.Payload...)
	e.session, e.stream, e.seq, e.index = m.Session, m.Stream, m.Seq, m.Index
	e.sent, e.received, e.origin, e.source = m.SentNanos, m.ReceiveNanos, m.Origin, m.Source
	e.attempts, e.future = 0, nil
	p.tail++
	p.bytes += len(m.Payload)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// Stats returns a snapshot of the counters.
func (p *Publisher) Stats() PublisherStats {
	p.mu.Lock()
	st := p.stats
	st.Buffered = p.tail - p.head
	st.InFlight = p.next - p.head
	p.mu.Unlock()
	st.Disconnects, st.Reconnects = p.conn.Disconnects(), p.conn.Reconnects()
	st.Connected = p.conn.IsConnected()
	return st
}

// Close stops taking messages, waits up to DrainTimeout for the buffered
// ones to be acknowledged, counts the rest as Abandoned and stops. It does
// not close the connection. It is safe to call more than once.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if !p.closing {
		p.closing = true
		close(p.done)
		p.space.Broadcast()
	}
	p.mu.Unlock()
	<-p.exit
	return nil
}

// run is the publishing goroutine.
func (p *Publisher) run() {
	defer close(p.exit)
	var (
		retry    = time.NewTimer(time.Hour)
		retrying bool // waiting out a back-off: publish nothing
		failures int  // consecutive, for the back-off
		deadline <-chan time.Time
		done     = p.done
	)
	retry.Stop()
	defer retry.Stop()
	backoff := func() {
		d := Backoff(failures, p.cfg.RetryMin, p.cfg.RetryMax, jitter())
		failures++
		retrying = true
		retry.Reset(d)
	}
	for {
		if !retrying && p.conn.IsConnected() {
			if err := p.publishSome(); err != nil {
				p.log.Debug().Err(err).Msg("publish failed; retrying")
				backoff()
			}
		}
		p.mu.Lock()
		empty := p.head == p.tail
		var head *entry
		if p.head < p.next {
			head = &p.ring[p.head%uint64(len(p.ring))]
		}
		p.mu.Unlock()
		if done == nil && empty {
			return // closing and drained
		}
		var okc <-chan *jetstream.PubAck
		var errc <-chan error
		if head != nil {
			okc, errc = head.future.Ok(), head.future.Err()
		}
		select {
		case ack := <-okc:
			failures = 0
			p.acked(ack)
		case err := <-errc:
			p.failed(head, err)
			if !errors.Is(err, nats.ErrDisconnected) {
				backoff()
			}
		case <-p.wake:
		case <-p.conn.Connected():
			retrying = false
			retry.Stop()
		case <-retry.C:
			retrying = false
		case <-done:
			done = nil
			deadline = time.After(p.cfg.DrainTimeout)
		case <-deadline:
			p.mu.Lock()
			p.stats.Abandoned += p.tail - p.head
			p.head, p.next, p.bytes = p.tail, p.tail, 0
			p.mu.Unlock()
			return
		}
		if retrying && !p.conn.IsConnected() {
			// The reconnect will signal; no point waking before it.
			retrying = false
		}
	}
}

// publishSome publishes waiting messages while the in-flight limit allows.
func (p *Publisher) publishSome() error {
	for {
		p.mu.Lock()
		if p.next == p.tail || p.next-p.head >= uint64(p.cfg.MaxInFlight) {
			p.mu.Unlock()
			return nil
		}
		e := &p.ring[p.next%uint64(len(p.ring))]
		p.mu.Unlock()
		// e is between head and tail: Put does not touch it.
		f, err := p.js.PublishMsgAsync(p.message(e))
		if err != nil {
			return err
		}
		e.future = f
		if e.attempts > 0 {
			p.mu.Lock()
			p.stats.Republished++
			p.mu.Unlock()
		}
		e.attempts++
		p.mu.Lock()
		p.next++
		p.mu.Unlock()
	}
}

// message builds the NATS message for e. The payload is copied: the
// client may publish it again itself (on "no responders") after e's slot
// has been reused.
func (p *Publisher) message(e *entry) *nats.Msg {
	h := make(nats.Header, 8)
	h[jetstream.MsgIDHeader] = []string{string(appendMsgID(make([]byte, 0, 56), e.session, e.stream, e.seq, e.index))}
	h[HeaderSession] = []string{string(appendHex16(make([]byte, 0, 16), e.session))}
	h[HeaderStream] = []string{strconv.FormatUint(uint64(e.stream), 10)}
	h[HeaderSeq] = []string{strconv.FormatUint(e.seq, 10)}
	if e.index > 0 {
		h[HeaderIndex] = []string{strconv.FormatUint(uint64(e.index), 10)}
	}
	h[HeaderSent] = []string{strconv.FormatInt(e.sent, 10)}
	h[HeaderReceived] = []string{strconv.FormatInt(e.received, 10)}
	h[HeaderOrigin] = []string{e.origin.String()}
	h[HeaderSource] = []string{e.source.String()}
	return &nats.Msg{Subject: string(e.subject), Data: append([]byte(nil), e.payload...), Header: h}
}

// acked removes the head entry, acknowledged by ack.
func (p *Publisher) acked(ack *jetstream.PubAck) {
	p.mu.Lock()
	p.stats.Published++
	if ack != nil && ack.Duplicate {
		p.stats.Duplicates++
	}
	p.popHead()
	p.mu.Unlock()
}

// popHead frees the head entry. p.mu is held.
func (p *Publisher) popHead() {
	e := &p.ring[p.head%uint64(len(p.ring))]
	p.bytes -= len(e.payload)
	e.future = nil
	p.head++
	p.space.Broadcast()
}

// failed handles a failed acknowledgement of the head entry e: a message
// JetStream refused is counted and dropped; otherwise publishing starts
// again from e.
func (p *Publisher) failed(e *entry, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.AckFailures++
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		p.stats.Rejected++
		p.log.Warn().Err(apiErr).Str("subject", string(e.subject)).
			Str("id", MsgID(e.session, e.stream, e.seq, e.index)).Msg("jetstream refused a message")
		p.popHead()
		return
	}
	p.log.Debug().Err(err).Uint64("unacknowledged", p.next-p.head).Msg("acknowledgement failed; publishing again from the oldest")
	p.next = p.head
}

// Flush waits until everything Put so far has been acknowledged (or
// dropped, rejected), or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	target := p.tail
	p.mu.Unlock()
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	for {
		p.mu.Lock()
		ok := p.head >= target
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exit:
			return ErrClosed
		case <-tk.C:
		}
	}
}
