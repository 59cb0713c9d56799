package bridge_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/netem"
)

// wait bounds every wait for something to happen: generous, since the
// tests share two cores with other work and may run under -race.
const wait = 60 * time.Second

// payload returns message i's payload: its index, then bytes derived from
// it, so that what JetStream stored can be compared byte for byte. Sizes
// vary with i (16..80 bytes).
func payload(i uint64) []byte {
	b := make([]byte, 16+i%65)
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

// connect connects to url and closes the connection at the end of the test.
func connect(t testing.TB, url string) *bridge.Conn {
	t.Helper()
	c, err := bridge.Connect(bridge.ConnConfig{Servers: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// createStream creates stream name on subjects (file storage).
func createStream(t testing.TB, url, name string, subjects ...string) {
	t.Helper()
	c := connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	waitConnected(t, c)
	if _, err := bridge.EnsureStream(ctx, c, bridge.StreamConfig{Name: name, Subjects: subjects}); err != nil {
		t.Fatal(err)
	}
}

func waitConnected(t testing.TB, c *bridge.Conn) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !c.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("not connected to NATS")
		}
		select {
		case <-c.Connected():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stored is one message as JetStream holds it.
type stored struct {
	streamSeq uint64 // JetStream's sequence
	subject   string
	header    nats.Header
	data      []byte
}

// readStream reads every message of stream name in order, with an ordered
// consumer.
func readStream(t testing.TB, url, name string) []stored {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := info.State.Msgs
	out := make([]stored, 0, n)
	if n == 0 {
		return out
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	for uint64(len(out)) < n {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			t.Fatalf("reading stream %s after %d of %d: %v", name, len(out), n, err)
		}
		meta, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, stored{streamSeq: meta.Sequence.Stream, subject: m.Subject(), header: m.Headers(), data: m.Data()})
	}
	return out
}

// link is a telewire sender and receiver, through a netem relay when
// lossPercent > 0.
type link struct {
	s     *sender.Sender
	r     *receiver.Receiver
	relay *netem.Relay // nil without loss
}

// newLink starts a receiver and a sender to it through a relay dropping
// lossPercent of the datagrams each way (none: direct). session, if not
// zero, is the sender's session id (the A/B pattern: two senders of one
// feed). Everything stops at the end of the test.
func newLink(t testing.TB, lossPercent float64, seed int64, session uint64) *link {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r, err := receiver.Listen(ctx, receiver.Config{
		Listen: "127.0.0.1:0",
		// Repair everything, skip nothing: a long latency budget and a
		// reorder buffer that holds what arrives meanwhile.
		Latency: 10 * time.Second, ReorderCapacity: 1 << 17, QueueMessages: 1 << 17, Window: 1 << 17,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	to := r.Addr().String()
	var relay *netem.Relay
	if lossPercent > 0 {
		relay, err = netem.NewRelay(netem.RelayConfig{
			Listen: "127.0.0.1:0", To: to, Seed: seed,
			Fwd: netem.Spec{Loss: netem.LossRandom, LossPercent: lossPercent},
			Rev: netem.Spec{Loss: netem.LossRandom, LossPercent: lossPercent},
		})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- relay.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("relay: %v", err)
			}
		})
		to = relay.Addr().String()
	}
	s, err := sender.New(ctx, sender.Config{
		To: to, Session: session,
		RetransmitPackets: 1 << 17, RetransmitBytes: 32 << 20, RetransmitMaxAge: 10 * time.Second,
		RetransmitShare: -1,
		// The tests name each message by its telewire sequence (payload
		// i is sequence i): one message per datagram. Packed messages'
		// ids are checked in TestMsgIDOfPackedMessages.
		DisablePacking: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &link{s: s, r: r, relay: relay}
}

// sendAll sends payload(0..n-1) at up to rate messages per second (0: as
// fast as the sender takes them).
func sendAll(t testing.TB, s *sender.Sender, n uint64, rate float64) {
	t.Helper()
	start := time.Now()
	for i := uint64(0); i < n; i++ {
		if rate > 0 && i%64 == 0 {
			if ahead := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err := s.Send(payload(i)); err != nil {
			t.Errorf("send %d: %v", i, err)
			return
		}
	}
}

// bridgeAll puts every message r delivers into p until n arrived or ctx
// ends; it returns how many it put.
func bridgeAll(ctx context.Context, r *receiver.Receiver, p *bridge.Publisher, n uint64) (uint64, error) {
	var got uint64
	for got < n {
		m, err := r.Recv(ctx)
		if err != nil {
			return got, err
		}
		if err := p.Put(&m); err != nil {
			return got, err
		}
		got++
	}
	return got, nil
}

// checkStored checks that msgs are exactly payload(0..n-1) in order, with
// one telewire session, stream 0 and seq i, and returns nothing on success.
func checkStored(t testing.TB, msgs []stored, n uint64) {
	t.Helper()
	if uint64(len(msgs)) != n {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if got := m.header.Get(bridge.HeaderSeq); got != strconv.FormatUint(uint64(i), 10) {
			t.Fatalf("message %d (stream seq %d) has telewire seq %q", i, m.streamSeq, got)
		}
		if want := payload(uint64(i)); string(m.data) != string(want) {
			t.Fatalf("message %d: payload %x, want %x", i, m.data, want)
		}
		if id, want := m.header.Get(jetstream.MsgIDHeader), fmt.Sprintf("%s/0/%d", m.header.Get(bridge.HeaderSession), i); id != want {
			t.Fatalf("message %d: Nats-Msg-Id %q, want %q", i, id, want)
		}
	}
}

func mustUint(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return v
}
