// Package loop runs a sans-IO protocol core (the sender's or the receiver's)
// over a batched UDP socket: one goroutine reads batches and hands each
// datagram to the core, one goroutine writes what the core queued and fires
// its timers. The core itself never touches a socket, a goroutine or the
// wall clock, which is what lets simulations drive the same core on a fake
// clock.
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
	Core Core
	Conn *udpio.Conn
	// Out, if set, is the socket the core's datagrams are written to
	// instead of Conn, for a multicast receiver whose feedback needs a
	// source address of its own. It is read too, by a reader of its own
	// (what a sender sends that receiver alone: a late joiner's history).
	// The loop closes it with Conn.
	Out    *udpio.Conn
	Clock  clock.Clock
	Logger zerolog.Logger
	// Changed, if set, is called (without the lock) after each batch read
	// has been handed to the core and after each Tick: the points where
	// the core may have produced something for its owner (a delivered
	// message, for the receiver). It must not block.
	Changed func()
}

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

	writeErrors atomic.Uint64
	readErrors  atomic.Uint64
	lastCall    int64      // when FlushOrWake was last called, under Mu
	lastEnd     int64      // when that call's inline write ended (lastCall if it wrote none), under Mu
	writeLog    errLimiter // one line per errorLogInterval about failed writes
	readLog     errLimiter // and about failed reads

	// afterInline, when set (by tests, before the first FlushOrWake), is
	// called after each write FlushOrWake makes in the caller's goroutine.
	afterInline func()
}

// Start starts the loop's goroutines.
func Start(cfg Config) *Loop {
	l := &Loop{
		cfg:  cfg,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
		log:  cfg.Logger, // socket failures are rate-limited by errLimiter
	}
	l.Space = sync.NewCond(&l.Mu)
	l.writerWG.Add(1)
	go l.writer()
	l.readerWG.Add(1)
	go l.reader(cfg.Conn)
	if cfg.Out != nil {
		l.readerWG.Add(1)
		go l.reader(cfg.Out)
	}
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
// ago, the caller has been idle since that call's write ended for at least
// as long as the write took, and the writer goroutine is idle (no batch
// out), it writes what is queued in the calling goroutine, saving the
// hand-off to the writer (a goroutine wake-up, tens of microseconds on a
// busy machine) for a sender that sends now and then. Otherwise it wakes
// the writer, which coalesces what queues up into batches, as at full
// speed. The second condition matters when one write takes longer than
// the sender's gaps (a message fanned out to 50 destinations is 50
// datagrams, some 200 µs on loopback): without it every call of a sender
// falling behind would look sparse, each message would go out alone in
// its caller, and the sender would never catch up by packing what queued
// meanwhile.
func (l *Loop) FlushOrWake() {
	now := l.cfg.Clock.Now()
	sparse := now-l.lastCall >= int64(inlineGap) && now-l.lastEnd >= l.lastEnd-l.lastCall
	l.lastCall, l.lastEnd = now, now
	if sparse {
		if b := l.cfg.Core.Outbox().Take(); b != nil {
			l.Mu.Unlock()
			l.write(b)
			if l.afterInline != nil {
				l.afterInline()
			}
			l.Mu.Lock()
			l.lastEnd = l.cfg.Clock.Now()
			l.cfg.Core.Outbox().Give(b)
			l.Space.Broadcast()
			// What the reader queued while this batch was out (an answer
			// to it, say) could not be taken by the writer, which may
			// have gone back to sleep: wake it.
			more := l.cfg.Core.Outbox().Current().Len() > 0
			l.Mu.Unlock()
			if more {
				l.Wake()
			}
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
	if l.cfg.Out != nil {
		err = errors.Join(err, l.cfg.Out.Close())
	}
	l.readerWG.Wait()
	l.Mu.Lock()
	l.Space.Broadcast()
	l.Mu.Unlock()
	return err
}

func (l *Loop) reader(conn *udpio.Conn) {
	defer l.readerWG.Done()
	for {
		dgs, err := conn.Read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.closing.Load() {
				return
			}
			l.readErrors.Add(1)
			if ok, n := l.readLog.allow(l.cfg.Clock.Now()); ok {
				l.log.Warn().Err(err).Uint64("suppressed", n).Msg("socket read failed")
			}
			continue
		}
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
		if l.cfg.Changed != nil {
			l.cfg.Changed()
		}
	}
}

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
		l.Mu.Unlock()
		if l.cfg.Changed != nil {
			l.cfg.Changed()
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

// out is the socket datagrams are written to.
func (l *Loop) out() *udpio.Conn {
	if l.cfg.Out != nil {
		return l.cfg.Out
	}
	return l.cfg.Conn
}

// write sends a whole batch. A datagram the kernel refuses (for example an
// ICMP error reported on the socket) is counted and skipped so that one bad
// destination cannot stall the rest.
func (l *Loop) write(b *outbox.Batch) {
	dgs := b.Datagrams()
	for len(dgs) > 0 {
		n, err := l.out().WriteBatch(dgs)
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
