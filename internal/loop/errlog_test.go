package loop

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/internal/udpio"
)

func TestErrLimiter(t *testing.T) {
	var e errLimiter
	iv := int64(errorLogInterval)
	steps := []struct {
		now        int64
		ok         bool
		suppressed uint64
	}{
		{now: 5, ok: true},                    // the first failure is logged
		{now: 6}, {now: 7}, {now: 5 + iv - 1}, // then nothing for an interval
		{now: 5 + iv, ok: true, suppressed: 3},   // then one line, with the count
		{now: 5 + 3*iv, ok: true, suppressed: 0}, // a quiet spell: logged at once
		{now: 5 + 3*iv + 1},
	}
	for i, s := range steps {
		ok, n := e.allow(s.now)
		if ok != s.ok || n != s.suppressed {
			t.Fatalf("step %d at %d: allow = %v, %d; want %v, %d", i, s.now, ok, n, s.ok, s.suppressed)
		}
	}
}

// syncBuffer is a bytes.Buffer the loop's goroutines may log into while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns how many log lines contain s.
func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chatty is a Core that queues one datagram to dst on every other Tick
// and asks to be ticked again a millisecond (of its clock) later. (A core
// that queued on every Tick would keep the writer from ever finding its
// outbox empty, which is when it checks for Close.)
type chatty struct {
	out  *outbox.Pair
	dst  netip.AddrPort
	clk  clock.Clock
	skip bool
}

func (c *chatty) Handle([]byte, netip.AddrPort, int64) {}
func (c *chatty) Outbox() *outbox.Pair                 { return c.out }
func (c *chatty) NextTimer() (int64, bool)             { return c.clk.Now() + int64(time.Millisecond), true }
func (c *chatty) Tick(int64) {
	if c.skip = !c.skip; c.skip {
		_ = c.out.Current().AppendRaw([]byte("telewire test datagram"), c.dst)
	}
}

// TestPeerDownLoggedOncePerInterval: the peer's port is closed, so the
// kernel answers with ICMP port unreachable and the (connected) socket
// reports ECONNREFUSED on writes and reads. The loop keeps writing, counts
// every failure, and logs each kind at most once per errorLogInterval of
// its clock, with the number left out.
func TestPeerDownLoggedOncePerInterval(t *testing.T) {
	testutil.NoLeaks(t)
	// A port with nothing behind it: bound, noted, closed.
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dead := probe.LocalAddr().(*net.UDPAddr).AddrPort()
	probe.Close()
	// Linux reports ICMP errors only on connected UDP sockets (or with
	// IP_RECVERR), so the test connects its socket to the dead port.
	uc, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dead))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := udpio.New(uc, udpio.Config{})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(int64(time.Second))
	var logs syncBuffer
	l := Start(Config{
		Core:   &chatty{out: outbox.NewPair(64, 1<<16), dst: dead, clk: clk},
		Conn:   conn,
		Clock:  clk,
		Logger: zerolog.New(&logs),
	})
	defer l.Close()

	failures := func() uint64 { return l.WriteErrors() + l.ReadErrors() }
	testutil.Eventually(t, 10*time.Second, "socket errors from a dead peer", func() bool { return failures() >= 20 })
	// However many failures, one interval of the clock: one line each.
	if w, r := logs.count(`"socket write failed"`), logs.count(`"socket read failed"`); w > 1 || r > 1 || w+r == 0 {
		t.Fatalf("%d write and %d read failures gave %d and %d log lines in one interval:\n%s",
			l.WriteErrors(), l.ReadErrors(), w, r, logs.String())
	}
	before := failures()
	clk.Advance(errorLogInterval)
	testutil.Eventually(t, 10*time.Second, "more socket errors", func() bool { return failures() >= before+20 })
	w, r := logs.count(`"socket write failed"`), logs.count(`"socket read failed"`)
	if w > 2 || r > 2 || w+r < 2 {
		t.Fatalf("after a second interval: %d write and %d read lines:\n%s", w, r, logs.String())
	}
	if !strings.Contains(logs.String(), `"suppressed":`) || !strings.Contains(logs.String(), "connection refused") {
		t.Fatalf("log lines lack the error or the suppressed count:\n%s", logs.String())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
