package sender

// Stateful fuzzing of the subscription state machine: a program of
// SUBSCRIBEs, token echoes (true, damaged, stale, another address's),
// GOODBYEs, raw subscription datagrams, proven and unproven NACKs,
// REPORTs, sends, clock moves, ticks and takes, from eight addresses.
// After every operation the harness checks the bounds, that DATA goes only
// to addresses that were admitted, and that an address never admitted has
// received at most three times the bytes it sent.

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

const (
	subSend = iota
	subAsk
	subEcho
	subEchoBad
	subBye
	subRaw
	subNACK
	subReport
	subClock
	subTick
	subTake
	subOps
)

type subHarness struct {
	t        testing.TB
	c        *Core
	max      int
	now      int64
	static   netip.AddrPort
	addrs    [8]netip.AddrPort
	tokens   [8]packet.Subscription // the latest TOKEN each address got
	hasTok   [8]bool
	admitted map[netip.AddrPort]bool // ever admitted (a true echo while there was room)
	// proved: sent a NACK with a true proof of receipt (which the harness
	// can forge: it reads the send times): repairs may go there.
	proved  map[netip.AddrPort]bool
	in, out map[netip.AddrPort]int // bytes from and to each address
	buf     []byte
}

func newSubHarness(t testing.TB, p *prog) *subHarness {
	b := p.u8()
	cfg := Config{
		Listen:       "127.0.0.1:9000",
		MaxReceivers: 1 + int(b%5),
		JoinRate:     1 + int(b>>3%8)*10,
		SlowReceiver: SlowPolicy(b >> 7),
		FEC:          FECConfig{Mode: FECMode(p.u8() % 3), K: 4, M: 2},
		// Short enough for programs to reach expiry and the slow policy.
		ReceiverTimeout:     time.Duration(1+p.u8()%4) * 100 * time.Millisecond,
		SlowReceiverTimeout: 200 * time.Millisecond,
		RetransmitMaxAge:    50 * time.Millisecond,
	}
	h := &subHarness{t: t, max: cfg.MaxReceivers, admitted: map[netip.AddrPort]bool{}, proved: map[netip.AddrPort]bool{}, in: map[netip.AddrPort]int{}, out: map[netip.AddrPort]int{}}
	var to []netip.AddrPort
	if b&4 != 0 {
		h.static = netip.MustParseAddrPort("10.9.9.9:9000")
		to = append(to, h.static)
		h.admitted[h.static] = true
	}
	for i := range h.addrs {
		h.addrs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), uint16(5000+i))
	}
	c, err := NewFanoutCore(cfg, fuzzSession, to)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	return h
}

func (h *subHarness) handle(b []byte, from netip.AddrPort) {
	h.in[from] += len(b)
	h.c.Handle(b, from, h.now)
}

func (h *subHarness) enc(p *packet.Packet) []byte {
	b, err := p.AppendTo(h.buf[:0])
	if err != nil {
		h.t.Fatalf("encoding %v: %v", p.Kind, err)
	}
	h.buf = b
	return b
}

func (h *subHarness) step(p *prog) {
	op := p.u8()
	k := int(op>>4) % len(h.addrs)
	from := h.addrs[k]
	c := h.c
	switch int(op&15) % subOps {
	case subSend:
		_ = c.Send(uint32(p.u8()%2), make([]byte, int(p.u8())), h.now)
	case subAsk:
		h.handle(h.enc(&packet.Packet{Header: packet.Header{Kind: packet.KindSubscribe}, Subscription: packet.Subscription{Nonce: uint64(k)}}), from)
	case subEcho, subEchoBad:
		if !h.hasTok[k] {
			return
		}
		tok := h.tokens[k]
		valid := true
		if int(op&15)%subOps == subEchoBad {
			switch p.u8() % 3 {
			case 0:
				tok.TokenMAC[p.u8()%16] ^= 1 + p.u8()%255
			case 1:
				tok.TokenTime -= int64(p.u8()) + 1
			default:
				from = h.addrs[(k+1)%len(h.addrs)] // another address echoes it
			}
			valid = false
		}
		if h.now-tok.TokenTime > int64(TokenLifetime) {
			valid = false
		}
		before := c.Stats().Subscribers
		h.handle(h.enc(&packet.Packet{Header: packet.Header{Kind: packet.KindSubscribe, Flags: packet.FlagToken}, Subscription: tok}), from)
		after := c.Stats().Subscribers
		switch {
		case !valid && after.Joined != before.Joined:
			h.t.Fatalf("op: a bad token admitted %v", from)
		case valid && after.Joined == before.Joined && after.Renewed == before.Renewed && after.RefusedFull == before.RefusedFull:
			h.t.Fatalf("op: a valid token from %v neither admitted, renewed nor refused: %+v", from, after)
		}
		if after.Joined > before.Joined {
			h.admitted[from] = true
		}
	case subBye:
		if !h.hasTok[k] {
			return
		}
		h.handle(h.enc(&packet.Packet{Header: packet.Header{Kind: packet.KindGoodbye, Flags: packet.FlagToken}, Subscription: h.tokens[k]}), from)
	case subRaw:
		n := int(p.u8()) % 80
		b := append(h.buf[:0], p.bytes(n)...)
		if len(b) > 5 {
			b[0], b[1], b[2], b[3], b[5] = 'T', 'W', 1, byte(packet.KindSubscribe)+p.u8()%3, 0
		}
		h.handle(b, from)
	case subNACK:
		s := c.findStream(0)
		if s == nil || s.next == s.start {
			return
		}
		first := s.start + uint64(p.u8())%uint64(s.next-s.start)
		q := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Session: fuzzSession}, Ranges: []packet.Range{{First: first, Len: 1}}}
		if p.u8()&1 == 0 {
			seq := s.next - 1
			q.Flags, q.ProofSeq, q.ProofTimestamp = packet.FlagProof, seq, s.sentTs[seq%sentTsLen]
			h.proved[from] = true
		}
		h.handle(h.enc(&q), from)
	case subReport:
		s := c.findStream(0)
		if s == nil || s.next == s.start {
			return
		}
		seq := s.next - 1
		h.handle(h.enc(&packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: fuzzSession},
			Report: packet.Report{EchoTimestamp: s.sentTs[seq%sentTsLen], HighestSeq: seq, Received: 1, Unrecovered: uint64(p.u8())}}), from)
	case subClock:
		h.now += int64(p.u16()) * int64(time.Millisecond) / 16
	case subTick:
		c.Tick(h.now)
	case subTake:
		h.take()
	}
	h.check()
}

