package guard

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Defaults of PeersConfig.
const (
	// DefaultMaxPeers is the default number of addresses tracked.
	DefaultMaxPeers = 64
	// DefaultAmplification is QUIC's factor (RFC 9000 §8.1): at most
	// three bytes sent per byte received before validation.
	DefaultAmplification = 3
	// DefaultRetransmitBytesPerRTT is the default retransmission budget
	// per address and round trip: 1 MiB, enough to repair 30% loss of a
	// 25 Mbit/s stream over a 100 ms round trip, and at most 512 MB/s
	// at the smallest round trip counted.
	DefaultRetransmitBytesPerRTT = 1 << 20
	// DefaultMinRTT and DefaultMaxRTT bound the round-trip time the
	// budget is computed over, so that a lying REPORT can neither shrink
	// the period (and multiply the rate) nor stretch it without end.
	DefaultMinRTT = 2 * time.Millisecond
	DefaultMaxRTT = time.Second
)

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("guard: invalid config")

// PeersConfig configures a Peers table. The zero value of every field is
// its default.
type PeersConfig struct {
	// MaxPeers bounds the addresses tracked. When a new address arrives
	// and the table is full, the least recently heard unvalidated address
	// is forgotten (or, if all are validated, the least recently heard
	// one), and the eviction is counted. Forgetting an address is safe:
	// it starts again with nothing received and nothing sent, so the
	// amplification bound still holds over its whole history. Default 64.
	MaxPeers int
	// Amplification is how many bytes may be sent to an unvalidated
	// address per byte received from it. Default 3.
	Amplification int
	// RetransmitBytesPerRTT is how many retransmitted bytes one address
	// may receive per round trip (a token bucket of this depth, refilled
	// at this many bytes per RTT). At least packet.MaxPacketLen (65507).
	// Default 1 MiB.
	RetransmitBytesPerRTT int
	// MinRTT and MaxRTT clamp the round-trip time the retransmission
	// budget uses. Defaults 2 ms and 1 s.
	MinRTT, MaxRTT time.Duration
}

const maxPacketLen = 65507 // packet.MaxPacketLen; guard does not import packet

func (c PeersConfig) withDefaults() (PeersConfig, error) {
	if c.MaxPeers == 0 {
		c.MaxPeers = DefaultMaxPeers
	}
	if c.Amplification == 0 {
		c.Amplification = DefaultAmplification
	}
	if c.RetransmitBytesPerRTT == 0 {
		c.RetransmitBytesPerRTT = DefaultRetransmitBytesPerRTT
	}
	if c.MinRTT == 0 {
		c.MinRTT = DefaultMinRTT
	}
	if c.MaxRTT == 0 {
		c.MaxRTT = DefaultMaxRTT
	}
	switch {
	case c.MaxPeers < 1 || c.MaxPeers > 1<<20:
		return c, fmt.Errorf("%w: MaxPeers %d not in [1, 2^20]", ErrConfig, c.MaxPeers)
	case c.Amplification < 1:
		return c, fmt.Errorf("%w: Amplification %d < 1", ErrConfig, c.Amplification)
	case c.RetransmitBytesPerRTT < maxPacketLen:
		return c, fmt.Errorf("%w: RetransmitBytesPerRTT %d < one maximal packet", ErrConfig, c.RetransmitBytesPerRTT)
	case c.MinRTT < 0 || c.MaxRTT < c.MinRTT:
		return c, fmt.Errorf("%w: RTT bounds %v, %v", ErrConfig, c.MinRTT, c.MaxRTT)
	}
	return c, nil
}

// PeersStats counts what a Peers table did. All counters are cumulative.
type PeersStats struct {
	Peers            int    // addresses tracked now
	Validated        int    // of them, validated
	Added            uint64 // addresses added to the table
	Evicted          uint64 // addresses forgotten because the table was full
	EvictedValidated uint64 // of them, validated ones
	SentBytes        uint64 // bytes allowed by AllowSend and AllowRetransmit
	BlockedPackets   uint64 // sends refused by the amplification limit
	BlockedBytes     uint64
	ThrottledPackets uint64 // retransmissions refused by the per-RTT budget
	ThrottledBytes   uint64
}

const none = -1

// peer is one address's accounting; entries are linked into one of two
// recency lists (validated or not), most recent first.
type peer struct {
	addr       netip.AddrPort
	received   uint64
	sent       uint64
	unproven   uint64 // of sent, bytes answering requests that proved nothing
	proven     uint64 // of received, bytes of requests that proved receipt
	validated  bool
	rtx        Bucket
	prev, next int32
}

