package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// lossyCount is how many messages cross the lossy link: the issue's
// 100 000, fewer with -short or under the race detector. (Under -race on a
// loaded 2-core machine telewire itself gives up some repairs of a 5 %
// loss after its NACK retries: the test then fails saying how many the
// receiver delivered, a telewire matter rather than the bridge's; the
// plain run, which CI does too, carries the full count.)
func lossyCount() uint64 {
	if testing.Short() || raceEnabled {
		return 20000
	}
	return 100000
}

// TestLossyLinkIntoJetStream sends 100 000 messages through a telewire
// link dropping 5 % of the datagrams each way, and publishes what the
// receiver delivers: JetStream must hold exactly those messages, in order,
// byte for byte.
func TestLossyLinkIntoJetStream(t *testing.T) {
	n := lossyCount()
	srv := natstest.Start(t)
	createStream(t, srv.URL, "TW", "telewire.>")
	l := newLink(t, 5, 1, 0)
	conn := connect(t, srv.URL)
	tmpl, err := bridge.ParseTemplate("telewire.{stream}")
	if err != nil {
		t.Fatal(err)
	}
	p, err := bridge.NewPublisher(conn, bridge.PublisherConfig{Subject: tmpl, Block: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := bridgeAll(ctx, l.r, p, n)
		done <- err
	}()
	sendAll(t, l.s, n, 25000)
	if err := <-done; err != nil {
		// The bridge waits for all n; if telewire itself gave a message
		// up, say so apart from the rest.
		rs := l.r.Stats()
		t.Fatalf("bridging: %v; the receiver delivered %d of %d, unrecovered %+v\nreceiver %+v\nsender %+v",
			err, rs.Delivered, n, rs.Streams, rs, l.s.Stats())
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	p.Close()
	st := p.Stats()
	rst := l.r.Stats()
	t.Logf("%d messages in %v; relay %+v; receiver: %d datagrams, lost %d before repair; publisher %+v",
		n, elapsed.Round(time.Millisecond), l.relay.Stats().Fwd, rst.Datagrams, rst.Streams[0].Lost, st)
	if rst.Streams[0].Lost == 0 {
		t.Error("the link lost nothing: the test did not exercise repair")
	}
	if st.Published != n || st.Dropped != 0 || st.Rejected != 0 || st.Abandoned != 0 {
		t.Errorf("publisher stats %+v, want %d published and nothing else", st, n)
	}
	checkStored(t, readStream(t, srv.URL, "TW"), n)
}

// TestTwoBridgesStoreOnce is the A/B feed pattern: one feed (same session,
// stream and sequence numbers) reaches two receivers on two independent
// lossy paths, each with its own bridge into the same JetStream stream.
// The stream holds each message once.
func TestTwoBridgesStoreOnce(t *testing.T) {
	n := lossyCount() / 5
	srv := natstest.Start(t)
	createStream(t, srv.URL, "TW", "telewire.>")
	tmpl, err := bridge.ParseTemplate("telewire.{stream}")
	if err != nil {
		t.Fatal(err)
	}
	const session = 0x0123456789abcdef
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	var pubs [2]*bridge.Publisher
	var links [2]*link
	done := make(chan error, 2)
	for i := range links {
		links[i] = newLink(t, 5, int64(10+i), session)
		conn := connect(t, srv.URL)
		if pubs[i], err = bridge.NewPublisher(conn, bridge.PublisherConfig{Subject: tmpl, Block: true}); err != nil {
			t.Fatal(err)
		}
		go func() {
			_, err := bridgeAll(ctx, links[i].r, pubs[i], n)
			done <- err
		}()
	}
	// The two copies of the feed, sent side by side.
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		sendAll(t, links[1].s, n, 20000)
	}()
	sendAll(t, links[0].s, n, 20000)
	<-sent
	for range links {
		if err := <-done; err != nil {
			for i, l := range links {
				t.Logf("link %d: receiver %+v\nsender %+v", i, l.r.Stats(), l.s.Stats())
			}
			t.Fatal(err)
		}
	}
	var published, dups uint64
	for _, p := range pubs {
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		p.Close()
		st := p.Stats()
		published += st.Published
		dups += st.Duplicates
		if st.Dropped+st.Rejected+st.Abandoned != 0 {
			t.Errorf("publisher %+v lost messages", st)
		}
	}
	t.Logf("two bridges: %d acknowledged, %d of them duplicates JetStream refused", published, dups)
	if published != 2*n || dups != n {
		t.Errorf("%d published with %d duplicates, want %d and %d", published, dups, 2*n, n)
	}
	checkStored(t, readStream(t, srv.URL, "TW"), n)
}
