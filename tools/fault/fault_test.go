package fault

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// wait is the timeout of every Eventually here: generous, because the
// tests share two cores with other work and may run under -race.
const wait = 30 * time.Second

const payloadSize = 64

// payload returns message i's payload: its index, then bytes derived from
// it, so that a delivery can be checked byte for byte.
func payload(i uint64) []byte {
	b := make([]byte, payloadSize)
	binary.BigEndian.PutUint64(b, i)
	x := i*0x9e3779b97f4a7c15 + 1
	for j := 8; j < len(b); j++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[j] = byte(x)
	}
	return b
}

// delivery is what the test keeps of a delivered message.
type delivery struct {
	session uint64
	seq     uint64
	index   uint64 // from the payload; ^0 if the payload is not one of ours
}

// collector reads a receiver until it closes.
type collector struct {
	mu   sync.Mutex
	got  []delivery
	done chan struct{}
}

// collect starts a goroutine that records r's deliveries. Close r to end
// it; the test's cleanup waits for it.
func collect(t *testing.T, r *receiver.Receiver) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			m, err := r.Recv(context.Background())
			if err != nil {
				return // ErrClosed
			}
			d := delivery{session: m.Session, seq: m.Seq, index: ^uint64(0)}
			if len(m.Payload) == payloadSize {
				if i := binary.BigEndian.Uint64(m.Payload); bytes.Equal(m.Payload, payload(i)) {
					d.index = i
				}
			}
			c.mu.Lock()
			c.got = append(c.got, d)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = r.Close()
		<-c.done
	})
	return c
}

// snapshot returns the deliveries so far.
func (c *collector) snapshot() []delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]delivery(nil), c.got...)
}

// has reports whether the message with index i has been delivered.
func (c *collector) has(i uint64) bool {
	for _, d := range c.snapshot() {
		if d.index == i {
			return true
		}
	}
	return false
}

// checkRun fails unless got is exactly the messages from..to-1, in order,
// once each, byte-exact.
func checkRun(t *testing.T, got []delivery, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from {
		t.Fatalf("delivered %d messages, want %d (%d to %d): %v", len(got), to-from, from, to-1, brief(got))
	}
	for k, d := range got {
		if d.index != from+uint64(k) {
			t.Fatalf("delivery %d is message %d, want %d: %v", k, int64(d.index), from+uint64(k), brief(got))
		}
	}
}

// checkTail fails unless got is a run of consecutive messages ending
// with to-1 and starting no earlier than lo and no later than hi: a
// receiver that joined a running stream delivers from the first message
// it heard (which may have been in flight when it started) to the end, in
// order, once each. It returns where the run starts.
func checkTail(t *testing.T, got []delivery, lo, hi, to uint64) uint64 {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("nothing delivered")
	}
	from := got[0].index
	if from < lo || from > hi || from >= to {
		t.Fatalf("delivery starts at message %d, want one in %d..%d", int64(from), lo, hi)
	}
	checkRun(t, got, from, to)
	return from
}

// brief formats deliveries' indexes compactly for a failure message.
func brief(ds []delivery) string {
	var b strings.Builder
	for k, d := range ds {
		if k == 20 {
			b.WriteString(" …")
			break
		}
		if k > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(fmtIndex(d.index))
	}
	return b.String()
}

func fmtIndex(i uint64) string {
	if i == ^uint64(0) {
		return "?"
	}
	var buf [20]byte
	n := len(buf)
	for {
		n--
		buf[n] = byte('0' + i%10)
		if i /= 10; i == 0 {
			return string(buf[n:])
		}
	}
}

