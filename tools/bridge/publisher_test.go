package bridge_test

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// message returns a telewire message as a receiver would deliver it.
func message(session uint64, stream uint32, seq uint64) receiver.Message {
	return receiver.Message{
		Source:  netip.MustParseAddrPort("10.1.2.3:9000"),
		Session: session, Stream: stream, Seq: seq,
		SentNanos: int64(1000 + seq), ReceiveNanos: int64(2000 + seq),
		Origin:  receiver.OriginRetransmit,
		Payload: payload(seq),
	}
}

func newPublisher(t testing.TB, url, subject string, cfg bridge.PublisherConfig) (*bridge.Publisher, *bridge.Conn) {
	t.Helper()
	tmpl, err := bridge.ParseTemplate(subject)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Subject = tmpl
	conn := connect(t, url)
	p, err := bridge.NewPublisher(conn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, conn
}

func flush(t testing.TB, p *bridge.Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("flush: %v (%+v)", err, p.Stats())
	}
}

// TestPublisherHeadersAndDuplicates publishes messages twice (a
// retransmission seen twice, a restarted bridge) on two streams and checks
// each is stored once, on the templated subject, with every header.
func TestPublisherHeadersAndDuplicates(t *testing.T) {
	srv := natstest.Start(t)
	createStream(t, srv.URL, "TW", "tw.>")
	p, _ := newPublisher(t, srv.URL, "tw.{session}.{stream}.{source}", bridge.PublisherConfig{})
	const session = 0xfeedface
	for round := 0; round < 2; round++ {
		for seq := uint64(0); seq < 50; seq++ {
			for _, stream := range []uint32{1, 7} {
				m := message(session, stream, seq)
				if err := p.Put(&m); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	flush(t, p)
	st := p.Stats()
	if st.Offered != 200 || st.Published != 200 || st.Duplicates != 100 || st.Buffered != 0 {
		t.Errorf("stats %+v, want 200 offered and published, 100 of them duplicates", st)
	}
	msgs := readStream(t, srv.URL, "TW")
	if len(msgs) != 100 {
		t.Fatalf("stream holds %d messages, want 100", len(msgs))
	}
	for i, m := range msgs {
		seq, stream := uint64(i/2), uint32(1)
		if i%2 == 1 {
			stream = 7
		}
		want := map[string]string{
			jetstream.MsgIDHeader: bridge.MsgID(session, stream, seq, 0),
			bridge.HeaderSession:  "00000000feedface",
			bridge.HeaderStream:   strconv.Itoa(int(stream)),
			bridge.HeaderSeq:      strconv.FormatUint(seq, 10),
			bridge.HeaderSent:     strconv.FormatUint(1000+seq, 10),
			bridge.HeaderReceived: strconv.FormatUint(2000+seq, 10),
			bridge.HeaderOrigin:   "retransmit",
			bridge.HeaderSource:   "10.1.2.3:9000",
		}
		for k, v := range want {
			if got := m.header.Get(k); got != v {
				t.Errorf("message %d: %s = %q, want %q", i, k, got, v)
			}
		}
		if subj := "tw.00000000feedface." + strconv.Itoa(int(stream)) + ".10-1-2-3-9000"; m.subject != subj {
			t.Errorf("message %d: subject %q, want %q", i, m.subject, subj)
		}
		if string(m.data) != string(payload(seq)) {
			t.Errorf("message %d: payload differs", i)
		}
	}
}

// TestPublisherUnreachableAtStart starts publishing before any server
// listens: messages wait in the buffer and are all stored once the server
// comes up.
func TestPublisherUnreachableAtStart(t *testing.T) {
	port := natstest.FreePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	p, conn := newPublisher(t, url, "tw.{stream}", bridge.PublisherConfig{})
	for seq := uint64(0); seq < 1000; seq++ {
		m := message(1, 0, seq)
		if err := p.Put(&m); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Stats(); st.Connected || st.Buffered != 1000 || st.Published != 0 {
		t.Fatalf("before the server: %+v", st)
	}
	srv := natstest.StartOn(t, port, t.TempDir())
	createStream(t, srv.URL, "TW", "tw.>")
	waitConnected(t, conn)
	flush(t, p)
	if st := p.Stats(); st.Published != 1000 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	checkStored(t, readStream(t, srv.URL, "TW"), 1000)
}

// TestPublisherDropsWhenFull fills a small buffer while the server is away:
// what does not fit is dropped and counted, the rest stored.
func TestPublisherDropsWhenFull(t *testing.T) {
	port := natstest.FreePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	p, conn := newPublisher(t, url, "tw.{stream}", bridge.PublisherConfig{BufferMessages: 100})
	for seq := uint64(0); seq < 250; seq++ {
		m := message(1, 0, seq)
		if err := p.Put(&m); err != nil {
			t.Fatal(err)
		}
	}
	if st := p.Stats(); st.Dropped != 150 || st.Buffered != 100 {
		t.Fatalf("stats %+v, want 150 dropped and 100 buffered", st)
	}
	srv := natstest.StartOn(t, port, t.TempDir())
	createStream(t, srv.URL, "TW", "tw.>")
	waitConnected(t, conn)
	flush(t, p)
	st := p.Stats()
	if st.Published != 100 || st.Offered != st.Published+st.Dropped {
		t.Errorf("stats %+v", st)
	}
	checkStored(t, readStream(t, srv.URL, "TW"), 100)
}

// TestPublisherBlocksWhenFull: with Block, Put waits for room instead of
// dropping, and nothing is lost.
func TestPublisherBlocksWhenFull(t *testing.T) {
	port := natstest.FreePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	p, conn := newPublisher(t, url, "tw.{stream}", bridge.PublisherConfig{BufferMessages: 10, Block: true})
	var wg sync.WaitGroup
	wg.Add(1)
	var putErr error
	go func() {
		defer wg.Done()
		for seq := uint64(0); seq < 500; seq++ {
			m := message(1, 0, seq)
			if putErr = p.Put(&m); putErr != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(wait)
	for p.Stats().BlockedPuts == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Put never blocked")
		}
		time.Sleep(time.Millisecond)
	}
	srv := natstest.StartOn(t, port, t.TempDir())
	createStream(t, srv.URL, "TW", "tw.>")
	waitConnected(t, conn)
	wg.Wait()
	if putErr != nil {
		t.Fatal(putErr)
	}
	flush(t, p)
	if st := p.Stats(); st.Published != 500 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	checkStored(t, readStream(t, srv.URL, "TW"), 500)
}

// TestPublisherRejected: a message JetStream refuses (larger than the
// stream's maximum) is counted as rejected and does not hold up the rest.
func TestPublisherRejected(t *testing.T) {
	srv := natstest.Start(t)
	c := connect(t, srv.URL)
	waitConnected(t, c)
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "TW", Subjects: []string{"tw.>"}, MaxMsgSize: 64}); err != nil {
		t.Fatal(err)
	}
	p, _ := newPublisher(t, srv.URL, "tw.{stream}", bridge.PublisherConfig{})
	for seq := uint64(0); seq < 100; seq++ { // payloads of 16 to 80 bytes
		m := message(1, 0, seq)
		if err := p.Put(&m); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, p)
	st := p.Stats()
	if st.Rejected == 0 || st.Published+st.Rejected != 100 {
		t.Errorf("stats %+v: want some rejected and the rest published", st)
	}
	if n := uint64(len(readStream(t, srv.URL, "TW"))); n != st.Published {
		t.Errorf("stream holds %d, publisher says %d published", n, st.Published)
	}
}

// TestPublisherClosed: Put after Close fails with ErrClosed; Close with the
// server gone abandons what is left after DrainTimeout and counts it.
func TestPublisherClosed(t *testing.T) {
	port := natstest.FreePort(t)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	p, _ := newPublisher(t, url, "tw.{stream}", bridge.PublisherConfig{DrainTimeout: 50 * time.Millisecond})
	for seq := uint64(0); seq < 10; seq++ {
		m := message(1, 0, seq)
		if err := p.Put(&m); err != nil {
			t.Fatal(err)
		}
	}
	p.Close()
	m := message(1, 0, 10)
	if err := p.Put(&m); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("Put after Close: %v", err)
	}
	if st := p.Stats(); st.Abandoned != 10 || st.Buffered != 0 || st.Offered != 10 {
		t.Errorf("stats %+v, want 10 abandoned", st)
	}
}
