package fec

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/reedsolomon"

	"github.com/telewire/telewire/packet"
)

// msg is an original DATA packet.
type msg struct {
	seq     uint64
	ts      int64
	payload []byte
}

// pkt is one packet as the sender emits it: DATA, or PARITY with its shard.
type pkt struct {
	parity bool
	msg
	par packet.Parity
}

// makeMsgs returns n messages from sequence first with payloads of mixed
// sizes, empty ones included, drawn from a seeded generator.
func makeMsgs(n int, first uint64, maxLen int, seed uint64) []msg {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]msg, n)
	for i := range out {
		var l int
		switch rng.IntN(4) {
		case 0:
			l = 0
		case 1:
			l = rng.IntN(8)
		default:
			l = rng.IntN(maxLen + 1)
		}
		p := make([]byte, l)
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		out[i] = msg{seq: first + uint64(i), ts: int64(rng.Uint64() >> 1), payload: p}
	}
	return out
}

// encodeStream runs msgs through an Encoder, message i sent at i·dt, and
// returns the packets in send order (each block's parity right after the
// DATA that completed it), closing the last group at the end.
func encodeStream(enc *Encoder, msgs []msg, dt int64) []pkt {
	var out []pkt
	take := func(par packet.Parity, shard []byte) {
		out = append(out, pkt{parity: true, par: par, msg: msg{payload: bytes.Clone(shard)}})
	}
	for i, m := range msgs {
		now := int64(i) * dt
		if at, ok := enc.NextFlushAt(); ok && at <= now && enc.Flush(now) {
			enc.TakeParity(take)
		}
		out = append(out, pkt{msg: m})
		if enc.Add(m.seq, m.ts, m.payload, now) {
			enc.TakeParity(take)
		}
	}
	if enc.FlushAll() {
		enc.TakeParity(take)
	}
	return out
}

func mustEncoder(t testing.TB, cfg EncoderConfig) *Encoder {
	t.Helper()
	e, err := NewEncoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustDecoder(t testing.TB, cfg DecoderConfig) *Decoder {
	t.Helper()
	d, err := NewDecoder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// deliver feeds one packet to d.
func deliver(d *Decoder, p pkt, now int64) error {
	if p.parity {
		return d.AddParity(p.par, p.payload, now)
	}
	d.AddData(p.seq, p.ts, p.payload, now)
	return nil
}

// collect takes d's recovered messages, failing t on any that does not
// match the original with its sequence.
func collect(t testing.TB, d *Decoder, orig map[uint64]msg) map[uint64]bool {
	t.Helper()
	got := map[uint64]bool{}
	d.TakeRecovered(func(seq uint64, ts int64, payload []byte) {
		m, ok := orig[seq]
		switch {
		case !ok:
			t.Errorf("recovered seq %d that was never sent", seq)
		case ts != m.ts || !bytes.Equal(payload, m.payload):
			t.Errorf("seq %d recovered wrong: ts %d payload %x, want ts %d payload %x", seq, ts, payload, m.ts, m.payload)
		case got[seq]:
			t.Errorf("seq %d recovered twice", seq)
		}
		got[seq] = true
	})
	return got
}

func index(msgs []msg) map[uint64]msg {
	m := make(map[uint64]msg, len(msgs))
	for _, x := range msgs {
		m[x.seq] = x
	}
	return m
}

// parityMatrix returns the m×k parity rows of the code, for the library
// codec the tests and benchmarks compare the Encoder with.
func parityMatrix(k, m int) [][]byte {
	rows := make([][]byte, m)
	for i := range rows {
		rows[i] = make([]byte, k)
		for j := range rows[i] {
			rows[i][j] = coef(i, j)
		}
	}
	return rows
}

// newCodec builds klauspost/reedsolomon's encoder for the code, configured
// as the Encoder's was before it applied the coefficients itself:
// single-threaded, and without the AVX2 code-generated kernels (they
// allocate once per Encode), so it runs the SSSE3 kernels.
func newCodec(k, m int) (reedsolomon.Encoder, error) {
	return reedsolomon.New(k, m,
		reedsolomon.WithCustomMatrix(parityMatrix(k, m)),
		reedsolomon.WithMaxGoroutines(1),
		reedsolomon.WithAVX2(false),
		reedsolomon.WithInversionCache(false))
}
