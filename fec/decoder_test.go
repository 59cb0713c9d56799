package fec

import (
	"errors"
	"testing"

	"github.com/telewire/telewire/packet"
)

const ms = 1_000_000

// run sends msgs through an Encoder (message i at i·dt) and delivers every
// packet that drop spares to a Decoder at the time it was sent. It returns
// the sequences of lost DATA, those recovered (each checked against the
// original), and the decoder.
func run(t *testing.T, ec EncoderConfig, dc DecoderConfig, msgs []msg, dt int64,
	drop func(i int, p pkt) bool) (lost, got map[uint64]bool, d *Decoder) {
	t.Helper()
	stream := encodeStream(mustEncoder(t, ec), msgs, dt)
	d = mustDecoder(t, dc)
	orig := index(msgs)
	lost, got = map[uint64]bool{}, map[uint64]bool{}
	di := 0
	for i, p := range stream {
		now := int64(di) * dt
		if !p.parity {
			di++
		}
		if drop(i, p) {
			if !p.parity {
				lost[p.seq] = true
			}
			continue
		}
		if err := deliver(d, p, now); err != nil {
			t.Fatalf("packet %d (%+v): %v", i, p.par, err)
		}
		for s := range collect(t, d, orig) {
			if !lost[s] {
				t.Errorf("seq %d recovered but not lost", s)
			}
			got[s] = true
		}
	}
	return lost, got, d
}

func dropSeqs(seqs ...uint64) func(int, pkt) bool {
	set := map[uint64]bool{}
	for _, s := range seqs {
		set[s] = true
	}
	return func(_ int, p pkt) bool { return !p.parity && set[p.seq] }
}

func TestDecoderConfigValidation(t *testing.T) {
	bad := []DecoderConfig{
		{RingSize: 1000}, {RingSize: 1}, {RingSize: MaxRingSize * 2},
		{MaxBlocks: -1}, {MaxBlocks: MaxBlocks + 1},
		{ParityBuffers: -1}, {MaxPayload: -1}, {MaxPayload: MaxProtectedPayload + 1},
		{BlockTimeoutNanos: -1}, {ParityWaitNanos: -1}, {ParityIdleNanos: -1},
	}
	for _, cfg := range bad {
		if _, err := NewDecoder(cfg); !errors.Is(err, ErrBadParams) {
			t.Errorf("%+v: err = %v, want ErrBadParams", cfg, err)
		}
	}
}

func TestDecoderParityBeforeData(t *testing.T) {
	msgs := makeMsgs(4, 500, 40, 1)
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: 4, M: 2}), msgs, ms)
	d := mustDecoder(t, DecoderConfig{})
	for _, p := range stream[4:] { // both parity shards first
		if err := deliver(d, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	deliver(d, stream[0], 0)
	deliver(d, stream[3], 0)
	got := collect(t, d, index(msgs))
	if len(got) != 2 || !got[501] || !got[502] {
		t.Fatalf("recovered %v, want 501 and 502", got)
	}
	deliver(d, stream[1], 0) // late original of a rebuilt message: a duplicate
	if len(collect(t, d, index(msgs))) != 0 || d.Stats().DataShards != 2 {
		t.Fatalf("late original handled as new: %+v", d.Stats())
	}
}

func TestDecoderDuplicateParity(t *testing.T) {
	msgs := makeMsgs(4, 0, 40, 2)
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: 4, M: 2}), msgs, ms)
	d := mustDecoder(t, DecoderConfig{})
	deliver(d, stream[0], 0)
	deliver(d, stream[3], 0)
	for i := 0; i < 3; i++ {
		if err := deliver(d, stream[4], 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(collect(t, d, index(msgs))) != 0 {
		t.Fatal("duplicates of one parity shard counted as two")
	}
	if err := deliver(d, stream[5], 0); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, d, index(msgs)); len(got) != 2 {
		t.Fatalf("recovered %v", got)
	}
	deliver(d, stream[5], 0) // after recovery
	s := d.Stats()
	if s.ParityDuplicate != 3 || s.ParityReceived != 5 || s.BlocksRecovered != 1 || s.Recovered != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDecoderExpiredBlock(t *testing.T) {
	msgs := makeMsgs(4, 0, 40, 3)
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: 4, M: 2}), msgs, ms)
	for _, viaExpire := range []bool{true, false} {
		d := mustDecoder(t, DecoderConfig{BlockTimeoutNanos: 100 * ms})
		deliver(d, stream[0], 0)
		deliver(d, stream[1], 0)
		deliver(d, stream[4], 0) // data 2, 3 missing, parity 1 to come
		if !d.CanRecover(2, 0) {
			t.Fatal("pending block not recoverable")
		}
		if viaExpire {
			if d.Expire(100*ms-1) != 0 || d.Expire(100*ms) != 1 {
				t.Fatal("block not expired at its timeout")
			}
		}
		if err := deliver(d, stream[5], 100*ms); !errors.Is(err, ErrStale) {
			t.Fatalf("parity of an expired block: err = %v, want ErrStale", err)
		}
		deliver(d, stream[2], 100*ms)
		if len(collect(t, d, index(msgs))) != 0 {
			t.Fatal("expired block recovered")
		}
		if d.CanRecover(3, 100*ms) {
			t.Fatal("expired block still recoverable")
		}
		s := d.Stats()
		if s.BlocksUnrecoverable != 1 || s.ParityStale != 1 {
			t.Fatalf("stats %+v", s)
		}
	}
}

