package receiver

// Stateful fuzzing of the receiver core. The fuzz input is a small program:
// its first bytes choose a configuration, the rest is a sequence of
// operations (deliver a DATA, PARITY, HEARTBEAT or "unavailable" NACK built
// from fuzzed fields, deliver raw bytes, move the clock, Pop, Tick, run an
// honest FEC-protected stream with fuzzed losses). After every operation the
// harness checks the core's bounds and bookkeeping; every delivered message
// is checked for order, uniqueness and content.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/fec"
	"github.com/telewire/telewire/packet"
)

// prog reads a fuzz program. Reads past the end yield zeros, so every
// input is a valid program; done reports when the input is used up.
type prog struct {
	b []byte
	i int
}

func (p *prog) done() bool { return p.i >= len(p.b) }

func (p *prog) u8() uint8 {
	if p.i >= len(p.b) {
		return 0
	}
	v := p.b[p.i]
	p.i++
	return v
}

func (p *prog) u16() uint16 { return uint16(p.u8())<<8 | uint16(p.u8()) }

func (p *prog) u32() uint32 { return uint32(p.u16())<<16 | uint32(p.u16()) }

func (p *prog) u64() uint64 { return uint64(p.u32())<<32 | uint64(p.u32()) }

// bytes returns the next n bytes (fewer at the end of the input).
func (p *prog) bytes(n int) []byte {
	end := min(p.i+n, len(p.b))
	b := p.b[p.i:end]
	p.i = end
	return b
}

// Receiver program opcodes (the opcode byte modulo rxOps).
const (
	rxData = iota
	rxData2
	rxParity
	rxHeartbeat
	rxUnavailable
	rxRaw
	rxClock
	rxPop
	rxTick
	rxHonest
	rxOps
)

// The fuzzed fields pick from these tables, so that programs hit the same
// session and stream again and again, with extreme values among them.
var (
	fuzzSessions = [...]uint64{1, 2, 0xdeadbeef, 1<<64 - 1}
	fuzzStreams  = [...]uint32{0, 1, 7, 1<<32 - 1}
)

// fuzzSource returns source address i of the few a program uses.
func fuzzSource(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(40000+i))
}

const fuzzSources = 5 // the last one is the honest FEC stream's

// Honest FEC stream: its own source, session and stream, starting just
// below the 2^64 wrap.
const (
	honestSrc     = fuzzSources - 1
	honestSession = 42
	honestStream  = 5
	honestStart   = 1<<64 - 24
)

// fill returns byte i of the canonical payload of (session, stream, seq).
// Every DATA a program sends carries its canonical payload, so any payload
// delivered, retransmitted or rebuilt can be checked byte by byte.
func fill(session uint64, stream uint32, seq uint64, i int) byte {
	x := session*0x9e3779b97f4a7c15 ^ uint64(stream)*0xbf58476d1ce4e5b9 ^ seq*0x94d049bb133111eb ^ uint64(i)
	x ^= x >> 29
	x *= 0xbf58476d1ce4e5b9
	return byte(x >> 32)
}

func canonical(dst []byte, session uint64, stream uint32, seq uint64, n int) []byte {
	for i := range n {
		dst = append(dst, fill(session, stream, seq, i))
	}
	return dst
}

// streamKey names one stream of one sender.
type streamKey struct {
	src     netip.AddrPort
	session uint64
	stream  uint32
}

// seqHistory is what the harness remembers of one stream's deliveries.
type seqHistory struct {
	last    uint64
	any     bool
	maxSeen uint64
	seen    map[uint64]bool
}

// reset marks where a new incarnation of a session starts in the FIFO
// stream of delivered messages: from delivered message number at on, the
// stream keys of (src, session) begin afresh.
type reset struct {
	at      uint64
	src     netip.AddrPort
	session uint64
}

