package sender

// Stateful fuzzing of the sender core. The fuzz input is a small program:
// its first bytes choose a configuration, the rest is a sequence of Send
// calls interleaved with feedback datagrams built from fuzzed fields
// (REPORTs with absurd figures, NACKs with extreme or invalid ranges, other
// sessions, other addresses, kinds a sender does not take, raw bytes),
// clock moves, Ticks and outbox takes. After every operation the harness
// checks the core's bounds and every datagram it queued.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
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
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/packet"
)

// prog reads a fuzz program; reads past the end yield zeros.
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

func (p *prog) bytes(n int) []byte {
	end := min(p.i+n, len(p.b))
	b := p.b[p.i:end]
	p.i = end
	return b
}

// Sender program opcodes (the opcode byte modulo txOps).
const (
	txSend = iota
	txSend2
	txReport
	txNACK
	txNACK2
	txOther
	txRaw
	txClock
	txTick
	txTake
	txOps
)

const fuzzSession = 0xabc

// The receiver the core sends to, and two other addresses feedback may
// come from.
var fuzzAddrs = [...]netip.AddrPort{
	rcvAddr,
	netip.MustParseAddrPort("127.0.0.1:9001"),
	netip.MustParseAddrPort("[::1]:9002"),
}

// fill returns byte i of the canonical payload of (stream, seq): every
// payload a program sends is canonical, so a retransmission can be checked
// byte by byte.
func fill(stream uint32, seq uint64, i int) byte {
	x := uint64(stream)*0xbf58476d1ce4e5b9 ^ seq*0x94d049bb133111eb ^ uint64(i)
	x ^= x >> 29
	x *= 0xbf58476d1ce4e5b9
	return byte(x >> 32)
}

func canonical(dst []byte, stream uint32, seq uint64, n int) []byte {
	for i := range n {
		dst = append(dst, fill(stream, seq, i))
	}
	return dst
}

type seqKey struct {
	stream uint32
	seq    uint64
}

// txHarness drives one sender Core through a fuzz program.
type txHarness struct {
	t   testing.TB
	c   *Core
	cfg Config
	now int64
	op  int // operation index
	pay []byte
	tmp []byte
	buf []byte

	sentAt   map[seqKey]int64 // send time of every DATA
	lastSent map[uint32]int64 // per stream, the time of the newest DATA
	nacked   map[seqKey]int   // valid NACKs naming the sequence, own session
	resent   map[seqKey]int   // retransmissions queued
	resentOp map[seqKey][2]int64

	batch *outbox.Batch // the batch checked last, and how far
	seen  int

	packets, malformed, foreign, reports, retransmits uint64
	queueFull, tooMany                                uint64
	nackFrom                                          netip.AddrPort // where the NACK being handled came from
}

func newTxHarness(t testing.TB, p *prog) *txHarness {
	t.Helper()
	b0, b1, b2 := p.u8(), p.u8(), p.u8()
	cfg := Config{
		FEC:               FECConfig{Mode: FECMode(b0 % 3), K: 4, M: 2, Interleave: 1 + int(b2>>7)},
		DisableRetransmit: b0>>2&7 == 7,
		MaxStreams:        1 + int(b0>>5)%3,
		RetransmitPackets: 16 << (b1 % 4),
		RetransmitBytes:   packet.MaxPacketLen * (1 + int(b1>>2)%2),
		RetransmitMaxAge:  time.Duration(50+int(b1>>4&3)*100) * time.Millisecond,
		RetransmitShare:   [...]int{0, -1, 10, 100}[b1>>6],
		QueuePackets:      8 + int(b2%64),
		QueueBytes:        packet.MaxPacketLen * (1 + int(b2>>6&1)),
	}
	if b2>>6&1 != 0 {
		cfg.FirstSeq = 1<<64 - 20 // across the wrap
	}
	cfg.DisablePacking = true // the harness names each message by its sequence
	c, err := NewCore(cfg, fuzzSession, rcvAddr)
	if err != nil {
		t.Fatalf("config %+v: %v", cfg, err)
	}
	return &txHarness{
		t: t, c: c, cfg: c.cfg, now: int64(time.Second),
		sentAt:   map[seqKey]int64{},
		lastSent: map[uint32]int64{},
		nacked:   map[seqKey]int{},
		resent:   map[seqKey]int{},
		resentOp: map[seqKey][2]int64{},
	}
}

