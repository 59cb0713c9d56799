package fec

import (
	"testing"

	"github.com/telewire/telewire/packet"
)

// blockStream pre-encodes nBlocks consecutive K+M blocks of fixed-size
// payloads: data packets and parity packets of block b.
type blockStream struct {
	k, m   int
	data   [][]msg
	parity [][]pkt
}

func newBlockStream(t testing.TB, k, m, size, nBlocks int) *blockStream {
	msgs := makeMsgs(k*nBlocks, 1<<20, size, uint64(k*m))
	for i := range msgs {
		msgs[i].payload = append(msgs[i].payload[:0], make([]byte, size)...)
		msgs[i].payload[0] = byte(i)
	}
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: k, M: m, MaxDelayNanos: -1}), msgs, 0)
	bs := &blockStream{k: k, m: m}
	for b := 0; b < nBlocks; b++ {
		blk := stream[b*(k+m) : (b+1)*(k+m)]
		bs.data = append(bs.data, msgs[b*k:(b+1)*k])
		bs.parity = append(bs.parity, blk[k:])
	}
	return bs
}

// feed delivers block b to d with its first `lose` data shards missing and
// only the parity needed, and returns how many messages were rebuilt.
func (bs *blockStream) feed(d *Decoder, b, lose int) int {
	for _, x := range bs.data[b][lose:] {
		d.AddData(x.seq, x.ts, x.payload, 0)
	}
	for _, p := range bs.parity[b][:max(lose, 1)] {
		d.AddParity(p.par, p.payload, 0)
	}
	return d.TakeRecovered(func(uint64, int64, []byte) {})
}

func TestEncodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, c := range []struct{ k, m, d, size int }{{10, 3, 1, 1200}, {4, 2, 1, 200}, {5, 2, 4, 300}} {
		enc := mustEncoder(t, EncoderConfig{K: c.k, M: c.m, Interleave: c.d})
		payload := make([]byte, c.size)
		seq, now := uint64(0), int64(0)
		sink := 0
		step := func() {
			for i := 0; i < c.k*c.d; i++ {
				if enc.Add(seq, now, payload[:c.size-int(seq%7)], now) {
					enc.TakeParity(func(_ packet.Parity, shard []byte) { sink += len(shard) })
				}
				seq++
				now += 1000
			}
			// a partial block closed by the time limit
			enc.Add(seq, now, payload, now)
			seq++
			now += DefaultMaxDelayNanos
			if enc.Flush(now) {
				enc.TakeParity(func(_ packet.Parity, shard []byte) { sink += len(shard) })
			}
		}
		step() // warm-up: shard buffers
		if a := testing.AllocsPerRun(50, step); a != 0 {
			t.Errorf("K=%d M=%d D=%d: %.1f allocations per group, want 0", c.k, c.m, c.d, a)
		}
		if sink == 0 {
			t.Fatal("no parity produced")
		}
	}
}

func TestDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	for _, c := range []struct{ k, m, size, lose int }{
		{10, 3, 1200, 0}, // no loss: data kept, parity finds the block complete
		{10, 3, 1200, 3}, // three shards rebuilt per block
		{4, 2, 200, 1},
	} {
		bs := newBlockStream(t, c.k, c.m, c.size, 160)
		d := mustDecoder(t, DecoderConfig{RingSize: 128})
		b, rebuilt := 0, 0
		step := func() {
			rebuilt += bs.feed(d, b, c.lose)
			d.CanRecover(bs.data[b][0].seq, 0)
			d.Expire(0)
			b++
		}
		// Warm-up: the ring's slot buffers grow the first time each slot is
		// used, so run past one full turn of the ring.
		for range 128/c.k + 2 {
			step()
		}
		if a := testing.AllocsPerRun(100, step); a != 0 {
			t.Errorf("K=%d M=%d lose=%d: %.1f allocations per block, want 0", c.k, c.m, c.lose, a)
		}
		if rebuilt != b*c.lose {
			t.Fatalf("rebuilt %d, want %d", rebuilt, b*c.lose)
		}
	}
}