// rxHarness drives one receiver Core through a fuzz program.
type rxHarness struct {
	t   testing.TB
	c   *Core
	cfg Config
	now int64
	buf []byte
	pay []byte
	// mapped is a DATA payload with its message map (packet.FlagMessages).
	mapped []byte
	tmp    []byte // scratch for payload comparisons
	pkt    packet.Packet
	cur    map[streamKey]uint64 // per stream: the highest sequence sent so far
	hist   map[streamKey]*seqHistory

	sessPtr map[netip.AddrPort]*session // the incarnation last seen per source
	resets  []reset
	popped  uint64    // messages handed out by Pop
	origins [3]uint64 // messages handed out, by Origin
	tainted map[streamKey]map[uint64]bool

	lastRecv map[*stream]uint64 // tracker Received per live stream
	retired  uint64             // Received of streams no longer live
	seenIDs  map[netip.AddrPort]map[uint64]bool

	malformed  uint64 // datagrams the harness's own Parse rejected
	datagrams  uint64
	heartbeats uint64
	parity     uint64

	enc       *fec.Encoder // honest stream
	honestSeq uint64
}

// newRxHarness builds a Core from the program's first bytes.
func newRxHarness(t testing.TB, p *prog) *rxHarness {
	t.Helper()
	b0, b1, b2 := p.u8(), p.u8(), p.u8()
	cfg := Config{
		ReportInterval:  10 * time.Millisecond,
		SessionTimeout:  500 * time.Millisecond,
		MaxSessions:     1 + int(b0>>2)%3,
		MaxStreams:      1 + int(b0>>4)%3,
		Window:          64 << (b1 % 3),
		Mode:            Mode(b0 % 3),
		Latency:         time.Duration(1+int(b2)) * time.Millisecond,
		ReorderCapacity: 1 + int(b1>>2)%24,
		DisableNACK:     b1&0x80 != 0,
		QueueMessages:   1 + int(b2>>3)%48,
		QueueBytes:      packet.MaxPayload + int(b2&7)*4096,
		// 1 to 8 MiB: a quarter of it for unvalidated senders, which
		// programs of a few hundred datagrams can fill.
		MaxStateBytes: 1 << 20 << (b1 & 3),
	}
	if b0&0xc0 == 0xc0 {
		// A receiver of a multicast group: NACK back-off, the group size
		// HEARTBEATs advertise, and a late joiner's history request.
		cfg.Group = true
		cfg.Rand = rand.NewPCG(uint64(b1), uint64(b2))
		cfg.JoinHistory = int(b2>>5) * 2 // within ReorderCapacity (at most 24), so delivery can start that early
	}
	c, err := NewCore(cfg)
	if err != nil {
		t.Fatalf("config %+v: %v", cfg, err)
	}
	enc, err := fec.NewEncoder(fec.EncoderConfig{K: 4, M: 2, Interleave: 1 + int(b1>>6&1), MaxDelayNanos: int64(20 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	return &rxHarness{
		t: t, c: c, cfg: c.cfg, now: int64(time.Second),
		cur:       map[streamKey]uint64{},
		hist:      map[streamKey]*seqHistory{},
		sessPtr:   map[netip.AddrPort]*session{},
		tainted:   map[streamKey]map[uint64]bool{},
		lastRecv:  map[*stream]uint64{},
		seenIDs:   map[netip.AddrPort]map[uint64]bool{},
		enc:       enc,
		honestSeq: honestStart,
	}
}

// handle hands one datagram to the core, as the socket loop would.
func (h *rxHarness) handle(b []byte, from netip.AddrPort) {
	h.datagrams++
	var q packet.Packet
	if err := q.Parse(b); err != nil {
		h.malformed++
	} else {
		switch q.Kind {
		case packet.KindHeartbeat:
			h.heartbeats++
		case packet.KindParity:
			h.parity++
		case packet.KindData:
			k := streamKey{from, q.Session, q.Stream}
			msg, ok := q.Payload, true
			if q.Flags&packet.FlagMessages != 0 {
				msg, ok = packet.OnlyMessage(q.Payload)
			}
			h.tmp = canonical(h.tmp[:0], q.Session, q.Stream, q.Seq, len(msg))
			if !ok || !bytes.Equal(msg, h.tmp) {
				// Raw bytes that happen to be a valid DATA packet with
				// another payload: do not check that sequence's content.
				if h.tainted[k] == nil {
					h.tainted[k] = map[uint64]bool{}
				}
				h.tainted[k][q.Seq] = true
			}
		}
		if h.seenIDs[from] == nil {
			h.seenIDs[from] = map[uint64]bool{}
		}
		h.seenIDs[from][q.Session] = true
	}
	before := h.c.stats.Delivered
	h.c.Handle(b, from, h.now)
	// A new incarnation of the sender at from starts here in the FIFO.
	if s := h.c.sessions[keyOf{addr: from}]; s != nil && s != h.sessPtr[from] {
		h.resets = append(h.resets, reset{at: before, src: from, session: s.id})
	}
}

// encode appends p's encoding into the harness buffer; false if p is
// invalid (AppendTo validates as Parse does).
func (h *rxHarness) encode(p *packet.Packet) ([]byte, bool) {
	b, err := p.AppendTo(h.buf[:0])
	if err != nil {
		return nil, false
	}
	h.buf = b
	return b, true
}

// pick chooses a source, session and stream from the program.
func (h *rxHarness) pick(p *prog) streamKey {
	return streamKey{
		src:     fuzzSource(int(p.u8()) % (fuzzSources - 1)),
		session: fuzzSessions[p.u8()%uint8(len(fuzzSessions))],
		stream:  fuzzStreams[p.u8()%uint8(len(fuzzStreams))],
	}
}

// seq chooses a sequence for stream k: next in order, a small step either
// way, a large jump, or anything at all.
func (h *rxHarness) seq(p *prog, k streamKey) uint64 {
	c := h.cur[k]
	var s uint64
	switch m := p.u8(); m % 4 {
	case 0:
		s = c + 1
	case 1:
		s = c + uint64(int64(int8(p.u8())))
	case 2:
		s = c + uint64(p.u16())<<(p.u8()%56)
	default: // anywhere: the stream continues from there
		s = p.u64()
		h.cur[k] = s
		return s
	}
	if packet.SeqLess(c, s) {
		h.cur[k] = s
	}
	return s
}

func (h *rxHarness) run(p *prog) {
	for !p.done() {
		op := p.u8() % rxOps
		switch op {
		case rxData, rxData2:
			k := h.pick(p)
			seq := h.seq(p, k)
			fl := p.u8()
			ts := h.now - int64(p.u16())*1000
			if fl&4 != 0 {
				ts = int64(p.u64()) // absurd sender clock
			}
			n := int(p.u8())
			if fl&2 != 0 {
				n *= 200 // up to 51 000 bytes
			}
			h.pay = canonical(h.pay[:0], k.session, k.stream, seq, n)
			h.pkt = packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: k.session, Stream: k.stream}, Seq: seq, Timestamp: ts, Payload: h.pay}
			if fl&1 != 0 {
				h.pkt.Flags = packet.FlagRetransmit
			}
			if fl&8 != 0 {
				// The same message behind a message map, as this
				// version's sender sends it: delivered the same.
				h.mapped = packet.AppendEntry(packet.AppendMessagesHeader(h.mapped[:0], 1), 0, h.pay)
				h.pkt.Flags |= packet.FlagMessages
				h.pkt.Payload = h.mapped
			}
			if b, ok := h.encode(&h.pkt); ok {
				h.handle(b, k.src)
			}
		case rxParity:
			k := h.pick(p)
			first := h.cur[k] - uint64(p.u8())
			par := packet.Parity{First: first, K: p.u8(), M: p.u8(), Index: p.u8(), Stride: p.u8()}
			n := 1 + int(p.u8())
			h.pay = append(h.pay[:0], p.bytes(n)...)
			for len(h.pay) < n {
				h.pay = append(h.pay, byte(len(h.pay)))
			}
			h.pkt = packet.Packet{Header: packet.Header{Kind: packet.KindParity, Session: k.session, Stream: k.stream}, Parity: par, Payload: h.pay}
			if b, ok := h.encode(&h.pkt); ok {
				h.handle(b, k.src)
			}
		case rxHeartbeat:
			k := h.pick(p)
			next := h.seq(p, k) + 1
			start := next - uint64(p.u16())
			sel := p.u8()
			if sel&1 != 0 {
				start = next - p.u64()>>1 // anywhere up to 2^63 back
			}
			h.pkt = packet.Packet{Header: packet.Header{Kind: packet.KindHeartbeat, Session: k.session, Stream: k.stream},
				Heartbeat: packet.Heartbeat{Start: start, Next: next, Timestamp: h.now}}
			if sel&2 != 0 { // a multicast sender's group size, 1..2^20
				h.pkt.Flags = packet.FlagGroup
				h.pkt.Heartbeat.Receivers = 1 + uint32(sel>>2)*16411
			}
			if b, ok := h.encode(&h.pkt); ok {
				h.handle(b, k.src)
			}
		case rxUnavailable:
			k := h.pick(p)
			n := 1 + int(p.u8()%4)
			first := h.cur[k] - uint64(p.u16())
			h.pkt = packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagUnavailable, Session: k.session, Stream: k.stream}}
			for range n {
				l := 1 + uint32(p.u16())
				h.pkt.Ranges = append(h.pkt.Ranges, packet.Range{First: first, Len: l})
				first += uint64(l) + 1 + uint64(p.u8())
			}
			if b, ok := h.encode(&h.pkt); ok {
				h.handle(b, k.src)
			}
		case rxRaw:
			src := fuzzSource(int(p.u8()) % fuzzSources)
			b := append(h.buf[:0], p.bytes(int(p.u8()))...)
			if len(b) >= packet.HeaderLen && p.u8()&1 != 0 {
				// Make it look like a packet: magic, version, length and
				// checksum right, so the body parsers are reached.
				b[0], b[1], b[2] = 'T', 'W', packet.Version
				binary.BigEndian.PutUint16(b[6:], uint16(len(b)))
				sealCRC(b)
			}
			h.buf = b
			h.handle(b, src)
		case rxClock:
			d := int64(p.u16()) * 1000
			if p.u8()&1 != 0 {
				d *= 1000 // up to 65 s: expiry
			}
			h.now += d
		case rxPop:
			for range int(p.u8()) {
				if !h.pop() {
					break
				}
			}
		case rxTick:
			h.c.Tick(h.now)
			if p.u8()&3 != 0 {
				h.takeOutbox()
			}
		case rxHonest:
			h.honest(p)
		}
		h.check()
	}
	h.c.Tick(h.now)
	for h.pop() {
	}
	h.check()
}