func (h *txHarness) streamID(p *prog) uint32 { return uint32(p.u8() % 4) }

// handle hands one feedback datagram to the core and counts what the
// harness expects the core to count.
func (h *txHarness) handle(b []byte, from netip.AddrPort) {
	var q packet.Packet
	switch err := q.Parse(b); {
	case err != nil:
		h.malformed++
	case q.Session != fuzzSession:
		h.foreign++
	case q.Kind == packet.KindReport:
		h.reports++
	case q.Kind == packet.KindNACK && q.Flags&^packet.FlagProof == 0:
		if s := h.c.findStream(q.Stream); s != nil {
			for _, r := range q.Ranges {
				// Count the sent sequences the range names.
				o := packet.SeqDiff(r.First, s.start)
				sent := packet.SeqDiff(s.next, s.start)
				for i := max(o, 0); i < min(o+int64(r.Len), sent); i++ {
					h.nacked[seqKey{q.Stream, s.start + uint64(i)}]++
				}
			}
		}
	}
	h.nackFrom = from
	h.c.Handle(b, from, h.now)
}

// sealCRC writes the packet checksum into b.
func sealCRC(b []byte) {
	t := crc32.MakeTable(crc32.Castagnoli)
	c := crc32.Update(0, t, b[:20])
	c = crc32.Update(c, t, b[packet.HeaderLen:])
	binary.BigEndian.PutUint32(b[20:], c)
}

// rawPacket builds a packet with the given header and body, valid in
// length and checksum whatever the body says.
func rawPacket(dst []byte, kind packet.Kind, flags packet.Flags, session uint64, stream uint32, body []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, packet.Magic)
	dst = append(dst, packet.Version, byte(kind), byte(flags), 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(packet.HeaderLen+len(body)))
	dst = binary.BigEndian.AppendUint64(dst, session)
	dst = binary.BigEndian.AppendUint32(dst, stream)
	dst = append(dst, 0, 0, 0, 0)
	dst = append(dst, body...)
	sealCRC(dst)
	return dst
}

// who picks the session and source of a feedback datagram.
func (h *txHarness) who(p *prog) (uint64, netip.AddrPort) {
	f := p.u8()
	session := uint64(fuzzSession)
	if f&1 != 0 {
		session = [...]uint64{0, 0xabd, 1<<64 - 1, fuzzSession ^ 1<<63}[f>>1&3]
	}
	return session, fuzzAddrs[int(f>>3)%len(fuzzAddrs)]
}

