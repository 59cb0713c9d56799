package guard

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
)

// addrIndex maps addresses to entry numbers in fixed memory: an
// open-addressing table with linear probing and backward-shift deletion
// (no tombstones), at most half full, so that inserting and deleting under
// any churn never allocates. Go's map would do, but may allocate now and
// then to clean up after deletions. The hash is seeded per table from
// math/rand/v2's random source, so a peer cannot aim its addresses at one
// probe chain; the seed changes probe orders only, never results.
type addrIndex struct {
	slots []int32 // entry number, or none
	mask  uint64
	seed  uint64
}

func newAddrIndex(capacity int) addrIndex {
	n := 2
	for n < 2*capacity {
		n <<= 1
	}
	x := addrIndex{slots: make([]int32, n), mask: uint64(n - 1), seed: rand.Uint64()}
	for i := range x.slots {
		x.slots[i] = none
	}
	return x
}

func mix(z uint64) uint64 { // splitmix64's finaliser
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (x *addrIndex) home(a netip.AddrPort) uint64 {
	b := a.Addr().As16()
	h := mix(binary.LittleEndian.Uint64(b[:8]) ^ x.seed)
	h = mix(h ^ binary.LittleEndian.Uint64(b[8:]))
	return mix(h^uint64(a.Port())) & x.mask
}

// find returns the slot holding a, or the empty slot where it would go.
func (x *addrIndex) find(a netip.AddrPort, entries []peer) uint64 {
	i := x.home(a)
	for {
		s := x.slots[i]
		if s == none || entries[s].addr == a {
			return i
		}
		i = (i + 1) & x.mask
	}
}

// remove empties slot i and moves later members of its probe run back,
// so that every member stays reachable from its home slot.
func (x *addrIndex) remove(i uint64, entries []peer) {
	j := i
	for {
		j = (j + 1) & x.mask
		s := x.slots[j]
		if s == none {
			break
		}
		k := x.home(entries[s].addr)
		// s may move to i unless its home k lies cyclically in (i, j].
		if (i < j && i < k && k <= j) || (i > j && (k > i || k <= j)) {
			continue
		}
		x.slots[i] = s
		i = j
	}
	x.slots[i] = none
}