// sealCRC writes the packet checksum (CRC-32C of the header before the
// checksum field and of the body) into b.
func sealCRC(b []byte) {
	t := crc32.MakeTable(crc32.Castagnoli)
	c := crc32.Update(0, t, b[:20])
	c = crc32.Update(c, t, b[packet.HeaderLen:])
	binary.BigEndian.PutUint32(b[20:], c)
}

// honest sends up to eight messages of the honest stream through a real
// FEC encoder, losing the DATA and PARITY packets the program says.
func (h *rxHarness) honest(p *prog) {
	// The honest sender answers the challenges it was sent before it
	// sends more: its FEC is taken once it is validated.
	h.takeOutbox()
	n := 1 + int(p.u8()%8)
	lossData, lossParity := p.u8(), p.u8()
	src := fuzzSource(honestSrc)
	for i := range n {
		seq := h.honestSeq
		h.honestSeq++
		h.pay = canonical(h.pay[:0], honestSession, honestStream, seq, 1+int(seq%97))
		h.pkt = packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: honestSession, Stream: honestStream}, Seq: seq, Timestamp: h.now, Payload: h.pay}
		b, ok := h.encode(&h.pkt)
		if !ok {
			h.t.Fatal("honest DATA does not encode")
		}
		if lossData>>i&1 == 0 {
			h.handle(b, src)
		}
		if h.enc.Add(seq, h.now, h.pay, h.now) || h.enc.Flush(h.now) {
			j := 0
			h.enc.TakeParity(func(par packet.Parity, shard []byte) {
				q := packet.Packet{Header: packet.Header{Kind: packet.KindParity, Session: honestSession, Stream: honestStream}, Parity: par, Payload: shard}
				pb, err := q.AppendTo(nil)
				if err != nil {
					h.t.Fatalf("honest parity: %v", err)
				}
				if lossParity>>(j%8)&1 == 0 {
					h.handle(pb, src)
				}
				j++
			})
		}
	}
}

