package loop

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/internal/udpio"
)

// safety bounds every wait of these tests; reaching it is a failure.
const safety = 10 * time.Second

// counting is a Core that counts the datagrams it handles and, when due
// is set, has a timer due at once whose Tick makes something ready for
// its owner. Its fields are guarded by the loop's Mu.
type counting struct {
	out        *outbox.Pair
	handled    int
	due, ready bool
}

func (c *counting) Handle([]byte, netip.AddrPort, int64) { c.handled++ }
func (c *counting) Outbox() *outbox.Pair                 { return c.out }
func (c *counting) NextTimer() (int64, bool)             { return 0, c.due }
func (c *counting) Tick(int64) {
	if c.due {
		c.due, c.ready = false, true
	}
}

// inlineRig is a loop with InlineRead on a loopback socket and a socket
// to send it datagrams from.
type inlineRig struct {
	l    *Loop
	core *counting
	tx   *udpio.Conn
	to   netip.AddrPort
}

func newInlineRig(t *testing.T, handback time.Duration, ucfg udpio.Config) *inlineRig {
	t.Helper()
	conn, err := udpio.Listen("127.0.0.1:0", ucfg)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := udpio.Listen("127.0.0.1:0", udpio.Config{})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	core := &counting{out: outbox.NewPair(64, 1<<16)}
	l := start(Config{Core: core, Conn: conn, Clock: clock.NewFake(0), InlineRead: true,
		Pending: func() bool { return core.ready }}, handback)
	t.Cleanup(func() {
		l.Close()
		tx.Close()
	})
	return &inlineRig{l: l, core: core, tx: tx, to: conn.LocalAddr()}
}

func (r *inlineRig) send(t *testing.T) {
	t.Helper()
	if err := r.tx.WriteTo([]byte("dgram"), r.to); err != nil {
		t.Fatal(err)
	}
}

func (r *inlineRig) handled() int {
	r.l.Mu.Lock()
	defer r.l.Mu.Unlock()
	return r.core.handled
}

// readAsync runs one ReadInline on its own goroutine.
func (r *inlineRig) readAsync(cancel <-chan struct{}) chan error {
	ch := make(chan error, 1)
	go func() { ch <- r.l.ReadInline(cancel) }()
	return ch
}

// waitReading waits until a ReadInline call is in progress.
func (r *inlineRig) waitReading(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, safety, "ReadInline starts", func() bool {
		r.l.Mu.Lock()
		defer r.l.Mu.Unlock()
		return r.l.callerIn
	})
}

func await(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(safety):
		t.Fatal("ReadInline still blocked")
	}
	return nil
}

// TestReadInline: the owner's ReadInline reads the socket itself, and
// the datagram has been handed to the core when it returns.
func TestReadInline(t *testing.T) {
	testutil.NoLeaks(t)
	r := newInlineRig(t, time.Hour, udpio.Config{}) // the reader goroutine never takes over
	for i := 1; i <= 3; i++ {
		ch := r.readAsync(nil)
		r.send(t)
		if err := await(t, ch); err != nil {
			t.Fatal(err)
		}
		if got := r.handled(); got != i {
			t.Fatalf("after ReadInline %d: %d datagrams handled", i, got)
		}
	}
}

// TestReadInlineHandback: while the owner makes no ReadInline call the
// reader goroutine reads; the owner's next calls get the read side back
// and read themselves.
func TestReadInlineHandback(t *testing.T) {
	testutil.NoLeaks(t)
	r := newInlineRig(t, time.Millisecond, udpio.Config{})
	r.send(t)
	testutil.Eventually(t, safety, "the reader goroutine handles a datagram nobody reads inline", func() bool {
		return r.handled() == 1
	})
	// The reader goroutine is blocked reading: the first call interrupts
	// it and returns once it has handed over.
	if err := await(t, r.readAsync(nil)); err != nil {
		t.Fatal(err)
	}
	r.l.Mu.Lock()
	owns := r.l.callerOwns
	r.l.Mu.Unlock()
	if !owns {
		t.Fatal("ReadInline returned without the read side")
	}
	r.send(t)
	for deadline := time.Now().Add(safety); r.handled() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the second datagram was never handled")
		}
		if err := r.l.ReadInline(nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadInlinePending: a Tick that makes something ready for the owner
// ends a blocked ReadInline.
func TestReadInlinePending(t *testing.T) {
	testutil.NoLeaks(t)
	r := newInlineRig(t, time.Hour, udpio.Config{})
	ch := r.readAsync(nil)
	r.waitReading(t)
	r.l.Mu.Lock()
	r.core.due = true
	r.l.Mu.Unlock()
	r.l.Wake()
	if err := await(t, ch); err != nil {
		t.Fatal(err)
	}
	r.l.Mu.Lock()
	defer r.l.Mu.Unlock()
	if !r.core.ready || r.core.handled != 0 {
		t.Fatalf("ready %v, handled %d; want the Tick's result and nothing read", r.core.ready, r.core.handled)
	}
}

// TestReadInlineCancel: InterruptRead ends a blocked ReadInline, busy
// polling or not, and a cancel channel already closed ends it before it
// reads.
func TestReadInlineCancel(t *testing.T) {
	for _, busy := range []time.Duration{0, udpio.MaxBusyPoll} {
		t.Run(busy.String(), func(t *testing.T) {
			testutil.NoLeaks(t)
			r := newInlineRig(t, time.Hour, udpio.Config{BusyPoll: busy})
			cancel := make(chan struct{})
			ch := r.readAsync(cancel)
			r.waitReading(t)
			close(cancel)
			r.l.InterruptRead()
			if err := await(t, ch); err != nil {
				t.Fatal(err)
			}
			r.send(t)
			if err := r.l.ReadInline(cancel); err != nil {
				t.Fatal(err)
			}
			if got := r.handled(); got != 0 {
				t.Fatalf("%d datagrams handled by a cancelled ReadInline", got)
			}
		})
	}
}

// TestReadInlineClose: Close ends a blocked ReadInline with net.ErrClosed,
// and later calls return it at once.
func TestReadInlineClose(t *testing.T) {
	testutil.NoLeaks(t)
	r := newInlineRig(t, time.Hour, udpio.Config{})
	ch := r.readAsync(nil)
	r.waitReading(t)
	if err := r.l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := await(t, ch); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("blocked ReadInline after Close: %v", err)
	}
	if err := r.l.ReadInline(nil); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadInline after Close: %v", err)
	}
}
