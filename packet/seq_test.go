package packet

import "testing"

func TestSeqArithmetic(t *testing.T) {
	cases := []struct {
		a, b uint64
		diff int64
	}{
		{5, 3, 2},
		{3, 5, -2},
		{0, 1<<64 - 1, 1},
		{1<<64 - 1, 0, -1},
		{1 << 32, 1<<32 - 1, 1},
		{1<<63 + 10, 10, -1 << 63},
	}
	for _, c := range cases {
		if got := SeqDiff(c.a, c.b); got != c.diff {
			t.Errorf("SeqDiff(%d, %d) = %d, want %d", c.a, c.b, got, c.diff)
		}
		if got, want := SeqLess(c.a, c.b), c.diff < 0; got != want {
			t.Errorf("SeqLess(%d, %d) = %v", c.a, c.b, got)
		}
	}
	if SeqMax(1<<64-1, 2) != 2 || SeqMax(2, 1<<64-1) != 2 {
		t.Error("SeqMax does not follow the wrap")
	}
}

// TestStreamAcrossBoundaries encodes and decodes a run of DATA packets
// across the 2^32 boundary (where a 32-bit format would wrap) and across
// 2^64, checking that each decoded sequence follows the previous one.
func TestStreamAcrossBoundaries(t *testing.T) {
	for _, start := range []uint64{0, 1<<32 - 500, 1<<64 - 500} {
		buf := make([]byte, 0, 128)
		var prev uint64
		var q Packet
		for i := range uint64(1000) {
			p := Packet{Header: Header{Kind: KindData, Session: 1}, Seq: start + i, Timestamp: int64(i)}
			b, err := p.AppendTo(buf[:0])
			if err != nil {
				t.Fatal(err)
			}
			if err := q.Parse(b); err != nil {
				t.Fatal(err)
			}
			if q.Seq != start+i {
				t.Fatalf("start %d: decoded %d, want %d", start, q.Seq, start+i)
			}
			if i > 0 && (!SeqLess(prev, q.Seq) || SeqDiff(q.Seq, prev) != 1) {
				t.Fatalf("start %d: %d does not follow %d", start, q.Seq, prev)
			}
			prev = q.Seq
		}
	}
}

// TestNACKAcrossWrap: a NACK whose ranges straddle 2^64 is valid.
func TestNACKAcrossWrap(t *testing.T) {
	p := Packet{Header: Header{Kind: KindNACK}, Ranges: []Range{{First: 1<<64 - 3, Len: 2}, {First: 1<<64 - 1, Len: 0}}}
	p.Ranges[1] = Range{First: 1, Len: 3}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	var q Packet
	if err := q.Parse(b); err != nil || len(q.Ranges) != 2 || q.Ranges[1].Last() != 3 {
		t.Fatalf("parse: %v %+v", err, q.Ranges)
	}
}