// takeOutbox takes the feedback batch, as the socket loop would, and
// checks every datagram in it. Challenges are answered as a sender would
// (a HEARTBEAT saying where its stream is), for the honest stream and for
// any stream the program has sent on: the sources here all receive their
// feedback.
func (h *rxHarness) takeOutbox() {
	b := h.c.Outbox().Take()
	if b == nil {
		return
	}
	var answers []packet.Packet
	defer func() {
		h.c.Outbox().Give(b)
		for i := range answers {
			a := &answers[i]
			ab, err := a.AppendTo(nil)
			if err != nil {
				h.t.Fatalf("answer does not encode: %v", err)
			}
			h.handle(ab, fuzzSource(int(a.Heartbeat.Timestamp)))
		}
	}()
	var q packet.Packet
	for _, d := range b.Datagrams() {
		if err := q.Parse(d.Data); err != nil {
			h.t.Fatalf("receiver queued an invalid datagram: %v", err)
		}
		if q.Kind != packet.KindReport && !(q.Kind == packet.KindNACK && q.Flags&^(packet.FlagProof|packet.FlagHistory) == 0) {
			h.t.Fatalf("receiver queued a %v (flags %x)", q.Kind, q.Flags)
		}
		if q.Kind == packet.KindNACK && q.Flags&packet.FlagHistory != 0 {
			n := 0
			for _, r := range q.Ranges {
				n += int(r.Len)
			}
			if h.c.cfg.JoinHistory == 0 || n > h.c.cfg.JoinHistory {
				h.t.Fatalf("history NACK for %d sequences, JoinHistory %d", n, h.c.cfg.JoinHistory)
			}
		}
		if !h.seenIDs[d.Addr][q.Session] {
			h.t.Fatalf("feedback for session %x to %v, which never sent it", q.Session, d.Addr)
		}
		if q.Kind != packet.KindReport || q.Flags&packet.FlagChallenge == 0 {
			continue
		}
		src := -1
		for i := range fuzzSources {
			if fuzzSource(i) == d.Addr {
				src = i
			}
		}
		if s := h.c.sessions[keyOf{addr: d.Addr}]; s == nil || s.id != q.Session {
			continue // a sender answers for its current session only
		}
		start, next := uint64(0), uint64(0)
		if k := (streamKey{d.Addr, q.Session, q.Stream}); src == honestSrc && q.Session == honestSession && q.Stream == honestStream {
			start, next = honestStart, h.honestSeq
		} else if c, ok := h.cur[k]; ok && src >= 0 {
			start, next = c+1, c+1
		} else {
			continue
		}
		answers = append(answers, packet.Packet{
			Header: packet.Header{Kind: packet.KindHeartbeat, Flags: packet.FlagAnswer, Session: q.Session, Stream: q.Stream},
			// Timestamp carries the source index to the deferred send.
			Heartbeat: packet.Heartbeat{Start: start, Next: next, Timestamp: int64(src), Answer: q.Challenge},
		})
	}
}

