package bridge_test

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// fillStream publishes payload(0..n-1) on subject, synchronously, in
// windows of 1000 acknowledgements (the client refuses a publish once
// 4000 are outstanding and a loaded server lags for 200 ms).
func fillStream(t testing.TB, url, subject string, n uint64) {
	t.Helper()
	c := connect(t, url)
	waitConnected(t, c)
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(0); i < n; i++ {
		if _, err := js.PublishAsync(subject, payload(i)); err != nil {
			t.Fatal(err)
		}
		if i%1000 != 999 && i != n-1 {
			continue
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(wait):
			t.Fatal("publishing did not complete")
		}
	}
}

// receiveIndexes reads r until n messages arrived and returns how often
// each payload index came.
func receiveIndexes(t testing.TB, r *receiver.Receiver, n uint64) map[uint64]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	seen := make(map[uint64]int)
	for i := uint64(0); i < n; i++ {
		m, err := r.Recv(ctx)
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		idx := binary.BigEndian.Uint64(m.Payload)
		if string(m.Payload) != string(payload(idx)) {
			t.Fatalf("message %d: payload differs", i)
		}
		seen[idx]++
	}
	return seen
}

func consumerInfo(t testing.TB, url, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c := connect(t, url)
	waitConnected(t, c)
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	cons, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestForwarder replays a stream through telewire, acknowledging after the
// sender wrote each message (default) or after the receiver reported it
// (AckDelivered): everything arrives once, in order, and the consumer ends
// with nothing pending or unacknowledged.
func TestForwarder(t *testing.T) {
	for _, ackDelivered := range []bool{false, true} {
		name := "ack-sent"
		if ackDelivered {
			name = "ack-delivered"
		}
		t.Run(name, func(t *testing.T) {
			const n = 5000
			srv := natstest.Start(t)
			createStream(t, srv.URL, "TICKS", "ticks.>")
			fillStream(t, srv.URL, "ticks.a", n)
			l := newLink(t, 0, 0, 0)
			conn := connect(t, srv.URL)
			f, err := bridge.NewForwarder(conn, bridge.ForwarderConfig{
				Subject: "ticks.>", UntilEmpty: true, AckDelivered: ackDelivered, SendStream: 3,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			sent, err := f.Run(ctx, l.s)
			if err != nil || sent != n {
				t.Fatalf("Run: %d sent, %v", sent, err)
			}
			seen := receiveIndexes(t, l.r, n)
			for i := uint64(0); i < n; i++ {
				if seen[i] != 1 {
					t.Fatalf("message %d arrived %d times", i, seen[i])
				}
			}
			st := f.Stats()
			if st.Received != n || st.Sent != n || st.Acked != n || st.Unacked != 0 || st.AckErrors != 0 {
				t.Errorf("stats %+v", st)
			}
			info := consumerInfo(t, srv.URL, "TICKS", "telewire-send")
			if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != n {
				t.Errorf("consumer: %d pending, %d awaiting acknowledgement, ack floor %d", info.NumPending, info.NumAckPending, info.AckFloor.Stream)
			}
		})
	}
}

// TestForwarderResumes: a second Forwarder on the same durable consumer
// continues after what the first acknowledged.
func TestForwarderResumes(t *testing.T) {
	srv := natstest.Start(t)
	createStream(t, srv.URL, "TICKS", "ticks.>")
	fillStream(t, srv.URL, "ticks.a", 300)
	l := newLink(t, 0, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for i, count := range []uint64{100, 0} {
		f, err := bridge.NewForwarder(connect(t, srv.URL), bridge.ForwarderConfig{Subject: "ticks.>", Count: count, UntilEmpty: true})
		if err != nil {
			t.Fatal(err)
		}
		sent, err := f.Run(ctx, l.s)
		if want := []uint64{100, 200}[i]; err != nil || sent != want {
			t.Fatalf("run %d: %d sent (want %d), %v", i, sent, want, err)
		}
	}
	seen := receiveIndexes(t, l.r, 300)
	for i := uint64(0); i < 300; i++ {
		if seen[i] != 1 {
			t.Fatalf("message %d arrived %d times", i, seen[i])
		}
	}
}

// TestForwarderCore forwards plain core NATS messages.
func TestForwarderCore(t *testing.T) {
	srv := natstest.Start(t)
	l := newLink(t, 0, 0, 0)
	conn := connect(t, srv.URL)
	waitConnected(t, conn)
	f, err := bridge.NewForwarder(conn, bridge.ForwarderConfig{Subject: "live.>", Core: true, Count: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := f.Run(ctx, l.s)
		done <- err
	}()
	pub := connect(t, srv.URL)
	waitConnected(t, pub)
	// Core NATS keeps nothing: publish until the subscription is there.
	for f.Stats().Received == 0 {
		if err := pub.Publish("live.x", payload(0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	first := f.Stats().Received
	for i := uint64(1); i <= 1000-first; i++ {
		if err := pub.Publish("live.x", payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Sent != 1000 || st.CoreDropped != 0 {
		t.Errorf("stats %+v", st)
	}
	receiveIndexes(t, l.r, 1000)
}

func TestForwarderConfigErrors(t *testing.T) {
	srv := natstest.Start(t)
	conn := connect(t, srv.URL)
	for _, cfg := range []bridge.ForwarderConfig{
		{},
		{Subject: "x", Core: true, AckDelivered: true},
		{Subject: "x", MaxAckPending: -1},
	} {
		if _, err := bridge.NewForwarder(conn, cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
