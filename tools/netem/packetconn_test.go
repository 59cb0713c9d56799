package netem

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
)

func listenLoopback(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// survivors replays spec's model on n datagrams of the given size that
// arrive together and returns which indices it delivers, in delivery
// order: the prediction for a PacketConn direction seeded with seed when
// the decisions do not depend on time.
func survivors(t *testing.T, spec Spec, seed int64, n, size int) []int {
	t.Helper()
	l, err := NewLink(spec, seed)
	if err != nil {
		t.Fatal(err)
	}
	l.SetByteLimit(DefaultMaxQueueBytes)
	var out []int
	pkt := make([]byte, size)
	for i := range n {
		l.EnqueueTagged(0, pkt, uint64(i))
		for {
			_, tag, ok := l.DequeueTagged(1 << 62)
			if !ok {
				break
			}
			out = append(out, int(tag))
		}
	}
	return out
}

func numbered(i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(i))
	return b
}

// readAll reads datagrams from c until want have arrived, failing after
// timeout; it returns their numbers in arrival order and the sources.
func readAll(t *testing.T, c net.PacketConn, want int, timeout time.Duration) ([]int, []net.Addr) {
	t.Helper()
	var got []int
	var from []net.Addr
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	for len(got) < want {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), want, err)
		}
		if n < 4 {
			t.Fatalf("short datagram of %d bytes", n)
		}
		got = append(got, int(binary.BigEndian.Uint32(buf)))
		from = append(from, addr)
	}
	return got, from
}

// expectNothing checks that no further datagram arrives within d.
func expectNothing(t *testing.T, c net.PacketConn, d time.Duration) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	defer c.SetReadDeadline(time.Time{})
	if n, _, err := c.ReadFrom(buf); err == nil {
		t.Fatalf("unexpected datagram %x", buf[:n])
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
}