func (h *txHarness) run(p *prog) {
	for !p.done() {
		h.op++
		switch p.u8() % txOps {
		case txSend, txSend2:
			id := h.streamID(p)
			n := int(p.u8())
			if n&1 != 0 {
				n *= 100
			}
			seq := h.cfg.FirstSeq
			s := h.c.findStream(id)
			if s != nil {
				seq = s.next
			}
			h.pay = canonical(h.pay[:0], id, seq, n)
			room := h.c.Room(len(h.pay))
			switch err := h.c.Send(id, h.pay, h.now); {
			case err == nil:
				k, _ := h.c.cfg.fragmentsOf(n, h.c.DataRoom())
				h.packets += uint64(k)
				h.sentAt[seqKey{id, seq}] = h.now
				h.lastSent[id] = h.now
			case errors.Is(err, ErrQueueFull):
				// A new stream's first Send also queues its opening
				// HEARTBEAT, which Room does not count (see
				// TestRoomCountsOpeningHeartbeat).
				if room && s != nil && s.opened {
					h.t.Fatalf("Send: %v with room for %d bytes", err, len(h.pay))
				}
				h.queueFull++
			case errors.Is(err, ErrTooManyStreams):
				if s != nil || len(h.c.streams) < h.cfg.MaxStreams {
					h.t.Fatalf("Send: %v with %d streams of %d", err, len(h.c.streams), h.cfg.MaxStreams)
				}
				h.tooMany++
			default:
				h.t.Fatalf("Send: %v", err)
			}
		case txReport:
			id := h.streamID(p)
			session, from := h.who(p)
			r := packet.Report{
				HighestSeq:      p.u64(),
				Received:        p.u64(),
				Lost:            p.u64(),
				JitterNanos:     p.u64(),
				DelayP99Nanos:   p.u64(),
				IntervalLossPPM: p.u32() % (packet.MaxLossPPM + 1),
				BurstMeanMilli:  p.u32(),
			}
			switch m := p.u8(); m % 4 {
			case 0: // an echo of a real send time, held a while
				r.EchoTimestamp = h.lastSent[id]
				r.EchoHoldNanos = int64(p.u16()) * 1000
			case 1:
				r.EchoTimestamp = h.now - int64(p.u32())
				r.EchoHoldNanos = int64(p.u32())
			case 2: // anything, the future included
				r.EchoTimestamp = int64(p.u64())
				r.EchoHoldNanos = int64(p.u64() >> 1)
			}
			q := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: session, Stream: id}, Report: r}
			b, err := q.AppendTo(h.buf[:0])
			if err != nil {
				h.t.Fatalf("report: %v", err)
			}
			h.buf = b
			h.handle(b, from)
		case txNACK, txNACK2:
			id := h.streamID(p)
			session, from := h.who(p)
			n := 1 + int(p.u8()%4)
			var next uint64 = h.cfg.FirstSeq
			if s := h.c.findStream(id); s != nil {
				next = s.next
			}
			body := binary.BigEndian.AppendUint16(nil, uint16(n))
			body = append(body, 0, 0)
			first := next - uint64(p.u16())
			for range n {
				fl := p.u8()
				if fl&1 != 0 {
					first = p.u64()
				}
				l := uint32(p.u16()) + 1
				if fl&2 != 0 {
					l = packet.MaxRangeLen
				}
				body = binary.BigEndian.AppendUint64(body, first)
				body = binary.BigEndian.AppendUint32(body, l)
				first += uint64(l) + uint64(p.u8())
			}
			// The receiver's address proves receipt, as a real receiver
			// does (packet.FlagProof); other sources do not.
			var flags packet.Flags
			if s := h.c.findStream(id); s != nil && from == rcvAddr && s.next != s.start {
				flags = packet.FlagProof
				body = binary.BigEndian.AppendUint64(body, s.next-1)
				body = binary.BigEndian.AppendUint64(body, uint64(s.sentTs[(s.next-1)%sentTsLen]))
			}
			if t := p.u8(); t&7 == 0 {
				body = body[:len(body)-int(t>>3)%(len(body)+1)] // truncated
			} else if t&0xf8 == 0xf8 {
				flags |= packet.FlagHistory // a late joiner's request: capped at MaxJoinHistory
			}
			h.buf = rawPacket(h.buf[:0], packet.KindNACK, flags, session, id, body)
			h.handle(h.buf, from)
		case txOther:
			id := h.streamID(p)
			session, from := h.who(p)
			var q packet.Packet
			switch p.u8() % 4 {
			case 0:
				q = packet.Packet{Header: packet.Header{Kind: packet.KindData}, Seq: p.u64()}
			case 1:
				q = packet.Packet{Header: packet.Header{Kind: packet.KindHeartbeat}, Heartbeat: packet.Heartbeat{Start: 1, Next: p.u64() | 1}}
			case 2:
				q = packet.Packet{Header: packet.Header{Kind: packet.KindParity}, Parity: packet.Parity{K: 1, M: 1, Stride: 1}, Payload: []byte{1}}
			default:
				q = packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagUnavailable}, Ranges: []packet.Range{{First: p.u64(), Len: 1}}}
			}
			q.Session, q.Stream = session, id
			b, err := q.AppendTo(h.buf[:0])
			if err == nil {
				h.buf = b
				h.handle(b, from)
			}
		case txRaw:
			from := fuzzAddrs[int(p.u8())%len(fuzzAddrs)]
			b := append(h.buf[:0], p.bytes(int(p.u8()))...)
			if len(b) >= packet.HeaderLen && p.u8()&1 != 0 {
				b[0], b[1], b[2] = 'T', 'W', packet.Version
				binary.BigEndian.PutUint16(b[6:], uint16(len(b)))
				sealCRC(b)
			}
			h.buf = b
			h.handle(b, from)
		case txClock:
			d := int64(p.u16()) * 1000
			if p.u8()&1 != 0 {
				d *= 100
			}
			h.now += d
		case txTick:
			h.c.Tick(h.now)
		case txTake:
			h.checkQueued()
			if b := h.c.Outbox().Take(); b != nil {
				h.c.Outbox().Give(b)
			}
		}
		h.checkQueued()
		h.check()
	}
}

