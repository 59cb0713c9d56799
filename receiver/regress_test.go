package receiver

// Regression tests drawn from bugs peer transports shipped (repairs that
// never stop asking, sequence wrap counted twice, state a peer can grow),
// run against the receiver core, and tests of the bounds a peer can push.

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/telewire/telewire/fec"
	"github.com/telewire/telewire/packet"
)

const ms = int64(time.Millisecond)

// nackedSeqs drains the outbox and returns how often each sequence was
// NACKed.
func nackedSeqs(t *testing.T, c *Core) map[uint64]int {
	t.Helper()
	out := map[uint64]int{}
	b := c.Outbox().Take()
	if b == nil {
		return out
	}
	defer c.Outbox().Give(b)
	var p packet.Packet
	for _, d := range b.Datagrams() {
		if err := p.Parse(d.Data); err != nil {
			t.Fatal(err)
		}
		if p.Kind != packet.KindNACK {
			continue
		}
		for _, r := range p.Ranges {
			for i := range uint64(r.Len) {
				out[r.First+i]++
			}
		}
	}
	return out
}

func retransmitPkt(t *testing.T, session uint64, seq uint64, ts int64) []byte {
	t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Flags: packet.FlagRetransmit, Session: session}, Seq: seq, Timestamp: ts, Payload: []byte("x")}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRetransmissionStopsNACKs: once the retransmission of a NACKed
// sequence arrives, the receiver never asks for it again (pion resent
// NACKs for packets it already had).
func TestRetransmissionStopsNACKs(t *testing.T) {
	for _, start := range []uint64{0, 1<<32 - 5, 1<<64 - 5} {
		c := newCore(t, Config{Mode: ModeUnordered})
		now := int64(time.Second)
		c.Tick(now)
		for i := range uint64(10) {
			if i != 5 {
				c.Handle(dataPkt(t, 1, 0, start+i, now-ms), addr(0), now)
			}
		}
		c.Tick(now + 10*ms)
		if n := nackedSeqs(t, c)[start+5]; n == 0 {
			t.Fatalf("start %d: gap not NACKed", start)
		}
		c.Handle(retransmitPkt(t, 1, start+5, now-ms), addr(0), now+20*ms)
		for at := now + 30*ms; at < now+2*int64(time.Second); at += 10 * ms {
			c.Tick(at)
			if n := nackedSeqs(t, c)[start+5]; n != 0 {
				t.Fatalf("start %d: NACKed again at +%d ms after its retransmission arrived", start, (at-now)/ms)
			}
		}
		if st := c.Stats().Streams[0]; st.RecoveredRTX != 1 || st.Unrecovered != 0 {
			t.Fatalf("start %d: %+v", start, st)
		}
	}
}

// TestFECRecoveryStopsNACKs: a sequence NACKed (its parity late past the
// wait for it) and then rebuilt from that parity is not asked for again,
// and is delivered once.
func TestFECRecoveryStopsNACKs(t *testing.T) {
	c := newCore(t, Config{Mode: ModeUnordered})
	enc, err := fec.NewEncoder(fec.EncoderConfig{K: 4, M: 1})
	if err != nil {
		t.Fatal(err)
	}
	now := int64(time.Second)
	c.Tick(now)
	const session = 3
	first := uint64(1<<64 - 6) // the second block straddles the wrap
	answer(t, c, addr(0), session, 0, first, first, now)
	lost := first + 6
	var parity [][]byte
	payload := func(seq uint64) []byte { return []byte{byte(seq), 'x'} }
	for i := range uint64(8) {
		seq := first + i
		p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: session}, Seq: seq, Timestamp: now - ms, Payload: payload(seq)}
		b, _ := p.AppendTo(nil)
		if seq != lost {
			c.Handle(b, addr(0), now)
		}
		if enc.Add(seq, now-ms, payload(seq), now) {
			enc.TakeParity(func(par packet.Parity, shard []byte) {
				p := packet.Packet{Header: packet.Header{Kind: packet.KindParity, Session: session}, Parity: par, Payload: shard}
				b, _ := p.AppendTo(nil)
				parity = append(parity, b)
			})
		}
		if i == 3 { // the first block's parity arrives on time: the decoder starts
			c.Handle(parity[0], addr(0), now)
		}
	}
	if len(parity) != 2 {
		t.Fatalf("%d parity packets", len(parity))
	}
	c.Tick(now + 70*ms) // the wait for parity is over: the gap is NACKed
	if nackedSeqs(t, c)[lost] == 0 {
		t.Fatal("gap not NACKed after the parity wait")
	}
	c.Handle(parity[1], addr(0), now+80*ms) // late parity rebuilds it
	for at := now + 90*ms; at < now+2*int64(time.Second); at += 10 * ms {
		c.Tick(at)
		if n := nackedSeqs(t, c)[lost]; n != 0 {
			t.Fatalf("NACKed again at +%d ms after FEC rebuilt it", (at-now)/ms)
		}
	}
	fecs := 0
	for m, ok := c.Pop(); ok; m, ok = c.Pop() {
		if m.Seq == lost {
			if m.Origin != OriginFEC || string(m.Payload) != string(payload(lost)) {
				t.Fatalf("rebuilt message %+v", m)
			}
			fecs++
		}
	}
	if st := c.Stats().Streams[0]; fecs != 1 || st.RecoveredFEC != 1 || st.Unrecovered != 0 {
		t.Fatalf("delivered %d times; %+v", fecs, st)
	}
}

