package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/bridge/natstest"
)

// BenchmarkThroughput compares, in one run, messages per second through
// telewire alone (sender → receiver on loopback), through telewire into
// JetStream (every message acknowledged by an embedded server storing to
// files), and into JetStream alone (Put on the Publisher, acknowledged).
// Each iteration is one 64-byte message; the msgs/s metric is the figure.
//
//	go test -run '^$' -bench Throughput -benchtime 200000x ./tools/bridge
func BenchmarkThroughput(b *testing.B) {
	msg := make([]byte, 64)
	b.Run("telewire", func(b *testing.B) {
		l := newLink(b, 0, 0, 0)
		b.SetBytes(int64(len(msg)))
		b.ResetTimer()
		run(b, l, nil, msg)
	})
	b.Run("telewire+jetstream", func(b *testing.B) {
		srv := natstest.Start(b)
		createStream(b, srv.URL, "TW", "telewire.>")
		l := newLink(b, 0, 0, 0)
		p := benchPublisher(b, srv.URL)
		b.SetBytes(int64(len(msg)))
		b.ResetTimer()
		run(b, l, p, msg)
	})
	b.Run("jetstream", func(b *testing.B) {
		srv := natstest.Start(b)
		createStream(b, srv.URL, "TW", "telewire.>")
		p := benchPublisher(b, srv.URL)
		m := receiver.Message{Session: 1, Payload: msg}
		b.SetBytes(int64(len(msg)))
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			m.Seq = uint64(i)
			if err := p.Put(&m); err != nil {
				b.Fatal(err)
			}
		}
		flushBench(b, p)
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
}

func benchPublisher(b *testing.B, url string) *bridge.Publisher {
	tmpl, err := bridge.ParseTemplate("telewire.{stream}")
	if err != nil {
		b.Fatal(err)
	}
	p, err := bridge.NewPublisher(connect(b, url), bridge.PublisherConfig{Subject: tmpl, Block: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	return p
}

func flushBench(b *testing.B, p *bridge.Publisher) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	if st := p.Stats(); st.Published != uint64(b.N) {
		b.Fatalf("%d of %d published: %+v", st.Published, b.N, st)
	}
}

// run sends b.N messages over l and receives them, putting each into p if
// it is not nil, and reports messages per second (to the last
// acknowledgement, with p).
func run(b *testing.B, l *link, p *bridge.Publisher, msg []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			m, err := l.r.Recv(ctx)
			if err != nil {
				done <- err
				return
			}
			if p != nil {
				if err := p.Put(&m); err != nil {
					done <- err
					return
				}
			}
		}
		done <- nil
	}()
	for i := 0; i < b.N; i++ {
		if err := l.s.Send(msg); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatalf("%v (receiver %+v)", err, l.r.Stats())
	}
	if p != nil {
		flushBench(b, p)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