// take hands the batch out as the writer would, noting what went where.
func (h *subHarness) take() {
	b := h.c.Outbox().Take()
	if b == nil {
		return
	}
	defer h.c.Outbox().Give(b)
	var p packet.Packet
	for _, d := range b.Datagrams() {
		if err := p.Parse(d.Data); err != nil {
			h.t.Fatalf("queued an invalid datagram: %v", err)
		}
		h.out[d.Addr] += len(d.Data)
		// The stream goes to admitted addresses only; a repair may go to
		// any address that asked, within its amplification limit (checked
		// in check) unless it proved it receives the data.
		if p.Kind == packet.KindData && !h.admitted[d.Addr] && p.Flags&packet.FlagRetransmit == 0 {
			h.t.Fatalf("DATA (flags %#x) to %v, never admitted", p.Flags, d.Addr)
		}
		if p.Kind == packet.KindToken {
			for i, a := range h.addrs {
				if a == d.Addr && p.Subscription.Nonce == uint64(i) {
					h.tokens[i], h.hasTok[i] = p.Subscription, true
				}
			}
		}
	}
}

func (h *subHarness) check() {
	st := h.c.Stats().Subscribers
	if st.Destinations > h.max || len(h.c.dests) != st.Destinations {
		h.t.Fatalf("%d destinations, bound %d", st.Destinations, h.max)
	}
	seen := map[netip.AddrPort]bool{}
	for _, d := range h.c.dests {
		if seen[d] {
			h.t.Fatalf("destination %v twice", d)
		}
		seen[d] = true
	}
	if h.static.IsValid() && !seen[h.static] {
		h.t.Fatal("the static destination was dropped")
	}
	if int(st.Joined)-int(st.Left)-int(st.Expired)-int(st.DroppedSlow) != st.Subscribed {
		h.t.Fatalf("counts do not add up: %+v", st)
	}
	for _, a := range h.addrs {
		if !h.admitted[a] && !h.proved[a] && h.out[a] > 3*h.in[a] {
			h.t.Fatalf("%v, never admitted, sent %d bytes, got %d", a, h.in[a], h.out[a])
		}
	}
}

func runSubProgram(t testing.TB, b []byte) {
	p := &prog{b: b}
	h := newSubHarness(t, p)
	for !p.done() {
		h.step(p)
	}
	h.take()
	h.check()
}

func FuzzSubscribeState(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 8 {
		b := make([]byte, 300)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	// A hand-made join: ask, take, echo, send, take; a NACK; a bye.
	f.Add([]byte{0x85, 0, 1, subAsk | 0x10, subTake, subEcho | 0x10, subSend, 0, 9, subTake, subNACK | 0x10, 0, 0, subBye | 0x10, subTake})
	f.Fuzz(func(t *testing.T, b []byte) {
		runSubProgram(t, b)
	})
}

// TestSubscribeStateRandom runs random programs: the fuzz target's
// invariants on many more shapes than its seeds, in every test run.
func TestSubscribeStateRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	joined := uint64(0)
	for range 300 {
		b := make([]byte, 400)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		// Bias towards the join path: many asks, takes and echoes.
		for i := 3; i < len(b); i += 4 {
			b[i] = byte([]int{subAsk, subTake, subEcho, subSend}[r.IntN(4)]) | byte(r.IntN(8))<<4
		}
		p := &prog{b: b}
		h := newSubHarness(t, p)
		for !p.done() {
			h.step(p)
		}
		h.take()
		h.check()
		joined += h.c.Stats().Subscribers.Joined
	}
	if joined == 0 {
		t.Fatal("no program admitted a subscriber: the harness does not reach the state machine")
	}
}
