package fec

import (
	"testing"

	"github.com/telewire/telewire/packet"
)

type testBudget struct{ used, limit, refused int }

func (b *testBudget) Reserve(n int) bool {
	if b.used+n > b.limit {
		b.refused++
		return false
	}
	b.used += n
	return true
}

func (b *testBudget) Release(n int) { b.used -= n }

// TestDecoderStartsSmallAndChargesGrowth: a new Decoder holds its tables
// only (its ring pages and buffers come with the sequences it sees), asks
// its Budget for every growth, and with the budget spent keeps nothing
// more while still rebuilding what it holds.
func TestDecoderStartsSmallAndChargesGrowth(t *testing.T) {
	b := &testBudget{limit: 1 << 30}
	d, err := NewDecoder(DecoderConfig{Budget: b})
	if err != nil {
		t.Fatal(err)
	}
	base := d.MemBytes()
	if base > 24<<10 {
		t.Fatalf("a new decoder holds %d bytes", base)
	}
	enc, err := NewEncoder(EncoderConfig{K: 4, M: 2})
	if err != nil {
		t.Fatal(err)
	}
	rebuilt := 0
	feed := func(first uint64, lose uint64) {
		for seq := first; seq < first+4; seq++ {
			payload := []byte{byte(seq), 1, 2, 3}
			if seq != lose {
				d.AddData(seq, int64(seq), payload, int64(seq))
			}
			if enc.Add(seq, int64(seq), payload, int64(seq)) {
				enc.TakeParity(func(par packet.Parity, shard []byte) { _ = d.AddParity(par, shard, int64(seq)) })
			}
		}
		rebuilt += d.TakeRecovered(func(uint64, int64, []byte) {})
	}
	for blk := range uint64(8) {
		feed(blk*4, blk*4+1)
	}
	if rebuilt != 8 || d.MemBytes()-base != b.used || b.refused != 0 {
		t.Fatalf("rebuilt %d of 8; grew %d bytes, charged %d, refused %d", rebuilt, d.MemBytes()-base, b.used, b.refused)
	}
	b.limit = b.used // spent: sequences on a new ring page are not kept
	feed(1000, 1001)
	if d.Stats().BudgetDenied == 0 || b.refused == 0 || d.MemBytes()-base != b.used {
		t.Fatalf("over budget: stats %+v, refused %d, grew %d, charged %d", d.Stats(), b.refused, d.MemBytes()-base, b.used)
	}
}