// TestWrapPatternsCountedOnce: a sequence pattern that crosses a wrap
// with one late packet (65535, 0, 65534 in a 16-bit format; here at the
// 2^64 wrap, and the same shape across 2^16 and 2^32, where a narrower
// format would wrap) is four distinct messages, one reordered, nothing
// lost, duplicated, stale or resynchronised; each is delivered once, and
// in ordered mode in sequence order. Copies of all four are duplicates.
func TestWrapPatternsCountedOnce(t *testing.T) {
	for _, top := range []uint64{1<<64 - 1, 1<<16 - 1, 1<<32 - 1} {
		for _, mode := range []Mode{ModeOrdered, ModeUnordered} {
			pattern := []uint64{top - 2, top, top + 1, top - 1} // 65533, 65535, 0, 65534
			c := newCore(t, Config{Mode: mode, DisableNACK: true})
			now := int64(time.Second)
			for i, seq := range pattern {
				c.Handle(dataPkt(t, 9, 0, seq, now), addr(0), now+int64(i)*ms)
			}
			for _, seq := range pattern {
				c.Handle(dataPkt(t, 9, 0, seq, now), addr(0), now+5*ms)
			}
			c.Tick(now + int64(time.Second))
			var got []uint64
			for m, ok := c.Pop(); ok; m, ok = c.Pop() {
				got = append(got, m.Seq)
			}
			want := pattern
			if mode == ModeOrdered {
				want = []uint64{top - 2, top - 1, top, top + 1}
			}
			if len(got) != 4 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
				t.Fatalf("top %d %v: delivered %v, want %v", top, mode, got, want)
			}
			st := c.Stats().Streams[0]
			if st.Received != 4 || st.Reordered != 1 || st.Lost != 0 || st.Duplicates != 4 ||
				st.Stale != 0 || st.Resyncs != 0 || st.HighestSeq != top+1 {
				t.Fatalf("top %d %v: %+v", top, mode, st)
			}
		}
	}
}

// TestQueueOverflowCounted: a reader that never calls Pop costs the
// receiver at most QueueMessages messages; the rest are counted.
func TestQueueOverflowCounted(t *testing.T) {
	c := newCore(t, Config{Mode: ModeUnordered, QueueMessages: 8})
	for i := range uint64(20) {
		c.Handle(dataPkt(t, 1, 0, i, 1), addr(0), 1)
	}
	if st := c.Stats(); st.Delivered != 8 || st.QueueOverflow != 12 || c.queue.waiting() != 8 {
		t.Fatalf("delivered %d, overflow %d, waiting %d", st.Delivered, st.QueueOverflow, c.queue.waiting())
	}
}

