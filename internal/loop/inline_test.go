package loop

import (
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/internal/udpio"
)

// quiet is a Core with no timers: only its owner queues datagrams.
type quiet struct{ out *outbox.Pair }

func (q *quiet) Handle([]byte, netip.AddrPort, int64) {}
func (q *quiet) Outbox() *outbox.Pair                 { return q.out }
func (q *quiet) NextTimer() (int64, bool)             { return 0, false }
func (q *quiet) Tick(int64)                           {}

// startQuiet starts a Loop over a quiet core on a fake clock, writing to
// a socket of its own; rx is where its datagrams go. The test's cleanup
// closes them and checks that nothing is left running.
func startQuiet(t *testing.T) (rx, conn *udpio.Conn, clk *clock.Fake, core *quiet, l *Loop) {
	t.Helper()
	testutil.NoLeaks(t)
	rx, err := udpio.Listen("127.0.0.1:0", udpio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	conn, err = udpio.Listen("127.0.0.1:0", udpio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	clk = clock.NewFake(int64(time.Second))
	core = &quiet{out: outbox.NewPair(64, 1<<16)}
	l = Start(Config{Core: core, Conn: conn, Clock: clk})
	t.Cleanup(func() { l.Close() })
	return rx, conn, clk, core, l
}

// queueTo queues one datagram to rx on l's core and calls FlushOrWake.
func queueTo(t *testing.T, l *Loop, core *quiet, rx *udpio.Conn) {
	t.Helper()
	l.Mu.Lock()
	if err := core.out.Current().AppendRaw([]byte("telewire"), rx.LocalAddr()); err != nil {
		l.Mu.Unlock()
		t.Fatal(err)
	}
	l.FlushOrWake()
}

// TestFlushOrWake: a message queued at least inlineGap after the previous
// one is written before FlushOrWake returns, in the caller's goroutine;
// messages queued closer together are left to the writer goroutine, which
// sends them all.
func TestFlushOrWake(t *testing.T) {
	rx, conn, clk, core, l := startQuiet(t)

	queue := func() { queueTo(t, l, core, rx) }
	for i := range 3 { // sparse: each written inline
		clk.Advance(inlineGap)
		queue()
		if got := conn.Stats().DatagramsWritten; got != uint64(i+1) {
			t.Fatalf("sparse message %d: %d datagrams written when FlushOrWake returned", i, got)
		}
	}
	for range 10 { // dense: the clock does not move, the writer sends
		queue()
	}
	testutil.Eventually(t, 10*time.Second, "the writer sends the dense messages", func() bool {
		return conn.Stats().DatagramsWritten == 13
	})
	if err := rx.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 13; {
		dgs, err := rx.Read()
		if err != nil {
			t.Fatalf("after %d datagrams: %v", got, err)
		}
		got += len(dgs)
	}
}

// TestFlushOrWakeSlowWrite: a sparse message whose write takes longer than
// inlineGap (a fan-out to many destinations) is written inline, but a
// message queued soon after the write ended (sooner than the write took)
// goes to the writer goroutine, so a sender falling behind hands over to
// the writer, which packs; a message after a pause is inline again.
func TestFlushOrWakeSlowWrite(t *testing.T) {
	rx, conn, clk, core, l := startQuiet(t)
	inline := 0
	l.afterInline = func() { // the write took 3 gaps
		inline++
		clk.Advance(3 * inlineGap)
	}
	queue := func() { queueTo(t, l, core, rx) }
	clk.Advance(inlineGap)
	queue()
	if inline != 1 || conn.Stats().DatagramsWritten != 1 {
		t.Fatalf("sparse message: %d inline writes, %d datagrams written", inline, conn.Stats().DatagramsWritten)
	}
	clk.Advance(inlineGap / 2) // the next message, due while the write was out
	queue()
	if inline != 1 {
		t.Fatalf("a message queued %v after a slow write ended was written inline", inlineGap/2)
	}
	testutil.Eventually(t, 10*time.Second, "the writer sends the second message and gives its batch back", func() bool {
		l.Mu.Lock()
		defer l.Mu.Unlock()
		return conn.Stats().DatagramsWritten == 2 && core.out.Idle()
	})
	clk.Advance(inlineGap) // sparse again, counted from the end of the last call
	queue()
	if inline != 2 || conn.Stats().DatagramsWritten != 3 {
		t.Fatalf("sparse again: %d inline writes, %d datagrams written", inline, conn.Stats().DatagramsWritten)
	}
}
