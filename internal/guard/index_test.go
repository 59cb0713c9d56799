package guard

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// checkIndex verifies the table's structure: every entry on a recency
// list is found through the index at its own slot, the index holds
// nothing else, and the count, lists and free list add up.
func checkIndex(t testing.TB, p *Peers) {
	t.Helper()
	onList := 0
	for l := range p.lists {
		prev := int32(none)
		for i := p.lists[l].head; i != none; i = p.entries[i].next {
			e := &p.entries[i]
			if e.prev != prev || listOf(e) != l {
				t.Fatalf("entry %d badly linked", i)
			}
			if s := p.index.find(e.addr, p.entries); p.index.slots[s] != i {
				t.Fatalf("entry %d (%v) not found through the index", i, e.addr)
			}
			prev = i
			onList++
		}
		if p.lists[l].tail != prev {
			t.Fatalf("list %d tail %d, want %d", l, p.lists[l].tail, prev)
		}
	}
	used := 0
	for _, s := range p.index.slots {
		if s != none {
			used++
		}
	}
	if used != onList || onList != p.count || p.count+len(p.free) != len(p.entries) {
		t.Fatalf("index %d, lists %d, count %d, free %d of %d", used, onList, p.count, len(p.free), len(p.entries))
	}
}

// Random churn over few slots and many colliding addresses, with the seed
// forced to zero so that probe runs are long and wrap around the table.
func TestIndexChurn(t *testing.T) {
	for _, maxPeers := range []int{1, 2, 3, 7, 16} {
		p := mustPeers(t, PeersConfig{MaxPeers: maxPeers})
		p.index.seed = 0
		rng := rand.New(rand.NewPCG(uint64(maxPeers), 9))
		model := map[netip.AddrPort]bool{}
		for step := range 20_000 {
			a := addr(rng.IntN(3 * maxPeers))
			switch rng.IntN(4) {
			case 0:
				p.Validate(a)
			default:
				p.OnReceive(a, 10)
			}
			model[a] = true
			checkIndex(t, p)
			if _, ok := p.Peer(a); !ok {
				t.Fatalf("step %d: %v just added, not found", step, a)
			}
		}
		tracked := 0
		for a := range model {
			if _, ok := p.Peer(a); ok {
				tracked++
			}
		}
		if tracked != p.Stats().Peers {
			t.Fatalf("%d addresses found, %d tracked", tracked, p.Stats().Peers)
		}
	}
}

// FuzzPeers runs arbitrary sequences of receives, sends, retransmissions
// and validations over a small table and checks the bounds: the table
// never exceeds MaxPeers, its structure stays sound, and no address that
// was never validated is sent more than three times what it sent.
func FuzzPeers(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x41, 0x82, 0xc3})
	f.Add([]byte{0xff, 0x00, 0x7f, 0x80, 0x40, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, ops []byte) {
		p := mustPeers(t, PeersConfig{MaxPeers: 4})
		recv := map[netip.AddrPort]uint64{}
		sent := map[netip.AddrPort]uint64{}
		validated := map[netip.AddrPort]bool{}
		now := int64(0)
		for i, op := range ops {
			a := addr(int(op & 7))
			n := int(op>>3&7) * 100
			now += int64(op) * 1000
			switch op >> 6 {
			case 0:
				p.OnReceive(a, n)
				recv[a] += uint64(n)
			case 1:
				if p.AllowSend(a, n, true) {
					sent[a] += uint64(n)
				}
			case 2:
				if p.AllowRetransmit(a, n, int64(op)*1e5, now, true) {
					sent[a] += uint64(n)
				}
			default:
				if i%5 == 0 {
					p.Validate(a)
					validated[a] = true
				}
			}
			if p.Stats().Peers > 4 {
				t.Fatal("table over its bound")
			}
			checkIndex(t, p)
		}
		for a, s := range sent {
			if !validated[a] && s > 3*recv[a] {
				t.Fatalf("%v: sent %d, received %d, never validated", a, s, recv[a])
			}
		}
	})
}
