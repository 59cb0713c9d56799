package sender

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/telewire/telewire/internal/loop"
	"github.com/telewire/telewire/internal/udpio"
)

// Sender streams telewire DATA packets to one receiver over a batched UDP
// socket and reads the receiver's feedback on the same socket.
//
// Send may be called from any number of goroutines; packets are written by
// the Sender's own writer goroutine, which flushes opportunistically: an
// idle sender writes a packet as soon as it is queued (no added latency),
// a busy one coalesces what accumulates during a write into the next
// sendmmsg, up to the batch size. Stats and Close are safe to call
// concurrently with Send.
type Sender struct {
	cfg    Config
	core   *Core
	conn   *udpio.Conn
	loop   *loop.Loop
	cancel context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// New binds a socket, starts the sender's goroutines and returns it. When
// ctx is cancelled the sender closes itself as Close does. A destination
// it must not send to (see [CheckDestination]) is a [*DestinationError];
// every other configuration mistake wraps [ErrConfig] too.
func New(ctx context.Context, cfg Config) (*Sender, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	dests, err := destinations(cfg)
	if err != nil {
		return nil, err
	}
	var remote netip.AddrPort // the first destination; none for Listen alone
	if len(dests) > 0 {
		remote = dests[0]
	}
	local := cfg.Local
	if cfg.Listen != "" {
		local = cfg.Listen
	}
	if local == "" {
		local = "0.0.0.0:0"
		if remote.Addr().Is6() {
			local = "[::]:0"
		}
	}
	conn, err := udpio.Listen(local, udpio.Config{
		BatchSize:        cfg.BatchSize,
		ReadBufferBytes:  cfg.SocketBufferBytes,
		WriteBufferBytes: cfg.SocketBufferBytes,
		MaxDatagram:      2048, // feedback only: REPORT and NACK are small
		NoGSO:            !cfg.GSO,
		NoGRO:            true, // feedback is a trickle; GRO buffers would cost 2 MiB for nothing
	})
	if err != nil {
		return nil, fmt.Errorf("sender: bind %s: %w", local, err)
	}
	if err := setMulticast(conn, remote, cfg); err != nil {
		conn.Close()
		return nil, err
	}
	session := cfg.Session
	if session == 0 {
		session = randomSession()
	}
	s := &Sender{cfg: cfg, conn: conn}
	if s.core, err = NewFanoutCore(cfg, session, dests); err != nil {
		conn.Close()
		return nil, err
	}
	s.loop = loop.Start(loop.Config{Core: s.core, Conn: conn, Clock: cfg.Clock, Logger: cfg.Logger})
	cfg.Logger.Info().Str("to", cfg.To).Str("listen", cfg.Listen).Stringer("local", conn.LocalAddr()).
		Str("session", fmt.Sprintf("%016x", session)).Msg("sender started")
	// Close when ctx is cancelled; Close cancels it too, ending this goroutine.
	ctx, s.cancel = context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		_ = s.Close()
	}()
	return s, nil
}

// destinations resolves and checks Config.To's addresses (see
// CheckDestination and checkMulticast; the list's own rules are
// NewFanoutCore's).
func destinations(cfg Config) ([]netip.AddrPort, error) {
	list, err := SplitDestinations(cfg.To)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 && cfg.Listen == "" {
		return nil, fmt.Errorf("%w: To is required (or Listen, to take subscribers)", ErrConfig)
	}
	dests := make([]netip.AddrPort, 0, len(list))
	for _, to := range list {
		a, err := resolve(to)
		if err != nil {
			return nil, err
		}
		if err := CheckDestination(a, cfg.Broadcast); err != nil {
			return nil, err
		}
		if err := checkMulticast(a, cfg); err != nil {
			return nil, err
		}
		dests = append(dests, a)
	}
	return dests, nil
}

// resolve turns "host:port" into an address, accepting names.
func resolve(hostport string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return ap, nil
	}
	ua, err := net.ResolveUDPAddr("udp", hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: To %q: %v", ErrConfig, hostport, err)
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

func randomSession() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v
		}
	}
}

// maxPaceSleep bounds one wait of Send for the congestion controller.
const maxPaceSleep = 5 * time.Millisecond

// Send queues payload on the configured stream. See SendStream.
func (s *Sender) Send(payload []byte) error { return s.SendStream(s.cfg.Stream, payload) }