// TestDecoderSequenceWrap runs interleaved blocks across the 2^64 wrap,
// with the worst repairable burst in every group.
func TestDecoderSequenceWrap(t *testing.T) {
	const k, m, depth = 5, 2, 3
	for _, first := range []uint64{0, 1, 1<<63 - 20, ^uint64(0) - 40, ^uint64(0) - 14, ^uint64(0)} {
		msgs := makeMsgs(90, first, 60, first)
		drop := func(_ int, p pkt) bool {
			// the first D·M data packets of every group of D·K
			return !p.parity && (p.seq-first)%(k*depth) < m*depth
		}
		lost, got, d := run(t, EncoderConfig{K: k, M: m, Interleave: depth}, DecoderConfig{}, msgs, ms, drop)
		if len(lost) != 6*m*depth || len(got) != len(lost) {
			t.Fatalf("first=%d: lost %d, recovered %d; stats %+v", first, len(lost), len(got), d.Stats())
		}
	}
}

func TestDecoderPartialBlockClosedByTimer(t *testing.T) {
	// 50 msg/s against the 50 ms default limit: blocks of three.
	msgs := makeMsgs(30, 1000, 100, 4)
	lost, got, _ := run(t, EncoderConfig{K: 10, M: 1}, DecoderConfig{}, msgs, 20*ms,
		dropSeqs(1001, 1004, 1007, 1010, 1020))
	if len(got) != len(lost) {
		t.Fatalf("lost %v, recovered %v", lost, got)
	}
}

func TestDecoderInterleavedBurst(t *testing.T) {
	const k, m, depth = 5, 2, 4
	for _, start := range []uint64{0, 3, 7, 11} { // burst position within the third group
		for _, burst := range []uint64{depth * m, depth*m + 1} {
			msgs := makeMsgs(k*depth*3, 0, 30, start)
			drop := func(_ int, p pkt) bool {
				return !p.parity && p.seq >= 20+start && p.seq < 20+start+burst
			}
			lost, got, _ := run(t, EncoderConfig{K: k, M: m, Interleave: depth}, DecoderConfig{}, msgs, ms, drop)
			if burst == depth*m && len(got) != len(lost) {
				t.Fatalf("burst of D·M=%d at %d: recovered %d of %d", burst, 20+start, len(got), len(lost))
			}
			if burst > depth*m && len(got) != len(lost)-(m+1) {
				// one block loses M+1 shards; every other block is repaired
				t.Fatalf("burst of %d at %d: recovered %d of %d", burst, 20+start, len(got), len(lost))
			}
		}
	}
}