// checkQueued checks the datagrams queued since the last call.
func (h *txHarness) checkQueued() {
	cur := h.c.Outbox().Current()
	if cur != h.batch || cur.Len() < h.seen {
		h.batch, h.seen = cur, 0
	}
	var q packet.Packet
	for _, d := range cur.Datagrams()[h.seen:] {
		if err := q.Parse(d.Data); err != nil {
			h.t.Fatalf("sender queued an invalid datagram: %v", err)
		}
		if q.Session != fuzzSession {
			h.t.Fatalf("sender queued a datagram for session %x", q.Session)
		}
		switch {
		case q.Kind == packet.KindData && q.Flags&packet.FlagRetransmit != 0:
			k := seqKey{q.Stream, q.Seq}
			h.retransmits++
			h.resent[k]++
			if d.Addr != h.nackFrom {
				h.t.Fatalf("retransmission of %v to %v, asked from %v", k, d.Addr, h.nackFrom)
			}
			// Two copies at most per NACK (the redundant mode at high loss).
			if h.resent[k] > 2*h.nacked[k] {
				h.t.Fatalf("%v resent %d times for %d NACKs", k, h.resent[k], h.nacked[k])
			}
			// One sequence is resent at most once per suppression time
			// (at least 1 ms), however many NACKs ask.
			if last, ok := h.resentOp[k]; ok && last[0] != int64(h.op) && h.now-last[1] < time.Millisecond.Nanoseconds() {
				h.t.Fatalf("%v resent at %d and again at %d", k, last[1], h.now)
			}
			h.resentOp[k] = [2]int64{int64(h.op), h.now}
			fallthrough
		case q.Kind == packet.KindData:
			first, msg := q.Seq, msgOf(&q)
			var f packet.Fragment
			if msg == nil && packet.ParseFragment(q.Payload, &f) == nil {
				// A piece of a message: the message was sent under the
				// sequence of its first fragment.
				first = q.Seq - uint64(f.Index)
				h.tmp = canonical(h.tmp[:0], q.Stream, first, int(f.Length))
				h.tmp, msg = h.tmp[f.Offset:int(f.Offset)+len(f.Data)], f.Data
			} else {
				h.tmp = canonical(h.tmp[:0], q.Stream, q.Seq, len(msg))
			}
			at, ok := h.sentAt[seqKey{q.Stream, first}]
			if !ok || q.Timestamp != at || msg == nil || !bytes.Equal(msg, h.tmp) {
				h.t.Fatalf("DATA %d/%d (flags %x) is not what was sent at %d (ts %d)", q.Stream, q.Seq, q.Flags, at, q.Timestamp)
			}
		case q.Kind == packet.KindNACK && q.Flags == packet.FlagUnavailable:
			if d.Addr != h.nackFrom {
				h.t.Fatalf("unavailable to %v, asked from %v", d.Addr, h.nackFrom)
			}
		case q.Kind == packet.KindParity || q.Kind == packet.KindHeartbeat:
		default:
			h.t.Fatalf("sender queued %v flags %x", q.Kind, q.Flags)
		}
		if q.Kind != packet.KindNACK && q.Flags&packet.FlagRetransmit == 0 && d.Addr != rcvAddr {
			h.t.Fatalf("%v to %v, not the receiver", q.Kind, d.Addr)
		}
	}
	h.seen = cur.Len()
}

