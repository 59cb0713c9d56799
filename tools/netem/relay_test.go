package netem

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/internal/udpio"
)

// echoServer echoes datagrams on loopback until closed; done is closed
// when its goroutine has exited.
func echoServer(t *testing.T) (addr string, stop func()) {
	t.Helper()
	return echoServerOn(t, net.IPv4(127, 0, 0, 1))
}

// echoServerOn is echoServer bound to ip.
func echoServerOn(t *testing.T, ip net.IP) (addr string, stop func()) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadBuffer(4 << 20); err != nil { // absorbs the tests' bursts
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return c.LocalAddr().String(), func() { c.Close(); <-done }
}

func startRelay(t *testing.T, cfg RelayConfig) (*Relay, func()) {
	t.Helper()
	r, err := NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	return r, sync.OnceFunc(func() { // a test may stop early and defer it too
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func dialRelay(t *testing.T, r *Relay) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRelayLossless(t *testing.T) {
	before := runtime.NumGoroutine()
	echo, stopEcho := echoServer(t)
	r, stop := startRelay(t, RelayConfig{
		Listen: "127.0.0.1:0", To: echo,
		Fwd: mustSpec(t, "delay 5ms 1ms"), Rev: mustSpec(t, "delay 1ms"),
	})
	c := dialRelay(t, r)
	const n, window = 2000, 64
	seen := make([]bool, n)
	got := 0
	send := func(i int) {
		var b [64]byte
		binary.BigEndian.PutUint32(b[:], uint32(i))
		if _, err := c.Write(b[:]); err != nil {
			t.Fatal(err)
		}
	}
	sent := 0
	for ; sent < window; sent++ {
		send(sent)
	}
	buf := make([]byte, 2048)
	for got < n {
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // failure guard only
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d echoes: %v (stats %+v)", got, n, err, r.Stats())
		}
		i := int(binary.BigEndian.Uint32(buf[:k]))
		if k != 64 || i >= n || seen[i] {
			t.Fatalf("bad or duplicate echo %d (%d bytes)", i, k)
		}
		seen[i] = true
		got++
		if sent < n {
			send(sent)
			sent++
		}
	}
	// Read the counters once the relay has stopped: a delivery goroutine
	// counts a datagram after its write returns, which may be after the
	// echo has already reached us.
	stop()
	stopEcho()
	st := r.Stats()
	if st.Fwd.Forwarded != n || st.Rev.Forwarded != n || st.Fwd.Dropped != 0 || st.Clients != 1 {
		t.Fatalf("stats %+v", st)
	}
	med, mx := r.DeliveryLateness()
	// 64 datagrams in flight arrive in bursts, so this includes queueing
	// behind earlier writes; TestRelayDeliveryJitter measures the timers.
	t.Logf("burst delivery |actual-scheduled|: median %v, max %v", med, mx)
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

func TestRelaySeededLoss(t *testing.T) {
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	const seed = 99
	fwd := mustSpec(t, "loss 10%")
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo, Fwd: fwd, Seed: seed})
	defer stop()
	c := dialRelay(t, r)
	// The first client's forward link is seeded with Seed+1, so an
	// offline Link predicts every decision; stop-and-wait on the
	// predicted survivors keeps the socket buffers from overflowing.
	oracle, _ := NewLink(fwd, seed+1)
	const n = 5000
	lost := 0
	buf := make([]byte, 64)
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint32(b[:], uint32(i))
		before := oracle.Stats().Dropped
		oracle.Enqueue(0, b[:])
		if oracle.Stats().Dropped != before {
			lost++
		}
		oracle.Dequeue(0)
		if _, err := c.Write(b[:]); err != nil {
			t.Fatal(err)
		}
		if oracle.Stats().Dropped != before {
			continue
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if got := binary.BigEndian.Uint32(buf[:k]); got != uint32(i) {
			t.Fatalf("got echo %d, want %d (relay diverged from its seed)", got, i)
		}
	}
	rate := float64(lost) / n
	if rate < 0.09 || rate > 0.11 {
		t.Fatalf("loss %.4f outside [9%%, 11%%]", rate)
	}
	if st := r.Stats(); st.Fwd.Dropped != uint64(lost) || st.Fwd.Received != n {
		t.Fatalf("stats %+v, lost %d", st, lost)
	}
}

func TestRelayClientsBoundedAndExpire(t *testing.T) {
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo, MaxClients: 2, IdleTimeout: 50 * time.Millisecond})
	defer stop()
	buf := make([]byte, 16)
	var conns []*net.UDPConn
	for range 3 {
		conns = append(conns, dialRelay(t, r))
	}
	for i, c := range conns {
		c.Write([]byte{byte(i)})
		if i < 2 {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("client %d: %v", i, err)
			}
		}
	}
	// the third client is refused; once the first two expire it is served
	deadline := time.Now().Add(5 * time.Second)
	for {
		conns[2].Write([]byte{2})
		conns[2].SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := conns[2].Read(buf); err == nil {
			break
		} else if !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().After(deadline) {
			t.Fatalf("third client never served: %v (stats %+v)", err, r.Stats())
		}
	}
	// A deliverer counts a datagram forwarded after its write returns,
	// which may be after the echo is back: wait for the count.
	testutil.Eventually(t, 5*time.Second, "a refused client and 3 datagrams forwarded", func() bool {
		st := r.Stats()
		return st.Rejected > 0 && st.Fwd.Forwarded >= 3
	})
}