// sendRange sends messages from..to-1 on s from a goroutine and waits
// (without a fixed sleep) for the last Send to return: Send must neither
// fail nor block forever, whatever the receiver's state.
func sendRange(t *testing.T, s *sender.Sender, from, to uint64) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for i := from; i < to; i++ {
			if err := s.Send(payload(i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var err error
	testutil.Eventually(t, wait, "Send returned for every message", func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	})
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// freePort returns a loopback UDP address with nothing listening on it.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return ap
}

// syncBuffer is a log sink the sender's goroutines write while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newSender(t *testing.T, cfg sender.Config) *sender.Sender {
	t.Helper()
	s, err := sender.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func listen(t *testing.T, cfg receiver.Config) *receiver.Receiver {
	t.Helper()
	r, err := receiver.Listen(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r // collect registers the Close
}

// TestReceiverDown: nothing listens at the sender's destination, so every
// datagram draws an ICMP port unreachable. The sender keeps going: Send
// neither fails nor blocks, everything is written, the condition is
// logged at most once (loop.errorLogInterval is 10 s), and when a receiver
// appears on that port it gets the stream from then on, without asking for
// what was sent before it existed.
//
// On Linux the sender's socket is unconnected and the kernel does not
// report ICMP errors on it (no IP_RECVERR), so WriteErrors stays 0 here;
// internal/loop's TestPeerDownLoggedOncePerInterval covers a socket that
// does see ECONNREFUSED.
func TestReceiverDown(t *testing.T) {
	testutil.NoLeaks(t)
	dead := freePort(t)
	var logs syncBuffer
	// One datagram per message: the checks below count datagrams.
	s := newSender(t, sender.Config{To: dead.String(), Logger: zerolog.New(&logs), DisablePacking: true})
	const n = 2000
	sendRange(t, s, 0, n)
	testutil.Eventually(t, wait, "the writer drained the queue into the socket", func() bool {
		return s.Stats().DatagramsSent >= n
	})
	if c := strings.Count(logs.String(), `"socket write failed"`) + strings.Count(logs.String(), `"socket read failed"`); c > 2 {
		t.Fatalf("receiver down logged %d socket failures within one interval:\n%s", c, logs.String())
	}
	if st := s.Stats(); st.Packets != n || st.WriteErrors > st.DatagramsSent {
		t.Fatalf("sender stats after sending to nobody: %d packets, %d datagrams, %d write errors", st.Packets, st.DatagramsSent, st.WriteErrors)
	}

	// The receiver comes up on that port; the sender was alive all along.
	r := listen(t, receiver.Config{Listen: dead.String()})
	got := collect(t, r)
	sendRange(t, s, n, n+500)
	testutil.Eventually(t, wait, "the new receiver got the last message", func() bool { return got.has(n + 499) })
	checkTail(t, got.snapshot(), 0, n, n+500)
	rs, ss := r.Stats(), s.Stats()
	if rs.NACKs != 0 || rs.Sessions != 1 || ss.Unavailable != 0 || ss.NACKs != 0 {
		t.Fatalf("receiver asked for history: receiver NACKs %d, sessions %d; sender got %d NACKs, answered %d unavailable",
			rs.NACKs, rs.Sessions, ss.NACKs, ss.Unavailable)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReceiverRestart: the receiver closes and a new one listens on the
// same port while the sender goes on. The new receiver resumes the stream
// from what it hears first, and requests no history: no NACKs, no loss
// counted, and the sender answers nothing "unavailable".
func TestReceiverRestart(t *testing.T) {
	testutil.NoLeaks(t)
	first := listen(t, receiver.Config{Listen: "127.0.0.1:0"})
	addr := first.Addr()
	got1 := collect(t, first)
	// One datagram per message: the checks below count datagrams.
	s := newSender(t, sender.Config{To: addr.String(), DisablePacking: true})

	sendRange(t, s, 0, 500)
	testutil.Eventually(t, wait, "the first receiver got the first 500", func() bool { return got1.has(499) })
	checkRun(t, got1.snapshot(), 0, 500)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}

	sendRange(t, s, 500, 1000) // into a closed port
	second := listen(t, receiver.Config{Listen: addr.String()})
	got2 := collect(t, second)
	sendRange(t, s, 1000, 1500)
	testutil.Eventually(t, wait, "the second receiver got the last message", func() bool { return got2.has(1499) })
	// Messages still in flight when it started may reach it too.
	start := checkTail(t, got2.snapshot(), 500, 1000, 1500)

	rs := second.Stats()
	if len(rs.Streams) != 1 {
		t.Fatalf("second receiver has %d streams", len(rs.Streams))
	}
	st := rs.Streams[0]
	if rs.NACKs != 0 || st.Lost != 0 || st.Skipped != 0 || rs.Sessions != 1 || rs.SessionRestarts != 0 {
		t.Fatalf("second receiver: NACKs %d, lost %d, skipped %d, sessions %d, restarts %d",
			rs.NACKs, st.Lost, st.Skipped, rs.Sessions, rs.SessionRestarts)
	}
	if want := 1500 - start; st.Received != want || rs.Delivered != want || st.HighestSeq != 1499 {
		t.Fatalf("second receiver: received %d, delivered %d, highest %d; want %d, %d, 1499", st.Received, rs.Delivered, st.HighestSeq, want, want)
	}
	if ss := s.Stats(); ss.Unavailable != 0 || ss.Retransmits != 0 || ss.Packets != 1500 {
		t.Fatalf("sender: unavailable %d, retransmits %d, packets %d", ss.Unavailable, ss.Retransmits, ss.Packets)
	}
}

// TestSenderRestart: a sender dies with messages held at the receiver
// (ordered delivery waiting for a gap), and a new sender starts from the
// same address with a new session id. The receiver counts the restart,
// drops the old session's held messages undelivered, and delivers the new
// stream from its start.
func TestSenderRestart(t *testing.T) {
	testutil.NoLeaks(t)
	// A long latency budget keeps the old session's messages held behind
	// their gap until the restart.
	r := listen(t, receiver.Config{Listen: "127.0.0.1:0", Latency: time.Minute})
	got := collect(t, r)

	// The old sender, written by hand: messages 0, 1, 3 and 4 of its
	// session; 2 never comes.
	raw, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	from := raw.LocalAddr().(*net.UDPAddr).AddrPort()
	const oldSession = 0x01d5e55107
	for _, seq := range []uint64{0, 1, 3, 4} {
		p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: oldSession},
			Seq: seq, Timestamp: int64(time.Second) + int64(seq)*int64(time.Millisecond), Payload: payload(1_000_000 + seq)}
		b, err := p.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.WriteToUDPAddrPort(b, r.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, wait, "messages 0 and 1 delivered, 3 and 4 held behind the gap", func() bool {
		st := r.Stats()
		// Delivery of 0 and 1 waits out the startup hold, and the
		// collector's goroutine takes them after that.
		return len(st.Streams) == 1 && st.Streams[0].Held == 2 && len(got.snapshot()) >= 2
	})
	if g := got.snapshot(); len(g) != 2 || g[0].index != 1_000_000 || g[1].index != 1_000_001 {
		t.Fatalf("old session delivered %v, want messages 0 and 1", brief(g))
	}
	raw.Close()

	// The new sender, from the same address.
	s := newSender(t, sender.Config{To: r.Addr().String(), Local: from.String(), DisablePacking: true}) // the checks count datagrams
	if s.Session() == oldSession {
		t.Fatal("new sender drew the old session id")
	}
	sendRange(t, s, 0, 300)
	testutil.Eventually(t, wait, "the new stream delivered", func() bool { return got.has(299) })
	all := got.snapshot()
	for _, d := range all[2:] {
		if d.session != s.Session() {
			t.Fatalf("after the restart a message of session %x was delivered: %v", d.session, brief(all))
		}
	}
	checkRun(t, all[2:], 0, 300)

	st := r.Stats()
	if st.SessionRestarts != 1 || st.Sessions != 2 || st.Delivered != 302 {
		t.Fatalf("receiver: restarts %d, sessions %d, delivered %d; want 1, 2, 302", st.SessionRestarts, st.Sessions, st.Delivered)
	}
	if len(st.Streams) != 1 || st.Streams[0].Held != 0 || st.Streams[0].Session != fmt.Sprintf("%016x", s.Session()) ||
		st.Streams[0].Lost != 0 || st.Streams[0].Received != 300 {
		t.Fatalf("receiver streams after the restart: %+v", st.Streams)
	}
	if ss := s.Stats(); ss.Unavailable != 0 || ss.ForeignSession != 0 {
		t.Fatalf("new sender asked about the old session: unavailable %d, foreign %d", ss.Unavailable, ss.ForeignSession)
	}
	// Nothing more arrives: the old held messages are gone for good.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	<-got.done
	if n := len(got.snapshot()); n != 302 {
		t.Fatalf("%d deliveries after close, want 302: %v", n, brief(got.snapshot()[300:]))
	}
}

// Errors from a closed receiver are the documented sentinel.
func TestRecvAfterCloseIsErrClosed(t *testing.T) {
	testutil.NoLeaks(t)
	r := listen(t, receiver.Config{Listen: "127.0.0.1:0"})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Recv(context.Background()); !errors.Is(err, receiver.ErrClosed) {
		t.Fatalf("Recv after Close: %v, want receiver.ErrClosed", err)
	}
}