// pop takes one message and checks it.
func (h *rxHarness) pop() bool {
	m, ok := h.c.Pop()
	if !ok {
		return false
	}
	for len(h.resets) > 0 && h.resets[0].at <= h.popped {
		r := h.resets[0]
		h.resets = h.resets[1:]
		for k := range h.hist {
			if k.src == r.src && k.session == r.session {
				delete(h.hist, k)
			}
		}
	}
	h.popped++
	h.origins[m.Origin]++
	k := streamKey{m.Source, m.Session, m.Stream}
	if !h.tainted[k][m.Seq] {
		h.tmp = canonical(h.tmp[:0], m.Session, m.Stream, m.Seq, len(m.Payload))
		if !bytes.Equal(m.Payload, h.tmp) {
			h.t.Fatalf("message %v/%x/%d seq %d (%v): payload of %d bytes is not what was sent",
				m.Source, m.Session, m.Stream, m.Seq, m.Origin, len(m.Payload))
		}
	}
	hs := h.hist[k]
	if hs == nil {
		hs = &seqHistory{seen: map[uint64]bool{}}
		h.hist[k] = hs
	}
	// Two resync jumps, each under half the serial space, can add up to
	// more than half: the stream went forward twice, yet its newest
	// sequence compares as older than a message held from before the
	// jumps. Order is checked within a window's span, and across a wider
	// step only on a stream that never resynced.
	wide := hs.any && packet.SeqDiff(hs.last, m.Seq) > int64(h.cfg.Window) && h.resynced(m.Source, m.Stream)
	if h.cfg.Mode != ModeUnordered && hs.any && !wide && !packet.SeqLess(hs.last, m.Seq) {
		h.t.Fatalf("%v mode: stream %v delivered seq %d after %d", h.cfg.Mode, k, m.Seq, hs.last)
	}
	// Uniqueness within one span of the window: a jump beyond it (a
	// resync) starts a new span, since serial arithmetic lets a stream
	// come round to old numbers after enough jumps.
	if hs.any && packet.SeqDiff(m.Seq, hs.maxSeen) > int64(h.cfg.Window) {
		clear(hs.seen)
	}
	if hs.seen[m.Seq] {
		h.t.Fatalf("stream %v delivered seq %d twice", k, m.Seq)
	}
	hs.seen[m.Seq] = true
	if !hs.any || packet.SeqLess(hs.maxSeen, m.Seq) {
		hs.maxSeen = m.Seq
	}
	hs.last, hs.any = m.Seq, true
	return true
}