func TestNewRelayErrors(t *testing.T) {
	if _, err := NewRelay(RelayConfig{Listen: "127.0.0.1:0", To: "127.0.0.1:9", Fwd: Spec{LossPercent: 200}}); !errors.Is(err, ErrRelayConfig) {
		t.Errorf("bad spec: %v", err)
	}
	if _, err := NewRelay(RelayConfig{Listen: "127.0.0.1:0", To: "no-such-host.invalid:x"}); !errors.Is(err, ErrRelayConfig) {
		t.Errorf("bad To: %v", err)
	}
	if _, err := NewRelay(RelayConfig{Listen: "127.0.0.1:0", To: "127.0.0.1:9", MaxClients: -1}); !errors.Is(err, ErrRelayConfig) {
		t.Errorf("negative MaxClients: %v", err)
	}
}

// TestRelayDeliveryJitter measures how closely the relay keeps the model's
// schedule for a paced stream (one datagram a millisecond, as telemetry
// sends): the median |actual − scheduled| is reported and bounded loosely,
// since the machine may be loaded.
func TestRelayDeliveryJitter(t *testing.T) {
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo,
		Fwd: mustSpec(t, "delay 5ms 1ms"), Rev: mustSpec(t, "delay 5ms 1ms")})
	defer stop()
	c := dialRelay(t, r)
	const n = 500
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64)
		for range n {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	tick := time.NewTicker(time.Millisecond) // paces the traffic
	defer tick.Stop()
	for range n {
		<-tick.C
		if _, err := c.Write(make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	med, mx := r.DeliveryLateness()
	t.Logf("paced stream, %d datagrams each way: delivery |actual-scheduled| median %v, max %v", n, med, mx)
	if med > 5*time.Millisecond { // loose: the machine may be loaded or under -race
		t.Errorf("median delivery lateness %v", med)
	}
}

// TestRelayBurstOfLargeDatagrams sends a burst of datagrams whose bytes
// exceed one delivery batch's arena, of sizes from 0 to the largest IPv4
// UDP payload, and checks that each comes back whole and in order (the
// links have no delay, jitter or reordering, so order is kept).
func TestRelayBurstOfLargeDatagrams(t *testing.T) {
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo})
	defer stop()
	c := dialRelay(t, r)
	// the burst must not overflow this socket's own buffer
	if err := c.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 200, 1500, 60000, 65507, 65507, 65507, 9000, 65507, 64, 0, 40000}
	payload := func(i, n int) []byte {
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(i*31 + j*7)
		}
		return b
	}
	for i, n := range sizes {
		if _, err := c.Write(payload(i, n)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 65536)
	for i, n := range sizes {
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // failure guard only
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("echo %d of %d: %v (stats %+v)", i, len(sizes), err, r.Stats())
		}
		if !bytes.Equal(buf[:k], payload(i, n)) {
			t.Fatalf("echo %d: %d bytes, want %d bytes as sent", i, k, n)
		}
	}
	stop()
	st := r.Stats()
	if n := uint64(len(sizes)); st.Fwd.Forwarded != n || st.Rev.Forwarded != n || st.Fwd.WriteErrs+st.Rev.WriteErrs != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRelayRunsOfEqualDatagrams: a run of equal-sized datagrams (what the
// relay coalesces into GSO sends) reaches a plain socket as the same
// datagrams, in order, byte for byte, with GSO and without.
func TestRelayRunsOfEqualDatagrams(t *testing.T) {
	for _, noGSO := range []bool{false, true} {
		echo, stopEcho := echoServer(t)
		r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo, NoGSO: noGSO})
		c := dialRelay(t, r)
		if err := c.SetReadBuffer(4 << 20); err != nil { // the echoes come back as a burst
			t.Fatal(err)
		}
		const n = 100
		msg := func(i int) []byte {
			b := bytes.Repeat([]byte{byte(i)}, 200)
			b[0], b[1] = byte(i>>8), byte(i)
			return b
		}
		for i := range n {
			if _, err := c.Write(msg(i)); err != nil {
				t.Fatal(err)
			}
		}
		buf := make([]byte, 65536)
		for i := range n {
			c.SetReadDeadline(time.Now().Add(5 * time.Second)) // failure guard only
			k, err := c.Read(buf)
			if err != nil {
				t.Fatalf("NoGSO %v: echo %d of %d: %v (stats %+v)", noGSO, i, n, err, r.Stats())
			}
			if !bytes.Equal(buf[:k], msg(i)) {
				t.Fatalf("NoGSO %v: echo %d: %d bytes starting %x, want message %d", noGSO, i, k, buf[:min(k, 2)], i)
			}
		}
		stop()
		stopEcho()
	}
}

