package receiver

import (
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
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
	s := newSenderSide(&testing.T{}, testPSK, 1, 0)
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
