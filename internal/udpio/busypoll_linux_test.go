package udpio

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/telewire/telewire/internal/testutil"
)

// spinClock is a fake monotonic clock for the busy-poll deadline. Each
// reading returns at(i) for the i-th call (from 0) and, when i reaches
// signalAt, closes reached, so that a test knows how far the spin got
// without sleeping.
type spinClock struct {
	calls    atomic.Int64
	at       func(i int64) int64
	signalAt int64
	reached  chan struct{}
	once     sync.Once
}

func newSpinClock(signalAt int64, at func(int64) int64) *spinClock {
	return &spinClock{at: at, signalAt: signalAt, reached: make(chan struct{})}
}

func (s *spinClock) now() int64 {
	i := s.calls.Add(1) - 1
	if i >= s.signalAt {
		s.once.Do(func() { close(s.reached) })
	}
	return s.at(i)
}

func (s *spinClock) wait(t *testing.T) {
	t.Helper()
	select {
	case <-s.reached:
	case <-time.After(safetyTimeout):
		t.Fatalf("the spin never read the clock %d times", s.signalAt+1)
	}
}

type readResult struct {
	dgs []Datagram
	err error
}

// readAsync runs one Read on its own goroutine; the result carries copies.
func readAsync(c *Conn) chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		dgs, err := c.Read()
		var cp []Datagram
		for _, d := range dgs {
			cp = append(cp, Datagram{Data: append([]byte(nil), d.Data...), Addr: d.Addr})
		}
		ch <- readResult{cp, err}
	}()
	return ch
}

func awaitRead(t *testing.T, ch chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(safetyTimeout):
		t.Fatal("Read did not return")
	}
	return readResult{}
}

// TestBusyPollSpinHit: Read spins over empty polls (the clock never
// reaches the deadline) and returns the datagram a poll finds, without
// blocking.
func TestBusyPollSpinHit(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			rx := listen(t, "127.0.0.1:0", Config{NoBatch: m.noBatch, BatchSize: 8, MaxDatagram: 64, BusyPoll: MaxBusyPoll})
			tx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
			// Call 0 sets the deadline; each empty poll reads the clock
			// once more, so call 3 means three polls found nothing.
			clk := newSpinClock(3, func(int64) int64 { return 0 })
			rx.now = clk.now
			ch := readAsync(rx)
			clk.wait(t)
			if err := tx.WriteTo([]byte("spun"), rx.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			r := awaitRead(t, ch)
			if r.err != nil || len(r.dgs) != 1 || string(r.dgs[0].Data) != "spun" || r.dgs[0].Addr != tx.LocalAddr() {
				t.Fatalf("Read = %v, %v", r.dgs, r.err)
			}
			st := rx.Stats()
			if st.BusyPollHits != 1 || st.BusyPollTimeouts != 0 || st.BusyPollEmpty < 3 {
				t.Errorf("hits %d, timeouts %d, empty polls %d; want 1, 0, >= 3", st.BusyPollHits, st.BusyPollTimeouts, st.BusyPollEmpty)
			}
		})
	}
}

// TestBusyPollDeadline: a read deadline set in the past while Read spins
// ends the spin (whose own clock never runs out here) and the Read, with
// os.ErrDeadlineExceeded; that is how a spinning reader is interrupted.
func TestBusyPollDeadline(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			rx := listen(t, "127.0.0.1:0", Config{NoBatch: m.noBatch, BatchSize: 8, MaxDatagram: 64, BusyPoll: MaxBusyPoll})
			clk := newSpinClock(3, func(int64) int64 { return 0 })
			rx.now = clk.now
			ch := readAsync(rx)
			clk.wait(t) // spinning: three empty polls
			if err := rx.SetReadDeadline(time.Unix(1, 0)); err != nil {
				t.Fatal(err)
			}
			if r := awaitRead(t, ch); !errors.Is(r.err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read = %v, %v; want os.ErrDeadlineExceeded", r.dgs, r.err)
			}
			if st := rx.Stats(); st.BusyPollTimeouts != 1 {
				t.Errorf("BusyPollTimeouts = %d, want the interrupted spin counted once", st.BusyPollTimeouts)
			}
		})
	}
}

