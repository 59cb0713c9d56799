package netem

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/telewire/telewire/internal/clock"
)

// PacketConnStats is a snapshot of a PacketConn's counters.
type PacketConnStats struct {
	// Out counts datagrams written through the conn (WriteTo), In those
	// read from the wrapped conn. Both are zero for a direction whose
	// Spec is a perfect link, which is passed straight through.
	Out, In LinkStats
	// WriteErrs counts delayed datagrams the wrapped conn refused to
	// write. The caller's WriteTo had already succeeded, as a write into a
	// qdisc does, so these errors are only counted.
	WriteErrs uint64
}

// PacketConn is a net.PacketConn that impairs the datagrams of another
// one, each direction through its own [Link]: what the caller writes is
// queued, then dropped, duplicated, corrupted, reordered or delayed and
// written to the wrapped conn by a delivery goroutine at its scheduled
// time; what the wrapped conn receives is read by a reader goroutine,
// impaired the same way, and handed to ReadFrom when it is due. It is the
// in-process equivalent of a netem qdisc on the socket, for tests and
// tools that hold a PacketConn (telewire's own sender and receiver own
// their sockets; put a [Relay] in front of those).
//
// A direction whose Spec is a perfect link (nothing set but Limit or
// Seed) is not queued: its calls and deadlines go straight to the wrapped
// conn.
//
// For an impaired direction: WriteTo copies the datagram and returns at
// once (a full queue drops it, counted in Stats, as netem does); the
// wrapped conn's write errors are counted, not returned. ReadFrom returns
// the next due datagram, truncated to len(p) as UDP does, with the address
// it came from; read deadlines are kept by the PacketConn. An error from
// the wrapped conn's ReadFrom is returned by the next ReadFrom; the
// reader goroutine reads again only after that, as a caller of the bare
// conn would.
//
// Memory is bounded by each Spec's limit and a byte cap
// (DefaultMaxQueueBytes) per direction, plus one 64 KiB read buffer. The
// steady-state per-datagram path allocates nothing beyond what the
// wrapped conn does.
//
// Methods are safe for concurrent use; concurrent ReadFrom calls are
// served one at a time. Close closes the wrapped conn, discards queued
// datagrams and waits for the goroutines to end.
type PacketConn struct {
	pc  net.PacketConn
	clk *clock.Mono
	out *pcDir // nil: pass-through
	in  *pcDir // nil: pass-through

	outKick  chan struct{} // cap 1: the out queue's head may have changed
	inKick   chan struct{} // cap 1: the in queue, a read error or a deadline changed
	errTaken chan struct{} // cap 1: ReadFrom took the reader's error
	closed   chan struct{}

	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	readMu sync.Mutex  // serialises ReadFrom on an impaired in direction
	rtimer *time.Timer // ReadFrom's timer, used under readMu

	dlMu          sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time

	writeErrs atomic.Uint64
}

// pcDir is one impaired direction: a Link and the addresses of the
// datagrams it holds, guarded by mu.
type pcDir struct {
	mu   sync.Mutex
	link *Link
	// Addresses travel beside the link as tags: slot i of addrs holds the
	// address of refs[i] queued copies; free lists unused slots. At most
	// one slot per queued datagram, so the table is bounded by the link.
	addrs []net.Addr
	refs  []int32
	free  []uint32

	// In direction only: an error from the wrapped conn's ReadFrom,
	// waiting for ReadFrom; sticky when the wrapped conn is closed.
	readErr error
	sticky  bool
}

// isPerfect reports whether sp impairs nothing (a limit or a seed alone
// changes nothing for a queue that never holds a packet).
func isPerfect(sp Spec) bool {
	sp.Limit, sp.Seed, sp.HasSeed = 0, 0, false
	return sp == Spec{}
}

func newPCDir(sp Spec, seed int64) (*pcDir, error) {
	if isPerfect(sp) {
		return nil, sp.Validate()
	}
	l, err := NewLink(sp, seed)
	if err != nil {
		return nil, err
	}
	l.SetByteLimit(DefaultMaxQueueBytes)
	return &pcDir{link: l}, nil
}

// enqueue offers pkt from or to addr to the link at now. d.mu is held.
func (d *pcDir) enqueue(now int64, pkt []byte, addr net.Addr) {
	var slot uint32
	if k := len(d.free); k > 0 {
		slot = d.free[k-1]
		d.free = d.free[:k-1]
	} else {
		slot = uint32(len(d.addrs))
		d.addrs = append(d.addrs, nil)
		d.refs = append(d.refs, 0)
	}
	before := d.link.Len()
	d.link.EnqueueTagged(now, pkt, uint64(slot))
	if copies := d.link.Len() - before; copies > 0 {
		d.addrs[slot], d.refs[slot] = addr, int32(copies)
		return
	}
	d.free = append(d.free, slot)
}

