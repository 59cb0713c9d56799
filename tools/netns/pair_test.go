package netns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// nsInode identifies the network namespace of the calling thread.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestRunEntersAndRestores(t *testing.T) {
	p := NewPair(t, Options{})
	runtime.LockOSThread()
	root := nsInode(t, "/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	for _, s := range []Side{A, B} {
		want := nsInode(t, runDir+"/"+p.Name(s))
		if want == root {
			t.Fatalf("side %v's namespace is the test's own", s)
		}
		for range 20 { // many runs: every borrowed thread must come back
			var got uint64
			var st unix.Stat_t
			if err := p.Run(s, func() error {
				got = 0
				if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
					return err
				}
				got = st.Ino
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("inside Run(%v): namespace %d, want %d", s, got, want)
			}
		}
	}
	noThreadLeftIn(t, root)

	// The address exists on side A only.
	bindA := func() error {
		c, err := net.ListenPacket("udp4", p.Addr(A).String()+":0")
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := p.Run(A, bindA); err != nil {
		t.Fatalf("binding A's address inside A: %v", err)
	}
	if err := bindA(); err == nil {
		t.Fatal("A's address is bindable outside the namespace")
	}

	boom := errors.New("boom")
	if err := p.Run(B, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Run returned %v, want fn's error", err)
	}
	// fn ending its goroutine (as t.Fatal does) still leaves no thread in
	// the namespace: not even for a moment after Run returns, and not the
	// process's main thread, which Go parks for good rather than ending
	// when a goroutine exits locked to it.
	for range 20 {
		if err := p.Run(B, func() error { runtime.Goexit(); return nil }); !errors.Is(err, errGoexit) {
			t.Fatalf("Run with Goexit: %v", err)
		}
		noThreadLeftIn(t, root)
	}
}

// noThreadLeftIn fails unless every thread of the process is in the
// network namespace root.
func noThreadLeftIn(t *testing.T, root uint64) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		link, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil {
			continue // the thread has exited
		}
		if link != fmt.Sprintf("net:[%d]", root) {
			t.Fatalf("thread %s (process %d) is in %s, not the test's net:[%d]", task.Name(), os.Getpid(), link, root)
		}
	}
}

