package receiver

import (
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/sender"
)

// BenchmarkHandleData measures the receive path per datagram, without the
// socket, in each delivery mode: decode, loss tracking, jitter and delay
// statistics, delivery, queueing for Recv, and the Pop that hands it out.
// Each iteration also encodes the datagram (about 60 ns, see packet's
// BenchmarkAppendTo) so that every sequence is new to the tracker.
func BenchmarkHandleData(b *testing.B) {
	b.Run("sealed", benchmarkHandleSealed)
	for _, mode := range []Mode{ModeOrdered, ModeUnordered, ModeLatest} {
		b.Run(mode.String(), func(b *testing.B) {
			c, err := NewCore(Config{Mode: mode})
			if err != nil {
				b.Fatal(err)
			}
			from := addr(0)
			p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Payload: make([]byte, 200)}
			buf := make([]byte, 0, p.EncodedLen())
			start := int64(time.Second)
			d, _ := p.AppendTo(buf[:0])
			c.Handle(d, from, start)
			c.Tick(2 * start) // past the ordered-delivery startup hold
			c.Pop()
			b.SetBytes(int64(p.EncodedLen()))
			b.ReportAllocs()
			seq := uint64(1)
			for b.Loop() {
				p.Seq, p.Timestamp = seq, int64(seq)*1000
				d, _ := p.AppendTo(buf[:0])
				c.Handle(d, from, 2*start+int64(seq)*1000+500)
				c.Pop()
				seq++
			}
		})
	}
}

// benchmarkHandleSealed is BenchmarkHandleData's unordered case with a key:
// each iteration seals a datagram as the sender would (about the cost of
// opening it) and hands it to Handle, which opens it, checks the replay
// window and delivers it.
func benchmarkHandleSealed(b *testing.B) {
	c, err := NewCore(Config{Mode: ModeUnordered, Key: testPSK})
	if err != nil {
		b.Fatal(err)
	}
	s := newSenderSide(b, c, testPSK, 1, 0)
	from := addr(0)
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Payload: make([]byte, 200)}
	buf := make([]byte, 0, p.EncodedLen()+64)
	b.SetBytes(int64(p.EncodedLen()))
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		p.Seq, p.Timestamp = seq, int64(seq)*1000+1
		d, _ := p.AppendTo(buf[:0])
		d, err := s.sealer.SealInPlace(d)
		if err != nil {
			b.Fatal(err)
		}
		c.Handle(d, from, int64(seq)*1000+500)
		if _, ok := c.Pop(); !ok {
			b.Fatal("sealed datagram not delivered")
		}
		seq++
	}
}

// BenchmarkHandleStream measures the receive path per message of a
// sender's real datagram stream, without loss: DATA alone with FEC off,
// DATA and the PARITY of 10,3 blocks (1.3 datagrams per message) with FEC
// on, in the bench tool's unordered and default ordered modes. The
// datagrams are produced by a sender Core ahead of time, 4096 messages at
// a time with the timer stopped, and fed in the order the sender would
// write them, parity trailing the DATA it protects.
func BenchmarkHandleStream(b *testing.B) {
	for _, c := range []struct {
		name string
		fec  sender.FECConfig
		mode Mode
	}{
		{"fec=off", sender.FECConfig{Mode: sender.FECOff}, ModeOrdered},
		{"fec=10,3", sender.FECConfig{Mode: sender.FECFixed, K: 10, M: 3}, ModeOrdered},
		{"fec=off/unordered", sender.FECConfig{Mode: sender.FECOff}, ModeUnordered},
		{"fec=10,3/unordered", sender.FECConfig{Mode: sender.FECFixed, K: 10, M: 3}, ModeUnordered},
	} {
		b.Run(c.name, func(b *testing.B) {
			const chunk = 4096
			from := addr(0)
			snd, err := sender.NewCore(sender.Config{FEC: c.fec, DisableRetransmit: true,
				QueuePackets: 2 * chunk, QueueBytes: 2 * chunk * 300}, 1, from)
			if err != nil {
				b.Fatal(err)
			}
			rcv, err := NewCore(Config{Mode: c.mode})
			if err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 200)
			now := int64(time.Second)
			var trace [][]byte // one chunk's datagrams, copied out of the sender's outbox
			var slab []byte
			fill := func() {
				for range chunk {
					now += 1000
					if err := snd.Send(0, payload, now); err != nil {
						b.Fatal(err)
					}
				}
				bt := snd.Outbox().Take()
				trace, slab = trace[:0], slab[:0]
				for _, d := range bt.Datagrams() {
					slab = append(slab, d.Data...)
				}
				off := 0
				for _, d := range bt.Datagrams() {
					trace = append(trace, slab[off:off+len(d.Data)])
					off += len(d.Data)
				}
				snd.Outbox().Give(bt)
			}
			fill()
			for _, d := range trace { // warm-up: the first chunk grows every buffer
				rcv.Handle(d, from, now)
			}
			rcv.Tick(now + int64(time.Second))
			for _, ok := rcv.Pop(); ok; _, ok = rcv.Pop() {
			}
			now += int64(time.Second)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			b.ResetTimer()
			delivered := 0
			for i := 0; i < b.N; i += chunk {
				b.StopTimer()
				fill()
				b.StartTimer()
				for _, d := range trace {
					rcv.Handle(d, from, now)
					for _, ok := rcv.Pop(); ok; _, ok = rcv.Pop() {
						delivered++
					}
				}
			}
			b.StopTimer()
			if st := rcv.Stats(); len(st.Streams) != 1 || st.Streams[0].Lost != 0 {
				b.Fatalf("losses in a clean stream: %+v", st.Streams)
			}
			b.ReportMetric(float64(delivered)/float64(b.N), "delivered/msg")
		})
	}
}