// dequeue returns the next datagram due at now and its address. The
// datagram is valid until the next dequeue. d.mu is held.
func (d *pcDir) dequeue(now int64) ([]byte, net.Addr, bool) {
	pkt, tag, ok := d.link.DequeueTagged(now)
	if !ok {
		return nil, nil, false
	}
	addr := d.addrs[tag]
	if d.refs[tag]--; d.refs[tag] == 0 {
		d.addrs[tag] = nil
		d.free = append(d.free, uint32(tag))
	}
	return pkt, addr, true
}

// NewPacketConn wraps pc: datagrams written are impaired by out, datagrams
// read by in, each direction's randomness seeded from seed (or by its
// Spec's own seed). It fails only if a Spec does not Validate. The
// PacketConn owns pc from then on: Close closes it.
func NewPacketConn(pc net.PacketConn, out, in Spec, seed int64) (*PacketConn, error) {
	od, err := newPCDir(out, seed)
	if err != nil {
		return nil, fmt.Errorf("netem: out: %w", err)
	}
	id, err := newPCDir(in, seed+1)
	if err != nil {
		return nil, fmt.Errorf("netem: in: %w", err)
	}
	c := &PacketConn{
		pc: pc, clk: clock.NewMono(), out: od, in: id,
		outKick:  make(chan struct{}, 1),
		inKick:   make(chan struct{}, 1),
		errTaken: make(chan struct{}, 1),
		closed:   make(chan struct{}),
	}
	if od != nil {
		c.wg.Add(1)
		go c.deliver()
	}
	if id != nil {
		c.rtimer = time.NewTimer(time.Hour)
		c.rtimer.Stop()
		c.wg.Add(1)
		go c.readLoop()
	}
	return c, nil
}

// Wrap is NewPacketConn for specs known to be valid, such as those
// returned by ParseSpec; it panics if out or in does not Validate. The
// result is a *PacketConn (for Stats).
func Wrap(pc net.PacketConn, out, in Spec, seed int64) net.PacketConn {
	c, err := NewPacketConn(pc, out, in, seed)
	if err != nil {
		panic(err)
	}
	return c
}

// Stats returns the counters.
func (c *PacketConn) Stats() PacketConnStats {
	var st PacketConnStats
	if c.out != nil {
		c.out.mu.Lock()
		st.Out = c.out.link.Stats()
		c.out.mu.Unlock()
	}
	if c.in != nil {
		c.in.mu.Lock()
		st.In = c.in.link.Stats()
		c.in.mu.Unlock()
	}
	st.WriteErrs = c.writeErrs.Load()
	return st
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *PacketConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func (c *PacketConn) opErr(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: c.pc.LocalAddr().Network(), Source: c.pc.LocalAddr(), Addr: addr, Err: err}
}

// WriteTo queues a copy of p for addr and returns len(p), or writes it at
// once when the out direction is a perfect link.
func (c *PacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.out == nil {
		return c.pc.WriteTo(p, addr)
	}
	if c.isClosed() {
		return 0, c.opErr("write", addr, net.ErrClosed)
	}
	if addr == nil {
		return 0, c.opErr("write", nil, errors.New("missing address"))
	}
	c.dlMu.Lock()
	dl := c.writeDeadline
	c.dlMu.Unlock()
	if !dl.IsZero() && !time.Now().Before(dl) {
		return 0, c.opErr("write", addr, os.ErrDeadlineExceeded)
	}
	now := c.clk.Now()
	d := c.out
	d.mu.Lock()
	before, _ := d.link.Next()
	wasEmpty := d.link.Len() == 0
	d.enqueue(now, p, addr)
	after, ok := d.link.Next()
	d.mu.Unlock()
	if ok && (wasEmpty || after < before) {
		kick(c.outKick)
	}
	return len(p), nil
}

// deliver writes the out link's datagrams at their scheduled times.
func (c *PacketConn) deliver() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	d := c.out
	for {
		d.mu.Lock()
		at, ok := d.link.Next()
		d.mu.Unlock()
		if !ok {
			select {
			case <-c.closed:
				return
			case <-c.outKick:
				continue
			}
		}
		if !c.sleepUntil(at, timer, c.outKick) {
			if c.isClosed() {
				return
			}
			continue
		}
		// Only this goroutine dequeues, so a datagram stays valid after
		// the lock is released until the next dequeue.
		for {
			d.mu.Lock()
			pkt, addr, ok := d.dequeue(c.clk.Now())
			d.mu.Unlock()
			if !ok {
				break
			}
			if _, err := c.pc.WriteTo(pkt, addr); err != nil {
				c.writeErrs.Add(1)
			}
		}
	}
}