// TestRelayStrayReplies checks that the upstream socket, which is not
// connected, passes back only datagrams from To.
func TestRelayStrayReplies(t *testing.T) {
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo})
	defer stop()
	c := dialRelay(t, r)
	buf := make([]byte, 64)
	roundTrip := func(want byte) {
		t.Helper()
		if _, err := c.Write([]byte{want}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // failure guard only
		if k, err := c.Read(buf); err != nil || k != 1 || buf[0] != want {
			t.Fatalf("echo: %v %v, want [%d]", buf[:k], err, want)
		}
	}
	roundTrip(1)
	r.mu.Lock()
	var up netip.AddrPort
	for _, cl := range r.clients {
		up = cl.up.LocalAddr()
	}
	r.mu.Unlock()
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	for range 3 {
		if _, err := stranger.WriteToUDPAddrPort([]byte{99}, up); err != nil {
			t.Fatal(err)
		}
	}
	// The strays were sent before this round trip's echo, and one socket
	// reads in order: the echo arriving means they were read and dropped.
	roundTrip(2)
	if st := r.Stats(); st.Stray != 3 || st.Rev.Received != 2 {
		t.Fatalf("stats %+v, want 3 strays and 2 replies", st)
	}
}

// TestRelayIPv6 runs the relay on IPv6 loopback: the upstream socket is
// bound in To's family and recognises its replies.
func TestRelayIPv6(t *testing.T) {
	echo, stopEcho := echoServerOn(t, net.IPv6loopback)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "[::1]:0", To: echo})
	defer stop()
	c := dialRelay(t, r)
	buf := make([]byte, 64)
	for i := range 10 {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // failure guard only
		if k, err := c.Read(buf); err != nil || k != 1 || buf[0] != byte(i) {
			t.Fatalf("echo %d: %v %v", i, buf[:k], err)
		}
	}
	stop() // count every write (see TestRelayLimitDropped)
	if st := r.Stats(); st.Stray != 0 || st.Rev.Forwarded != 10 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRelayForwardNoAllocs pushes batches of datagrams through both
// directions of a warmed-up relay and counts the process's allocations:
// the client's batched writes and reads, the echo server's, and the
// relay's reading, queueing and delivery.
func TestRelayForwardNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo,
		Fwd: mustSpec(t, "delay 10us"), Rev: mustSpec(t, "delay 10us")})
	defer stop()
	c, err := udpio.Listen("127.0.0.1:0", udpio.Config{NoGSO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const batch = 32
	payload := bytes.Repeat([]byte{5}, 200)
	dgs := make([]udpio.Datagram, batch)
	for i := range dgs {
		dgs[i] = udpio.Datagram{Data: payload, Addr: r.Addr()}
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second)) // failure guard only
	var failed error
	roundTrip := func() {
		if _, err := c.WriteBatch(dgs); err != nil {
			failed = err
			return
		}
		for got := 0; got < batch; {
			in, err := c.Read()
			if err != nil {
				failed = err
				return
			}
			got += len(in)
		}
	}
	for range 200 { // warm the pools and caches
		roundTrip()
	}
	a := testing.AllocsPerRun(200, roundTrip)
	if failed != nil {
		t.Fatalf("round trip: %v (stats %+v)", failed, r.Stats())
	}
	if a != 0 {
		t.Fatalf("%.1f allocations per round trip of %d datagrams, want 0", a, batch)
	}
}

// TestRelayLimitDropped fills a link's queue: with a 500 ms delay and a
// limit of 10 packets, a burst of 30 keeps the first 10 and drops the
// rest as queue-full drops, which Stats tells apart from model losses.
func TestRelayLimitDropped(t *testing.T) {
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo, Fwd: mustSpec(t, "delay 500ms limit 10")})
	defer stop()
	c := dialRelay(t, r)
	const burst, limit = 30, 10
	for i := range burst {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 8)
	for i := range limit {
		c.SetReadDeadline(time.Now().Add(5 * time.Second)) // failure guard only
		if k, err := c.Read(buf); err != nil || k != 1 || buf[0] != byte(i) {
			t.Fatalf("echo %d: %v %v", i, buf[:k], err)
		}
	}
	// The delivery goroutine counts a datagram after its write returns,
	// which may be after the echo reached us: stop the relay first.
	stop()
	st := r.Stats()
	if st.Fwd.Received != burst || st.Fwd.Dropped != burst-limit || st.Fwd.LimitDropped != burst-limit || st.Fwd.Forwarded != limit {
		t.Fatalf("stats %+v, want %d received, %d limit-dropped", st, burst, burst-limit)
	}
}
