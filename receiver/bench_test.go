package receiver

import (
	"testing"

	"github.com/telewire/telewire/packet"
)

// BenchmarkHandleData measures the receive path per datagram, without the
// socket: decode, loss tracking, jitter and delay statistics, queueing for
// Recv, and the Pop that hands it out. Each iteration also encodes the
// datagram (about 60 ns, see packet's BenchmarkAppendTo) so that every
// sequence is new to the tracker.
func BenchmarkHandleData(b *testing.B) {
	c, err := NewCore(Config{})
	if err != nil {
		b.Fatal(err)
	}
	from := addr(0)
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Payload: make([]byte, 200)}
	buf := make([]byte, 0, p.EncodedLen())
	b.SetBytes(int64(p.EncodedLen()))
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		p.Seq, p.Timestamp = seq, int64(seq)*1000
		d, _ := p.AppendTo(buf[:0])
		c.Handle(d, from, int64(seq)*1000+500)
		c.Pop()
		seq++
	}
}