// TestBusyPollFallback: when the spin time passes without a datagram,
// Read blocks in the netpoller and still returns what arrives later.
func TestBusyPollFallback(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			const spin = 50 * time.Microsecond
			rx := listen(t, "127.0.0.1:0", Config{NoBatch: m.noBatch, BatchSize: 8, MaxDatagram: 64, BusyPoll: spin})
			tx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
			// Call 0 sets the deadline at 1000+spin; call 1, after the first
			// empty poll, is past it.
			clk := newSpinClock(1, func(i int64) int64 { return 1000 + i*int64(2*spin) })
			rx.now = clk.now
			ch := readAsync(rx)
			clk.wait(t)
			if err := tx.WriteTo([]byte("late"), rx.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			r := awaitRead(t, ch)
			if r.err != nil || len(r.dgs) != 1 || string(r.dgs[0].Data) != "late" {
				t.Fatalf("Read = %v, %v", r.dgs, r.err)
			}
			st := rx.Stats()
			if st.BusyPollHits != 0 || st.BusyPollTimeouts != 1 || st.BusyPollEmpty != 1 {
				t.Errorf("hits %d, timeouts %d, empty polls %d; want 0, 1, 1", st.BusyPollHits, st.BusyPollTimeouts, st.BusyPollEmpty)
			}
			// Already queued: the next Read's first poll finds it.
			if err := tx.WriteTo([]byte("queued"), rx.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			if r := awaitRead(t, readAsync(rx)); r.err != nil || string(r.dgs[0].Data) != "queued" {
				t.Fatalf("second Read = %v, %v", r.dgs, r.err)
			}
			if st := rx.Stats(); st.BusyPollHits != 1 || st.BusyPollTimeouts != 1 {
				t.Errorf("after a queued datagram: hits %d, timeouts %d; want 1, 1", st.BusyPollHits, st.BusyPollTimeouts)
			}
		})
	}
}

// TestBusyPollClose: Close ends a spin that would otherwise go on (the
// clock never moves), and nothing is left running.
func TestBusyPollClose(t *testing.T) {
	testutil.NoLeaks(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			rx, err := Listen("127.0.0.1:0", Config{NoBatch: m.noBatch, BatchSize: 8, MaxDatagram: 64, BusyPoll: MaxBusyPoll})
			if err != nil {
				t.Fatal(err)
			}
			clk := newSpinClock(5, func(int64) int64 { return 0 })
			rx.now = clk.now
			ch := readAsync(rx)
			clk.wait(t)
			if err := rx.Close(); err != nil {
				t.Fatal(err)
			}
			if r := awaitRead(t, ch); !errors.Is(r.err, net.ErrClosed) {
				t.Fatalf("Read after Close: %v, want net.ErrClosed", r.err)
			}
			if st := rx.Stats(); st.BusyPollHits != 0 || st.BusyPollEmpty < 5 {
				t.Errorf("hits %d, empty polls %d", st.BusyPollHits, st.BusyPollEmpty)
			}
		})
	}
}

// TestBusyPollOff: without BusyPoll nothing polls and the counters stay 0.
func TestBusyPollOff(t *testing.T) {
	rx := listen(t, "127.0.0.1:0", Config{BatchSize: 8, MaxDatagram: 64})
	tx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
	if rx.busyPoll != 0 || rx.pollFn != nil {
		t.Fatal("busy polling set up without Config.BusyPoll")
	}
	if err := tx.WriteTo([]byte("x"), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	readN(t, rx, 1)
	if st := rx.Stats(); st.BusyPollHits+st.BusyPollTimeouts+st.BusyPollEmpty != 0 {
		t.Errorf("busy-poll counters %+v without BusyPoll", st)
	}
}

// TestBusyPollAllocs: spinning allocates nothing, neither the empty polls
// nor a read the spin found (on the NoBatch path, which allocates nothing
// itself).
func TestBusyPollAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	rx := listen(t, "127.0.0.1:0", Config{NoBatch: true, MaxDatagram: 64, BusyPoll: MaxBusyPoll})
	tx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
	if a := testing.AllocsPerRun(100, func() {
		if err := rx.rc.Control(rx.pollFn); err != nil || rx.pollReady {
			t.Fatalf("poll of an empty socket: ready %v, %v", rx.pollReady, err)
		}
	}); a != 0 {
		t.Errorf("empty poll: %v allocations, want 0", a)
	}
	msg := []byte("hello")
	if err := rx.SetReadDeadline(time.Now().Add(safetyTimeout)); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() {
		if err := tx.WriteTo(msg, rx.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if dgs, err := rx.Read(); err != nil || len(dgs) != 1 {
			t.Fatalf("Read = %v, %v", dgs, err)
		}
	}); a != 0 {
		t.Errorf("write and busy-polled read: %v allocations, want 0", a)
	}
	if st := rx.Stats(); st.BusyPollHits < 100 {
		t.Errorf("BusyPollHits = %d, want every read found by the spin", st.BusyPollHits)
	}
}

// TestLoopbackHasNoNAPI backs the claim in the package doc that the
// kernel's SO_BUSY_POLL cannot help on loopback: busy polling spins on the
// NAPI context a socket's datagrams arrived through (SO_INCOMING_NAPI_ID),
// and a socket fed over loopback has none (0).
func TestLoopbackHasNoNAPI(t *testing.T) {
	rx := listen(t, "127.0.0.1:0", Config{BatchSize: 8, MaxDatagram: 64})
	tx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
	if err := tx.WriteTo([]byte("x"), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	readN(t, rx, 1)
	id, serr := -1, error(nil)
	if rx.d != nil {
		id, serr = unix.GetsockoptInt(rx.d.fd, unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID)
	} else {
		rc, err := rx.uc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Control(func(fd uintptr) {
			id, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if serr != nil {
		t.Skipf("SO_INCOMING_NAPI_ID unsupported: %v", serr)
	}
	if id != 0 {
		t.Errorf("loopback datagram arrived through NAPI context %d; SO_BUSY_POLL could matter here", id)
	}
}
