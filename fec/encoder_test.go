package fec

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/packet"
)

func TestEncoderConfigValidation(t *testing.T) {
	bad := []EncoderConfig{
		{K: 256},
		{K: -1},
		{M: -1},
		{M: 256},
		{K: 200, M: 57},
		{Interleave: 256},
		{Interleave: -1},
		{K: 100, M: 10, Interleave: 10}, // 1100 shard buffers
	}
	for _, cfg := range bad {
		if _, err := NewEncoder(cfg); !errors.Is(err, ErrBadParams) {
			t.Errorf("%+v: err = %v, want ErrBadParams", cfg, err)
		}
	}
	e := mustEncoder(t, EncoderConfig{})
	if k, m, d := e.Params(); k != DefaultK || m != DefaultM || d != 1 {
		t.Fatalf("defaults: K=%d M=%d D=%d", k, m, d)
	}
	for _, km := range [][2]int{{0, 1}, {256, 1}, {255, 2}, {10, -1}} {
		if err := e.SetParams(km[0], km[1]); !errors.Is(err, ErrBadParams) {
			t.Errorf("SetParams%v: err = %v", km, err)
		}
	}
	if err := e.SetInterleave(0); !errors.Is(err, ErrBadParams) {
		t.Errorf("SetInterleave(0): err = %v", err)
	}
}

type taken struct {
	par   packet.Parity
	shard []byte
}

func take(e *Encoder) []taken {
	var out []taken
	e.TakeParity(func(par packet.Parity, shard []byte) {
		out = append(out, taken{par, append([]byte(nil), shard...)})
	})
	return out
}

func TestEncoderFullBlock(t *testing.T) {
	e := mustEncoder(t, EncoderConfig{K: 4, M: 2})
	for i := uint64(0); i < 3; i++ {
		if e.Add(100+i, 0, make([]byte, 10*i), 0) {
			t.Fatalf("block completed after %d shards", i+1)
		}
	}
	if e.PendingParity() != 0 {
		t.Fatal("parity pending before the block is full")
	}
	if !e.Add(103, 0, []byte{1}, 0) {
		t.Fatal("full block not reported")
	}
	if e.PendingParity() != 2 {
		t.Fatalf("PendingParity = %d, want 2", e.PendingParity())
	}
	got := take(e)
	if len(got) != 2 {
		t.Fatalf("%d parity shards, want 2", len(got))
	}
	for i, g := range got {
		want := packet.Parity{First: 100, K: 4, M: 2, Index: uint8(i), Stride: 1}
		if g.par != want {
			t.Errorf("parity %d: %+v, want %+v", i, g.par, want)
		}
		if len(g.shard) != ShardHeaderLen+20 {
			t.Errorf("shard length %d, want the longest shard %d", len(g.shard), ShardHeaderLen+20)
		}
	}
	if len(take(e)) != 0 {
		t.Fatal("parity taken twice")
	}
	s := e.Stats()
	if s.Blocks != 1 || s.PartialBlocks != 0 || s.DataShards != 4 || s.ParityShards != 2 ||
		s.ParityBytes != 2*34 || s.OverheadBytes != 2*(34+packet.HeaderLen+packet.ParityHeaderLen) {
		t.Fatalf("stats %+v", s)
	}
}

func TestEncoderTimeLimit(t *testing.T) {
	const ms = 1_000_000
	e := mustEncoder(t, EncoderConfig{K: 10, M: 2}) // default 50 ms limit
	if _, ok := e.NextFlushAt(); ok {
		t.Fatal("flush time with no open block")
	}
	e.Add(7, 0, []byte("a"), 0)
	e.Add(8, 20*ms, []byte("bb"), 20*ms)
	e.Add(9, 40*ms, nil, 40*ms)
	at, ok := e.NextFlushAt()
	if !ok || at != 50*ms {
		t.Fatalf("NextFlushAt = %d, %v; want 50 ms", at, ok)
	}
	if e.Flush(at - 1) {
		t.Fatal("flushed before the limit")
	}
	if !e.Flush(at) {
		t.Fatal("not flushed at the limit")
	}
	got := take(e)
	if len(got) != 2 || got[0].par != (packet.Parity{First: 7, K: 3, M: 2, Stride: 1}) {
		t.Fatalf("partial block parity %+v", got)
	}
	if e.Stats().PartialBlocks != 1 {
		t.Fatalf("stats %+v", e.Stats())
	}
	// Add past the limit closes the old group itself.
	e.Add(10, 0, nil, 100*ms)
	if !e.Add(11, 0, nil, 200*ms) {
		t.Fatal("Add after the limit did not close the group")
	}
	if got := take(e); len(got) != 2 || got[0].par.First != 10 || got[0].par.K != 1 {
		t.Fatalf("parity %+v", got)
	}
	// No limit.
	e2 := mustEncoder(t, EncoderConfig{K: 3, M: 1, MaxDelayNanos: -1})
	e2.Add(0, 0, nil, 0)
	if _, ok := e2.NextFlushAt(); ok || e2.Flush(1<<62) {
		t.Fatal("time limit applied although disabled")
	}
	if !e2.FlushAll() || len(take(e2)) != 1 {
		t.Fatal("FlushAll did not close the group")
	}
}

