package fec

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// slowMul multiplies in GF(2^8) bit by bit, reducing by 0x11d.
func slowMul(a, b byte) byte {
	var r uint16
	x, y := uint16(a), uint16(b)
	for y != 0 {
		if y&1 != 0 {
			r ^= x
		}
		x <<= 1
		if x&0x100 != 0 {
			x ^= gfPoly
		}
		y >>= 1
	}
	return byte(r)
}

func TestGFTables(t *testing.T) {
	for a := 0; a < 256; a++ {
		for b := 0; b < 256; b++ {
			if got, want := gfMul(byte(a), byte(b)), slowMul(byte(a), byte(b)); got != want {
				t.Fatalf("gfMul(%d,%d) = %d, want %d", a, b, got, want)
			}
		}
		if a != 0 && gfMul(byte(a), gfInv(byte(a))) != 1 {
			t.Fatalf("gfInv(%d) wrong", a)
		}
	}
}

// TestCodecAgrees checks that klauspost/reedsolomon's own encoder, given
// parityMatrix, computes the same parity as the Encoder: the code is the
// library's field and a Cauchy matrix, so any implementation of it (the
// library's codec included) interoperates with the Decoder.
func TestCodecAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, km := range [][2]int{{1, 1}, {4, 2}, {10, 3}, {17, 5}, {200, 56}, {1, 255}} {
		k, m := km[0], km[1]
		codec, err := newCodec(k, m)
		if err != nil {
			t.Fatal(err)
		}
		e := mustEncoder(t, EncoderConfig{K: k, M: m})
		msgs := makeMsgs(k, 100, 150, rng.Uint64())
		var x crcScratch
		L := 0
		for _, mg := range msgs {
			L = max(L, ShardHeaderLen+len(mg.payload))
		}
		shards := make([][]byte, k+m)
		for i := range shards {
			shards[i] = make([]byte, L)
		}
		for i, mg := range msgs {
			x.putShardHeader(shards[i], mg.seq, mg.ts, mg.payload)
			copy(shards[i][ShardHeaderLen:], mg.payload)
			e.Add(mg.seq, mg.ts, mg.payload, 0)
		}
		if err := codec.Encode(shards); err != nil {
			t.Fatal(err)
		}
		got := take(e)
		if len(got) != m {
			t.Fatalf("K=%d M=%d: %d parity shards", k, m, len(got))
		}
		for i, g := range got {
			if !bytes.Equal(g.shard, shards[k+i]) {
				t.Fatalf("K=%d M=%d: parity %d differs from the library codec's", k, m, i)
			}
		}
	}
}

func TestGFInvert(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 1; n <= 12; n++ {
		// a Cauchy submatrix on random distinct rows and columns
		rows, cols := rng.Perm(20)[:n], rng.Perm(200)[:n]
		a := make([]byte, n*n)
		for r := range rows {
			for c := range cols {
				a[r*n+c] = coef(rows[r], cols[c])
			}
		}
		orig := bytes.Clone(a)
		inv := make([]byte, n*n)
		if !gfInvert(a, inv, n) {
			t.Fatalf("n=%d: Cauchy submatrix reported singular", n)
		}
		for r := 0; r < n; r++ {
			for c := 0; c < n; c++ {
				var s byte
				for x := 0; x < n; x++ {
					s ^= gfMul(orig[r*n+x], inv[x*n+c])
				}
				if want := byte(0); r == c && s != 1 || r != c && s != want {
					t.Fatalf("n=%d: A·A⁻¹ is not the identity at (%d,%d)", n, r, c)
				}
			}
		}
	}
	singular := []byte{1, 2, 1, 2}
	if gfInvert(singular, make([]byte, 4), 2) {
		t.Fatal("singular matrix inverted")
	}
}
