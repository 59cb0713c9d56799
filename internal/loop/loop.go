// Package loop runs a sans-IO protocol core (the sender's or the receiver's)
// over a batched UDP socket: one goroutine reads batches and hands each
// datagram to the core, one goroutine writes what the core queued and fires
// its timers. The core itself never touches a socket, a goroutine or the
// wall clock, which is what lets simulations drive the same core on a fake
// clock.
//
// Either end may also do the loop's work in its own goroutine, saving the
// hand-off to a loop goroutine (a goroutine wake-up, tens of microseconds
// on a busy machine) on its latency path: the sender writes a sparse
// message inline ([Loop.FlushOrWake]), and the receiver's Recv reads the
// socket itself while it waits ([Loop.ReadInline]).
//
// Concurrency: the core is guarded by [Loop.Mu]; the loop holds it while it
// calls into the core and never across a syscall. API methods of the sender
// and receiver take the same lock.
package loop

import (
	"errors"
	"math"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/udpio"
)

// Core is a protocol state machine driven by datagrams and time.
type Core interface {
	// Handle processes one received datagram; now is its receive time.
	Handle(b []byte, from netip.AddrPort, now int64)
	// Tick runs whatever timers are due at now.
	Tick(now int64)
	// NextTimer returns when Tick next has work, if ever.
	NextTimer() (at int64, ok bool)
	// Outbox returns the double buffer the core encodes datagrams into.
	Outbox() *outbox.Pair
}

// Config wires a Loop.
type Config struct {
	Core   Core
	Conn   *udpio.Conn
	Clock  clock.Clock
	Logger zerolog.Logger
	// InlineRead hands the socket's read side to the owner's goroutine
	// whenever it calls ReadInline: see there. Without it only the reader
	// goroutine reads.
	InlineRead bool
	// Pending, with InlineRead, reports whether the core holds something
	// for its owner (a delivered message, for the receiver). The loop
	// calls it with Mu held, after each Tick and before an inline read
	// blocks, so that what a Tick produces ends an inline read at once.
	Pending func() bool
}

// handback is how long the owner must stay away from ReadInline (not a
// single call) before the reader goroutine takes the socket's read side
// back, and so how often that goroutine looks while the owner holds it:
// datagrams that arrive meanwhile wait in the socket's buffer, and
// REPORT, NACK and stats reflect them that much later.
const handback = 10 * time.Millisecond

// aLongTimeAgo is a read deadline in the past: setting it makes a blocked
// read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// Loop owns the reader and writer goroutines of one socket.
type Loop struct {
	// Mu guards the core. Hold it to call the core from outside the loop.
	Mu sync.Mutex
	// Space is signalled (Broadcast, under Mu) whenever the writer hands an
	// emptied batch back to the core, or the loop closes.
	Space *sync.Cond

	cfg      Config
	wake     chan struct{}
	done     chan struct{}
	closing  atomic.Bool
	writerWG sync.WaitGroup
	readerWG sync.WaitGroup
	log      zerolog.Logger

	// armedAt is when the writer's timer fires (monotonic ns of the core's
	// clock), or math.MaxInt64 when it is not armed; the reader wakes the
	// writer early when handling datagrams moved the core's next timer
	// before it (a gap to NACK, a message to deliver).
	armedAt atomic.Int64

	// The read side with Config.InlineRead, under Mu: which goroutine
	// reads the socket (the owner's, through ReadInline, or the reader
	// goroutine), whether an inline call is in progress and how many have
	// begun, and whether one waits for the reader goroutine to hand over,
	// which it does by a token in granted.
	callerOwns  bool
	callerIn    bool
	callerCalls uint64
	want        bool
	granted     chan struct{}
	inlineMu    sync.Mutex    // serialises ReadInline callers
	handback    time.Duration // the constant handback but in tests

	writeErrors atomic.Uint64
	readErrors  atomic.Uint64
	lastCall    int64      // when FlushOrWake was last called, under Mu
	writeLog    errLimiter // one line per errorLogInterval about failed writes
	readLog     errLimiter // and about failed reads
}

// Start starts the loop's goroutines.
func Start(cfg Config) *Loop { return start(cfg, handback) }

// start is Start with the handback time as a parameter, for tests.
func start(cfg Config, handback time.Duration) *Loop {
	l := &Loop{
		handback: handback,
		cfg:      cfg,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		log:      cfg.Logger, // socket failures are rate-limited by errLimiter
		// The owner is expected to call ReadInline soon after starting;
		// if it does not, the reader goroutine takes over after handback.
		callerOwns: cfg.InlineRead,
		granted:    make(chan struct{}, 1),
	}
	l.Space = sync.NewCond(&l.Mu)
	l.writerWG.Add(1)
	go l.writer()
	l.readerWG.Add(1)
	go l.reader()
	return l
}