func TestEncoderGapAndOversize(t *testing.T) {
	e := mustEncoder(t, EncoderConfig{K: 4, M: 1})
	e.Add(0, 0, nil, 0)
	e.Add(1, 0, nil, 0)
	if !e.Add(5, 0, nil, 0) { // gap: the block {0,1} is closed
		t.Fatal("gap did not close the block")
	}
	if got := take(e); len(got) != 1 || got[0].par.First != 0 || got[0].par.K != 2 {
		t.Fatalf("parity %+v", got)
	}
	if !e.Add(6, 0, make([]byte, MaxProtectedPayload+1), 0) {
		t.Fatal("oversized payload did not close the block")
	}
	if got := take(e); len(got) != 1 || got[0].par.First != 5 || got[0].par.K != 1 {
		t.Fatalf("parity %+v", got)
	}
	if e.Stats().Unprotected != 1 {
		t.Fatalf("stats %+v", e.Stats())
	}
	e.Add(7, 0, nil, 0) // new block after the skipped one
	if e.FlushAll(); take(e)[0].par.First != 7 {
		t.Fatal("block after an unprotected packet does not start at it")
	}
}

func TestEncoderSetParams(t *testing.T) {
	e := mustEncoder(t, EncoderConfig{K: 2, M: 1})
	e.Add(0, 0, nil, 0)
	if err := e.SetParams(3, 2); err != nil {
		t.Fatal(err)
	}
	if !e.Add(1, 0, nil, 0) { // the open block keeps K=2, M=1
		t.Fatal("open block changed size")
	}
	if got := take(e); len(got) != 1 || got[0].par.K != 2 {
		t.Fatalf("parity %+v", got)
	}
	e.Add(2, 0, nil, 0)
	e.Add(3, 0, nil, 0)
	if !e.Add(4, 0, nil, 0) {
		t.Fatal("new block not K=3")
	}
	if got := take(e); len(got) != 2 || got[0].par.K != 3 || got[0].par.M != 2 {
		t.Fatalf("parity %+v", got)
	}
	// M = 0 turns FEC off.
	if err := e.SetParams(3, 0); err != nil {
		t.Fatal(err)
	}
	for s := uint64(5); s < 20; s++ {
		if e.Add(s, 0, nil, 0) {
			t.Fatal("parity produced with FEC off")
		}
	}
	if e.FlushAll() || e.PendingParity() != 0 {
		t.Fatal("FEC off buffered a block")
	}
}

func TestEncoderParityDroppedWhenNotTaken(t *testing.T) {
	e := mustEncoder(t, EncoderConfig{K: 1, M: 2})
	e.Add(0, 0, nil, 0)
	e.Add(1, 0, nil, 0) // lane 0 encodes again: the first parity was not taken
	if e.Stats().ParityDropped != 2 {
		t.Fatalf("stats %+v", e.Stats())
	}
	if got := take(e); len(got) != 2 || got[0].par.First != 1 {
		t.Fatalf("parity %+v", got)
	}
}

func TestEncoderInterleave(t *testing.T) {
	e := mustEncoder(t, EncoderConfig{K: 2, M: 1, Interleave: 3})
	var order []packet.Parity
	for s := uint64(10); s < 16; s++ {
		ready := e.Add(s, 0, nil, 0)
		if ready != (s >= 13) {
			t.Fatalf("seq %d: ready=%v", s, ready)
		}
		for _, g := range take(e) {
			order = append(order, g.par)
		}
	}
	want := []packet.Parity{
		{First: 10, K: 2, M: 1, Stride: 3},
		{First: 11, K: 2, M: 1, Stride: 3},
		{First: 12, K: 2, M: 1, Stride: 3},
	}
	if len(order) != 3 {
		t.Fatalf("parity %+v", order)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("parity %d = %+v, want %+v", i, order[i], want[i])
		}
	}
	// A partial group: lanes with shards close, empty lanes send nothing.
	e.Add(16, 0, nil, 0)
	e.Add(17, 0, nil, 0)
	if !e.FlushAll() {
		t.Fatal("partial group not closed")
	}
	got := take(e)
	if len(got) != 2 || got[0].par != (packet.Parity{First: 16, K: 1, M: 1, Stride: 3}) ||
		got[1].par != (packet.Parity{First: 17, K: 1, M: 1, Stride: 3}) {
		t.Fatalf("partial group parity %+v", got)
	}
}