// check verifies the core's bounds and counters after an operation.
// resynced reports whether the unsealed session at src has a stream id
// that jumped beyond the window at least once.
func (h *rxHarness) resynced(src netip.AddrPort, id uint32) bool {
	s := h.c.sessions[keyOf{addr: src}]
	if s == nil {
		return false
	}
	for _, st := range s.streams {
		if st.id == id {
			return st.tracker.Stats().Resyncs > 0
		}
	}
	return false
}

func (h *rxHarness) check() {
	t, c := h.t, h.c
	if len(c.sessions) > h.cfg.MaxSessions {
		t.Fatalf("%d sessions, bound %d", len(c.sessions), h.cfg.MaxSessions)
	}
	live := map[*stream]bool{}
	var received uint64
	for k, s := range c.sessions {
		from := k.addr
		if s.addr != from {
			t.Fatalf("session under %v has address %v", from, s.addr)
		}
		if len(s.streams) > h.cfg.MaxStreams {
			t.Fatalf("session %v: %d streams, bound %d", from, len(s.streams), h.cfg.MaxStreams)
		}
		for _, st := range s.streams {
			live[st] = true
			// reliability.Delivery rounds its capacity up to a power of two.
			if n, bound := st.delivery.Len(), 1<<bits.Len(uint(h.cfg.ReorderCapacity-1)); n > bound {
				t.Fatalf("stream %d holds %d messages, bound %d (ReorderCapacity %d)", st.id, n, bound, h.cfg.ReorderCapacity)
			}
			ts := st.tracker.Stats()
			if ts.Missing != ts.Recovered+ts.GivenUp+ts.Pending {
				t.Fatalf("tracker: Missing %d != Recovered %d + GivenUp %d + Pending %d", ts.Missing, ts.Recovered, ts.GivenUp, ts.Pending)
			}
			if ts.Pending > uint64(h.cfg.Window) {
				t.Fatalf("tracker pending %d beyond the window %d", ts.Pending, h.cfg.Window)
			}
			received += ts.Received
			h.lastRecv[st] = ts.Received
		}
	}
	for st, n := range h.lastRecv {
		if !live[st] {
			h.retired += n
			delete(h.lastRecv, st)
		}
	}
	for k, s := range c.sessions {
		h.sessPtr[k.addr] = s
	}
	for from := range h.sessPtr {
		if c.sessions[keyOf{addr: from}] == nil {
			delete(h.sessPtr, from)
		}
	}
	q := c.queue
	if q.n > h.cfg.QueueMessages || q.n > len(q.msgs) || len(q.buf) != h.cfg.QueueBytes {
		t.Fatalf("queue: %d messages (bound %d), %d-byte ring", q.n, h.cfg.QueueMessages, len(q.buf))
	}
	if o := c.out.Current(); o.Len() > 1024 || o.Bytes() > 1<<20 {
		t.Fatalf("outbox: %d datagrams, %d bytes", o.Len(), o.Bytes())
	}
	s := c.stats
	// Every message queued is either handed out or still waiting.
	if s.Delivered != h.popped+uint64(q.waiting()) {
		t.Fatalf("Delivered %d != popped %d + waiting %d", s.Delivered, h.popped, q.waiting())
	}
	// Nothing is delivered (or dropped at the queue) that was not accepted
	// by a stream's tracker, as an original, retransmission or rebuild.
	if s.Delivered+s.QueueOverflow > h.retired+received {
		t.Fatalf("Delivered %d + QueueOverflow %d > accepted %d", s.Delivered, s.QueueOverflow, h.retired+received)
	}
	if s.Datagrams != h.datagrams || s.Malformed != h.malformed || s.Heartbeats > h.heartbeats ||
		s.Parity > h.parity || s.ParityRejected > s.Parity {
		t.Fatalf("counters %+v; fed %d datagrams, %d malformed, %d heartbeats, %d parity",
			s, h.datagrams, h.malformed, h.heartbeats, h.parity)
	}
	if s.Sessions-s.SessionRestarts-s.SessionsExpired-s.SessionsEvicted != uint64(len(c.sessions)) {
		t.Fatalf("sessions started %d - restarts %d - expired %d - evicted %d != live %d",
			s.Sessions, s.SessionRestarts, s.SessionsExpired, s.SessionsEvicted, len(c.sessions))
	}
	// The state budget adds up: what the sessions hold is what is charged,
	// and only FEC shard growth (charged after the fact) may overshoot.
	var held, unvalidated int64
	for _, x := range c.sessions {
		held += x.bytes
		if !c.trusted(x) {
			unvalidated += x.bytes
		}
		if x.bytes < 0 {
			t.Fatalf("session charged %d bytes", x.bytes)
		}
	}
	if held != c.memUsed || unvalidated != c.memUnvalidated {
		t.Fatalf("sessions hold %d (%d unvalidated), budget says %d (%d)", held, unvalidated, c.memUsed, c.memUnvalidated)
	}
	if c.memUnvalidated > int64(c.cfg.MaxStateBytes/unvalidatedShare) {
		t.Fatalf("unvalidated state %d over its share of %d", c.memUnvalidated, c.cfg.MaxStateBytes)
	}
}