// Wake asks the writer to flush queued datagrams and re-arm its timer. It
// never blocks.
func (l *Loop) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// inlineGap is the least time since the previous FlushOrWake for which
// the next one writes in the caller's goroutine: a sender sending at
// least this far apart gets each message written at once, a faster one
// has the writer goroutine batch them.
const inlineGap = 50 * time.Microsecond

// FlushOrWake is called with Mu held after the owner queued something; it
// returns with Mu released. When the previous call was at least inlineGap
// ago and the writer goroutine is idle (no batch out), it writes what is
// queued in the calling goroutine, saving the hand-off to the writer (a
// goroutine wake-up, tens of microseconds on a busy machine) for a sender
// that sends now and then. Otherwise it wakes the writer, which coalesces
// what queues up into batches, as at full speed.
func (l *Loop) FlushOrWake() {
	now := l.cfg.Clock.Now()
	sparse := now-l.lastCall >= int64(inlineGap)
	l.lastCall = now
	if sparse {
		if b := l.cfg.Core.Outbox().Take(); b != nil {
			l.Mu.Unlock()
			l.write(b)
			l.Mu.Lock()
			l.cfg.Core.Outbox().Give(b)
			l.Space.Broadcast()
			l.Mu.Unlock()
			return
		}
	}
	l.Mu.Unlock()
	l.Wake()
}

// Closing reports whether Close has been called.
func (l *Loop) Closing() bool { return l.closing.Load() }

// WriteErrors returns how many datagrams failed to send.
func (l *Loop) WriteErrors() uint64 { return l.writeErrors.Load() }

// ReadErrors returns how many socket reads failed (other than on close).
func (l *Loop) ReadErrors() uint64 { return l.readErrors.Load() }

// Close flushes what the core has queued, stops both goroutines and closes
// the socket. It is safe to call more than once.
func (l *Loop) Close() error {
	if l.closing.Swap(true) {
		l.writerWG.Wait()
		l.readerWG.Wait()
		return nil
	}
	close(l.done)
	l.writerWG.Wait()
	err := l.cfg.Conn.Close()
	l.readerWG.Wait()
	l.Mu.Lock()
	l.Space.Broadcast()
	l.Mu.Unlock()
	return err
}

func (l *Loop) reader() {
	defer l.readerWG.Done()
	var idle *time.Timer
	if l.cfg.InlineRead {
		idle = time.NewTimer(l.handback)
		defer idle.Stop()
	}
	for {
		if idle != nil && !l.takeTurn(idle) {
			return
		}
		dgs, err := l.cfg.Conn.Read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.closing.Load() {
				return
			}
			if l.cfg.InlineRead && errors.Is(err, os.ErrDeadlineExceeded) {
				// An inline caller (or a stale interrupt) asked the
				// read to end; takeTurn sees which.
				_ = l.cfg.Conn.SetReadDeadline(time.Time{})
				continue
			}
			l.readFailed(err)
			continue
		}
		l.handle(dgs)
	}
}

// takeTurn returns true once the reader goroutine holds the read side:
// at once if it does, else when the owner has not called ReadInline for
// handback. Before that it hands the read side to an inline caller that
// asked for it. It returns false when the loop closes.
func (l *Loop) takeTurn(idle *time.Timer) bool {
	l.Mu.Lock()
	if l.want {
		l.want = false
		l.callerOwns = true
		l.granted <- struct{}{} // never blocks: one caller, one token
	}
	if !l.callerOwns {
		l.Mu.Unlock()
		return true
	}
	seen := l.callerCalls
	l.Mu.Unlock()
	for {
		idle.Reset(l.handback)
		select {
		case <-idle.C:
		case <-l.done:
			return false
		}
		l.Mu.Lock()
		if !l.callerIn && l.callerCalls == seen {
			l.callerOwns = false
			l.Mu.Unlock()
			return true
		}
		seen = l.callerCalls
		l.Mu.Unlock()
	}
}

// readFailed counts and logs (rate-limited) a failed socket read.
func (l *Loop) readFailed(err error) {
	l.readErrors.Add(1)
	if ok, n := l.readLog.allow(l.cfg.Clock.Now()); ok {
		l.log.Warn().Err(err).Uint64("suppressed", n).Msg("socket read failed")
	}
}

// handle hands a batch just read to the core and wakes the writer if the
// core queued something or moved its next timer earlier.
func (l *Loop) handle(dgs []udpio.Datagram) {
	now := l.cfg.Clock.Now()
	l.Mu.Lock()
	for i := range dgs {
		l.cfg.Core.Handle(dgs[i].Data, dgs[i].Addr, now)
	}
	pending := l.cfg.Core.Outbox().Current().Len() > 0
	next, armed := l.cfg.Core.NextTimer()
	l.Mu.Unlock()
	if pending || (armed && next < l.armedAt.Load()) {
		l.Wake()
	}
}