// sendPaced writes n numbered datagrams, pausing for the reader every 64
// so that loopback's socket buffer never overflows.
func sendPaced(t *testing.T, w net.PacketConn, to net.Addr, n, size int, delivered func() int) {
	t.Helper()
	for i := range n {
		if _, err := w.WriteTo(numbered(i, size), to); err != nil {
			t.Fatal(err)
		}
		if i%64 == 63 {
			target := i + 1
			testutil.Eventually(t, 10*time.Second, "reader keeps up", func() bool { return delivered() >= target })
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPacketConnOutLossMatchesModel(t *testing.T) {
	testutil.NoLeaks(t)
	const n, size, seed = 1000, 100, 7
	spec := mustSpec(t, "loss random 30%")
	want := survivors(t, spec, seed, n, size)
	dst := listenLoopback(t)
	w, err := NewPacketConn(listenLoopback(t), spec, Spec{}, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	var mu sync.Mutex
	var got []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		g, _ := readAll(t, dst, len(want), 20*time.Second)
		mu.Lock()
		got = g
		mu.Unlock()
	}()
	// Every written datagram either is dropped or reaches dst: pace on the
	// link's dequeue count.
	sendPaced(t, w, dst.LocalAddr(), n, size, func() int {
		st := w.Stats().Out
		return int(st.Dequeued + st.Dropped)
	})
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !equalInts(got, want) {
		t.Fatalf("delivered %d datagrams, the model predicts %d; first got %v, want %v", len(got), len(want), head(got), head(want))
	}
	st := w.Stats()
	if st.Out.Dropped != uint64(n-len(want)) || st.Out.Enqueued != n || st.In != (LinkStats{}) {
		t.Fatalf("stats %+v", st)
	}
	if lost := float64(n-len(want)) / n; lost < 0.25 || lost > 0.35 {
		t.Fatalf("lost %.3f of datagrams, want about 0.30", lost)
	}
	expectNothing(t, dst, 50*time.Millisecond)
}

func head(s []int) []int { return s[:min(len(s), 10)] }

func TestPacketConnInLossMatchesModel(t *testing.T) {
	testutil.NoLeaks(t)
	const n, size, seed = 1000, 64, 11
	spec := mustSpec(t, "loss gemodel 5% 30% 80% 1%")
	want := survivors(t, spec, seed+1, n, size) // the in direction uses seed+1
	src := listenLoopback(t)
	r := Wrap(listenLoopback(t), Spec{}, spec, seed).(*PacketConn)
	defer r.Close()

	var mu sync.Mutex
	var got []int
	var from []net.Addr
	done := make(chan struct{})
	go func() {
		defer close(done)
		g, f := readAll(t, r, len(want), 20*time.Second)
		mu.Lock()
		got, from = g, f
		mu.Unlock()
	}()
	sendPaced(t, src, r.LocalAddr(), n, size, func() int {
		st := r.Stats().In
		return int(st.Enqueued)
	})
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !equalInts(got, want) {
		t.Fatalf("read %d datagrams, the model predicts %d; first got %v, want %v", len(got), len(want), head(got), head(want))
	}
	for _, a := range from {
		if a.String() != src.LocalAddr().String() {
			t.Fatalf("source %v, want %v", a, src.LocalAddr())
		}
	}
	expectNothing(t, r, 50*time.Millisecond)
}

func TestPacketConnDelayDuplicateCorrupt(t *testing.T) {
	testutil.NoLeaks(t)
	const n, size = 50, 40
	const delay = 30 * time.Millisecond
	dst := listenLoopback(t)
	w := Wrap(listenLoopback(t), mustSpec(t, "delay 30ms duplicate 100% corrupt 100%"), Spec{}, 3)
	defer w.Close()
	sent := make([]time.Time, n)
	for i := range n {
		sent[i] = time.Now()
		if _, err := w.WriteTo(numbered(i, size), dst.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2048)
	seen := make([]int, n)
	dst.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 2 * n {
		k, _, err := dst.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		arrived := time.Now()
		if k != size {
			t.Fatalf("datagram of %d bytes, want %d", k, size)
		}
		// One bit of each copy is flipped, possibly in the number: find
		// the datagram it is one bit away from.
		idx := -1
		for i := range n {
			if bitDiff(buf[:k], numbered(i, size)) == 1 {
				idx = i
				break
			}
		}
		if idx < 0 {
			t.Fatalf("datagram %x is not one bit away from any sent", buf[:k])
		}
		seen[idx]++
		if early := arrived.Sub(sent[idx]); early < delay {
			t.Fatalf("datagram %d arrived after %v, before the %v delay", idx, early, delay)
		}
	}
	for i, c := range seen {
		if c != 2 {
			t.Fatalf("datagram %d arrived %d times, want 2 (duplicate 100%%)", i, c)
		}
	}
	st := w.(*PacketConn).Stats().Out
	if st.Duplicated != n || st.Corrupted != 2*n || st.Delayed != 2*n {
		t.Fatalf("stats %+v", st)
	}
}

func bitDiff(a, b []byte) int {
	if len(a) != len(b) {
		return -1
	}
	d := 0
	for i := range a {
		for x := a[i] ^ b[i]; x != 0; x &= x - 1 {
			d++
		}
	}
	return d
}

func TestPacketConnReorders(t *testing.T) {
	testutil.NoLeaks(t)
	const n = 100
	dst := listenLoopback(t)
	// A long delay so that every datagram is written while the earlier
	// ones are still held: the ones sent at once overtake them.
	w := Wrap(listenLoopback(t), mustSpec(t, "delay 300ms reorder 25%"), Spec{}, 5)
	defer w.Close()
	for i := range n {
		if _, err := w.WriteTo(numbered(i, 8), dst.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := readAll(t, dst, n, 10*time.Second)
	reordered := w.(*PacketConn).Stats().Out.Reordered
	inversions := 0
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			inversions++
		}
	}
	if reordered < 10 || inversions == 0 {
		t.Fatalf("%d reordered by the link, %d inversions seen in %v", reordered, inversions, got)
	}
}

func TestPacketConnDeadlines(t *testing.T) {
	testutil.NoLeaks(t)
	c := Wrap(listenLoopback(t), mustSpec(t, "delay 1ms"), mustSpec(t, "delay 1ms"), 1)
	defer c.Close()
	buf := make([]byte, 64)

	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, err := c.ReadFrom(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadFrom after the deadline: %v", err)
	}

	// A deadline moved into the past releases a blocked ReadFrom.
	c.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(buf)
		errc <- err
	}()
	c.SetReadDeadline(time.Unix(1, 0))
	if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked ReadFrom after SetReadDeadline(past): %v", err)
	}

	c.SetDeadline(time.Unix(1, 0))
	if _, err := c.WriteTo(buf, c.LocalAddr()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WriteTo after the deadline: %v", err)
	}
	c.SetDeadline(time.Time{})
	if _, err := c.WriteTo([]byte("self"), c.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	n, from, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "self" || from.String() != c.LocalAddr().String() {
		t.Fatalf("ReadFrom = %q, %v, %v", buf[:n], from, err)
	}
}

func TestPacketConnCloseUnblocks(t *testing.T) {
	testutil.NoLeaks(t)
	dst := listenLoopback(t)
	c := Wrap(listenLoopback(t), mustSpec(t, "delay 10s"), mustSpec(t, "delay 10s"), 1)
	// a datagram held for 10 s must not hold up Close
	if _, err := c.WriteTo([]byte("held"), dst.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 64))
		errc <- err
	}()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadFrom on close: %v", err)
	}
	if _, err := c.WriteTo([]byte("x"), dst.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("WriteTo after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	expectNothing(t, dst, 20*time.Millisecond)
}

func TestPacketConnPassThrough(t *testing.T) {
	testutil.NoLeaks(t)
	dst := listenLoopback(t)
	raw := listenLoopback(t)
	c := Wrap(raw, mustSpec(t, "limit 10"), Spec{Seed: 3, HasSeed: true}, 1).(*PacketConn)
	defer c.Close()
	if c.out != nil || c.in != nil {
		t.Fatal("perfect specs should pass straight through")
	}
	if _, err := c.WriteTo([]byte("hi"), dst.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := dst.ReadFrom(buf); err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("%q %v", buf[:n], err)
	}
	// deadlines reach the wrapped conn
	c.SetReadDeadline(time.Unix(1, 0))
	if _, _, err := raw.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("wrapped conn's deadline not set: %v", err)
	}
}

func TestNewPacketConnRejectsBadSpec(t *testing.T) {
	bad := Spec{Loss: LossRandom, LossPercent: 150}
	for _, dir := range []string{"out", "in"} {
		out, in := Spec{}, Spec{}
		if dir == "out" {
			out = bad
		} else {
			in = bad
		}
		if _, err := NewPacketConn(nil, out, in, 1); !errors.Is(err, ErrBadValue) {
			t.Fatalf("%s: err = %v, want ErrBadValue", dir, err)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Wrap did not panic on an invalid Spec")
		}
	}()
	Wrap(nil, bad, Spec{}, 1)
}

// memConn is an in-memory PacketConn for tests that must not depend on the
// kernel: ReadFrom takes from a channel of datagrams (or errors), WriteTo
// records into a fixed buffer and signals. It allocates nothing.
type memConn struct {
	addr    net.Addr
	inbox   chan memPkt
	written chan int // length of each datagram written
	closed  chan struct{}
	once    sync.Once
	last    []byte
}

type memPkt struct {
	b   []byte
	err error
}

func newMemConn() *memConn {
	return &memConn{
		addr:    &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1},
		inbox:   make(chan memPkt, 16),
		written: make(chan int, 16),
		closed:  make(chan struct{}),
		last:    make([]byte, 2048),
	}
}

