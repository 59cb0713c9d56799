package guard

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func addr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1000+i%50000))
}

func mustPeers(t testing.TB, cfg PeersConfig) *Peers {
	t.Helper()
	p, err := NewPeers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAmplificationLimit(t *testing.T) {
	p := mustPeers(t, PeersConfig{})
	a := addr(1)
	if p.AllowSend(a, 1, true) {
		t.Fatal("sent to an address never heard from")
	}
	p.OnReceive(a, 40) // one 40-byte NACK
	if c := p.Credit(a); c != 120 {
		t.Fatalf("credit %d, want 120", c)
	}
	if !p.AllowSend(a, 100, true) || p.AllowSend(a, 21, true) || !p.AllowSend(a, 20, true) || p.AllowSend(a, 1, true) {
		t.Fatal("3x limit not applied exactly")
	}
	if c := p.Credit(a); c != 0 {
		t.Fatalf("credit %d after spending it", c)
	}
	p.OnReceive(a, 10)
	if !p.AllowSend(a, 30, true) || p.AllowSend(a, 1, true) {
		t.Fatal("credit from new bytes")
	}
	p.Validate(a)
	if !p.Validated(a) || p.Credit(a) != -1 || !p.AllowSend(a, 1<<20, true) {
		t.Fatal("validated address still limited")
	}
	st := p.Stats()
	if st.Peers != 1 || st.Validated != 1 || st.BlockedPackets != 4 || st.SentBytes != 100+20+30+1<<20 {
		t.Fatalf("stats %+v", st)
	}
	ps, ok := p.Peer(a)
	if !ok || ps.Received != 50 || ps.Sent != 150+1<<20 || !ps.Validated {
		t.Fatalf("peer %+v", ps)
	}
}

// A spoofed-source NACK flood from many addresses for 60 simulated
// seconds, against a table far smaller than the number of addresses: for
// every address, the bytes the sender was allowed to send never exceed
// three times the bytes received from it, across evictions; the table
// never grows past its bound; a validated receiver keeps its entry.
func TestSpoofedFloodBoundHoldsAcrossEvictions(t *testing.T) {
	const maxPeers = 32
	p := mustPeers(t, PeersConfig{MaxPeers: maxPeers})
	recv := map[netip.AddrPort]uint64{}
	sent := map[netip.AddrPort]uint64{}
	legit := netip.MustParseAddrPort("192.0.2.1:9000")
	p.OnReceive(legit, 100)
	p.Validate(legit)
	rng := rand.New(rand.NewPCG(7, 8))
	const rtt = int64(10 * time.Millisecond)
	for now := int64(0); now < int64(60*time.Second); now += int64(100 * time.Microsecond) {
		a := addr(rng.IntN(500)) // 500 spoofed sources
		n := 28 + 12*rng.IntN(64)
		p.OnReceive(a, n)
		recv[a] += uint64(n)
		// The sender tries to answer with retransmissions of 1200 bytes.
		for range 8 {
			if p.AllowRetransmit(a, 1200, rtt, now, true) {
				sent[a] += 1200
			}
		}
		if rng.IntN(100) == 0 {
			p.OnReceive(legit, 200)
		}
		if st := p.Stats(); st.Peers > maxPeers {
			t.Fatalf("table holds %d peers", st.Peers)
		}
	}
	for a, s := range sent {
		if s > 3*recv[a] {
			t.Fatalf("%v: sent %d bytes for %d received", a, s, recv[a])
		}
	}
	st := p.Stats()
	if st.Evicted == 0 || st.EvictedValidated != 0 || !p.Validated(legit) {
		t.Fatalf("evictions %+v, legit validated %v", st, p.Validated(legit))
	}
}

func TestEvictionOrder(t *testing.T) {
	p := mustPeers(t, PeersConfig{MaxPeers: 3})
	p.OnReceive(addr(1), 1)
	p.OnReceive(addr(2), 1)
	p.Validate(addr(2))
	p.OnReceive(addr(3), 1)
	p.OnReceive(addr(1), 1) // 1 is now more recent than 3
	p.OnReceive(addr(4), 1) // evicts 3: the least recent unvalidated
	if _, ok := p.Peer(addr(3)); ok {
		t.Fatal("evicted the wrong address")
	}
	for _, i := range []int{1, 2, 4} {
		if _, ok := p.Peer(addr(i)); !ok {
			t.Fatalf("address %d evicted", i)
		}
	}
	p.Validate(addr(1))
	p.Validate(addr(4))
	p.OnReceive(addr(2), 1) // order of validated: 2, 4, 1
	p.OnReceive(addr(5), 1) // all validated: evicts 1
	if _, ok := p.Peer(addr(1)); ok {
		t.Fatal("evicted a more recent validated address")
	}
	st := p.Stats()
	if st.Evicted != 2 || st.EvictedValidated != 1 || st.Peers != 3 || st.Added != 5 {
		t.Fatalf("stats %+v", st)
	}
	// An evicted address starts from nothing.
	if p.Validated(addr(1)) || p.AllowSend(addr(1), 1, true) {
		t.Fatal("evicted address kept its standing")
	}
}

func TestRetransmitBudgetPerRTT(t *testing.T) {
	const budget = 100_000
	p := mustPeers(t, PeersConfig{RetransmitBytesPerRTT: budget})
	a := addr(9)
	p.OnReceive(a, 1)
	p.Validate(a)
	rtt := int64(20 * time.Millisecond)
	now := int64(time.Second)
	sentIn := func(from, to int64) (n int) {
		for t := from; t < to; t += int64(100 * time.Microsecond) {
			for p.AllowRetransmit(a, 1000, rtt, t, true) {
				n += 1000
			}
		}
		return n
	}
	// A full bucket, then the refill: over 10 RTTs about 11 budgets.
	got := sentIn(now, now+10*rtt)
	if got < 10*budget || got > 11*budget+1000 {
		t.Fatalf("sent %d bytes in 10 RTTs with %d per RTT", got, budget)
	}
	// A lying RTT of 1 ns is clamped to MinRTT (2 ms): over 20 ms at
	// most 10 budgets more, not millions.
	rtt = 1
	got = sentIn(now+10*int64(20*time.Millisecond), now+11*int64(20*time.Millisecond))
	if got > 11*budget {
		t.Fatalf("sent %d bytes in 20 ms with a 1 ns RTT", got)
	}
	if st := p.Stats(); st.ThrottledPackets == 0 {
		t.Fatal("nothing throttled")
	}
	// Unvalidated: the amplification limit applies first.
	b := addr(10)
	p.OnReceive(b, 400)
	if !p.AllowRetransmit(b, 1200, 0, now, true) || p.AllowRetransmit(b, 1, 0, now, true) {
		t.Fatal("retransmission beyond 3x to an unvalidated address")
	}
	if p.AllowRetransmit(addr(11), 1, 0, now, true) {
		t.Fatal("retransmission to an unknown address")
	}
}

func TestPeersConfig(t *testing.T) {
	p := mustPeers(t, PeersConfig{})
	c := p.Config()
	if c.MaxPeers != DefaultMaxPeers || c.Amplification != 3 || c.RetransmitBytesPerRTT != DefaultRetransmitBytesPerRTT ||
		c.MinRTT != DefaultMinRTT || c.MaxRTT != DefaultMaxRTT {
		t.Fatalf("defaults %+v", c)
	}
	for _, bad := range []PeersConfig{
		{MaxPeers: -1}, {MaxPeers: 1<<20 + 1}, {Amplification: -1}, {RetransmitBytesPerRTT: 1000},
		{MinRTT: -1}, {MinRTT: time.Second, MaxRTT: time.Millisecond},
	} {
		if _, err := NewPeers(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestPeersZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	p := mustPeers(t, PeersConfig{MaxPeers: 256})
	addrs := make([]netip.AddrPort, 100_000)
	for i := range addrs {
		addrs[i] = addr(i)
	}
	i := 0
	now := int64(0)
	step := func() {
		a := addrs[i%len(addrs)]
		p.OnReceive(a, 100)
		p.AllowSend(a, 50, true)
		p.AllowRetransmit(a, 200, 1e6, now, true)
		i++
		now += 1000
	}
	for range 10_000 { // fill the table and its index
		step()
	}
	// Every call evicts: churn through the index. AllocsPerRun averages
	// over its runs, so a stray allocation elsewhere in the process (the
	// test framework, the runtime) does not count as one of ours.
	if a := testing.AllocsPerRun(10, func() {
		for range 20_000 {
			step()
		}
	}); a != 0 {
		t.Fatalf("%v allocations per 20 000 churning calls", a)
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Fatalf("%v allocs per packet", a)
	}
}

// TestUnprovenRequestsStayWithinAmplification: answers to requests that
// prove nothing stay within 3x what the address sent, even once it is
// validated, and proven answers neither eat that allowance nor are held
// to it.
func TestUnprovenRequestsStayWithinAmplification(t *testing.T) {
	p, err := NewPeers(PeersConfig{})
	if err != nil {
		t.Fatal(err)
	}
	a := addr(9)
	p.Validate(a)
	p.OnReceive(a, 100)
	if !p.AllowSend(a, 1<<20, true) {
		t.Fatal("proven answer to a validated address refused")
	}
	if !p.AllowSend(a, 300, false) || p.AllowSend(a, 1, false) {
		t.Fatal("unproven answers not held to 3x")
	}
	if !p.AllowRetransmit(a, 1200, 1e6, 0, true) || p.AllowRetransmit(a, 1200, 1e6, 0, false) {
		t.Fatal("retransmissions: proven refused or unproven let through")
	}
	p.OnReceive(a, 400)
	if !p.AllowRetransmit(a, 1200, 1e6, 1, false) {
		t.Fatal("unproven retransmission within 3x refused")
	}
}