// ReadInline reads the socket in the calling goroutine, once: it blocks
// until a batch arrives and hands it to the core, as the reader goroutine
// does, so that what the batch delivers is ready for the caller without a
// goroutine wake-up in between. Needs Config.InlineRead. The owner calls
// it in a loop while it waits for the core to deliver, checking the core
// between calls.
//
// It returns nil, having read nothing, as soon as Config.Pending reports
// something (a Tick delivered it), cancel is closed, or the reader
// goroutine has just handed over the read side; and when an interrupt
// ([Loop.InterruptRead], for the closing of cancel) ends the read. It
// returns an error matching net.ErrClosed after Close. Calls are
// serialised; the read side goes back to the reader goroutine when no
// call has been made for a while (10 ms), so that an owner that stops
// calling does not stop the core from hearing its peers.
func (l *Loop) ReadInline(cancel <-chan struct{}) error {
	l.inlineMu.Lock()
	defer l.inlineMu.Unlock()
	l.Mu.Lock()
	l.callerCalls++
	if l.closing.Load() {
		l.Mu.Unlock()
		return net.ErrClosed
	}
	if l.cfg.Pending != nil && l.cfg.Pending() {
		l.Mu.Unlock()
		return nil
	}
	select {
	case <-cancel:
		l.Mu.Unlock()
		return nil
	default:
	}
	l.callerIn = true
	defer l.leave()
	if !l.callerOwns {
		// The reader goroutine reads: interrupt it and wait for the
		// read side. It may hand over after reading a batch, so return
		// for the caller to look at the core before reading.
		l.want = true
		l.Mu.Unlock()
		l.interrupt()
		select {
		case <-l.granted:
		case <-cancel:
			l.Mu.Lock()
			if l.want {
				l.want = false
			} else {
				<-l.granted // handed over meanwhile: keep it
			}
			l.Mu.Unlock()
		case <-l.done:
		}
		return nil
	}
	l.Mu.Unlock()

	dgs, err := l.cfg.Conn.Read()
	if err != nil {
		switch {
		case errors.Is(err, net.ErrClosed) || l.closing.Load():
			return net.ErrClosed
		case errors.Is(err, os.ErrDeadlineExceeded):
			// Interrupted: a Tick delivered, cancel closed, or a stale
			// interrupt; the caller looks again.
			_ = l.cfg.Conn.SetReadDeadline(time.Time{})
		default:
			l.readFailed(err)
		}
		return nil
	}
	l.handle(dgs)
	return nil
}

func (l *Loop) leave() {
	l.Mu.Lock()
	l.callerIn = false
	l.Mu.Unlock()
}

// InterruptRead ends an inline read in progress (ReadInline returns nil);
// without one it does nothing. The owner calls it when something its
// caller waits on besides the core happens, such as the cancellation of
// the caller's context. It never blocks.
func (l *Loop) InterruptRead() {
	l.Mu.Lock()
	in := l.callerIn
	l.Mu.Unlock()
	if in {
		l.interrupt()
	}
}

// interrupt makes the socket read in progress, or the next one, return
// os.ErrDeadlineExceeded at once; the reader clears the deadline again.
func (l *Loop) interrupt() { _ = l.cfg.Conn.SetReadDeadline(aLongTimeAgo) }

func (l *Loop) writer() {
	defer l.writerWG.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.Mu.Lock()
		now := l.cfg.Clock.Now()
		l.cfg.Core.Tick(now)
		b := l.cfg.Core.Outbox().Take()
		next, armed := l.cfg.Core.NextTimer()
		ready := l.callerIn && l.cfg.Pending != nil && l.cfg.Pending()
		l.Mu.Unlock()
		if ready {
			l.interrupt() // the Tick delivered: end the inline read
		}

		if b != nil {
			l.write(b)
			l.Mu.Lock()
			l.cfg.Core.Outbox().Give(b)
			l.Space.Broadcast()
			l.Mu.Unlock()
			continue // more may have been queued while we wrote
		}
		select {
		case <-l.done:
			return // Take returned nil: nothing left to flush
		default:
		}
		if armed {
			d := time.Duration(next - now)
			if d < 0 {
				d = 0
			}
			l.armedAt.Store(next)
			timer.Reset(d)
		} else {
			l.armedAt.Store(math.MaxInt64)
		}
		select {
		case <-l.wake:
		case <-timer.C:
		case <-l.done:
		}
		if armed && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// write sends a whole batch. A datagram the kernel refuses (for example an
// ICMP error reported on the socket) is counted and skipped so that one bad
// destination cannot stall the rest.
func (l *Loop) write(b *outbox.Batch) {
	dgs := b.Datagrams()
	for len(dgs) > 0 {
		n, err := l.cfg.Conn.WriteBatch(dgs)
		if err == nil {
			return
		}
		l.writeErrors.Add(1)
		if ok, s := l.writeLog.allow(l.cfg.Clock.Now()); ok {
			l.log.Warn().Err(err).Stringer("to", dgs[min(n, len(dgs)-1)].Addr).Uint64("suppressed", s).Msg("socket write failed")
		}
		if n < len(dgs) {
			n++ // skip the datagram that failed
		}
		dgs = dgs[n:]
	}
}
