package receiver

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/telewire/telewire/internal/loop"
	"github.com/telewire/telewire/internal/udpio"
	"github.com/telewire/telewire/packet"
)

// ErrClosed is returned by Recv after Close.
var ErrClosed = fmt.Errorf("receiver: closed")

// Receiver listens on a UDP socket for telewire senders, tracks each
// sender's streams, repairs losses (FEC from the sender's parity, NACKs
// for what FEC cannot rebuild), sends REPORTs, and delivers messages
// through Recv.
//
// Delivery is pull-based: one goroutine calls Recv in a loop (and TryRecv
// to take what is already waiting without blocking). Messages come
// in the order Config.Mode sets (ordered by default, within the latency
// budget), once each: duplicates are dropped. If the reader falls behind by
// more than the configured queue, the newest messages are dropped and
// counted rather than stalling the socket. Stats and Close are safe to call
// from any goroutine.
type Receiver struct {
	cfg    Config
	core   *Core
	conn   *udpio.Conn
	loop   *loop.Loop
	notify chan struct{} // a batch was delivered
	done   chan struct{} // closed by Close
	cancel context.CancelFunc

	closeOnce sync.Once
	closeErr  error
}

// Listen binds cfg.Listen and starts receiving. When ctx is cancelled the
// receiver closes itself as Close does.
func Listen(ctx context.Context, cfg Config) (*Receiver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Subscribe != "" {
		if cfg, err = resolveSubscribe(cfg); err != nil {
			return nil, err
		}
	}
	if cfg.Listen == "" {
		return nil, fmt.Errorf("%w: Listen is required", ErrConfig)
	}
	ucfg := udpio.Config{
		BatchSize:        cfg.BatchSize,
		ReadBufferBytes:  cfg.SocketBufferBytes,
		WriteBufferBytes: cfg.SocketBufferBytes,
		MaxDatagram:      packet.MaxPacketLen,
		BusyPoll:         cfg.BusyPoll,
	}
	conn, out, err := listen(cfg, ucfg)
	if err != nil {
		return nil, err
	}
	core, err := NewCore(cfg)
	if err != nil {
		conn.Close()
		if out != nil {
			out.Close()
		}
		return nil, err
	}
	r := &Receiver{
		cfg:    cfg,
		core:   core,
		conn:   conn,
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	r.loop = loop.Start(loop.Config{
		Core: r.core, Conn: conn, Out: out, Clock: cfg.Clock, Logger: cfg.Logger,
		Changed: func() {
			select {
			case r.notify <- struct{}{}:
			default:
			}
		},
	})
	rb, wb := conn.BufferSizes()
	cfg.Logger.Info().Stringer("listen", conn.LocalAddr()).Int("rcvbuf", rb).Int("sndbuf", wb).Msg("receiver listening")
	ctx, r.cancel = context.WithCancel(ctx)
	go func() {
		<-ctx.Done()
		_ = r.Close()
	}()
	return r, nil
}

// Recv returns the next delivered message, blocking until one arrives, ctx
// is done (ctx.Err()) or the receiver is closed (ErrClosed). The message's
// Payload is valid until the next call to Recv. Call Recv from one
// goroutine at a time.
func (r *Receiver) Recv(ctx context.Context) (Message, error) {
	for {
		r.loop.Mu.Lock()
		m, ok := r.core.Pop()
		ended := r.core.SubscriptionEnded()
		r.loop.Mu.Unlock()
		if ok {
			return m, nil
		}
		if ended != nil {
			return Message{}, ended
		}
		select {
		case <-r.notify:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case <-r.done:
			// Hand out what was delivered before Close.
			r.loop.Mu.Lock()
			m, ok := r.core.Pop()
			r.loop.Mu.Unlock()
			if ok {
				return m, nil
			}
			return Message{}, ErrClosed
		}
	}
}

// TryRecv returns the next delivered message if one is waiting, without
// blocking; ok is false when none is (Recv would block), including after
// Close once everything delivered was taken. It lets a reader that writes
// messages out coalesce while more are already there and flush as soon
// as none is: take one with Recv, then more with TryRecv until it reports
// false, then flush. The Payload rule is Recv's: valid until the next Recv
// or TryRecv. It does not allocate. Call it from the goroutine that calls
// Recv.
func (r *Receiver) TryRecv() (m Message, ok bool) {
	r.loop.Mu.Lock()
	m, ok = r.core.Pop()
	r.loop.Mu.Unlock()
	return m, ok
}

// Stats returns a snapshot of the receiver's statistics.
func (r *Receiver) Stats() Stats {
	r.loop.Mu.Lock()
	st := r.core.Stats()
	r.loop.Mu.Unlock()
	io := r.conn.Stats()
	st.KernelDrops = io.KernelDrops
	st.BytesRead = io.BytesRead
	st.ReadSyscalls = io.ReadSyscalls
	st.WriteErrors = r.loop.WriteErrors()
	return st
}

// Addr returns the address the receiver is bound to.
func (r *Receiver) Addr() netip.AddrPort { return r.conn.LocalAddr() }

// Close sends each sender a last REPORT of what arrived since the previous
// one, stops receiving, closes the socket and wakes a blocked Recv.
// Messages already delivered can still be taken with Recv. It is safe to
// call more than once.
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		// A last REPORT, flushed by the loop's writer as it stops, tells
		// each sender what arrived since the previous one.
		r.loop.Mu.Lock()
		r.core.Leave()
		r.core.ReportNow(r.cfg.Clock.Now())
		r.loop.Mu.Unlock()
		r.closeErr = r.loop.Close()
		close(r.done)
		r.cancel()
	})
	return r.closeErr
}