// seed is one program of a seed corpus.
type seed struct {
	name string
	prog []byte
}

// rootSeeds returns the seed programs stored at the repository root in
// testdata/fuzz/<name>, in Go's corpus file format ("go test fuzz v1" and
// one []byte(...) line), in file name order. Go reads corpora only from
// the package's own testdata/fuzz; the seeds are kept at the root with the
// other fuzz corpora, so the target adds them itself.
func rootSeeds(t testing.TB, name string) []seed {
	t.Helper()
	dir := filepath.Join("..", "testdata", "fuzz", name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("seed corpus: %v", err)
	}
	var seeds []seed
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := readCorpusFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatalf("seed %s: %v", e.Name(), err)
		}
		seeds = append(seeds, seed{e.Name(), b})
	}
	return seeds
}

// readCorpusFile reads a one-argument []byte corpus file.
func readCorpusFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<24)
	if !sc.Scan() || sc.Text() != "go test fuzz v1" {
		return nil, fmt.Errorf("not a go test fuzz v1 file")
	}
	if !sc.Scan() {
		return nil, fmt.Errorf("no value")
	}
	line := strings.TrimSpace(sc.Text())
	if !strings.HasPrefix(line, "[]byte(") || !strings.HasSuffix(line, ")") {
		return nil, fmt.Errorf("value is not []byte: %.40q", line)
	}
	s, err := strconv.Unquote(line[len("[]byte(") : len(line)-1])
	if err != nil {
		return nil, err
	}
	if sc.Scan() && strings.TrimSpace(sc.Text()) != "" {
		return nil, fmt.Errorf("more than one value")
	}
	return []byte(s), sc.Err()
}

