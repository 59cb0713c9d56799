package packet

import "testing"

func BenchmarkAppendTo(b *testing.B) {
	for _, p := range samples() {
		b.Run(p.Kind.String(), func(b *testing.B) {
			buf := make([]byte, 0, MaxPacketLen)
			b.ReportAllocs()
			b.SetBytes(int64(p.EncodedLen()))
			for b.Loop() {
				if _, err := p.AppendTo(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for _, p := range samples() {
		b.Run(p.Kind.String(), func(b *testing.B) {
			enc := encode(b, p)
			var q Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if err := q.Parse(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
