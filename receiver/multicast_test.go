package receiver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// freeGroup returns a group address and a port no socket on this host
// uses now, so parallel test runs do not hear each other.
func freeGroup(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return fmt.Sprintf("239.255.%d.%d:%d", port>>8, port&0xff, port)
}

// multicastPayload is message i: its index and a length that varies.
func multicastPayload(i int) []byte {
	b := fmt.Appendf(nil, "message %d ", i)
	for len(b) < 20+i%300 {
		b = append(b, byte('a'+i%26))
	}
	return b
}

// TestMulticastLoopbackThreeReceivers: one sender to an IPv4 group on the
// loopback interface, three receivers on this host sharing the group's
// port; each gets every message, byte-identical and in order, and the
// sender holds a view of each (their feedback comes from sockets of their
// own).
func TestMulticastLoopbackThreeReceivers(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	group := freeGroup(t)
	const receivers, n = 3, 3000
	rs := make([]*receiver.Receiver, receivers)
	for i := range rs {
		r, err := receiver.Listen(ctx, receiver.Config{Listen: group, Interface: "lo", ReportInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatalf("receiver %d: %v", i, err)
		}
		t.Cleanup(func() { r.Close() })
		rs[i] = r
	}
	s := dial(t, ctx, sender.Config{To: group, Local: "127.0.0.1:0", MulticastInterface: "lo", DisablePacking: true})
	var wg sync.WaitGroup
	errs := make([]error, receivers)
	for k, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				m, err := r.Recv(ctx)
				if err != nil {
					errs[k] = fmt.Errorf("receiver %d: recv %d: %w", k, i, err)
					return
				}
				if want := multicastPayload(i); !bytes.Equal(m.Payload, want) || m.Seq != uint64(i) {
					errs[k] = fmt.Errorf("receiver %d: message %d is seq %d %q, want %q", k, i, m.Seq, m.Payload, want)
					return
				}
				if m.Source.Port() != s.LocalAddr().Port() {
					errs[k] = fmt.Errorf("receiver %d: message from %v, sender at %v", k, m.Source, s.LocalAddr())
					return
				}
			}
		}()
	}
	for i := range n {
		if err := s.Send(multicastPayload(i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "a view of each receiver, each with every message", func() bool {
		st := s.Stats()
		if st.Group.Receivers != receivers || len(st.Receivers) != receivers {
			return false
		}
		for _, v := range st.Receivers {
			if len(v.Streams) != 1 || v.Streams[0].View.Received != n || v.RTT.Samples == 0 {
				return false
			}
		}
		return true
	})
	st := s.Stats()
	seen := map[string]bool{}
	for _, v := range st.Receivers {
		seen[v.Addr] = true
	}
	// One DATA per message on the wire whatever the number of receivers.
	if len(seen) != receivers || st.Packets != n || st.Group.Refused != 0 {
		t.Fatalf("sender: %d distinct receiver addresses, %d packets, group %+v", len(seen), st.Packets, st.Group)
	}
	for k, r := range rs {
		x := r.Stats().Streams[0]
		if x.Received != n || x.Duplicates != 0 {
			t.Fatalf("receiver %d stats %+v", k, x)
		}
	}
}

func TestMulticastConfigErrors(t *testing.T) {
	ctx := context.Background()
	group := freeGroup(t)
	for _, cfg := range []receiver.Config{
		{Listen: group, Key: make([]byte, 32)},
		{Listen: "127.0.0.1:0", Interface: "lo"},
		{Listen: "127.0.0.1:0", Source: "127.0.0.1"},
		{Listen: group, Source: "not an address"},
		{Listen: group, Source: "239.1.1.1"},
		{Listen: group, Interface: "no-such-interface0"},
	} {
		r, err := receiver.Listen(ctx, cfg)
		if err == nil {
			r.Close()
			t.Errorf("%+v accepted", cfg)
		}
	}
	if _, err := receiver.Listen(ctx, receiver.Config{Listen: group, Key: make([]byte, 32)}); !errors.Is(err, receiver.ErrMulticastKey) || !errors.Is(err, receiver.ErrConfig) {
		t.Errorf("multicast with a key: %v", err)
	}
	_, err := sender.New(ctx, sender.Config{To: "127.0.0.1:9", MulticastTTL: 4})
	if !errors.Is(err, sender.ErrConfig) {
		t.Errorf("multicast TTL with a unicast To: %v", err)
	}
	_, err = sender.New(ctx, sender.Config{To: group, MulticastTTL: 256})
	if !errors.Is(err, sender.ErrConfig) {
		t.Errorf("TTL 256: %v", err)
	}
}

// TestMulticastSourceSpecific: a receiver joined for one source hears a
// sender at that address and not one at another (IGMPv3 source filtering
// on loopback). Without the source filter this test fails: the receiver
// hears both streams.
func TestMulticastSourceSpecific(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	group := freeGroup(t)
	r, err := receiver.Listen(ctx, receiver.Config{Listen: group, Interface: "lo", Source: "127.0.0.1"})
	if err != nil {
		t.Skipf("source-specific join refused here: %v", err)
	}
	defer r.Close()
	other := dial(t, ctx, sender.Config{To: group, Local: "127.0.0.2:0", MulticastInterface: "lo", Stream: 2, DisablePacking: true})
	for range 20 {
		if err := other.Send([]byte("not for this receiver")); err != nil {
			t.Fatal(err)
		}
	}
	s := dial(t, ctx, sender.Config{To: group, Local: "127.0.0.1:0", MulticastInterface: "lo", Stream: 1, DisablePacking: true})
	for i := range 20 {
		if err := s.Send(multicastPayload(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		m, err := r.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Stream != 1 || !bytes.Equal(m.Payload, multicastPayload(i)) {
			t.Fatalf("message %d: stream %d %q", i, m.Stream, m.Payload)
		}
	}
	other.Close()
	s.Close()
	if st := r.Stats(); len(st.Streams) != 1 {
		t.Fatalf("heard %d streams, want only the source's", len(st.Streams))
	}
}

// TestMulticastLateJoiner: a receiver that joins a running group starts
// at the live edge: it gets every message from about when it joined, in
// order and intact, and does not ask for the group's history.
func TestMulticastLateJoiner(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	group := freeGroup(t)
	early, err := receiver.Listen(ctx, receiver.Config{Listen: group, Interface: "lo"})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	s := dial(t, ctx, sender.Config{To: group, Local: "127.0.0.1:0", MulticastInterface: "lo", DisablePacking: true})
	const before, after = 1000, 1000
	for i := range before {
		if err := s.Send(multicastPayload(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range before { // everything sent so far has reached the group
		if m, err := early.Recv(ctx); err != nil || m.Seq != uint64(i) {
			t.Fatalf("early receiver, message %d: %v %+v", i, err, m)
		}
	}
	late, err := receiver.Listen(ctx, receiver.Config{Listen: group, Interface: "lo"})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	for i := before; i < before+after; i++ {
		if err := s.Send(multicastPayload(i)); err != nil {
			t.Fatal(err)
		}
	}
	first := -1
	for i := 0; ; i++ {
		m, err := late.Recv(ctx)
		if err != nil {
			t.Fatalf("late receiver after %d messages: %v", i, err)
		}
		if first < 0 {
			first = int(m.Seq)
		}
		if want := first + i; int(m.Seq) != want || !bytes.Equal(m.Payload, multicastPayload(want)) {
			t.Fatalf("late receiver: message %d is seq %d %q, want seq %d", i, m.Seq, m.Payload, want)
		}
		if int(m.Seq) == before+after-1 {
			break
		}
	}
	if first < before {
		t.Fatalf("the late receiver started at %d, before it joined (%d): it asked for history", first, before)
	}
	if st := s.Stats(); st.Retransmits != 0 || st.NACKs != 0 {
		t.Fatalf("a late joiner on a lossless path caused %d NACKs, %d retransmissions", st.NACKs, st.Retransmits)
	}
}

// TestMulticastJoinHistory: a receiver that joins a running group with
// JoinHistory 200 gets, through real sockets on the loopback, the 200
// messages sent before the first it heard, unicast from the sender to
// its feedback socket, then the live ones, all in order and intact. The
// early receiver gets no copy: the history did not go to the group.
func TestMulticastJoinHistory(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	group := freeGroup(t)
	early, err := receiver.Listen(ctx, receiver.Config{Listen: group, Interface: "lo"})
	if err != nil {
		t.Fatal(err)
	}
	defer early.Close()
	s := dial(t, ctx, sender.Config{To: group, Local: "127.0.0.1:0", MulticastInterface: "lo", DisablePacking: true})
	const before, after, history = 1000, 1000, 200
	for i := range before {
		if err := s.Send(multicastPayload(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range before { // everything sent so far has reached the group
		if m, err := early.Recv(ctx); err != nil || m.Seq != uint64(i) {
			t.Fatalf("early receiver, message %d: %v %+v", i, err, m)
		}
	}
	late, err := receiver.Listen(ctx, receiver.Config{Listen: group, Interface: "lo", JoinHistory: history})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	for i := before; i < before+after; i++ {
		if err := s.Send(multicastPayload(i)); err != nil {
			t.Fatal(err)
		}
	}
	first := -1
	for i := 0; ; i++ {
		m, err := late.Recv(ctx)
		if err != nil {
			t.Fatalf("late receiver after %d messages: %v", i, err)
		}
		if first < 0 {
			first = int(m.Seq)
		}
		if want := first + i; int(m.Seq) != want || !bytes.Equal(m.Payload, multicastPayload(want)) {
			t.Fatalf("late receiver: message %d is seq %d %q, want seq %d", i, m.Seq, m.Payload, want)
		}
		if int(m.Seq) == before+after-1 {
			break
		}
	}
	if first != before-history {
		t.Fatalf("the late receiver started at %d, want %d (its first live message %d less its history)", first, before-history, before)
	}
	for i := range after {
		if m, err := early.Recv(ctx); err != nil || m.Seq != uint64(before+i) {
			t.Fatalf("early receiver, message %d: %v %+v", before+i, err, m)
		}
	}
	st := s.Stats()
	if st.HistoryNACKs == 0 || st.Retransmits < history {
		t.Fatalf("sender: %d history NACKs, %d retransmissions", st.HistoryNACKs, st.Retransmits)
	}
	if x := early.Stats().Streams[0]; x.Duplicates != 0 {
		t.Fatalf("the early receiver got %d duplicates: the history went to the group", x.Duplicates)
	}
	ls := late.Stats()
	if ls.HistoryRequested != history {
		t.Fatalf("the late receiver asked for %d sequences of history, want %d", ls.HistoryRequested, history)
	}
	// History is not loss: a lossless path reports none (the sender's
	// FEC and views read it).
	if x := ls.Streams[0]; x.Lost != 0 || x.Unrecovered != 0 {
		t.Fatalf("the late receiver reports %d lost, %d unrecovered on a lossless path", x.Lost, x.Unrecovered)
	}
}
