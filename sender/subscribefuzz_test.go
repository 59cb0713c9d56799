package sender

// Stateful fuzzing of the subscription state machine: a program of
// SUBSCRIBEs, token echoes (true, damaged, stale, another address's),
// GOODBYEs, raw subscription datagrams, proven and unproven NACKs,
// REPORTs, sends, clock moves, ticks and takes, from eight addresses.
// After every operation the harness checks the bounds, that DATA goes only
// to addresses that were admitted, and that an address never admitted has
// received at most three times the bytes it sent.
//
// Sealed mode (FuzzSealedSubscribeState) runs the same programs with a
// key: six addresses hold it and two hold another; echoes and GOODBYEs
// carry a MAC under each address's key (or none), the harness answers
// the sender's HELLOs as a receiver would and opens what it is sent. It
// checks besides that an address without the key is never admitted, sent
// a HELLO or anything sealed; that every sealed datagram opens under the
// keys of the address it goes to; that the key states follow the
// destinations; and that handshakes under way stay bounded.

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/seal"
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
	// Sealed mode: each address's far end (addresses 6 and 7 hold
	// another key), and WELCOMEs to hand back after a take.
	sealed   bool
	peers    map[netip.AddrPort]*subPeer
	welcomes []sent
}

// subPeer is an address's far end in sealed mode.
type subPeer struct {
	hs        *seal.Handshaker
	wrong     bool // holds another key
	cur, prev *peerKeys
	// The HELLO answered last and its WELCOME: a repeat gets the same
	// answer, as from a receiver (no new keys).
	hello, welcome []byte
}

type peerKeys struct {
	opener *seal.Opener
	sealer *seal.Sealer
}

// sealedPSK and otherPSK are the sealed harness's keys.
var (
	sealedPSK = []byte("0123456789abcdef0123456789abcdef")
	otherPSK  = []byte("fedcba9876543210fedcba9876543210")
)

func newSubHarness(t testing.TB, p *prog) *subHarness { return newSubHarnessMode(t, p, false) }

func newSubHarnessMode(t testing.TB, p *prog, sealed bool) *subHarness {
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
	h := &subHarness{t: t, max: cfg.MaxReceivers, admitted: map[netip.AddrPort]bool{}, proved: map[netip.AddrPort]bool{}, in: map[netip.AddrPort]int{}, out: map[netip.AddrPort]int{}, sealed: sealed}
	if sealed {
		cfg.Key = sealedPSK
		h.peers = map[netip.AddrPort]*subPeer{}
	}
	var to []netip.AddrPort
	if b&4 != 0 {
		h.static = netip.MustParseAddrPort("10.9.9.9:9000")
		to = append(to, h.static)
		h.admitted[h.static] = true
	}
	for i := range h.addrs {
		h.addrs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), uint16(5000+i))
	}
	if sealed {
		good, bad := testKey(t, sealedPSK), testKey(t, otherPSK)
		for i, a := range h.addrs {
			k := good
			if i >= 6 {
				k = bad
			}
			h.peers[a] = &subPeer{hs: k.NewHandshaker(nil), wrong: i >= 6}
		}
		if h.static.IsValid() {
			h.peers[h.static] = &subPeer{hs: good.NewHandshaker(nil)}
		}
	}
	c, err := NewFanoutCore(cfg, fuzzSession, to)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	return h
}

// subscription encodes an echo or GOODBYE with tok; in sealed mode
// flagged packet.FlagAuth with the MAC under from's key, unless bare.
func (h *subHarness) subscription(kind packet.Kind, tok packet.Subscription, from netip.AddrPort, bare bool) []byte {
	q := packet.Packet{Header: packet.Header{Kind: kind, Flags: packet.FlagToken}, Subscription: tok}
	auth := h.sealed && !bare
	if auth {
		q.Flags |= packet.FlagAuth
	}
	b := h.enc(&q)
	if auth {
		if err := h.peers[from].hs.AuthSubscription(b); err != nil {
			h.t.Fatal(err)
		}
	}
	return b
}