type list struct{ head, tail int32 }

// Peers is the per-address accounting a sender keeps about the addresses
// that send it feedback: bytes received and sent, whether the address is
// validated, and its retransmission budget. Its memory is fixed at
// construction (MaxPeers entries and an index of that many keys), so a
// flood of spoofed source addresses costs evictions, never memory. A Peers
// is not safe for concurrent use.
type Peers struct {
	cfg      PeersConfig
	index    addrIndex // fixed memory; see index.go
	count    int
	entries  []peer
	free     []int32
	lists    [2]list // [0] unvalidated, [1] validated
	minRTT   int64
	maxRTT   int64
	rtxDepth float64
	stats    PeersStats
}

// NewPeers returns an empty table.
func NewPeers(cfg PeersConfig) (*Peers, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Peers{
		cfg:      cfg,
		index:    newAddrIndex(cfg.MaxPeers),
		entries:  make([]peer, cfg.MaxPeers),
		free:     make([]int32, cfg.MaxPeers),
		lists:    [2]list{{none, none}, {none, none}},
		minRTT:   int64(cfg.MinRTT),
		maxRTT:   int64(cfg.MaxRTT),
		rtxDepth: float64(cfg.RetransmitBytesPerRTT),
	}
	for i := range p.free {
		p.free[i] = int32(cfg.MaxPeers - 1 - i)
	}
	return p, nil
}

// Config returns the configuration with defaults applied.
func (p *Peers) Config() PeersConfig { return p.cfg }

func listOf(e *peer) int {
	if e.validated {
		return 1
	}
	return 0
}

