package fec

import (
	"fmt"
	"testing"

	"github.com/klauspost/reedsolomon"
	"github.com/telewire/telewire/packet"
)

var shapes = []struct{ k, m, size int }{{10, 3, 1200}, {10, 3, 200}, {4, 2, 200}}

func shapeName(k, m, size int) string { return fmt.Sprintf("%d+%dx%dB", k, m, size) }

// BenchmarkEncode measures Encoder.Add over whole blocks plus TakeParity:
// shard copy, header and checksum, padding and the codec. Bytes are payload
// bytes.
func BenchmarkEncode(b *testing.B) {
	for _, s := range shapes {
		b.Run(shapeName(s.k, s.m, s.size), func(b *testing.B) {
			enc := mustEncoder(b, EncoderConfig{K: s.k, M: s.m, MaxDelayNanos: -1})
			payload := make([]byte, s.size)
			seq := uint64(0)
			n := 0
			b.SetBytes(int64(s.k * s.size))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				for j := 0; j < s.k; j++ {
					if enc.Add(seq, 0, payload, 0) {
						n += enc.TakeParity(func(packet.Parity, []byte) {})
					}
					seq++
				}
			}
			if n != b.N*s.m {
				b.Fatalf("%d parity shards for %d blocks", n, b.N)
			}
		})
	}
}

// BenchmarkReconstruct measures a Decoder receiving one block with M data
// shards lost: K-M AddData, M AddParity, the rebuild of M shards with
// validation, and TakeRecovered. Bytes are the block's payload bytes.
func BenchmarkReconstruct(b *testing.B) {
	for _, s := range shapes {
		b.Run(shapeName(s.k, s.m, s.size), func(b *testing.B) {
			const nBlocks = 256
			bs := newBlockStream(b, s.k, s.m, s.size, nBlocks)
			d := mustDecoder(b, DecoderConfig{})
			for i := 0; i < nBlocks; i++ { // warm-up: every ring slot used once
				bs.feed(d, i, s.m)
			}
			d.Reset()
			b.SetBytes(int64(s.k * s.size))
			b.ReportAllocs()
			b.ResetTimer()
			rebuilt := 0
			for i := 0; i < b.N; i++ {
				if i%nBlocks == 0 {
					d.Reset()
				}
				rebuilt += bs.feed(d, i%nBlocks, s.m)
			}
			if rebuilt != b.N*s.m {
				b.Fatalf("rebuilt %d of %d", rebuilt, b.N*s.m)
			}
		})
	}
}

// BenchmarkCodec measures the raw parity computation on shards of the same
// shapes (shard = payload + ShardHeaderLen, a ragged length), for
// comparison: "default" is reedsolomon.New(k, m) with its default options
// (AVX2 code generation, one allocation per call), "ssse3" the library
// codec as the Encoder used to configure it (see newCodec), "lowlevel" the
// Encoder's way (reedsolomon.LowLevel slice kernels over shards padded to
// kernelAlign), "lowlevel-ragged" the same without the padding,
// "reconstruct" ReconstructData with M data shards missing.
func BenchmarkCodec(b *testing.B) {
	for _, s := range shapes {
		L := s.size + ShardHeaderLen
		padded := (L + kernelAlign - 1) &^ (kernelAlign - 1)
		for _, c := range []struct {
			name string
			n    int
		}{{"lowlevel", padded}, {"lowlevel-ragged", L}} {
			shards := make([][]byte, s.k+s.m)
			for i := range shards {
				shards[i] = make([]byte, c.n)
				for j := range shards[i] {
					shards[i][j] = byte(i*31 + j)
				}
			}
			b.Run("encode-"+c.name+"/"+shapeName(s.k, s.m, s.size), func(b *testing.B) {
				var gf reedsolomon.LowLevel
				b.SetBytes(int64(s.k * s.size))
				b.ReportAllocs()
				for b.Loop() {
					for t := 0; t < s.m; t++ {
						out := shards[s.k+t]
						gf.GalMulSlice(coef(t, 0), shards[0], out)
						for j := 1; j < s.k; j++ {
							gf.GalMulSliceXor(coef(t, j), shards[j], out)
						}
					}
				}
			})
		}
		shards := make([][]byte, s.k+s.m)
		for i := range shards {
			shards[i] = make([]byte, L)
			for j := range shards[i] {
				shards[i][j] = byte(i*31 + j)
			}
		}
		def, err := reedsolomon.New(s.k, s.m)
		if err != nil {
			b.Fatal(err)
		}
		ours, err := newCodec(s.k, s.m)
		if err != nil {
			b.Fatal(err)
		}
		for _, c := range []struct {
			name string
			enc  reedsolomon.Encoder
		}{{"default", def}, {"ssse3", ours}} {
			b.Run("encode-"+c.name+"/"+shapeName(s.k, s.m, s.size), func(b *testing.B) {
				b.SetBytes(int64(s.k * s.size))
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					if err := c.enc.Encode(shards); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		b.Run("reconstruct-default/"+shapeName(s.k, s.m, s.size), func(b *testing.B) {
			if err := def.Encode(shards); err != nil {
				b.Fatal(err)
			}
			work := make([][]byte, len(shards))
			b.SetBytes(int64(s.k * s.size))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				copy(work, shards)
				for j := 0; j < s.m; j++ {
					work[j] = shards[j][:0]
				}
				if err := def.ReconstructData(work); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeClean measures what a Decoder costs a receiver on a
// loss-free stream, its steady state: every DATA packet of a block
// (AddData keeps a copy), then all M of its PARITY packets (AddParity
// finds the block complete). Bytes are the block's payload bytes.
func BenchmarkDecodeClean(b *testing.B) {
	for _, s := range shapes {
		b.Run(shapeName(s.k, s.m, s.size), func(b *testing.B) {
			const nBlocks = 256
			bs := newBlockStream(b, s.k, s.m, s.size, nBlocks)
			d := mustDecoder(b, DecoderConfig{})
			feed := func(i int) {
				for _, x := range bs.data[i] {
					d.AddData(x.seq, x.ts, x.payload, 0)
				}
				for _, p := range bs.parity[i] {
					if err := d.AddParity(p.par, p.payload, 0); err != nil {
						b.Fatal(err)
					}
				}
			}
			for i := 0; i < nBlocks; i++ { // warm-up: every ring slot used once
				feed(i)
			}
			d.Reset()
			b.SetBytes(int64(s.k * s.size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i%nBlocks == 0 {
					d.Reset()
				}
				feed(i % nBlocks)
				i++
			}
			if st := d.Stats(); st.ParityUnneeded == 0 || st.BlocksRecovered != 0 {
				b.Fatalf("stats %+v", st)
			}
		})
	}
}