// setupPending returns a decoder holding a K=4, M=2 block with data 2 and 3
// lost and parity 0 received, and the block's packets.
func setupPending(t *testing.T) (*Decoder, []pkt, map[uint64]msg) {
	d, stream, orig := setupData(t)
	if err := deliver(d, stream[4], 0); err != nil {
		t.Fatal(err)
	}
	return d, stream, orig
}

// setupData is setupPending before any parity arrived.
func setupData(t *testing.T) (*Decoder, []pkt, map[uint64]msg) {
	msgs := makeMsgs(4, 100, 50, 5)
	msgs[2].payload = make([]byte, 50) // a fixed shard length
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: 4, M: 2}), msgs, ms)
	d := mustDecoder(t, DecoderConfig{})
	deliver(d, stream[0], 0)
	deliver(d, stream[1], 0)
	return d, stream, index(msgs)
}

// TestDecoderBitFlippedParityHeader flips every bit of the PARITY header
// of the second parity shard, delivered after the first (the block is
// known) or before it (the flipped shard announces the block). The shard is
// rejected, or if the flip makes it look like another valid shard, what it
// rebuilds fails validation: nothing wrong is ever handed out.
func TestDecoderBitFlippedParityHeader(t *testing.T) {
	for _, known := range []bool{true, false} {
		rejected, caught, repaired := 0, 0, 0
		for bit := 0; bit < 64+32; bit++ {
			d, stream, orig := setupData(t)
			if known {
				deliver(d, stream[4], 0)
			}
			p := stream[5]
			switch {
			case bit < 64:
				p.par.First ^= 1 << bit
			case bit < 72:
				p.par.K ^= 1 << (bit - 64)
			case bit < 80:
				p.par.M ^= 1 << (bit - 72)
			case bit < 88:
				p.par.Index ^= 1 << (bit - 80)
			default:
				p.par.Stride ^= 1 << (bit - 88)
			}
			err := deliver(d, p, 0)
			switch {
			case errors.Is(err, ErrInvalidParity), errors.Is(err, ErrConflict), errors.Is(err, ErrStale):
				rejected++
			case err != nil:
				t.Fatalf("bit %d: unexpected error %v", bit, err)
			}
			got := collect(t, d, orig) // fails the test on any wrong message
			for _, g := range stream[4:] {
				if err := deliver(d, g, 0); err != nil && !errors.Is(err, ErrConflict) {
					t.Fatalf("bit %d: genuine parity: %v", bit, err)
				}
				for s := range collect(t, d, orig) {
					got[s] = true
				}
			}
			if d.Stats().RecoveryRejected > 0 {
				caught++
			}
			if len(got) == 2 {
				repaired++
			}
		}
		t.Logf("block known=%v: 96 header bit flips: %d rejected on arrival, %d caught by shard validation, %d blocks still repaired",
			known, rejected, caught, repaired)
		// Known block: only flips of First's low bits (another block) and
		// Index 1→0 (a duplicate) get through. Unknown block: the flipped
		// shard defines it, and the Index flip must be caught on rebuild.
		if known && rejected < 80 || !known && caught == 0 {
			t.Fatalf("rejected %d, caught %d", rejected, caught)
		}
	}
}

// TestDecoderBitFlippedShard flips every bit of a parity shard, shard
// header area included: every rebuild is rejected and nothing is handed out.
func TestDecoderBitFlippedShard(t *testing.T) {
	_, stream, _ := setupPending(t)
	for bit := 0; bit < len(stream[5].payload)*8; bit++ {
		d, stream, orig := setupPending(t)
		p := stream[5]
		p.payload = append([]byte(nil), p.payload...)
		p.payload[bit/8] ^= 1 << (bit % 8)
		if err := deliver(d, p, 0); err != nil {
			t.Fatal(err)
		}
		if got := collect(t, d, orig); len(got) != 0 {
			t.Fatalf("bit %d: corrupt parity rebuilt %v", bit, got)
		}
		if s := d.Stats(); s.RecoveryRejected != 2 || s.BlocksInconsistent != 1 || s.BlocksUnrecoverable != 1 {
			t.Fatalf("bit %d: stats %+v", bit, s)
		}
		if d.CanRecover(102, 0) {
			t.Fatalf("bit %d: failed block still recoverable", bit)
		}
	}
}

