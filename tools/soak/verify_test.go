package soak

import (
	"testing"
)

// deliver feeds v message index (a fence if fence) with transport
// sequence seq.
func deliver(v *Verifier, size int, index, seq uint64, fence bool) {
	msg := make([]byte, size)
	var flags uint32
	if fence {
		flags = FlagFence
	}
	PutPayload(msg, index, flags)
	v.Add(msg, seq)
}

func TestVerifier(t *testing.T) {
	const size = 64
	cases := []struct {
		name    string
		indices []int64 // negative: -(index+1) as a fence
		want    VerifierCounts
	}{
		{"in order with gaps", []int64{0, 1, 3, 7},
			VerifierCounts{Received: 4, Loads: 4, Top: 8}},
		{"duplicate", []int64{0, 1, 1, 2},
			VerifierCounts{Received: 4, Loads: 3, Duplicates: 1, Top: 3}},
		{"late first copy", []int64{0, 2, 1},
			VerifierCounts{Received: 3, Loads: 3, Misordered: 1, Top: 3}},
		{"fences after load", []int64{0, 1, -3, -5},
			VerifierCounts{Received: 4, Loads: 2, Fences: 2, Top: 5, FenceTop: 5, FenceBottom: 3}},
		{"too old to tell", []int64{0, windowBits + 5, 3},
			VerifierCounts{Received: 3, Loads: 2, Misordered: 1, Top: windowBits + 6}},
		{"window reuse after a jump", []int64{5, windowBits + 5, windowBits + 6},
			VerifierCounts{Received: 3, Loads: 3, Top: windowBits + 7}},
	}
	for _, c := range cases {
		v := NewVerifier(size)
		for _, i := range c.indices {
			if i < 0 {
				deliver(v, size, uint64(-i-1), uint64(-i-1), true)
			} else {
				deliver(v, size, uint64(i), uint64(i), false)
			}
		}
		if got := v.Counts(); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

func TestVerifierCorrupt(t *testing.T) {
	v := NewVerifier(64)
	deliver(v, 64, 0, 0, false)
	deliver(v, 64, 1, 2, false) // index ≠ transport sequence
	deliver(v, 65, 1, 1, false) // wrong size
	msg := make([]byte, 64)
	PutPayload(msg, 1, 0)
	msg[30] ^= 1
	v.Add(msg, 1) // bad checksum
	want := VerifierCounts{Received: 4, Loads: 1, Corrupt: 3, Top: 1}
	if got := v.Counts(); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestVerifierNoAllocs(t *testing.T) {
	v := NewVerifier(DefaultSize)
	msg := make([]byte, DefaultSize)
	var i uint64
	allocs := testing.AllocsPerRun(1000, func() {
		PutPayload(msg, i, 0)
		v.Add(msg, i)
		v.Add(msg, i) // a duplicate
		i += 2        // and a gap
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Add", allocs)
	}
	if c := v.Counts(); c.Duplicates == 0 || c.Loads == 0 {
		t.Fatalf("counts %+v", c)
	}
}

func BenchmarkVerifierAdd(b *testing.B) {
	v := NewVerifier(DefaultSize)
	msgs := make([][]byte, 64)
	for i := range msgs {
		msgs[i] = make([]byte, DefaultSize)
	}
	b.SetBytes(DefaultSize)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m := msgs[i%len(msgs)]
		PutPayload(m, uint64(i), 0)
		v.Add(m, uint64(i))
	}
}
