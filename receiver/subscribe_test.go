package receiver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// fanPayload is message i of the fan-out tests: its index first.
func fanPayload(i int) []byte {
	b := fmt.Appendf(nil, "%07d ", i)
	for len(b) < 16+i%200 {
		b = append(b, byte('a'+i%26))
	}
	return b
}

// fanIndex reads a fan-out message's index back.
func fanIndex(b []byte) (int, error) {
	if len(b) < 8 {
		return 0, fmt.Errorf("payload %q too short", b)
	}
	return strconv.Atoi(string(b[:7]))
}

// subscriberRun is what one subscriber of TestSubscribersJoinAndLeave saw.
type subscriberRun struct {
	first, last int // indexes of the first and last messages received
	n           int
	err         error
	ended       error // Recv's error at the end (stayers)
	latest      atomic.Int64
}

// TestSubscribersJoinAndLeave: a sender that takes subscribers streams
// through real UDP sockets while 20 receivers subscribe one after the
// other; ten leave mid-stream (Close: a GOODBYE) and the sender drops each
// at once; every subscriber gets, from the first message it receives on,
// every message in order and byte-identical; the ten that stay get the
// stream to its end and then the sender's GOODBYE (closing) ends their
// Recv; no goroutine is left behind.
func TestSubscribersJoinAndLeave(t *testing.T) { joinAndLeave(t, 20, 10, nil) }

// TestSealedSubscribersJoinAndLeave is TestSubscribersJoinAndLeave with a
// key on every end: each subscriber authenticates its echo and its
// GOODBYE, makes a handshake of its own with the sender and gets the
// stream sealed under its own keys; the sender's closing GOODBYE goes
// sealed too.
func TestSealedSubscribersJoinAndLeave(t *testing.T) {
	joinAndLeave(t, 8, 4, bytes.Repeat([]byte{0x3c}, 32))
}