func TestDecoderRejectsInvalidParity(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{RingSize: 64, MaxPayload: 100})
	shard := make([]byte, 20)
	cases := []struct {
		par   packet.Parity
		shard []byte
		want  error
	}{
		{packet.Parity{K: 0, M: 1, Stride: 1}, shard, ErrInvalidParity},
		{packet.Parity{K: 1, M: 0, Stride: 1}, shard, ErrInvalidParity},
		{packet.Parity{K: 200, M: 57, Stride: 1}, shard, ErrInvalidParity},
		{packet.Parity{K: 2, M: 2, Index: 2, Stride: 1}, shard, ErrInvalidParity},
		{packet.Parity{K: 2, M: 2, Stride: 0}, shard, ErrInvalidParity},
		{packet.Parity{K: 2, M: 2, Stride: 1}, shard[:ShardHeaderLen-1], ErrInvalidParity},
		{packet.Parity{K: 2, M: 2, Stride: 1}, nil, ErrInvalidParity},
		{packet.Parity{K: 9, M: 2, Stride: 8}, shard, ErrInvalidParity}, // spans 65 > ring of 64
		{packet.Parity{K: 2, M: 2, Stride: 1}, make([]byte, 100+ShardHeaderLen+1), ErrShardTooLong},
	}
	for _, c := range cases {
		if err := d.AddParity(c.par, c.shard, 0); !errors.Is(err, c.want) {
			t.Errorf("%+v len %d: err = %v, want %v", c.par, len(c.shard), err, c.want)
		}
	}
	if s := d.Stats(); s.ParityRejected != uint64(len(cases)) || s.ParityReceived != 0 {
		t.Fatalf("stats %+v", s)
	}
	// The largest valid shard and span are accepted.
	if err := d.AddParity(packet.Parity{K: 8, M: 2, Stride: 9}, make([]byte, 100+ShardHeaderLen), 0); err != nil {
		t.Fatal(err)
	}
}

func TestDecoderConflicts(t *testing.T) {
	d, stream, _ := setupPending(t)
	p := stream[5]
	p.payload = p.payload[:len(p.payload)-1]
	if err := deliver(d, p, 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("other shard length: err = %v", err)
	}
	// A new block whose parity is shorter than data already received.
	d2 := mustDecoder(t, DecoderConfig{})
	d2.AddData(10, 0, make([]byte, 40), 0)
	if err := d2.AddParity(packet.Parity{First: 9, K: 3, M: 1, Stride: 1}, make([]byte, 30), 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("parity shorter than a data shard: err = %v", err)
	}
	// Data longer than the pending block's shard length: the block is given up.
	if err := d2.AddParity(packet.Parity{First: 20, K: 3, M: 1, Stride: 1}, make([]byte, 30), 0); err != nil {
		t.Fatal(err)
	}
	d2.AddData(21, 0, make([]byte, 40), 0)
	if s := d2.Stats(); s.BlocksInconsistent != 1 || s.BlocksUnrecoverable != 1 || s.ParityRejected != 1 {
		t.Fatalf("stats %+v", s)
	}
	if d2.CanRecover(22, 0) {
		t.Fatal("inconsistent block still recoverable")
	}
}

func TestDecoderSequenceWindow(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{RingSize: 256})
	d.AddData(10_000, 0, nil, 0)
	par := packet.Parity{K: 4, M: 1, Stride: 1}
	for _, first := range []uint64{0, 10_000 - 256 - 3, 10_000 + 257} {
		par.First = first
		if err := d.AddParity(par, make([]byte, ShardHeaderLen), 0); !errors.Is(err, ErrStale) {
			t.Errorf("First=%d: err = %v, want ErrStale", first, err)
		}
	}
	for _, first := range []uint64{10_000 - 256 - 2, 10_000 + 256} {
		par.First = first
		if err := d.AddParity(par, make([]byte, ShardHeaderLen), 0); err != nil {
			t.Errorf("First=%d: err = %v", first, err)
		}
	}
	// Data older than the ring is not kept over newer data.
	d.AddData(10_000-256, 0, []byte("old"), 0)
	if d.Stats().DataShards != 1 {
		t.Fatalf("stats %+v", d.Stats())
	}
}

