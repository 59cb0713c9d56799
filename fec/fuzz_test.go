package fec

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/telewire/telewire/packet"
)

// fuzzScenario is a stream encoded once: the originals and their packets.
type fuzzScenario struct {
	msgs   []msg
	orig   map[uint64]msg
	data   []pkt
	parity []pkt
}

var fuzzScenarios = sync.OnceValue(func() []fuzzScenario {
	var out []fuzzScenario
	for _, c := range []struct {
		cfg   EncoderConfig
		first uint64
	}{
		{EncoderConfig{K: 4, M: 2}, 0},
		{EncoderConfig{K: 3, M: 2, Interleave: 2}, ^uint64(0) - 9}, // across the wrap
		{EncoderConfig{K: 5, M: 3}, 1 << 50},
		{EncoderConfig{K: 2, M: 1, Interleave: 3}, 77},
	} {
		msgs := makeMsgs(24, c.first, 40, c.first+uint64(c.cfg.K))
		enc, err := NewEncoder(c.cfg)
		if err != nil {
			panic(err)
		}
		sc := fuzzScenario{msgs: msgs, orig: index(msgs)}
		for _, p := range encodeStream(enc, msgs, 10*ms) {
			if p.parity {
				sc.parity = append(sc.parity, p)
			} else {
				sc.data = append(sc.data, p)
			}
		}
		out = append(out, sc)
	}
	return out
})

// FuzzDecoder drives a Decoder with arbitrary sequences of a stream's
// genuine packets (any order, duplicates, losses), mutated parity headers
// and shards, forged parity, forged data, clock jumps, Expire and
// CanRecover calls. It must not panic, must keep its bounds, and must never
// hand out a message that differs from the original with that sequence.
func FuzzDecoder(f *testing.F) {
	inOrder := []byte{}
	for i := 0; i < 30; i++ {
		inOrder = append(inOrder, 0, byte(i), 1, byte(i))
	}
	f.Add(byte(0), inOrder)
	f.Add(byte(1), []byte{1, 0, 1, 1, 0, 0, 0, 2, 0, 5, 1, 2, 1, 3})
	f.Add(byte(2), []byte{2, 0, 9, 1, 0, 1, 0, 0, 3, 1, 7, 0, 0, 4, 200, 5, 0, 6, 3})
	f.Add(byte(3), []byte{7, 30, 0, 0, 0, 0, 0, 0, 0, 77, 2, 1, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(byte(0), []byte{8, 1, 3, 0, 0, 0, 2, 0, 3, 1, 0, 1, 1})

	f.Fuzz(func(t *testing.T, sel byte, ops []byte) {
		scs := fuzzScenarios()
		sc := scs[int(sel)%len(scs)]
		cfg := DecoderConfig{RingSize: 32, MaxBlocks: 3, ParityBuffers: 4, MaxPayload: 48,
			BlockTimeoutNanos: 200 * ms, ParityWaitNanos: 30 * ms, ParityIdleNanos: 500 * ms}
		d, err := NewDecoder(cfg)
		if err != nil {
			t.Fatal(err)
		}
		now := int64(0)
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		for len(ops) > 0 {
			op, arg := next(), next()
			switch op % 9 {
			case 0:
				deliver(d, sc.data[int(arg)%len(sc.data)], now)
			case 1:
				deliver(d, sc.parity[int(arg)%len(sc.parity)], now)
			case 2: // parity with a header field changed
				p := sc.parity[int(arg)%len(sc.parity)]
				field, x := next(), next()
				switch field % 5 {
				case 0:
					p.par.First ^= uint64(x) << (field / 5 % 8 * 8)
				case 1:
					p.par.K ^= x
				case 2:
					p.par.M ^= x
				case 3:
					p.par.Index ^= x
				default:
					p.par.Stride ^= x
				}
				deliver(d, p, now)
			case 3: // parity with a flipped bit
				p := sc.parity[int(arg)%len(sc.parity)]
				p.payload = bytes.Clone(p.payload)
				pos := int(next())<<8 | int(next())
				p.payload[pos/8%len(p.payload)] ^= 1 << (pos % 8)
				deliver(d, p, now)
			case 4:
				now += int64(arg) * ms
			case 5:
				d.Expire(now)
			case 6:
				d.CanRecover(sc.msgs[0].seq+uint64(int8(arg)), now)
			case 7: // forged parity: header and shard from the input
				var h [12]byte
				for i := range h {
					h[i] = next()
				}
				par := packet.Parity{
					First: sc.msgs[0].seq + binary.BigEndian.Uint64(h[:8])%64,
					K:     h[8], M: h[9], Index: h[10], Stride: h[11],
				}
				n := min(int(arg)%80, len(ops))
				shard := bytes.Clone(ops[:n])
				ops = ops[n:]
				d.AddParity(par, shard, now)
			case 8: // data that is not the original (a forged or reused sequence)
				p := sc.data[int(arg)%len(sc.data)]
				p.payload = append(bytes.Clone(p.payload), next())
				p.ts ^= int64(next())
				d.AddData(p.seq, p.ts, p.payload, now)
			}
			checkFuzzInvariants(t, d, sc)
		}
		d.Expire(now + cfg.BlockTimeoutNanos)
		checkFuzzInvariants(t, d, sc)
	})
}

func checkFuzzInvariants(t *testing.T, d *Decoder, sc fuzzScenario) {
	t.Helper()
	d.TakeRecovered(func(seq uint64, ts int64, payload []byte) {
		m, ok := fuzzOrig(sc, seq)
		if !ok || ts != m.ts || !bytes.Equal(payload, m.payload) {
			t.Fatalf("seq %d handed out ts %d payload %x: not what was sent", seq, ts, payload)
		}
	})
	held, pending := 0, 0
	for i := range d.blocks {
		b := &d.blocks[i]
		if b.nPar < 0 || b.nPar > maxStored || (b.state != stPending && b.nPar != 0) {
			t.Fatalf("block %d holds %d parity in state %d", i, b.nPar, b.state)
		}
		held += b.nPar
		if b.state == stPending {
			pending++
		}
	}
	if pending != d.pending {
		t.Fatalf("%d blocks pending, counted %d", pending, d.pending)
	}
	if held+len(d.free) != len(d.pool) {
		t.Fatalf("parity buffers: %d held + %d free != %d", held, len(d.free), len(d.pool))
	}
	for i := range d.pool {
		if cap(d.pool[i]) > d.cfg.MaxPayload+ShardHeaderLen {
			t.Fatalf("parity buffer of %d bytes", cap(d.pool[i]))
		}
	}
	for _, p := range d.ring {
		for i := range p {
			if cap(p[i].buf) > d.cfg.MaxPayload+ShardHeaderLen {
				t.Fatalf("ring buffer of %d bytes", cap(p[i].buf))
			}
		}
	}
	if d.rqLen > recoveredCap {
		t.Fatalf("recovered queue holds %d", d.rqLen)
	}
}

// fuzzOrig returns the original with sequence seq. Forged data (op 8)
// never changes what a rebuilt message must be: the original.
func fuzzOrig(sc fuzzScenario, seq uint64) (msg, bool) {
	m, ok := sc.orig[seq]
	return m, ok
}
