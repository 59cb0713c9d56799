package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// TestNATSServerKilled kills the nats-server process (SIGKILL) in the
// middle of a stream, keeps it away for 3 s and starts it again on the same
// port and store. With a buffer that holds 3 s of messages nothing is
// lost; with a small one the drops are counted exactly: what the stream
// holds plus what was dropped is what the receiver delivered.
func TestNATSServerKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a server for several seconds")
	}
	const (
		rate = 4000 // messages per second
		n    = 8 * rate
	)
	for _, tc := range []struct {
		name   string
		buffer int
	}{
		{"buffer-covers-outage", 65536},
		{"small-buffer", 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := natstest.StartProcess(t)
			createStream(t, srv.URL, "TW", "telewire.>")
			l := newLink(t, 0, 0, 0)
			conn := connect(t, srv.URL)
			waitConnected(t, conn)
			tmpl, err := bridge.ParseTemplate("telewire.{stream}")
			if err != nil {
				t.Fatal(err)
			}
			p, err := bridge.NewPublisher(conn, bridge.PublisherConfig{
				Subject: tmpl, BufferMessages: tc.buffer, AckTimeout: time.Second, DrainTimeout: wait,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
			defer cancel()
			done := make(chan error, 1)
			var got uint64
			go func() {
				var err error
				got, err = bridgeAll(ctx, l.r, p, n)
				done <- err
			}()
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				sendAll(t, l.s, n, rate)
			}()
			time.Sleep(2 * time.Second)
			srv.Kill()
			killedAt := p.Stats()
			time.Sleep(3 * time.Second)
			srv.Start()
			<-sent
			if err := <-done; err != nil {
				t.Fatalf("after %d messages: %v", got, err)
			}
			if err := p.Flush(ctx); err != nil {
				t.Fatalf("flush: %v (%+v)", err, p.Stats())
			}
			p.Close()
			st := p.Stats()
			msgs := readStream(t, srv.URL, "TW")
			t.Logf("at the kill %d published; at the end %+v; stream holds %d", killedAt.Published, st, len(msgs))
			if st.Disconnects == 0 || st.Reconnects == 0 {
				t.Errorf("the outage was not seen: %+v", st)
			}
			if st.Offered != n || st.Abandoned != 0 || st.Rejected != 0 || st.Buffered != 0 {
				t.Errorf("stats %+v", st)
			}
			if uint64(len(msgs))+st.Dropped != n {
				t.Errorf("stream holds %d, %d dropped: %d, want %d", len(msgs), st.Dropped, uint64(len(msgs))+st.Dropped, n)
			}
			// Whatever is stored is stored once and in order.
			var last int64 = -1
			for i, m := range msgs {
				seq := int64(mustUint(t, m.header.Get(bridge.HeaderSeq)))
				if seq <= last {
					t.Fatalf("message %d: telewire seq %d after %d", i, seq, last)
				}
				last = seq
				if string(m.data) != string(payload(uint64(seq))) {
					t.Fatalf("message %d: payload differs", i)
				}
			}
			if tc.buffer >= 3*rate*2 {
				if st.Dropped != 0 {
					t.Errorf("%d dropped with a buffer for the whole outage", st.Dropped)
				}
			} else if st.Dropped == 0 {
				t.Errorf("nothing dropped with a buffer of %d for a 3 s outage at %d/s", tc.buffer, rate)
			}
		})
	}
}