// SendStream stamps payload with the stream's next sequence number and the
// current time and queues it for the writer. The payload is copied; the
// caller may reuse it when SendStream returns. When the queue is full, or
// the congestion controller's rate is spent, it blocks until there is
// room, or returns ErrQueueFull if DropWhenFull is set. It returns
// ErrClosed after Close.
func (s *Sender) SendStream(stream uint32, payload []byte) error {
	l := s.loop
	l.Mu.Lock()
	for {
		if l.Closing() {
			l.Mu.Unlock()
			return ErrClosed
		}
		now := s.cfg.Clock.Now()
		if wait := s.core.PaceDelay(now); wait > 0 {
			// The congestion controller's rate is spent: hold the caller
			// (or refuse, with DropWhenFull) while what is queued goes out.
			if s.cfg.DropWhenFull {
				s.core.stats.QueueFull++
				l.Mu.Unlock()
				return ErrQueueFull
			}
			l.Mu.Unlock()
			l.Wake()
			// In slices, so that Close is noticed within one: a wait at
			// the pacer's floor rate after a large message can be long.
			time.Sleep(min(time.Duration(wait), maxPaceSleep))
			l.Mu.Lock()
			continue
		}
		err := s.core.Send(stream, payload, now)
		if err == nil {
			l.FlushOrWake() // unlocks
			return nil
		}
		if !errors.Is(err, ErrQueueFull) {
			l.Mu.Unlock()
			return err
		}
		s.core.stats.QueueFull++
		if s.cfg.DropWhenFull {
			l.Mu.Unlock()
			return err
		}
		l.Wake()
		l.Space.Wait()
	}
}

// LastSeq returns the sequence number of the DATA datagram that carries
// the newest message sent on stream (see Core.LastSeq), and false before
// any. It is cheaper than Stats for a caller that tracks delivery per
// message.
func (s *Sender) LastSeq(stream uint32) (uint64, bool) {
	s.loop.Mu.Lock()
	defer s.loop.Mu.Unlock()
	return s.core.LastSeq(stream)
}

// Stats returns a snapshot of the sender's statistics.
func (s *Sender) Stats() Stats {
	s.loop.Mu.Lock()
	st := s.core.Stats()
	now := s.cfg.Clock.Now()
	st.FeedbackSilenceNanos = s.core.FeedbackSilence(now)
	st.ages(now)
	s.loop.Mu.Unlock()
	io := s.conn.Stats()
	st.DatagramsSent = io.DatagramsWritten
	st.BytesSent = io.BytesWritten
	st.WriteSyscalls = io.WriteSyscalls
	st.WriteErrors = s.loop.WriteErrors()
	return st
}

// LocalAddr returns the address the sender's socket is bound to.
func (s *Sender) LocalAddr() netip.AddrPort { return s.conn.LocalAddr() }

// Session returns the sender's session id.
func (s *Sender) Session() uint64 { return s.core.Session() }

// Close flushes queued packets, stops the sender's goroutines and closes
// its socket. Feedback arriving afterwards is not read. It is safe to call
// more than once.
func (s *Sender) Close() error {
	s.closeOnce.Do(func() {
		// Subscribers are told at once, not left to their timeout.
		s.loop.Mu.Lock()
		s.core.Goodbye()
		s.loop.Mu.Unlock()
		s.closeErr = s.loop.Close()
		s.cancel()
	})
	return s.closeErr
}

// Flush blocks until every packet queued before the call has been handed
// to the kernel (written with sendmmsg), or the sender closes. A program
// that must not lose what it passed to Send if it crashes afterwards (a
// bridge that acknowledges its source only once a message has left) calls
// Flush before acknowledging; the receiver's REPORTs (Stats) tell what
// arrived.
func (s *Sender) Flush() error {
	l := s.loop
	l.Mu.Lock()
	defer l.Mu.Unlock()
	// What is queued sits in the batch being filled and perhaps in the one
	// the writer holds. Each batch handed back broadcasts Space; after two
	// (the held batch, then the one that was filling) both are written.
	for gives := 0; gives < 2 && !s.core.Outbox().Idle(); gives++ {
		if l.Closing() {
			return ErrClosed
		}
		l.Wake()
		l.Space.Wait()
	}
	return nil
}