// TestEncoderParityMatchesDefinition holds the Encoder's parity to the
// documented code, computed here bit by bit: parity i of a block of n data
// shards (header and payload, zero-padded to the longest) is
// Σ_j c(i,j)·D_j. Shard lengths on both sides of the kernel padding, full
// and partial blocks, and parameters changing between blocks are covered:
// the decoder relies on exactly this, and the padding must never show.
func TestEncoderParityMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	e := mustEncoder(t, EncoderConfig{MaxDelayNanos: -1})
	var x crcScratch
	seq := uint64(1 << 40)
	for _, c := range []struct{ k, m, n, maxLen int }{
		{1, 1, 1, 0}, {4, 2, 4, 50}, {10, 3, 10, 200}, {10, 3, 7, 200},
		{10, 3, 10, 50}, {17, 5, 17, 1300}, {200, 56, 200, 64}, {1, 255, 1, 130}, {5, 4, 2, 300},
	} {
		if err := e.SetParams(c.k, c.m); err != nil {
			t.Fatal(err)
		}
		var shards [][]byte
		L := 0
		for j := 0; j < c.n; j++ {
			p := make([]byte, rng.IntN(c.maxLen+1))
			for i := range p {
				p[i] = byte(rng.Uint32())
			}
			ts := int64(rng.Uint64() >> 1)
			sh := make([]byte, ShardHeaderLen+len(p))
			x.putShardHeader(sh, seq, ts, p)
			copy(sh[ShardHeaderLen:], p)
			shards = append(shards, sh)
			L = max(L, len(sh))
			ready := e.Add(seq, ts, p, 0)
			seq++
			if ready != (j == c.k-1) {
				t.Fatalf("%+v: Add %d reported ready=%v", c, j, ready)
			}
		}
		if c.n < c.k && !e.FlushAll() {
			t.Fatalf("%+v: partial block not closed", c)
		}
		got := take(e)
		if len(got) != c.m {
			t.Fatalf("%+v: %d parity shards", c, len(got))
		}
		for i, g := range got {
			want := make([]byte, L)
			for j, sh := range shards {
				for b, v := range sh {
					want[b] ^= slowMul(coef(i, j), v)
				}
			}
			if g.par.K != uint8(c.n) || g.par.M != uint8(c.m) || g.par.Index != uint8(i) {
				t.Fatalf("%+v: parity header %+v", c, g.par)
			}
			if !bytes.Equal(g.shard, want) {
				t.Fatalf("%+v: parity %d (%d bytes) differs from the definition", c, i, len(g.shard))
			}
		}
		seq += 1000 // a gap: the next block starts afresh
	}
}

// TestEncoderParityInBlockOrder holds the Encoder to the order the
// Decoder's CanRecover relies on: parity comes out in the order of the
// blocks' first sequences, whatever closes them (full blocks, the time
// limit, sequence gaps, unprotected payloads) and however the parameters
// change between groups.
func TestEncoderParityInBlockOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	e := mustEncoder(t, EncoderConfig{K: 4, M: 2, Interleave: 3, MaxDelayNanos: 10})
	seq, now := uint64(1<<63-500), int64(0) // crosses the signed midpoint
	var last uint64
	have, blocks := false, 0
	check := func() {
		idx := -1
		e.TakeParity(func(par packet.Parity, _ []byte) {
			if int(par.Index) != idx+1 {
				if par.Index != 0 || (have && !packet.SeqLess(last, par.First)) {
					t.Fatalf("parity of block %d (index %d) after block %d", par.First, par.Index, last)
				}
				last, have = par.First, true
				blocks++
			}
			idx = int(par.Index)
		})
	}
	for i := 0; i < 20_000; i++ {
		switch r := rng.IntN(100); {
		case r < 2:
			_ = e.SetParams(1+rng.IntN(12), 1+rng.IntN(4))
		case r < 4:
			_ = e.SetInterleave(1 + rng.IntN(6))
		case r < 6:
			seq += uint64(1 + rng.IntN(5)) // a gap
		case r < 8:
			now += 10
			if e.Flush(now) {
				check()
			}
			continue
		}
		size := rng.IntN(30)
		if rng.IntN(200) == 0 {
			size = MaxProtectedPayload + 1
		}
		if e.Add(seq, now, make([]byte, size), now) {
			check()
		}
		seq++
		now += int64(rng.IntN(3))
	}
	if blocks < 1000 {
		t.Fatalf("only %d blocks", blocks)
	}
}