// feedback encodes q as from's feedback: sealed under its keys in sealed
// mode (nil when it has none).
func (h *subHarness) feedback(q *packet.Packet, from netip.AddrPort) []byte {
	if !h.sealed {
		return h.enc(q)
	}
	pk := h.peers[from]
	if pk == nil || pk.cur == nil {
		return nil
	}
	b, err := q.AppendTo(h.buf[:0])
	if err != nil {
		h.t.Fatal(err)
	}
	if b, err = pk.cur.sealer.SealInPlace(append(b, make([]byte, seal.ToSender.Overhead())...)[:len(b)]); err != nil {
		h.t.Fatal(err)
	}
	h.buf = b
	return b
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
		bare := false
		if int(op&15)%subOps == subEchoBad {
			kinds := uint8(3)
			if h.sealed {
				kinds = 4
			}
			switch p.u8() % kinds {
			case 3:
				bare = h.sealed // no MAC: someone without the key, or on the path
			case 0:
				tok.TokenMAC[p.u8()%16] ^= 1 + p.u8()%255
			case 1:
				tok.TokenTime -= int64(p.u8()) + 1
			default:
				from = h.addrs[(k+1)%len(h.addrs)] // another address echoes it
			}
			valid = false
		}
		if h.now-tok.TokenTime > int64(TokenLifetime) || h.sealed && (bare || h.peers[from].wrong) {
			valid = false
		}
		before := c.Stats().Subscribers
		h.handle(h.subscription(packet.KindSubscribe, tok, from, bare), from)
		after := c.Stats().Subscribers
		switch {
		case !valid && after.Joined != before.Joined:
			h.t.Fatalf("op: a bad token admitted %v", from)
		case valid && after.Joined == before.Joined && after.Renewed == before.Renewed && after.RefusedFull == before.RefusedFull && after.RefusedPending == before.RefusedPending:
			h.t.Fatalf("op: a valid token from %v neither admitted, renewed nor refused: %+v", from, after)
		}
		if after.Joined > before.Joined {
			h.admitted[from] = true
		}
	case subBye:
		if !h.hasTok[k] {
			return
		}
		bare := h.sealed && p.u8()&1 == 0
		before := c.Stats().Subscribers.Left
		h.handle(h.subscription(packet.KindGoodbye, h.tokens[k], from, bare), from)
		if h.sealed && (bare || h.peers[from].wrong) && c.Stats().Subscribers.Left != before {
			h.t.Fatalf("a GOODBYE without the key's MAC ended %v's subscription", from)
		}
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
		if b := h.feedback(&q, from); b != nil {
			h.proved[from] = h.proved[from] || h.sealed
			h.handle(b, from)
		}
	case subReport:
		s := c.findStream(0)
		if s == nil || s.next == s.start {
			return
		}
		seq := s.next - 1
		if b := h.feedback(&packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: fuzzSession},
			Report: packet.Report{EchoTimestamp: s.sentTs[seq%sentTsLen], HighestSeq: seq, Received: 1, Unrecovered: uint64(p.u8())}}, from); b != nil {
			h.handle(b, from)
		}
	case subClock:
		h.now += int64(p.u16()) * int64(time.Millisecond) / 16
	case subTick:
		c.Tick(h.now)
	case subTake:
		h.take()
	}
	h.check()
}

// take hands the batch out as the writer would, noting what went where;
// in sealed mode the far ends answer HELLOs (the WELCOMEs handled after).
func (h *subHarness) take() {
	b := h.c.Outbox().Take()
	if b == nil {
		return
	}
	var p packet.Packet
	for _, d := range b.Datagrams() {
		if h.sealed {
			h.out[d.Addr] += len(d.Data)
			h.takeSealed(d.Data, d.Addr, &p)
			continue
		}
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
		h.noteToken(&p, d.Addr)
	}
	h.c.Outbox().Give(b)
	ws := h.welcomes
	h.welcomes = nil
	for _, w := range ws {
		h.handle(w.p.Payload, w.to)
	}
}

func (h *subHarness) noteToken(p *packet.Packet, to netip.AddrPort) {
	if p.Kind == packet.KindToken {
		for i, a := range h.addrs {
			if a == to && p.Subscription.Nonce == uint64(i) {
				h.tokens[i], h.hasTok[i] = p.Subscription, true
			}
		}
	}
}

