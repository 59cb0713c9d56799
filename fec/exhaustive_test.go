package fec

import (
	"math/bits"
	"testing"
)

// TestExhaustiveLossPatterns encodes one block for every K <= 6 and M <= 3
// and, for every pattern of up to M+1 lost shards (data or parity), feeds
// the survivors to a fresh Decoder data-first and parity-first. Up to M
// losses must rebuild every lost data shard, correctly; M+1 losses must rebuild nothing
// and count the block unrecoverable once it expires.
func TestExhaustiveLossPatterns(t *testing.T) {
	patterns := 0
	for k := 1; k <= 6; k++ {
		for m := 1; m <= 3; m++ {
			for _, first := range []uint64{0, 1 << 40, ^uint64(0) - 2} {
				msgs := makeMsgs(k, first, 50, uint64(k*10+m))
				msgs[0].payload = nil // an empty payload in every block
				enc := mustEncoder(t, EncoderConfig{K: k, M: m})
				stream := encodeStream(enc, msgs, 1000)
				if len(stream) != k+m {
					t.Fatalf("K=%d M=%d: %d packets, want %d", k, m, len(stream), k+m)
				}
				orig := index(msgs)
				n := k + m
				for mask := 0; mask < 1<<n; mask++ {
					lost := bits.OnesCount(uint(mask))
					if lost > m+1 {
						continue
					}
					for _, parityFirst := range []bool{false, true} {
						patterns++
						checkPattern(t, k, m, stream, orig, mask, parityFirst)
					}
				}
			}
		}
	}
	t.Logf("%d loss patterns checked", patterns)
}

func checkPattern(t *testing.T, k, m int, stream []pkt, orig map[uint64]msg, mask int, parityFirst bool) {
	t.Helper()
	d := mustDecoder(t, DecoderConfig{RingSize: 64, MaxBlocks: 4})
	var order []int
	for pass := 0; pass < 2; pass++ {
		wantParity := (pass == 0) == parityFirst
		for i, p := range stream {
			if p.parity == wantParity && mask&(1<<i) == 0 {
				order = append(order, i)
			}
		}
	}
	got := map[uint64]bool{}
	for _, i := range order {
		if err := deliver(d, stream[i], 0); err != nil {
			t.Fatalf("K=%d M=%d mask=%b: deliver %d: %v", k, m, mask, i, err)
		}
		for s := range collect(t, d, orig) {
			got[s] = true
		}
	}
	lostData, lostParity := 0, 0
	want := map[uint64]bool{}
	for i, p := range stream {
		if mask&(1<<i) == 0 {
			continue
		}
		if p.parity {
			lostParity++
		} else {
			lostData++
			want[p.seq] = true
		}
	}
	recoverable := lostData+lostParity <= m
	if recoverable {
		// Data first, exactly the lost shards are rebuilt. Parity first,
		// the decoder rebuilds as soon as any K shards are present, so
		// data still on its way may be rebuilt too (and checked correct
		// by collect).
		if !parityFirst && len(got) != len(want) {
			t.Fatalf("K=%d M=%d mask=%b parityFirst=%v: recovered %v, want %v", k, m, mask, parityFirst, got, want)
		}
		for s := range want {
			if !got[s] {
				t.Fatalf("K=%d M=%d mask=%b: seq %d not recovered", k, m, mask, s)
			}
		}
		return
	}
	if len(got) != 0 {
		t.Fatalf("K=%d M=%d mask=%b: %d+%d losses but recovered %v", k, m, mask, lostData, lostParity, got)
	}
	known := 0 // the decoder learns of a block from its parity
	if lostParity < m {
		known = 1
	}
	if d.Expire(DefaultBlockTimeoutNanos) != known || d.Stats().BlocksUnrecoverable != uint64(known) {
		t.Fatalf("K=%d M=%d mask=%b: unrecoverable block not reported: %+v", k, m, mask, d.Stats())
	}
}