// check verifies the core's bounds and counters after an operation.
func (h *txHarness) check() {
	t, c := h.t, h.c
	if len(c.streams) > h.cfg.MaxStreams {
		t.Fatalf("%d streams, bound %d", len(c.streams), h.cfg.MaxStreams)
	}
	if o := c.out.Current(); o.Len() > h.cfg.QueuePackets || o.Bytes() > h.cfg.QueueBytes {
		t.Fatalf("outbox %d datagrams, %d bytes; bounds %d, %d", o.Len(), o.Bytes(), h.cfg.QueuePackets, h.cfg.QueueBytes)
	}
	capacity := 1 << bits.Len(uint(h.cfg.RetransmitPackets-1))
	fc := h.cfg.FEC.withDefaults()
	for _, s := range c.streams {
		if s.retained != nil {
			st := s.retained.Stats()
			if st.Retained > uint64(capacity) || st.RetainedBytes > uint64(h.cfg.RetransmitBytes) {
				t.Fatalf("stream %d retains %d packets, %d bytes; bounds %d, %d", s.id, st.Retained, st.RetainedBytes, capacity, h.cfg.RetransmitBytes)
			}
		}
		if s.encoder == nil {
			continue
		}
		k, m, d := s.encoder.Params()
		switch fc.Mode {
		case FECFixed:
			if k != fc.K || m != fc.M || d != fc.Interleave {
				t.Fatalf("fixed FEC at K=%d M=%d D=%d", k, m, d)
			}
		case FECAuto:
			if k < 1 || k > fec.DefaultAdaptiveMaxK || m < 0 || m > fec.DefaultAdaptiveMaxM ||
				float64(m) > fc.MaxOverhead*float64(k) || d < 1 || d > 8 {
				t.Fatalf("adaptive FEC at K=%d M=%d D=%d beyond its ceilings", k, m, d)
			}
		}
	}
	r := &c.rtt
	switch {
	case r.Samples() == 0 && (r.Smoothed() != 0 || r.Min() != 0):
		t.Fatalf("RTT without samples: %+v", *r)
	case r.Samples() > 0 && (r.Min() <= 0 || r.Smoothed() < r.Min() || r.Variance() < 0 || r.Smoothed() > 1<<42):
		t.Fatalf("RTT smoothed %d, min %d, variance %d", r.Smoothed(), r.Min(), r.Variance())
	}
	s := c.stats
	if s.Packets != h.packets || s.Malformed != h.malformed || s.ForeignSession != h.foreign ||
		s.Reports > h.reports || s.Retransmits != h.retransmits {
		t.Fatalf("counters %+v; harness: %d sent, %d malformed, %d foreign, %d reports, %d retransmits",
			s, h.packets, h.malformed, h.foreign, h.reports, h.retransmits)
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

// FuzzSenderCore runs fuzz programs (see txHarness) against a sender Core
// with small bounds, checking its invariants after every operation.
func FuzzSenderCore(f *testing.F) {
	for _, s := range rootSeeds(f, "FuzzSenderCore") {
		f.Add(s.prog)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<14 {
			return
		}
		p := &prog{b: b}
		newTxHarness(t, p).run(p)
	})
}

// TestSenderCoreSeeds runs every root seed as a plain test.
func TestSenderCoreSeeds(t *testing.T) {
	seeds := rootSeeds(t, "FuzzSenderCore")
	if len(seeds) < 6 {
		t.Fatalf("%d seeds in testdata/fuzz/FuzzSenderCore", len(seeds))
	}
	for _, s := range seeds {
		t.Run(s.name, func(t *testing.T) {
			p := &prog{b: s.prog}
			newTxHarness(t, p).run(p)
		})
	}
}

// TestSenderCoreMemoryFlat runs a long random program in slices and checks
// that the live heap after GC stays flat.
func TestSenderCoreMemoryFlat(t *testing.T) {
	for _, b0 := range []byte{0x40, 0x41, 0x42} { // 3 streams; FEC auto, off, fixed
		p := &prog{b: []byte{b0, 0x03, 0x3f}}
		h := newTxHarness(t, p)
		t.Run([...]string{"auto", "off", "fixed"}[h.cfg.FEC.Mode], func(t *testing.T) {
			h.t = t
			rng := rand.New(rand.NewPCG(8, uint64(b0)))
			const rounds, opsPerRound = memoryRounds, 5000
			heap := func() uint64 {
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				return ms.HeapAlloc
			}
			var base, end uint64
			for r := range rounds {
				b := make([]byte, opsPerRound*12)
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				h.run(&prog{b: b})
				// Forget the harness's own per-sequence records of
				// sequences the sender no longer retains.
				h.sentAt, h.nacked, h.resent, h.resentOp = prune(h, h.sentAt), prune(h, h.nacked), prune(h, h.resent), prune(h, h.resentOp)
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
			t.Logf("heap after warm-up %d KiB, at end %d KiB; %d sent, %d NACKs, %d retransmits, %d reports, %d malformed",
				base>>10, end>>10, st.Packets, st.NACKs, st.Retransmits, st.Reports, st.Malformed)
		})
	}
}

// prune keeps the entries of m for the last 1024 sequences of each stream
// (the retransmit buffer holds at most 128).
func prune[V any](h *txHarness, m map[seqKey]V) map[seqKey]V {
	out := make(map[seqKey]V, len(m))
	for k, v := range m {
		if s := h.c.findStream(k.stream); s != nil && packet.SeqDiff(s.next, k.seq) <= 1024 {
			out[k] = v
		}
	}
	return out
}