func TestCanRecover(t *testing.T) {
	msgs := makeMsgs(8, 0, 40, 6)
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: 4, M: 2}), msgs, ms)
	// stream: data 0-3, parity(0) ×2, data 4-7, parity(4) ×2
	d := mustDecoder(t, DecoderConfig{ParityWaitNanos: 100 * ms, ParityTrailNanos: 100 * ms})
	if d.CanRecover(1, 0) {
		t.Fatal("recoverable before any parity")
	}
	deliver(d, stream[0], 0)
	deliver(d, stream[3], 0)
	deliver(d, stream[4], 0) // parity 0; data 1, 2 missing; parity 1 still expected
	if !d.CanRecover(1, 50*ms) || !d.CanRecover(2, 50*ms) {
		t.Fatal("block with enough parity coming not recoverable")
	}
	if d.CanRecover(0, 50*ms) {
		t.Fatal("received sequence reported recoverable")
	}
	if d.CanRecover(1, 100*ms) {
		t.Fatal("still waiting for parity after ParityWait")
	}
	deliver(d, stream[5], 100*ms)
	collect(t, d, index(msgs))
	if d.CanRecover(1, 100*ms) {
		t.Fatal("rebuilt sequence reported recoverable")
	}

	// Parity index 1 first: index 0 is behind it, lost; one parity cannot
	// rebuild two shards.
	d = mustDecoder(t, DecoderConfig{})
	deliver(d, stream[6], 0)
	deliver(d, stream[9], 0)
	deliver(d, stream[11], 0)
	if d.CanRecover(5, 0) {
		t.Fatal("two missing, one parity held, none expected: reported recoverable")
	}

	// Unknown block while FEC is active: wait ParityWait from when the
	// loss showed.
	d = mustDecoder(t, DecoderConfig{ParityWaitNanos: 100 * ms, ParityIdleNanos: 1000 * ms})
	for _, p := range stream[:6] {
		deliver(d, p, 0)
	}
	deliver(d, stream[6], 10*ms) // seq 4
	deliver(d, stream[8], 30*ms) // seq 6: seq 5 is missing from 30 ms
	if !d.CanRecover(5, 129*ms) || d.CanRecover(5, 130*ms) {
		t.Fatal("unknown block: wrong wait")
	}
	if !d.CanRecover(7, 129*ms) || d.CanRecover(7, 130*ms) { // tail: newest arrival at 30 ms
		t.Fatal("tail loss: wrong wait")
	}
	if d.CanRecover(5, 1000*ms) {
		t.Fatal("recoverable while FEC is idle")
	}
}

