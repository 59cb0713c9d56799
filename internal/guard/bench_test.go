package guard

import (
	"net/netip"
	"testing"
)

func BenchmarkWindowAccept(b *testing.B) {
	w := NewWindow(0)
	c := uint64(1 << 40)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c++
		w.Accept(c - uint64(i%7)*3) // mostly in order, some reordered and replayed
	}
}

func BenchmarkPeers(b *testing.B) {
	p, _ := NewPeers(PeersConfig{})
	a := netip.MustParseAddrPort("192.0.2.1:9000")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.OnReceive(a, 40)
		p.AllowRetransmit(a, 100, 1e7, int64(i)*1000, true)
	}
}

func BenchmarkPeersFlood(b *testing.B) {
	p, _ := NewPeers(PeersConfig{})
	addrs := make([]netip.AddrPort, 4096)
	for i := range addrs {
		addrs[i] = addr(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := addrs[i&4095] // every call a new address: an eviction
		p.OnReceive(a, 40)
		p.AllowSend(a, 100, true)
	}
}