// takeSealed checks one datagram of a sealed sender: TOKENs and GOODBYEs
// may go in clear; a HELLO only to an address with the key (answered);
// anything else sealed under the keys of the address it goes to.
func (h *subHarness) takeSealed(b []byte, to netip.AddrPort, p *packet.Packet) {
	pk := h.peers[to]
	err := p.Parse(b)
	switch {
	case err == nil:
		if p.Kind != packet.KindToken && p.Kind != packet.KindGoodbye {
			h.t.Fatalf("%v sent in clear to %v", p.Kind, to)
		}
		h.noteToken(p, to)
		return
	case err != packet.ErrSealed:
		h.t.Fatalf("queued an invalid datagram: %v", err)
	case pk == nil || pk.wrong:
		h.t.Fatalf("a sealed datagram (kind %d) to %v, which does not hold the key", b[3], to)
	}
	if packet.Kind(b[3]) == packet.KindHello {
		if bytes.Equal(b, pk.hello) {
			h.welcomes = append(h.welcomes, sent{to: to, p: packet.Packet{Payload: pk.welcome}})
			return
		}
		welcome, tr, err := pk.hs.Respond(nil, b)
		if err != nil {
			h.t.Fatalf("HELLO to %v: %v", to, err)
		}
		k := &peerKeys{}
		if k.sealer, err = tr.NewSealer(seal.Params{Session: fuzzSession, Dir: seal.ToSender}, 0); err == nil {
			k.opener, err = tr.NewOpener(seal.Params{Session: fuzzSession, Dir: seal.ToReceiver})
		}
		if err != nil {
			h.t.Fatal(err)
		}
		pk.prev, pk.cur = pk.cur, k
		pk.hello, pk.welcome = bytes.Clone(b), welcome
		h.welcomes = append(h.welcomes, sent{to: to, p: packet.Packet{Payload: welcome}})
		return
	}
	body, _, err := pk.cur.opener.Open(nil, b)
	if err != nil && pk.prev != nil {
		body, _, err = pk.prev.opener.Open(nil, b)
	}
	if err != nil {
		h.t.Fatalf("a datagram to %v does not open under its keys: %v", to, err)
	}
	hd, _ := packet.PeekHeader(b)
	if err := p.ParseBody(hd, body); err != nil {
		h.t.Fatalf("sealed body: %v", err)
	}
	if p.Kind == packet.KindData && !h.admitted[to] && p.Flags&packet.FlagRetransmit == 0 {
		h.t.Fatalf("DATA to %v, never admitted", to)
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
	all := h.c.Stats()
	if int(st.Joined)-int(st.Left)-int(st.Expired)-int(st.DroppedSlow)-int(all.HandshakesExpired) != st.Subscribed {
		h.t.Fatalf("counts do not add up: %+v, %d handshakes expired", st, all.HandshakesExpired)
	}
	if h.sealed {
		sec := h.c.sec
		if len(sec.dests) != len(h.c.dests) || all.KeysPending > len(h.c.dests) || sec.pendingSubscribers() > maxPendingHandshakes {
			h.t.Fatalf("%d key states for %d destinations, %d pending", len(sec.dests), len(h.c.dests), all.KeysPending)
		}
		for i, d := range sec.dests {
			if d.addr != h.c.dests[i] {
				h.t.Fatalf("key state %d is %v's, destination %v", i, d.addr, h.c.dests[i])
			}
			if pk := h.peers[d.addr]; pk == nil || pk.wrong {
				h.t.Fatalf("%v, without the key, is a destination", d.addr)
			}
		}
	}
	for _, a := range h.addrs {
		if !h.admitted[a] && !h.proved[a] && h.out[a] > 3*h.in[a] {
			h.t.Fatalf("%v, never admitted, sent %d bytes, got %d", a, h.in[a], h.out[a])
		}
	}
}

func runSubProgram(t testing.TB, b []byte) { runSubProgramMode(t, b, false) }

func runSubProgramMode(t testing.TB, b []byte, sealed bool) {
	p := &prog{b: b}
	h := newSubHarnessMode(t, p, sealed)
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

// FuzzSealedSubscribeState is FuzzSubscribeState with a key (see the top
// of the file).
func FuzzSealedSubscribeState(f *testing.F) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 8 {
		b := make([]byte, 300)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	// A join (ask, take, echo, take: the HELLO answered), a send, a NACK,
	// a bare GOODBYE and an authentic one; then the same from an address
	// without the key (7).
	f.Add([]byte{0x85, 0, 1, subAsk | 0x10, subTake, subEcho | 0x10, subTake, subTake, subSend, 0, 9, subTake, subNACK | 0x10, 0, 0, subTake,
		subBye | 0x10, 0, subBye | 0x10, 1, subTake, subAsk | 0x70, subTake, subEcho | 0x70, subTake, subSend, 0, 9, subTake})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Handshakes cost key agreements: programs are kept short so that
		// the fuzzer runs many of them.
		runSubProgramMode(t, b[:min(len(b), 256)], true)
	})
}

// TestSealedSubscribeStateRandom is TestSubscribeStateRandom in sealed
// mode: programs biased towards joining, checked by the sealed invariants,
// and some of them reach keys.
func TestSealedSubscribeStateRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var joined, keyed uint64
	for range 150 {
		b := make([]byte, 400)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		for i := 3; i < len(b); i += 4 {
			b[i] = byte([]int{subAsk, subTake, subEcho, subSend, subTake}[r.IntN(5)]) | byte(r.IntN(8))<<4
		}
		p := &prog{b: b}
		h := newSubHarnessMode(t, p, true)
		for !p.done() {
			h.step(p)
		}
		h.take()
		h.check()
		st := h.c.Stats()
		joined += st.Subscribers.Joined
		keyed += st.Handshakes
	}
	if joined == 0 || keyed == 0 {
		t.Fatalf("%d joins, %d handshakes: the harness does not reach the sealed state machine", joined, keyed)
	}
}