// TestCanRecoverStopsAfterLaterParity: blocks complete, and their parity
// leaves, in the order of their first sequences, interleaved or not. A
// block lost whole, its parity with it (a burst, or a dropped coalesced
// read), is known to be beyond FEC's reach as soon as parity for a block
// that starts after it arrives: the NACK must not wait ParityWait for it,
// by which time a fast sender's retransmit buffer may have moved on.
func TestCanRecoverStopsAfterLaterParity(t *testing.T) {
	for _, c := range []struct{ k, m, d int }{{4, 2, 1}, {4, 2, 3}, {10, 3, 2}} {
		g := uint64(c.k * c.d) // sequences per group
		msgs := makeMsgs(int(3*g), 1000, 40, 9)
		stream := encodeStream(mustEncoder(t, EncoderConfig{K: c.k, M: c.m, Interleave: c.d}), msgs, 0)
		// Group 0 arrives whole; group 1 is lost whole, data and parity;
		// group 2's data arrives, its parity is held back.
		g1, g2 := uint64(1000)+g, uint64(1000)+2*g
		var held []pkt
		d := mustDecoder(t, DecoderConfig{ParityWaitNanos: 100 * ms})
		for _, p := range stream {
			first := p.seq
			if p.parity {
				first = p.par.First
			}
			switch {
			case first >= g1 && first < g2: // group 1: lost
			case p.parity && first >= g2:
				held = append(held, p)
			default:
				if err := deliver(d, p, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		for seq := g1; seq < g2; seq++ {
			if !d.CanRecover(seq, ms) {
				t.Fatalf("%+v: seq %d: not waiting for parity that may still come", c, seq)
			}
		}
		if err := deliver(d, held[len(held)-1], ms); err != nil { // any of group 2's
			t.Fatal(err)
		}
		for seq := g1; seq < g2; seq++ {
			if d.CanRecover(seq, ms) {
				t.Fatalf("%+v: seq %d still waits for parity after a later block's arrived", c, seq)
			}
		}
	}
}

func TestDecoderBlockTableEviction(t *testing.T) {
	msgs := makeMsgs(12, 0, 20, 8)
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: 3, M: 4}), msgs, 0)
	// blocks at 0, 3, 6, 9: data at stream[7b..7b+2], parity at stream[7b+3..7b+6]
	d := mustDecoder(t, DecoderConfig{MaxBlocks: 2})
	par := func(b int, now int64) {
		if err := deliver(d, stream[7*b+3], now); err != nil {
			t.Fatal(err)
		}
	}
	par(0, 0)
	par(1, 1)
	par(2, 2) // blocks 0 and 1 pending: the older is evicted
	if s := d.Stats(); s.BlocksEvicted != 1 || s.BlocksUnrecoverable != 1 {
		t.Fatalf("stats %+v", s)
	}
	if d.CanRecover(1, 3) || !d.CanRecover(4, 3) {
		t.Fatal("wrong block evicted")
	}
	// A finished block is reused before a pending one.
	deliver(d, stream[14], 3)
	deliver(d, stream[15], 3) // block 2 (seqs 6-8) rebuilds 8
	par(3, 4)
	if s := d.Stats(); s.BlocksEvicted != 1 || s.Recovered != 1 || !d.CanRecover(4, 4) {
		t.Fatalf("stats %+v", s)
	}
	collect(t, d, index(msgs))
}

func TestDecoderParityBuffersBounded(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{ParityBuffers: 1})
	shard := make([]byte, ShardHeaderLen)
	for i := uint64(0); i < 3; i++ {
		if err := d.AddParity(packet.Parity{First: 10 * i, K: 3, M: 2, Stride: 1}, shard, 0); err != nil {
			t.Fatal(err)
		}
	}
	if s := d.Stats(); s.ParityDropped != 2 {
		t.Fatalf("stats %+v", s)
	}
	if d.Expire(DefaultBlockTimeoutNanos) != 3 || len(d.free) != 1 {
		t.Fatal("parity buffer not released")
	}
}

func TestDecoderRecoveredQueueBounded(t *testing.T) {
	// Three K=100, M=100 blocks each losing 100 data shards: 300 rebuilt
	// messages against a queue of 256 when nobody takes them.
	msgs := makeMsgs(300, 0, 4, 7)
	stream := encodeStream(mustEncoder(t, EncoderConfig{K: 100, M: 100}), msgs, 0)
	d := mustDecoder(t, DecoderConfig{})
	for _, p := range stream {
		if p.parity {
			if err := deliver(d, p, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if s := d.Stats(); s.Recovered != 300 || s.RecoveredDropped != 300-recoveredCap {
		t.Fatalf("stats %+v", s)
	}
	got := collect(t, d, index(msgs))
	if len(got) != recoveredCap || !got[299] || got[0] {
		t.Fatalf("took %d messages", len(got))
	}
}

func TestDecoderDataTooLongAndReset(t *testing.T) {
	d := mustDecoder(t, DecoderConfig{MaxPayload: 10})
	d.AddData(1, 0, make([]byte, 11), 0)
	d.AddData(2, 0, make([]byte, 10), 0)
	if s := d.Stats(); s.DataTooLong != 1 || s.DataShards != 1 {
		t.Fatalf("stats %+v", s)
	}
	d.Reset()
	d.AddData(2, 0, make([]byte, 10), 0) // forgotten: stored again
	if d.Stats().DataShards != 2 {
		t.Fatal("Reset kept data")
	}
}
