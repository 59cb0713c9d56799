package soak

import "sync/atomic"

// windowBits is how many indices below the highest delivered one the
// Verifier remembers, to tell a duplicate from a late first delivery.
const windowBits = 1 << 16

// Verifier is the consumer's view of what the receiver delivered: it
// checks each payload and counts first deliveries, duplicates, messages
// out of order and corrupt ones, in memory fixed at construction (an
// 8 KiB bitmap of the last 65 536 indices). Index i is expected to be
// delivered with transport sequence i, at most once, in increasing order.
//
// Add must be called from one goroutine at a time; Counts may be called
// from any goroutine concurrently with Add. The zero value is not usable;
// call NewVerifier.
type Verifier struct {
	size int // expected payload length

	// owned by the goroutine calling Add
	seen    []uint64 // bit i%windowBits: index i delivered (for i in the window)
	highest uint64   // highest index delivered, valid when started
	started bool

	received   atomic.Uint64
	loads      atomic.Uint64
	fences     atomic.Uint64
	duplicates atomic.Uint64
	misordered atomic.Uint64
	corrupt    atomic.Uint64
	top        atomic.Uint64 // highest index delivered + 1; 0 before any
	topFence   atomic.Uint64 // highest fence index delivered + 1; 0 before any
	minFence   atomic.Uint64 // lowest fence index delivered + 1; 0 before any
}

// VerifierCounts is a snapshot of a Verifier's counters.
type VerifierCounts struct {
	Received   uint64 `json:"received"`   // messages handed to Add
	Loads      uint64 `json:"loads"`      // load messages delivered for the first time
	Fences     uint64 `json:"fences"`     // fences delivered for the first time
	Duplicates uint64 `json:"duplicates"` // indices delivered again
	Misordered uint64 `json:"misordered"` // first deliveries below an index already delivered, and deliveries too old to tell
	Corrupt    uint64 `json:"corrupt"`    // failed CheckPayload, wrong size, or index ≠ transport sequence
	// Top is one more than the highest index delivered (0 before any):
	// in ordered delivery every index below it is settled, delivered or
	// skipped.
	Top uint64 `json:"top"`
	// FenceTop and FenceBottom are one more than the highest and the
	// lowest fence index delivered (0 before any fence).
	FenceTop    uint64 `json:"fence_top"`
	FenceBottom uint64 `json:"fence_bottom"`
}

// NewVerifier returns a Verifier for payloads of size bytes.
func NewVerifier(size int) *Verifier {
	return &Verifier{size: size, seen: make([]uint64, windowBits/64)}
}

// Add checks one delivered message: its payload and the transport
// sequence it was delivered with. It does not allocate.
func (v *Verifier) Add(payload []byte, seq uint64) {
	v.received.Add(1)
	index, flags, err := CheckPayload(payload)
	if err != nil || len(payload) != v.size || index != seq {
		v.corrupt.Add(1)
		return
	}
	switch {
	case !v.started || index > v.highest:
		if v.started {
			// Clear the bits of the indices the window moves past, at
			// most the whole window.
			for i, n := v.highest+1, uint64(0); i < index && n < windowBits; i, n = i+1, n+1 {
				v.seen[(i%windowBits)/64] &^= 1 << (i % 64)
			}
		}
		v.started, v.highest = true, index
		v.top.Store(index + 1)
	case v.highest-index >= windowBits:
		v.misordered.Add(1) // too old to tell a duplicate from a late first copy
		return
	default:
		w, b := (index%windowBits)/64, uint64(1)<<(index%64)
		if v.seen[w]&b != 0 {
			v.duplicates.Add(1)
			return
		}
		v.misordered.Add(1) // a first delivery, but out of order
	}
	v.seen[(index%windowBits)/64] |= 1 << (index % 64)
	if flags&FlagFence == 0 {
		v.loads.Add(1)
		return
	}
	v.fences.Add(1)
	if index+1 > v.topFence.Load() {
		v.topFence.Store(index + 1)
	}
	if b := v.minFence.Load(); b == 0 || index+1 < b {
		v.minFence.Store(index + 1)
	}
}

// Counts returns a snapshot of the counters. Taken while Add runs, the
// fields are each current but not from one instant.
func (v *Verifier) Counts() VerifierCounts {
	return VerifierCounts{
		Received: v.received.Load(), Loads: v.loads.Load(), Fences: v.fences.Load(),
		Duplicates: v.duplicates.Load(), Misordered: v.misordered.Load(), Corrupt: v.corrupt.Load(),
		Top: v.top.Load(), FenceTop: v.topFence.Load(), FenceBottom: v.minFence.Load(),
	}
}