// sleepUntil waits until the monotonic time at: with timer until
// spinWindow before it, then yielding, which keeps delivery well inside
// the timer's wake-up latency. It returns false early when wake fires or
// the conn is closed.
func (c *PacketConn) sleepUntil(at int64, timer *time.Timer, wake chan struct{}) bool {
	if wait := time.Duration(at-c.clk.Now()) - spinWindow; wait > 0 {
		timer.Reset(wait)
		select {
		case <-c.closed:
			timer.Stop()
			return false
		case <-wake:
			timer.Stop()
			return false
		case <-timer.C:
		}
	}
	for c.clk.Now() < at {
		if c.isClosed() {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// readLoop reads the wrapped conn into the in link.
func (c *PacketConn) readLoop() {
	defer c.wg.Done()
	buf := make([]byte, maxDatagram)
	d := c.in
	for {
		n, addr, err := c.pc.ReadFrom(buf)
		if err != nil {
			closed := c.isClosed() || errors.Is(err, net.ErrClosed)
			d.mu.Lock()
			d.readErr, d.sticky = err, closed
			d.mu.Unlock()
			kick(c.inKick)
			if closed {
				return
			}
			select {
			case <-c.errTaken:
				continue
			case <-c.closed:
				return
			}
		}
		now := c.clk.Now()
		d.mu.Lock()
		d.enqueue(now, buf[:n], addr)
		d.mu.Unlock()
		kick(c.inKick)
	}
}

// ReadFrom returns the next datagram due, copied into p, and its source
// address; it waits for one until the read deadline.
func (c *PacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.in == nil {
		return c.pc.ReadFrom(p)
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	d := c.in
	for {
		if c.isClosed() {
			return 0, nil, c.opErr("read", nil, net.ErrClosed)
		}
		now := c.clk.Now()
		d.mu.Lock()
		if pkt, addr, ok := d.dequeue(now); ok {
			n := copy(p, pkt)
			d.mu.Unlock()
			return n, addr, nil
		}
		at, queued := d.link.Next()
		if err := d.readErr; err != nil && (!d.sticky || !queued) {
			if !d.sticky {
				d.readErr = nil
				kick(c.errTaken)
			}
			d.mu.Unlock()
			return 0, nil, err
		}
		d.mu.Unlock()

		c.dlMu.Lock()
		dl := c.readDeadline
		c.dlMu.Unlock()
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, nil, c.opErr("read", nil, os.ErrDeadlineExceeded)
			}
			if !queued || time.Duration(at-now) > left {
				// Nothing due before the deadline: wait for it (or a
				// change) and look again.
				at, queued = now+int64(left), true
			}
		}
		if !queued {
			select {
			case <-c.closed:
			case <-c.inKick:
			}
			continue
		}
		c.sleepUntil(at, c.rtimer, c.inKick)
	}
}

// Close closes the wrapped conn, discards what is queued and waits for the
// PacketConn's goroutines. It returns the wrapped conn's Close error;
// calling it again returns the same.
func (c *PacketConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeErr = c.pc.Close()
		c.wg.Wait()
	})
	return c.closeErr
}

// LocalAddr returns the wrapped conn's local address.
func (c *PacketConn) LocalAddr() net.Addr { return c.pc.LocalAddr() }

// SetDeadline sets the read and write deadlines, as SetReadDeadline and
// SetWriteDeadline.
func (c *PacketConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of ReadFrom calls, pending ones
// included; a zero t means none. An impaired direction keeps it itself;
// a pass-through one sets it on the wrapped conn.
func (c *PacketConn) SetReadDeadline(t time.Time) error {
	if c.in == nil {
		return c.pc.SetReadDeadline(t)
	}
	c.dlMu.Lock()
	c.readDeadline = t
	c.dlMu.Unlock()
	kick(c.inKick)
	return nil
}

// SetWriteDeadline sets the deadline of WriteTo calls; a zero t means
// none. WriteTo on an impaired direction never blocks, so the deadline
// only makes calls after it fail.
func (c *PacketConn) SetWriteDeadline(t time.Time) error {
	if c.out == nil {
		return c.pc.SetWriteDeadline(t)
	}
	c.dlMu.Lock()
	c.writeDeadline = t
	c.dlMu.Unlock()
	return nil
}

var _ net.PacketConn = (*PacketConn)(nil)