// TestReorderBufferBounded: messages held behind a gap are capped by
// ReorderCapacity (rounded up to a power of two by reliability.Delivery);
// the excess is turned away and counted by the stream's delivery.
func TestReorderBufferBounded(t *testing.T) {
	c := newCore(t, Config{ReorderCapacity: 16, DisableNACK: true})
	now := int64(time.Second)
	c.Handle(dataPkt(t, 1, 0, 0, now), addr(0), now)
	c.Tick(now + 20*ms) // past the startup hold: 0 delivered
	for seq := uint64(2); seq < 200; seq++ {
		c.Handle(dataPkt(t, 1, 0, seq, now+20*ms), addr(0), now+20*ms)
	}
	st := c.sessions[keyOf{addr: addr(0)}].streams[0]
	if held := st.delivery.Len(); held > 16 || held == 0 {
		t.Fatalf("%d messages held, capacity 16", held)
	}
	if d := st.delivery.Stats().Dropped; d == 0 || c.Stats().Streams[0].ReorderDropped != d {
		t.Fatal("messages beyond the reorder capacity not counted (or not in Stats)")
	}
}

// TestFeedbackOutboxBounded: REPORTs for more streams than the feedback
// outbox holds are dropped and counted, not queued without bound.
func TestFeedbackOutboxBounded(t *testing.T) {
	// The state budget is raised: 1200 unvalidated streams are more than
	// its default share for them, and the outbox is what is tested here.
	c := newCore(t, Config{MaxSessions: 40, MaxStreams: 30, Mode: ModeUnordered, DisableNACK: true, MaxStateBytes: 1 << 30})
	now := int64(time.Second)
	c.Tick(now)
	for s := range 40 {
		for id := range uint32(30) {
			// 200-byte messages: enough received that the amplification
			// limit (3x) is not what bounds the feedback here.
			p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: uint64(s + 1), Stream: id}, Timestamp: now, Payload: make([]byte, 200)}
			b, err := p.AppendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			c.Handle(b, addr(s), now)
		}
	}
	drainOutbox(c) // the sessions' opening challenges
	opening := c.Stats().Reports
	c.Tick(now + int64(100*time.Millisecond))
	st := c.Stats()
	if q := c.Outbox().Current().Len(); q != 1024 || st.Reports-opening != 1024 || st.FeedbackDropped != 1200-1024 {
		t.Fatalf("queued %d, reports %d, dropped %d", q, st.Reports, st.FeedbackDropped)
	}
}

// TestMissingSetBounded: a gap wider than the missing set gives up the
// oldest sequences (counted by the tracker) instead of remembering them.
func TestMissingSetBounded(t *testing.T) {
	c := newCore(t, Config{Mode: ModeUnordered, MaxMissing: 1000})
	c.Handle(dataPkt(t, 1, 0, 0, 1), addr(0), 1)
	c.Handle(dataPkt(t, 1, 0, 20_000, 1), addr(0), 2) // within the window, 19 999 missing
	tr := c.sessions[keyOf{addr: addr(0)}].streams[0].tracker
	ts := tr.Stats()
	if max := tr.Config().MaxMissing; max != 1000 || tr.Pending() > max || ts.GivenUpOverflow != 19_999-uint64(max) {
		t.Fatalf("pending %d (max %d), given up for overflow %d", tr.Pending(), max, ts.GivenUpOverflow)
	}
	if got := c.Stats().Streams[0].MissingOverflow; got != ts.GivenUpOverflow {
		t.Fatalf("Stats says %d given up for overflow, the tracker %d", got, ts.GivenUpOverflow)
	}
}

// TestFECBlocksBounded: parity for more blocks than the decoder tracks
// evicts the oldest, counted by the decoder.
func TestFECBlocksBounded(t *testing.T) {
	const blocks = 8 // Config.FECMaxBlocks
	c := newCore(t, Config{Mode: ModeUnordered, FECMaxBlocks: blocks})
	c.Handle(dataPkt(t, 1, 0, 0, 1), addr(0), 1)
	answer(t, c, addr(0), 1, 0, 0, 1, 1)
	shard := make([]byte, fec.ShardHeaderLen+1)
	for i := range uint64(3 * blocks) {
		p := packet.Packet{Header: packet.Header{Kind: packet.KindParity, Session: 1},
			Parity: packet.Parity{First: 1 + 10*i, K: 4, M: 2, Stride: 1}, Payload: shard}
		b, err := p.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Handle(b, addr(0), 2)
	}
	ds := c.sessions[keyOf{addr: addr(0)}].streams[0].decoder.Stats()
	if ds.BlocksEvicted < 2*blocks || c.Stats().Streams[0].FECBlocksEvicted != ds.BlocksEvicted {
		t.Fatalf("decoder stats %+v, receiver stats %+v", ds, c.Stats().Streams[0])
	}
}

