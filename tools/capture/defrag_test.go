package capture

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func testKey(id uint32) fragKey {
	return fragKey{src: netip.MustParseAddr("10.0.0.1"), dst: netip.MustParseAddr("10.0.0.2"), id: id, proto: ipProtoUDP}
}

// piece is one fragment for the reassembler.
type piece struct {
	off  int
	more bool
}

// fragmentsOf cuts data at the given offsets (multiples of 8).
func fragmentsOf(data []byte, cuts ...int) []piece {
	var ps []piece
	start := 0
	for _, c := range append(cuts, len(data)) {
		ps = append(ps, piece{off: start, more: c < len(data)})
		start = c
	}
	return ps
}

func pieceData(data []byte, ps []piece, i int) []byte {
	end := len(data)
	if i+1 < len(ps) {
		end = ps[i+1].off
	}
	return data[ps[i].off:end]
}

// TestReassemblyOrders feeds the fragments of a datagram in every order of a
// seeded shuffle: the datagram comes out whole exactly once.
func TestReassemblyOrders(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := payloadOf(rng, 1000)
	ps := fragmentsOf(data, 200, 400, 600, 800)
	for trial := range 50 {
		r := newReassembler(4, 1e9)
		order := rng.Perm(len(ps))
		done := 0
		for k, i := range order {
			out, nh, res := r.add(testKey(1), ps[i].off, ps[i].more, pieceData(data, ps, i), 17, 0)
			switch res {
			case fragDone:
				done++
				if k != len(order)-1 || !bytes.Equal(out, data) || nh != 17 {
					t.Fatalf("trial %d: done at %d of %d, equal %v", trial, k, len(order), bytes.Equal(out, data))
				}
			case fragHeld:
			default:
				t.Fatalf("trial %d: outcome %d", trial, res)
			}
		}
		if done != 1 || r.pending() != 0 {
			t.Fatalf("trial %d: done %d, pending %d", trial, done, r.pending())
		}
	}
}

func TestReassemblyRejects(t *testing.T) {
	data := make([]byte, 64)
	tests := []struct {
		name  string
		steps []piece
		lens  []int
		want  []fragOutcome
	}{
		{"duplicate", []piece{{0, true}, {0, true}, {16, false}}, []int{16, 16, 8}, []fragOutcome{fragHeld, fragDuplicate, fragDone}},
		{"partial overlap", []piece{{0, true}, {8, true}}, []int{16, 16}, []fragOutcome{fragHeld, fragInvalid}},
		{"beyond final", []piece{{0, false}, {16, true}}, []int{16, 8}, []fragOutcome{fragDone, fragHeld}},
		{"final before data", []piece{{16, true}, {0, false}}, []int{16, 8}, []fragOutcome{fragHeld, fragInvalid}},
		{"two finals", []piece{{16, false}, {24, false}}, []int{8, 8}, []fragOutcome{fragHeld, fragInvalid}},
		{"past final", []piece{{16, false}, {24, true}}, []int{8, 8}, []fragOutcome{fragHeld, fragInvalid}},
		{"too large", []piece{{65528, false}}, []int{16}, []fragOutcome{fragInvalid}},
		{"short non-final", []piece{{0, true}}, []int{7}, []fragOutcome{fragInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReassembler(4, 1e9)
			big := make([]byte, 65536)
			for i, p := range tt.steps {
				src := data
				if tt.lens[i] > len(src) {
					src = big
				}
				_, _, res := r.add(testKey(2), p.off, p.more, src[:tt.lens[i]], 17, 0)
				if res != tt.want[i] {
					t.Fatalf("step %d: outcome %d, want %d", i, res, tt.want[i])
				}
			}
		})
	}
}

func TestReassemblyBounds(t *testing.T) {
	r := newReassembler(2, 100)
	d := make([]byte, 16)
	r.add(testKey(1), 0, true, d, 17, 0)
	r.add(testKey(2), 0, true, d, 17, 10)
	r.add(testKey(3), 0, true, d, 17, 20) // evicts key 1, the oldest
	if r.expired != 1 || r.pending() != 2 || r.find(testKey(1)) != nil {
		t.Fatalf("eviction: expired %d pending %d", r.expired, r.pending())
	}
	r.add(testKey(4), 0, true, d, 17, 115) // key 2 (10) is now 105 old
	if r.expired != 2 || r.find(testKey(2)) != nil || r.find(testKey(3)) == nil {
		t.Fatalf("timeout: expired %d", r.expired)
	}
	r.add(testKey(5), 0, true, d, 17, 50) // time went backwards: nothing expires
	if r.expired != 3 {                   // but one slot had to be evicted for key 5
		t.Fatalf("backwards time: expired %d", r.expired)
	}
	r.flush()
	if r.pending() != 0 || r.expired != 5 {
		t.Fatalf("flush: pending %d expired %d", r.pending(), r.expired)
	}

	// Too many disjoint pieces: the datagram is dropped.
	r = newReassembler(1, 1e9)
	var res fragOutcome
	for i := 0; i <= maxSpansPerDatagram; i++ {
		_, _, res = r.add(testKey(9), i*16, true, d[:8], 17, 0)
	}
	if res != fragInvalid {
		t.Fatalf("after %d disjoint pieces: outcome %d, want invalid", maxSpansPerDatagram+1, res)
	}
}

// TestReassemblyNoAllocs: a reused slot reassembles without allocating.
func TestReassemblyNoAllocs(t *testing.T) {
	r := newReassembler(4, 1e9)
	data := make([]byte, 3000)
	ps := fragmentsOf(data, 1000, 2000)
	run := func() {
		for i := range ps {
			r.add(testKey(1), ps[i].off, ps[i].more, pieceData(data, ps, i), 17, 0)
		}
	}
	run()
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Fatalf("%.1f allocations per datagram", a)
	}
}
