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

// TestFlushOrWake: a message queued at least inlineGap after the previous
// one is written before FlushOrWake returns, in the caller's goroutine;
// messages queued closer together are left to the writer goroutine, which
// sends them all.
func TestFlushOrWake(t *testing.T) {
	testutil.NoLeaks(t)
	rx, err := udpio.Listen("127.0.0.1:0", udpio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	conn, err := udpio.Listen("127.0.0.1:0", udpio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(int64(time.Second))
	core := &quiet{out: outbox.NewPair(64, 1<<16)}
	l := Start(Config{Core: core, Conn: conn, Clock: clk})
	defer l.Close()

	queue := func() {
		l.Mu.Lock()
		if err := core.out.Current().AppendRaw([]byte("telewire"), rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		l.FlushOrWake()
	}
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
