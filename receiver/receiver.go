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
// Delivery is pull-based: one goroutine calls Recv in a loop. Messages come
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
	done   chan struct{} // closed by Close
	cancel context.CancelFunc

	// The context of the latest Recv whose cancellation interrupts an
	// inline read, and how to stop watching it; under watchMu, since
	// Close stops it too.
	watchMu sync.Mutex
	watched context.Context
	unwatch func() bool

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
	if cfg.Listen == "" {
		return nil, fmt.Errorf("%w: Listen is required", ErrConfig)
	}
	conn, err := udpio.Listen(cfg.Listen, udpio.Config{
		BatchSize:        cfg.BatchSize,
		ReadBufferBytes:  cfg.SocketBufferBytes,
		WriteBufferBytes: cfg.SocketBufferBytes,
		MaxDatagram:      packet.MaxPacketLen,
		BusyPoll:         cfg.BusyPoll,
	})
	if err != nil {
		return nil, fmt.Errorf("receiver: listen %s: %w", cfg.Listen, err)
	}
	core, err := NewCore(cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	r := &Receiver{
		cfg:  cfg,
		core: core,
		conn: conn,
		done: make(chan struct{}),
	}
	r.loop = loop.Start(loop.Config{
		Core: r.core, Conn: conn, Clock: cfg.Clock, Logger: cfg.Logger,
		InlineRead: true,
		Pending:    func() bool { return r.core.queue.waiting() > 0 },
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
//
// While Recv waits it reads the socket itself, so that a datagram that
// completes a message is returned by the goroutine that read it, with no
// goroutine wake-up in between; the receiver's own reader goroutine reads
// only while nobody has called Recv for a while (10 ms).
func (r *Receiver) Recv(ctx context.Context) (Message, error) {
	for {
		r.loop.Mu.Lock()
		m, ok := r.core.Pop()
		r.loop.Mu.Unlock()
		if ok {
			return m, nil
		}
		select {
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
		default:
		}
		r.watch(ctx)
		if err := r.loop.ReadInline(ctx.Done()); err != nil {
			<-r.done // the loop closed: Close is under way
		}
	}
}

// watch makes the cancellation of ctx interrupt Recv's inline read. It
// registers with ctx only when ctx differs from the previous call's, so a
// Recv loop on one context does not allocate.
func (r *Receiver) watch(ctx context.Context) {
	if ctx.Done() == nil {
		return // never cancelled
	}
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	if ctx == r.watched {
		return
	}
	select {
	case <-r.done:
		return // Close has stopped watching; nothing to interrupt
	default:
	}
	if r.unwatch != nil {
		r.unwatch()
	}
	r.watched, r.unwatch = ctx, context.AfterFunc(ctx, r.loop.InterruptRead)
}

// Stats returns a snapshot of the receiver's statistics.
func (r *Receiver) Stats() Stats {
	r.loop.Mu.Lock()
	st := r.core.Stats()
	r.loop.Mu.Unlock()
	io := r.conn.Stats()
	st.KernelDrops = io.KernelDrops
	st.ReadSyscalls = io.ReadSyscalls
	st.WriteErrors = r.loop.WriteErrors()
	return st
}

// Addr returns the address the receiver is bound to.
func (r *Receiver) Addr() netip.AddrPort { return r.conn.LocalAddr() }

// Close stops receiving, closes the socket and wakes a blocked Recv.
// Messages already delivered can still be taken with Recv. It is safe to
// call more than once.
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.loop.Close()
		r.watchMu.Lock()
		close(r.done)
		if r.unwatch != nil {
			r.unwatch() // let go of the Recv context's reference to r
			r.watched, r.unwatch = nil, nil
		}
		r.watchMu.Unlock()
		r.cancel()
	})
	return r.closeErr
}
