package receiver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

func listen(t *testing.T, ctx context.Context, addr string) *receiver.Receiver {
	t.Helper()
	r, err := receiver.Listen(ctx, receiver.Config{Listen: addr, ReportInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func dial(t *testing.T, ctx context.Context, cfg sender.Config) *sender.Sender {
	t.Helper()
	s, err := sender.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// transfer sends n messages and checks they arrive in order, whole, with
// their metadata.
func transfer(t *testing.T, network string) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := listen(t, ctx, network)
	s := dial(t, ctx, sender.Config{To: r.Addr().String(), Stream: 5})
	const n = 5000
	go func() {
		for i := range n {
			if err := s.Send(fmt.Appendf(nil, "message %d", i)); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
		}
	}()
	var prevSent int64
	var prevSeq uint64
	var prevIndex uint16
	for i := range n {
		m, err := r.Recv(ctx)
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if want := fmt.Sprintf("message %d", i); string(m.Payload) != want {
			t.Fatalf("got %q, want %q (loopback should neither lose nor reorder here)", m.Payload, want)
		}
		// Messages sent while the writer was busy share a datagram:
		// (Seq, Index) increases message by message.
		if i > 0 && (m.Seq < prevSeq || m.Seq == prevSeq && m.Index != prevIndex+1 || m.Seq > prevSeq && m.Index != 0) {
			t.Fatalf("message %d is (%d, %d) after (%d, %d)", i, m.Seq, m.Index, prevSeq, prevIndex)
		}
		prevSeq, prevIndex = m.Seq, m.Index
		if m.Stream != 5 || m.Session != s.Session() || m.Origin != receiver.OriginFirst ||
			m.Source != s.LocalAddr() && m.Source.Port() != s.LocalAddr().Port() {
			t.Fatalf("message %d metadata %+v", i, m)
		}
		if m.SentNanos < prevSent || m.ReceiveNanos == 0 {
			t.Fatalf("timestamps %d after %d", m.SentNanos, prevSent)
		}
		prevSent = m.SentNanos
	}
	// Feedback reaches the sender: RTT measured, receiver figures known.
	testutil.Eventually(t, 5*time.Second, "sender learns RTT and the receiver's count", func() bool {
		st := s.Stats()
		return st.RTT.Samples > 0 && len(st.Streams) == 1 && st.Streams[0].Receiver.Received == st.Packets
	})
	st := s.Stats()
	if st.RTT.SmoothedNanos <= 0 || st.RTT.MinNanos <= 0 || st.Messages != n || st.Packets > n {
		t.Fatalf("sender stats %+v", st)
	}
	rs := r.Stats()
	if len(rs.Streams) != 1 {
		t.Fatalf("receiver streams %+v", rs.Streams)
	}
	x := rs.Streams[0]
	if x.Received != st.Packets || x.Lost != 0 || x.Duplicates != 0 || rs.Malformed != 0 || x.DelaySamples != n ||
		x.Delay.P50 > x.Delay.P99 || x.Delay.P99 > x.Delay.Max {
		t.Fatalf("receiver stats %+v", x)
	}
}

func TestTransferIPv4(t *testing.T) { transfer(t, "127.0.0.1:0") }

func TestTransferIPv6(t *testing.T) {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	c.Close()
	transfer(t, "[::1]:0")
}

// TestMalformedIsCountedAndHarmless sends junk from a plain socket between
// real messages.
func TestMalformedIsCountedAndHarmless(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := listen(t, ctx, "127.0.0.1:0")
	junk, err := net.Dial("udp", r.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	for _, b := range [][]byte{{}, []byte("TW"), bytes.Repeat([]byte{0x54, 0x57, 1, 1}, 50), []byte("hello")} {
		if _, err := junk.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	s := dial(t, ctx, sender.Config{To: r.Addr().String()})
	if err := s.Send([]byte("real")); err != nil {
		t.Fatal(err)
	}
	m, err := r.Recv(ctx)
	if err != nil || string(m.Payload) != "real" {
		t.Fatalf("recv: %q %v", m.Payload, err)
	}
	testutil.Eventually(t, 5*time.Second, "4 malformed datagrams counted", func() bool { return r.Stats().Malformed == 4 })
}

// TestSenderRestart: a new session id from the same address resets the
// stream state instead of counting a huge gap or duplicates.
func TestSenderRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := listen(t, ctx, "127.0.0.1:0")
	first, err := sender.New(ctx, sender.Config{To: r.Addr().String(), FirstSeq: 1000})
	if err != nil {
		t.Fatal(err)
	}
	local := first.LocalAddr().String()
	for range 10 {
		first.Send([]byte("a"))
	}
	for range 10 {
		if _, err := r.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	first.Close()
	second := dial(t, ctx, sender.Config{To: r.Addr().String(), Local: local})
	for range 10 {
		second.Send([]byte("b"))
	}
	for range 10 {
		m, err := r.Recv(ctx)
		if err != nil || string(m.Payload) != "b" || m.Session != second.Session() {
			t.Fatalf("after restart: %+v %v", m, err)
		}
	}
	st := r.Stats()
	// Received counts datagrams: the ten messages may have been packed.
	if st.SessionRestarts != 1 || len(st.Streams) != 1 || st.Streams[0].Received == 0 || st.Streams[0].Received > 10 || st.Streams[0].Lost != 0 {
		t.Fatalf("stats after restart %+v", st)
	}
}

func TestCloseAndCancel(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := r.Recv(context.Background())
		done <- err
	}()
	cancel() // cancelling the Listen context closes the receiver
	select {
	case err := <-done:
		if !errors.Is(err, receiver.ErrClosed) {
			t.Fatalf("Recv after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked after the context was cancelled")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Recv honours its own context too.
	r2 := listen(t, context.Background(), "127.0.0.1:0")
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer rcancel()
	if _, err := r2.Recv(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Recv with expired context: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []receiver.Config{
		{},
		{Listen: "127.0.0.1:0", Window: 1000},
		{Listen: "127.0.0.1:0", ReportInterval: time.Microsecond},
		{Listen: "127.0.0.1:0", MaxSessions: -1},
		{Listen: "127.0.0.1:0", MaxMissing: -1},
		{Listen: "127.0.0.1:0", FECMaxBlocks: 1 << 20},
		{Listen: "127.0.0.1:0", KeyFile: "k", Key: make([]byte, 32)},
		{Listen: "127.0.0.1:0", KeyFile: "/nonexistent/telewire.key"},
	} {
		if _, err := receiver.Listen(context.Background(), cfg); !errors.Is(err, receiver.ErrConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	if _, err := receiver.Listen(context.Background(), receiver.Config{Listen: "256.0.0.1:0"}); err == nil {
		t.Error("bad address accepted")
	}
}

// TestTryRecv: TryRecv hands out what is waiting without blocking, reports
// false when nothing is, and does not allocate.
func TestTryRecv(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", Mode: receiver.ModeUnordered})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, ok := r.TryRecv(); ok {
		t.Fatal("TryRecv returned a message before any was sent")
	}
	s := dial(t, ctx, sender.Config{To: r.Addr().String()})
	const n = 50
	for i := range n {
		if err := s.Send(fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	got := 0
	testutil.Eventually(t, 10*time.Second, "all messages taken with TryRecv", func() bool {
		for m, ok := r.TryRecv(); ok; m, ok = r.TryRecv() {
			if want := fmt.Sprintf("m%d", got); string(m.Payload) != want {
				t.Fatalf("got %q, want %q", m.Payload, want)
			}
			got++
		}
		return got == n
	})
	if n := testing.AllocsPerRun(100, func() { r.TryRecv() }); n != 0 {
		t.Fatalf("TryRecv allocates %.1f times", n)
	}
	s.Close()
	r.Close()
	if _, ok := r.TryRecv(); ok {
		t.Fatal("TryRecv returned a message after everything was taken and the receiver closed")
	}
}

// TestCloseSendsLastReport: a receiver that closes right after the last
// message (recv --count) still tells the sender what arrived, so the sender
// does not take a complete transfer for one the receiver never reported.
// The periodic REPORT is seconds away and early REPORTs come every 64
// messages, so only the one Close sends can carry the final count.
func TestCloseSendsLastReport(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", ReportInterval: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := dial(t, ctx, sender.Config{To: r.Addr().String()})
	const n = 10
	for i := range n {
		if err := s.Send(fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		if _, err := r.Recv(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the sender hears the final count", func() bool {
		st := s.Stats()
		// Received counts DATA datagrams, which packing may have filled
		// with several messages.
		return len(st.Streams) == 1 && st.Streams[0].Messages == n && st.Streams[0].Receiver.Reported &&
			st.Streams[0].Receiver.Received == st.Streams[0].Sent
	})
}

// BenchmarkFirstMessage measures, over loopback sockets, the time from
// starting a new sender (sender.New) and sending one message to the
// receiver's Recv of it: plain, and sealed, where the handshake's round
// trip comes first (it starts with the sender; the message is held until
// it completes).
func BenchmarkFirstMessage(b *testing.B) {
	key := bytes.Repeat([]byte{7}, 32)
	for _, c := range []struct {
		name string
		key  []byte
	}{{"plain", nil}, {"sealed", key}} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			// Every iteration is a new sender: a new session.
			r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", Key: c.key, Mode: receiver.ModeUnordered, MaxSessions: 1 << 16})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			for b.Loop() {
				s, err := sender.New(ctx, sender.Config{To: r.Addr().String(), Key: c.key})
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Send([]byte("first")); err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err = r.Recv(rctx)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				s.Close()
				// Stay under the receiver's 64 key agreements a second,
				// or the benchmark measures that limit.
				time.Sleep(20 * time.Millisecond)
				b.StartTimer()
			}
		})
	}
}