func (m *memConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-m.inbox:
		if d.err != nil {
			return 0, nil, d.err
		}
		return copy(p, d.b), m.addr, nil
	case <-m.closed:
		return 0, nil, net.ErrClosed
	}
}

func (m *memConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	copy(m.last, p)
	m.written <- len(p)
	return len(p), nil
}

func (m *memConn) Close() error                     { m.once.Do(func() { close(m.closed) }); return nil }
func (m *memConn) LocalAddr() net.Addr              { return m.addr }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

func TestPacketConnReadErrorHandedOn(t *testing.T) {
	testutil.NoLeaks(t)
	m := newMemConn()
	c := Wrap(m, Spec{}, mustSpec(t, "delay 1ms"), 1)
	defer c.Close()
	boom := errors.New("boom")
	m.inbox <- memPkt{err: boom}
	m.inbox <- memPkt{b: []byte("after")}
	buf := make([]byte, 16)
	if _, _, err := c.ReadFrom(buf); !errors.Is(err, boom) {
		t.Fatalf("first ReadFrom: %v, want the wrapped conn's error", err)
	}
	if n, from, err := c.ReadFrom(buf); err != nil || string(buf[:n]) != "after" || from != m.addr {
		t.Fatalf("second ReadFrom: %q %v %v", buf[:n], from, err)
	}
	// The wrapped conn closed under us: ReadFrom reports it, for good.
	m.Close()
	for range 2 {
		if _, _, err := c.ReadFrom(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom after the wrapped conn closed: %v", err)
		}
	}
}

func TestPacketConnNoAllocs(t *testing.T) {
	m := newMemConn()
	c := Wrap(m, mustSpec(t, "delay 1us loss 1%"), mustSpec(t, "delay 1us"), 1) // a lost inbound datagram would block ReadFrom
	defer c.Close()
	pkt := bytes.Repeat([]byte{7}, 200)
	buf := make([]byte, 2048)
	to := m.addr
	roundTrip := func() {
		if _, err := c.WriteTo(pkt, to); err != nil {
			t.Fatal(err)
		}
		m.inbox <- memPkt{b: pkt}
		if _, _, err := c.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 { // warm the pools
		roundTrip()
	}
	// Drain what the delivery goroutine wrote (some were lost).
	drain := func() {
		for {
			select {
			case <-m.written:
			default:
				return
			}
		}
	}
	if a := testing.AllocsPerRun(500, func() { roundTrip(); drain() }); a != 0 {
		t.Fatalf("%.1f allocations per datagram each way, want 0", a)
	}
}

func BenchmarkPacketConnRoundTrip(b *testing.B) {
	m := newMemConn()
	c := Wrap(m, mustSpec(b, "delay 1us"), mustSpec(b, "delay 1us"), 1)
	defer c.Close()
	pkt := bytes.Repeat([]byte{7}, 200)
	buf := make([]byte, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(2 * len(pkt)))
	for b.Loop() {
		c.WriteTo(pkt, m.addr)
		m.inbox <- memPkt{b: pkt}
		c.ReadFrom(buf)
		<-m.written
	}
}