func TestCloseDeletesEverything(t *testing.T) {
	p := NewPair(t, Options{LossPercent: 1})
	names := []string{p.Name(A), p.Name(B)}
	if out, err := p.Command(B, "nft", "list", "table", "inet", NFTTable).CombinedOutput(); err != nil || !strings.Contains(string(out), "mod 10000 < 100 ") {
		t.Fatalf("nft table in B: %v\n%s", err, out)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, n := range names {
		if _, err := os.Stat(runDir + "/" + n); !os.IsNotExist(err) {
			t.Fatalf("namespace %s survives Close: %v", n, err)
		}
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, n := range names {
		if strings.Contains(string(out), n) {
			t.Fatalf("ip netns list still shows %s:\n%s", n, out)
		}
	}
	if err := p.Run(A, func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v", err)
	}
	if _, _, err := p.Dropped(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dropped after Close: %v", err)
	}
	if err := p.SetLoss(1, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("SetLoss after Close: %v", err)
	}
}

// within5Sigma checks that k of n events is a plausible binomial draw
// with probability pct %.
func within5Sigma(t *testing.T, what string, k, n uint64, pct float64) {
	t.Helper()
	p := pct / 100
	mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	if math.Abs(float64(k)-mean) > 5*sd {
		t.Fatalf("%s: %d of %d, want about %.0f (%.1f%%)", what, k, n, mean, pct)
	}
}

// TestKernelLossRawUDP sends plain datagrams each way across the link:
// exactly those the nft counters do not report dropped arrive.
func TestKernelLossRawUDP(t *testing.T) {
	const n = 2000
	p := NewPair(t, Options{LossPercent: 10, RevLossPercent: 30})
	var ca, cb net.PacketConn
	if err := p.Run(A, func() (err error) { ca, err = net.ListenPacket("udp4", p.Addr(A).String()+":0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if err := p.Run(B, func() (err error) { cb, err = net.ListenPacket("udp4", p.Addr(B).String()+":0"); return }); err != nil {
		t.Fatal(err)
	}
	defer cb.Close()

	// blast sends n datagrams from src to dst while a reader counts them,
	// pausing every 100 (and after the last) for the reader and the
	// counter to account for all sent, so that no socket buffer
	// overflows. Once the last is accounted for, nothing more can arrive,
	// and a deadline in the past stops the reader.
	blast := func(src, dst net.PacketConn, dropped func() uint64) uint64 {
		var got atomic.Uint64
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 64)
			for {
				if _, _, err := dst.ReadFrom(buf); err != nil {
					return // the deadline set below
				}
				got.Add(1)
			}
		}()
		base := dropped()
		msg := make([]byte, 32)
		for i := range n {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := src.WriteTo(msg, dst.LocalAddr()); err != nil {
				t.Error(err)
				break
			}
			if i%100 == 99 || i == n-1 {
				sent := uint64(i + 1)
				testutil.Eventually(t, 10*time.Second, "datagrams accounted for", func() bool {
					return got.Load() >= sent || got.Load()+dropped()-base >= sent
				})
			}
		}
		if err := dst.SetReadDeadline(time.Unix(1, 0)); err != nil {
			t.Fatal(err)
		}
		<-done
		return got.Load()
	}
	fwdDropped := func() uint64 {
		f, _, err := p.Dropped()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	revDropped := func() uint64 {
		_, r, err := p.Dropped()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	gotB := blast(ca, cb, fwdDropped)
	gotA := blast(cb, ca, revDropped)
	fwd, rev, err := p.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("A→B: %d of %d arrived, nft dropped %d; B→A: %d arrived, nft dropped %d", gotB, n, fwd, gotA, rev)
	if gotB+fwd != n || gotA+rev != n {
		t.Fatalf("arrivals and drops do not add up to %d: A→B %d + %d, B→A %d + %d", n, gotB, fwd, gotA, rev)
	}
	within5Sigma(t, "A→B dropped", fwd, n, 10)
	within5Sigma(t, "B→A dropped", rev, n, 30)
}

// TestTelewireAcrossNamespaces runs telewire's receiver in B and sender in
// A across the veth pair, clean and with 10 % loss in the kernel.
func TestTelewireAcrossNamespaces(t *testing.T) {
	for _, loss := range []float64{0, 10} {
		t.Run(fmt.Sprintf("loss%v%%", loss), func(t *testing.T) {
			testTelewire(t, loss)
		})
	}
}

func testTelewire(t *testing.T, lossPct float64) {
	const n = 3000
	p := NewPair(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var r *receiver.Receiver
	var s *sender.Sender
	if err := p.Run(B, func() (err error) {
		r, err = receiver.Listen(ctx, receiver.Config{Listen: p.Addr(B).String() + ":0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := p.Run(A, func() (err error) {
		// One message per datagram: the checks count datagrams as messages.
		s, err = sender.New(ctx, sender.Config{To: r.Addr().String(), DisablePacking: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	var mu sync.Mutex
	var delivered uint64
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			if _, err := r.Recv(ctx); err != nil {
				return
			}
			mu.Lock()
			delivered++
			mu.Unlock()
		}
	}()
	deliveredNow := func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return delivered
	}
	// The first message crosses a clean link, so the receiver knows where
	// the stream starts; only then is the loss switched on.
	if err := s.Send([]byte("first")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "first message delivered", func() bool { return deliveredNow() == 1 })
	if err := p.SetLoss(lossPct, 0); err != nil {
		t.Fatal(err)
	}
	// 20 messages every 2 ms: 10 000/s.
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	msg := make([]byte, 200)
	for i := 0; i < n; {
		<-tick.C
		for k := 0; k < 20 && i < n; k, i = k+1, i+1 {
			binary.BigEndian.PutUint64(msg, uint64(i))
			if err := s.Send(msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	const total = n + 1
	var st receiver.StreamStats
	testutil.Eventually(t, 30*time.Second, "every message received or given up", func() bool {
		rs := r.Stats()
		if len(rs.Streams) != 1 {
			return false
		}
		st = rs.Streams[0]
		return st.Received+st.Unrecovered >= total
	})
	testutil.Eventually(t, 10*time.Second, "sender measured the RTT", func() bool { return s.Stats().RTT.Samples > 0 })
	fwd, rev, err := p.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	rs := r.Stats()
	t.Logf("loss %v%%: received %d lost %d unrecovered %d rtx %d delivered %d; nft dropped %d/%d; rtt %v",
		lossPct, st.Received, st.Lost, st.Unrecovered, st.RecoveredRTX, deliveredNow(), fwd, rev,
		time.Duration(s.Stats().RTT.SmoothedNanos))
	if rs.KernelDrops != 0 || rs.QueueOverflow != 0 {
		t.Fatalf("receiver overflowed (kernel %d, queue %d): the test sends too fast", rs.KernelDrops, rs.QueueOverflow)
	}
	if rtt := s.Stats().RTT; rtt.SmoothedNanos <= 0 || rtt.MinNanos <= 0 {
		t.Fatalf("sender RTT %+v, want > 0", rtt)
	}
	if rev != 0 {
		t.Fatalf("nft dropped %d datagrams B→A with no reverse loss", rev)
	}
	if lossPct == 0 {
		if st.Lost != 0 || st.Received != total || fwd != 0 {
			t.Fatalf("clean link: received %d of %d, lost %d, nft dropped %d", st.Received, total, st.Lost, fwd)
		}
		testutil.Eventually(t, 10*time.Second, "all delivered", func() bool { return deliveredNow() == total })
		return
	}
	// The kernel dropped about 10 % of the messages (beyond them it may
	// have dropped heartbeats and retransmissions), and the receiver
	// counted each lost message.
	within5Sigma(t, "receiver's lost", st.Lost, n, lossPct)
	if fwd < st.Lost {
		t.Fatalf("receiver counted %d lost but the kernel dropped only %d", st.Lost, fwd)
	}
	if st.Received+st.Unrecovered != total || st.Unrecovered > st.Lost {
		t.Fatalf("received %d + unrecovered %d != %d sent (lost %d)", st.Received, st.Unrecovered, total, st.Lost)
	}
}

// TestKernelNetem applies a netem qdisc each way where the kernel has
// sch_netem (NewPair skips with the reason where it has not).
func TestKernelNetem(t *testing.T) {
	const delay = 20 * time.Millisecond
	p := NewPair(t, Options{Netem: "delay 20ms", RevNetem: "delay 20ms"})
	var ca, cb net.PacketConn
	if err := p.Run(A, func() (err error) { ca, err = net.ListenPacket("udp4", p.Addr(A).String()+":0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if err := p.Run(B, func() (err error) { cb, err = net.ListenPacket("udp4", p.Addr(B).String()+":0"); return }); err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	go func() { // echo
		buf := make([]byte, 64)
		for {
			k, from, err := cb.ReadFrom(buf)
			if err != nil {
				return
			}
			cb.WriteTo(buf[:k], from)
		}
	}()
	buf := make([]byte, 64)
	for range 5 {
		start := time.Now()
		if _, err := ca.WriteTo([]byte("ping"), cb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		ca.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := ca.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*delay {
			t.Fatalf("round trip %v across two 20 ms netem qdiscs", rtt)
		}
	}
}