// FuzzReceiverCore runs fuzz programs (see rxHarness) against a receiver
// Core with small bounds, checking its invariants after every operation.
func FuzzReceiverCore(f *testing.F) {
	for _, s := range rootSeeds(f, "FuzzReceiverCore") {
		f.Add(s.prog)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<14 {
			return // long programs add time, not shapes
		}
		p := &prog{b: b}
		newRxHarness(t, p).run(p)
	})
}

// TestReceiverCoreSeeds runs every root seed as a plain test, with a
// message per seed, so that a seed that fails is named.
func TestReceiverCoreSeeds(t *testing.T) {
	seeds := rootSeeds(t, "FuzzReceiverCore")
	if len(seeds) < 8 {
		t.Fatalf("%d seeds in testdata/fuzz/FuzzReceiverCore", len(seeds))
	}
	for _, s := range seeds {
		t.Run(s.name, func(t *testing.T) {
			p := &prog{b: s.prog}
			newRxHarness(t, p).run(p)
		})
	}
}

// randomProgram returns a program of n random operations (the bytes after
// each opcode are random too, which is what a fuzz program is).
func randomProgram(rng *rand.Rand, n int) []byte {
	b := make([]byte, 0, n*12)
	for range n * 12 {
		b = append(b, byte(rng.Uint32()))
	}
	return b
}

// TestReceiverCoreMemoryFlat runs a long random program in slices against
// one Core per delivery mode and checks that the live heap after GC stays
// flat once the bounded structures have filled.
func TestReceiverCoreMemoryFlat(t *testing.T) {
	// First config byte: 3 sessions, 3 streams, and the mode.
	for _, b0 := range []byte{0x21, 0x22, 0x20} {
		p := &prog{b: []byte{b0, 0x0a, 0x40}}
		h := newRxHarness(t, p)
		t.Run(h.cfg.Mode.String(), func(t *testing.T) {
			h.t = t
			memoryFlat(t, h)
		})
	}
}

func memoryFlat(t *testing.T, h *rxHarness) {
	rng := rand.New(rand.NewPCG(8, uint64(h.cfg.Mode)))
	const rounds, opsPerRound = memoryRounds, 5000
	var base, end uint64
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for r := range rounds {
		h.run(&prog{b: randomProgram(rng, opsPerRound)})
		// The harness's own bookkeeping grows with what was delivered;
		// forget it: every message has been popped.
		h.hist = map[streamKey]*seqHistory{}
		h.tainted = map[streamKey]map[uint64]bool{}
		h.resets = h.resets[:0]
		h.takeOutbox()
		switch {
		case r == rounds/4:
			base = heap()
		case r > rounds/4:
			if end = heap(); end > base+8<<20 {
				t.Fatalf("round %d: heap %d KiB, %d KiB after warm-up", r, end>>10, base>>10)
			}
		}
	}
	st := h.c.Stats()
	t.Logf("heap after warm-up %d KiB, at end %d KiB; %d datagrams, %d delivered, %d sessions started, %d expired, %d refused",
		base>>10, end>>10, st.Datagrams, st.Delivered, st.Sessions, st.SessionsExpired, st.SessionsRefused)
}