// TestReceiverFeedbackToUnvalidatedSource: one datagram from a source the
// receiver has never heard (its address may be spoofed) makes the
// receiver send REPORTs to that address every report interval until the
// session times out. Feedback to an address not yet validated should stay
// within 3× the bytes received from it (RFC 9000 §8.1's rule, issue #8
// item 3), here 3×41 bytes.
func TestReceiverFeedbackToUnvalidatedSource(t *testing.T) {
	c := newCore(t, Config{})
	victim := addr(99) // the Core has no socket: the address is only a key
	now := int64(time.Second)
	c.Tick(now)
	d := dataPkt(t, 77, 0, 0, now)
	c.Handle(d, victim, now)
	sent := 0
	for at := now; at < now+int64(20*time.Second); at += 10 * ms {
		c.Tick(at)
		if b := c.Outbox().Take(); b != nil {
			for _, dg := range b.Datagrams() {
				if dg.Addr == victim {
					sent += len(dg.Data)
				}
			}
			c.Outbox().Give(b)
		}
	}
	if sent > 3*len(d) {
		t.Fatalf("%d bytes of feedback to an unvalidated source that sent %d", sent, len(d))
	}
}

// TestReorderCapacityIsExact: Config.ReorderCapacity says it bounds the
// messages ordered delivery holds per stream; a capacity that is not a
// power of two must bound them too.
func TestReorderCapacityIsExact(t *testing.T) {
	c := newCore(t, Config{ReorderCapacity: 20, DisableNACK: true})
	now := int64(time.Second)
	c.Handle(dataPkt(t, 1, 0, 0, now), addr(0), now)
	c.Tick(now + 20*ms)
	for seq := uint64(2); seq < 100; seq++ {
		c.Handle(dataPkt(t, 1, 0, seq, now+20*ms), addr(0), now+20*ms)
	}
	if held := c.sessions[keyOf{addr: addr(0)}].streams[0].delivery.Len(); held > 20 {
		t.Fatalf("%d messages held with ReorderCapacity 20", held)
	}
}

// TestHistoryNACKNamesOnlyTheHistory (fuzz: crash_history_backfill): a
// late joiner asks for history with FlagHistory, and for nothing else so:
// when a HEARTBEAT during the startup hold shows the stream began further
// back than the history reaches, those earlier gaps are losses, NACKed
// plainly (to be repaired for the group), and no history NACK names more
// than JoinHistory sequences.
func TestHistoryNACKNamesOnlyTheHistory(t *testing.T) {
	c := newCore(t, Config{Group: true, JoinHistory: 4, Rand: rand.NewPCG(1, 2)})
	from := addr(1)
	now := 100 * ms
	c.Handle(dataPkt(t, 7, 0, 100, now), from, now) // first heard: 100; history 96..99
	answer(t, c, from, 7, 0, 90, 101, now)          // began at 90: 90..95 are lost, not history
	var hist, plain []packet.Range
	for now += ms; now < 400*ms; now += ms {
		c.Tick(now)
		b := c.Outbox().Take()
		if b == nil {
			continue
		}
		for _, d := range b.Datagrams() {
			var p packet.Packet
			if p.Parse(d.Data) != nil || p.Kind != packet.KindNACK {
				continue
			}
			if p.Flags&packet.FlagHistory != 0 {
				hist = append(hist, p.Ranges...)
			} else {
				plain = append(plain, p.Ranges...)
			}
		}
		c.Outbox().Give(b)
	}
	for _, r := range hist {
		if r.First < 96 || r.Last() > 99 {
			t.Errorf("history NACK names %d..%d, outside the history 96..99", r.First, r.Last())
		}
	}
	if len(hist) == 0 {
		t.Fatal("no history NACK")
	}
	named := map[uint64]bool{}
	for _, r := range plain {
		for s := r.First; s <= r.Last(); s++ {
			named[s] = true
		}
	}
	for s := uint64(90); s < 96; s++ {
		if !named[s] {
			t.Errorf("gap %d before the history was not NACKed as a loss (plain NACKs %v)", s, plain)
		}
	}
}