func (p *Peers) unlink(i int32) {
	e := &p.entries[i]
	l := &p.lists[listOf(e)]
	if e.prev != none {
		p.entries[e.prev].next = e.next
	} else {
		l.head = e.next
	}
	if e.next != none {
		p.entries[e.next].prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = none, none
}

func (p *Peers) pushFront(i int32) {
	e := &p.entries[i]
	l := &p.lists[listOf(e)]
	e.prev, e.next = none, l.head
	if l.head != none {
		p.entries[l.head].prev = i
	}
	l.head = i
	if l.tail == none {
		l.tail = i
	}
}

func (p *Peers) touch(i int32) {
	if p.lists[listOf(&p.entries[i])].head != i {
		p.unlink(i)
		p.pushFront(i)
	}
}

// get returns addr's entry, creating it (and evicting another) if create.
func (p *Peers) get(addr netip.AddrPort, create bool) int32 {
	slot := p.index.find(addr, p.entries)
	if i := p.index.slots[slot]; i != none {
		return i
	}
	if !create {
		return none
	}
	if len(p.free) == 0 {
		victim := p.lists[0].tail
		if victim == none {
			victim = p.lists[1].tail
			p.stats.EvictedValidated++
		}
		p.stats.Evicted++
		p.unlink(victim)
		p.index.remove(p.index.find(p.entries[victim].addr, p.entries), p.entries)
		p.free = append(p.free, victim)
		p.count--
		slot = p.index.find(addr, p.entries) // the removal may have moved the slot
	}
	i := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.entries[i] = peer{addr: addr, prev: none, next: none}
	p.entries[i].rtx.Depth = p.rtxDepth
	p.index.slots[slot] = i
	p.count++
	p.pushFront(i)
	p.stats.Added++
	return i
}

// OnReceive counts n bytes received from addr, valid or not: QUIC counts
// every datagram attributed to the peer, including ones it discards. It
// makes addr the most recently heard, adding it if new.
func (p *Peers) OnReceive(addr netip.AddrPort, n int) {
	i := p.get(addr, true)
	p.entries[i].received += uint64(max(n, 0))
	p.touch(i)
}

// Validate marks addr validated: it proved it receives what is sent to it
// (how the sender checks is in the package documentation), so the
// amplification limit no longer applies. The caller validates the address a sender was configured to
// send to as well, if it answers that address through this table.
func (p *Peers) Validate(addr netip.AddrPort) {
	i := p.get(addr, true)
	e := &p.entries[i]
	if e.validated {
		p.touch(i)
		return
	}
	p.unlink(i)
	e.validated = true
	p.pushFront(i)
}

// Validated reports whether addr is validated.
func (p *Peers) Validated(addr netip.AddrPort) bool {
	i := p.get(addr, false)
	return i != none && p.entries[i].validated
}

// Credit returns how many more bytes may be sent to addr now: unlimited
// (-1) when it is validated, else Amplification × received − sent.
func (p *Peers) Credit(addr netip.AddrPort) int64 {
	i := p.get(addr, false)
	if i == none {
		return 0
	}
	e := &p.entries[i]
	if e.validated {
		return -1
	}
	limit := e.received * uint64(p.cfg.Amplification)
	if e.sent >= limit {
		return 0
	}
	return int64(min(limit-e.sent, 1<<62))
}

// AllowSend reports whether n bytes may be sent to addr now and, if so,
// counts them as sent. An address never heard from gets nothing. proven
// says the request being answered proved that its sender receives what is
// sent to addr (a REPORT's echo, a NACK's proof, authentic feedback):
// then a validated address is not limited. A request that proved nothing
// may have a forged source, so its answers stay within Amplification
// times the bytes received from addr, validated or not (they are counted
// apart from the proven ones, which do not eat into that allowance).
func (p *Peers) AllowSend(addr netip.AddrPort, n int, proven bool) bool {
	i := p.get(addr, false)
	if i == none || !p.amplificationOK(&p.entries[i], n, proven) {
		p.stats.BlockedPackets++
		p.stats.BlockedBytes += uint64(max(n, 0))
		return false
	}
	p.charge(&p.entries[i], n, proven)
	return true
}

func (p *Peers) amplificationOK(e *peer, n int, proven bool) bool {
	if proven && e.validated {
		return true
	}
	if !e.validated {
		return e.sent+uint64(max(n, 0)) <= e.received*uint64(p.cfg.Amplification)
	}
	// Validated, answering a request that proved nothing: only the bytes
	// of such requests earn credit, so that a forger using the address
	// cannot spend what the real peer's proven feedback brought in.
	return e.unproven+uint64(max(n, 0)) <= (e.received-min(e.proven, e.received))*uint64(p.cfg.Amplification)
}

// OnProven records that n of the bytes counted by OnReceive from addr
// were a request that proved its sender receives what is sent to addr:
// they earn no credit for answers to requests that prove nothing (see
// AllowSend).
func (p *Peers) OnProven(addr netip.AddrPort, n int) {
	if i := p.get(addr, false); i != none {
		p.entries[i].proven += uint64(max(n, 0))
	}
}

func (p *Peers) charge(e *peer, n int, proven bool) {
	e.sent += uint64(max(n, 0))
	if !proven {
		e.unproven += uint64(max(n, 0))
	}
	p.stats.SentBytes += uint64(max(n, 0))
}

// AllowRetransmit reports whether a retransmission of n bytes may be sent
// to addr at now, given the smoothed round-trip time rttNanos (clamped to
// [MinRTT, MaxRTT]; 0 before any is measured counts as MaxRTT): it must
// pass the amplification limit (as AllowSend, with proven) and the
// address's budget of RetransmitBytesPerRTT per round trip. If it may,
// both are charged.
func (p *Peers) AllowRetransmit(addr netip.AddrPort, n int, rttNanos, now int64, proven bool) bool {
	i := p.get(addr, false)
	if i == none || !p.amplificationOK(&p.entries[i], n, proven) {
		p.stats.BlockedPackets++
		p.stats.BlockedBytes += uint64(max(n, 0))
		return false
	}
	e := &p.entries[i]
	if rttNanos <= 0 {
		rttNanos = p.maxRTT
	}
	e.rtx.PeriodNanos = min(max(rttNanos, p.minRTT), p.maxRTT)
	if !e.rtx.Allow(float64(max(n, 0)), now) {
		p.stats.ThrottledPackets++
		p.stats.ThrottledBytes += uint64(max(n, 0))
		return false
	}
	p.charge(e, n, proven)
	return true
}

// PeerStats is one address's accounting.
type PeerStats struct {
	Addr      netip.AddrPort
	Received  uint64
	Sent      uint64
	Validated bool
}

// Peer returns addr's accounting and whether addr is tracked.
func (p *Peers) Peer(addr netip.AddrPort) (PeerStats, bool) {
	i := p.get(addr, false)
	if i == none {
		return PeerStats{}, false
	}
	e := &p.entries[i]
	return PeerStats{Addr: e.addr, Received: e.received, Sent: e.sent, Validated: e.validated}, true
}

// Stats returns the table's counters.
func (p *Peers) Stats() PeersStats {
	st := p.stats
	st.Peers = p.count
	for i := p.lists[1].head; i != none; i = p.entries[i].next {
		st.Validated++
	}
	return st
}