func joinAndLeave(t *testing.T, subscribers, leavers int, key []byte) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := sender.New(ctx, sender.Config{Listen: "127.0.0.1:0", ReceiverTimeout: 10 * time.Second, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var (
		mu   sync.Mutex
		sent int // messages sent so far
	)
	sendUntil := func(n int) {
		for {
			mu.Lock()
			i := sent
			mu.Unlock()
			if i >= n {
				return
			}
			if err := s.Send(fanPayload(i)); err != nil {
				t.Errorf("send %d: %v", i, err)
				return
			}
			mu.Lock()
			sent++
			mu.Unlock()
			if i%20 == 0 {
				time.Sleep(time.Millisecond) // about 10 000 messages/s: the stream runs while they join
			}
		}
	}
	runs := make([]subscriberRun, subscribers)
	total := subscribers*400 + 2000
	rs := make([]*receiver.Receiver, subscribers)
	var wg sync.WaitGroup
	for k := range subscribers {
		r, err := receiver.Listen(ctx, receiver.Config{Subscribe: s.LocalAddr().String(), Listen: "127.0.0.1:0", ReportInterval: 20 * time.Millisecond, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		rs[k] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := &runs[k]
			run.first = -1
			for {
				m, err := r.Recv(ctx)
				if err != nil {
					run.ended = err
					return
				}
				i, err := fanIndex(m.Payload)
				switch {
				case err != nil:
					run.err = err
				case run.first >= 0 && i != run.last+1:
					run.err = fmt.Errorf("message %d after %d", i, run.last)
				case !bytes.Equal(m.Payload, fanPayload(i)):
					run.err = fmt.Errorf("message %d differs: %q", i, m.Payload)
				}
				if run.err != nil {
					return
				}
				if run.first < 0 {
					run.first = i
				}
				run.last = i
				run.latest.Store(int64(i))
				run.n++
			}
		}()
		// Let the stream run between joins, and let a leaver go once
		// the ones after it have joined.
		sendUntil((k + 1) * 400)
		if k >= leavers && k-leavers < leavers {
			if err := rs[k-leavers].Close(); err != nil {
				t.Error(err)
			}
		}
	}
	sendUntil(total)
	// The stayers get everything up to the last message; then the sender
	// closes, and its GOODBYE ends their Recv.
	deadline := time.Now().Add(30 * time.Second)
	for k := leavers; k < subscribers; k++ {
		for runs[k].latest.Load() < int64(total-1) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	st := s.Stats()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, r := range rs {
		r.Close()
	}
	for k := range runs {
		run := &runs[k]
		if run.err != nil || run.first < 0 {
			t.Errorf("subscriber %d: %v (first %d)", k, run.err, run.first)
			continue
		}
		if k >= leavers {
			var e *receiver.SubscriptionEndedError
			if run.last != total-1 || !errors.As(run.ended, &e) || e.Reason != packet.ReasonClosing {
				t.Errorf("stayer %d: got %d..%d of %d, ended by %v", k, run.first, run.last, total, run.ended)
			}
		} else if !errors.Is(run.ended, receiver.ErrClosed) {
			t.Errorf("leaver %d ended by %v", k, run.ended)
		}
		if k > 0 && run.first < runs[k-1].first {
			t.Errorf("subscriber %d started at %d, before subscriber %d (%d)", k, run.first, k-1, runs[k-1].first)
		}
	}
	sub := st.Subscribers
	t.Logf("sender: %+v", sub)
	if sub.Joined != uint64(subscribers) || sub.Left != uint64(leavers) || sub.Subscribed != subscribers-leavers || sub.Expired != 0 || sub.BadTokens != 0 || sub.Unauthenticated != 0 {
		t.Errorf("sender's subscriber counts %+v", sub)
	}
	if key != nil && (st.Handshakes != uint64(subscribers) || st.HandshakesExpired != 0 || st.AuthFailed != 0) {
		t.Errorf("sender's handshakes %d, expired %d, auth failed %d", st.Handshakes, st.HandshakesExpired, st.AuthFailed)
	}
}

// TestSpoofedSubscribeGetsAtMostThreeTimes: an address that subscribes
// but never echoes the token (a socket whose SUBSCRIBEs say to send there,
// and which drops what comes back, as an address that cannot receive) gets
// back at most three times the bytes it sent, and never the stream, while
// a real subscriber gets it.
func TestSpoofedSubscribeGetsAtMostThreeTimes(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := sender.New(ctx, sender.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := receiver.Listen(ctx, receiver.Config{Subscribe: s.LocalAddr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The real subscriber gets the stream from the moment it is admitted.
	for i := 0; s.Stats().Subscribers.Subscribed == 0; i++ {
		if i == 2000 {
			t.Fatal("the subscriber was never admitted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	victim, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	var got, datas int
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, err := victim.Read(buf)
			if err != nil {
				return
			}
			got += n
			if h, err := packet.PeekHeader(buf[:n]); err == nil && (h.Kind == packet.KindData || h.Kind == packet.KindHeartbeat) {
				datas++
			}
		}
	}()
	to := net.UDPAddrFromAddrPort(s.LocalAddr())
	sentBytes := 0
	for i := range 300 {
		p := packet.Packet{Header: packet.Header{Kind: packet.KindSubscribe}, Subscription: packet.Subscription{Nonce: uint64(i)}}
		if i%3 == 1 { // an echo of a token it never got
			p.Flags = packet.FlagToken
			p.Subscription.TokenTime = int64(i)
		}
		b, _ := p.AppendTo(nil)
		if _, err := victim.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
		sentBytes += len(b)
		if err := s.Send(fanPayload(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; r.Stats().Delivered < 300 && i < 1000; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // anything still on the way to the victim
	victim.Close()
	<-done
	st := s.Stats().Subscribers
	t.Logf("victim sent %d bytes, got %d; sender %+v", sentBytes, got, st)
	if got > 3*sentBytes || datas != 0 || st.Subscribed != 1 || st.BadTokens != 100 {
		t.Fatalf("victim sent %d bytes and got %d (%d DATA/HEARTBEAT); sender %+v", sentBytes, got, datas, st)
	}
	if d := r.Stats().Delivered; d != 300 {
		t.Fatalf("the real subscriber got %d of 300", d)
	}
}

// TestSubscriberWithWrongKeyGetsNothing: a sender with a key takes a
// subscriber with the same key file (a handshake, the stream sealed under
// its keys) and a subscriber with another: the latter's echoes do not
// authenticate, so it is never admitted, no handshake is started for it,
// it receives no DATA and the sender keeps no state for it, while what
// it costs the sender stays its TOKENs (within three times its bytes).
func TestSubscriberWithWrongKeyGetsNothing(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key, wrong := bytes.Repeat([]byte{0x11}, 32), bytes.Repeat([]byte{0x22}, 32)
	s, err := sender.New(ctx, sender.Config{Listen: "127.0.0.1:0", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good, err := receiver.Listen(ctx, receiver.Config{Subscribe: s.LocalAddr().String(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	bad, err := receiver.Listen(ctx, receiver.Config{Subscribe: s.LocalAddr().String(), Key: wrong})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	for i := 0; s.Stats().KeysPending != 0 || s.Stats().Subscribers.Subscribed == 0; i++ {
		if i == 2000 {
			t.Fatalf("the subscriber with the key never got keys: %+v", s.Stats().Subscribers)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := range 300 {
		if err := s.Send(fanPayload(i)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	for i := 0; good.Stats().Delivered < 300 && i < 1000; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	// Long enough for the wrong-key subscriber to renew (every second).
	time.Sleep(1500 * time.Millisecond)
	st := s.Stats()
	gs, bs := good.Stats(), bad.Stats()
	t.Logf("sender %+v, handshakes %d, attempts %d; bad subscriber %+v", st.Subscribers, st.Handshakes, st.HandshakeAttempts, bs.Subscription)
	if gs.Delivered != 300 {
		t.Fatalf("the subscriber with the key got %d of 300", gs.Delivered)
	}
	if bs.Delivered != 0 || bs.Sessions != 0 || bs.Subscription.Admitted {
		t.Fatalf("the subscriber with another key: %d delivered, %d sessions, admitted %v", bs.Delivered, bs.Sessions, bs.Subscription.Admitted)
	}
	sub := st.Subscribers
	if sub.Subscribed != 1 || sub.Joined != 1 || sub.Unauthenticated < 2 || st.Handshakes != 1 || st.KeysPending != 0 || sub.Destinations != 1 {
		t.Fatalf("sender: %+v, %d handshakes, %d pending", sub, st.Handshakes, st.KeysPending)
	}
	// Each TOKEN answers one of its SUBSCRIBEs (40 bytes or more).
	if sub.TokenBytes > 3*40*bs.Subscription.Subscribes {
		t.Fatalf("%d token bytes for %d SUBSCRIBEs", sub.TokenBytes, bs.Subscription.Subscribes)
	}
}

// lossyRelay stands between a sender and one receiver: it forwards the
// sender's datagrams to the receiver, dropping every period-th first
// transmission of DATA (from offset on), and the receiver's back to the
// sender. The receiver sees the relay as its sender.
type lossyRelay struct {
	conn           *net.UDPConn
	to             *net.UDPAddr
	period, offset int
	dropped        atomic.Int64
}

func newLossyRelay(t *testing.T, to netip.AddrPort, period, offset int) *lossyRelay {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &lossyRelay{conn: c, to: net.UDPAddrFromAddrPort(to), period: period, offset: offset}
	go r.run()
	return r
}

func (r *lossyRelay) addr() string { return r.conn.LocalAddr().String() }

func (r *lossyRelay) run() {
	buf := make([]byte, 65536)
	var sender *net.UDPAddr
	n := 0
	for {
		k, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		b := buf[:k]
		if from.Port == r.to.Port && from.IP.Equal(r.to.IP) {
			if sender != nil {
				_, _ = r.conn.WriteToUDP(b, sender)
			}
			continue
		}
		sender = from
		// Kind (byte 3) and flags (byte 4) travel in clear, sealed or not.
		if len(b) > 5 && packet.Kind(b[3]) == packet.KindData && packet.Flags(b[4])&packet.FlagRetransmit == 0 {
			n++
			if n%r.period == r.offset {
				r.dropped.Add(1)
				continue
			}
		}
		_, _ = r.conn.WriteToUDP(b, r.to)
	}
}

// TestSealedListWithLossRepairsEach: a sender with a key and a list of
// three destinations, each behind its own lossy path (different DATA
// lost on each): every receiver gets every message, in order and
// byte-identical, its own losses repaired under its own keys, and the
// sender refuses no feedback.
func TestSealedListWithLossRepairsEach(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	key := bytes.Repeat([]byte{0x5c}, 32)
	const n = 3000
	var rs []*receiver.Receiver
	var relays []*lossyRelay
	var to []string
	for k := range 3 {
		r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", Key: key, ReportInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rl := newLossyRelay(t, r.Addr(), 20, 3+5*k)
		defer rl.conn.Close()
		rs, relays, to = append(rs, r), append(relays, rl), append(to, rl.addr())
	}
	s, err := sender.New(ctx, sender.Config{To: strings.Join(to, ","), Key: key, DisablePacking: true, FEC: sender.FECConfig{Mode: sender.FECOff}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := make([]error, len(rs))
	var wg sync.WaitGroup
	for k, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				m, err := r.Recv(ctx)
				if err != nil {
					got[k] = fmt.Errorf("message %d: %w", i, err)
					return
				}
				if !bytes.Equal(m.Payload, fanPayload(i)) {
					got[k] = fmt.Errorf("message %d differs: %q", i, m.Payload)
					return
				}
			}
		}()
	}
	for i := range n {
		if err := s.Send(fanPayload(i)); err != nil {
			t.Fatal(err)
		}
		if i%20 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	st := s.Stats()
	var dropped uint64
	for k, r := range rs {
		rst := r.Stats()
		var lost, rtx, fec, unrec uint64
		for _, x := range rst.Streams {
			lost, rtx, fec, unrec = lost+x.Lost, rtx+x.RecoveredRTX, fec+x.RecoveredFEC, unrec+x.Unrecovered
		}
		dropped += uint64(relays[k].dropped.Load())
		t.Logf("receiver %d: relay dropped %d, lost %d, repaired %d by retransmission and %d by FEC", k, relays[k].dropped.Load(), lost, rtx, fec)
		if got[k] != nil {
			t.Errorf("receiver %d: %v", k, got[k])
		}
		if relays[k].dropped.Load() == 0 || rtx == 0 || unrec != 0 {
			t.Errorf("receiver %d: dropped %d, repaired by retransmission %d, unrecovered %d", k, relays[k].dropped.Load(), rtx, unrec)
		}
	}
	t.Logf("sender: %d handshakes, %d NACKs, %d retransmissions (%.2f per loss), %d suppressed", st.Handshakes, st.NACKs, st.Retransmits,
		float64(st.Retransmits)/float64(max(dropped, 1)), st.Suppressed)
	if st.Handshakes != 3 || st.AuthFailed+st.NoKeys+st.Unsealed+st.Replayed != 0 || st.Retransmits == 0 {
		t.Fatalf("sender: %d handshakes, refused feedback %d/%d/%d/%d, %d retransmissions", st.Handshakes, st.AuthFailed, st.NoKeys, st.Unsealed, st.Replayed, st.Retransmits)
	}
	// Each destination's repeats are suppressed within its round trip:
	// at most 1.5 repairs per loss, each of at most two copies (a
	// unicast repair goes twice from 2% loss). Answering every repeated
	// NACK cost about 4 per loss.
	if st.Retransmits > 3*dropped {
		t.Fatalf("sender: %d retransmissions for %d losses", st.Retransmits, dropped)
	}
}
