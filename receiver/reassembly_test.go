package receiver

import (
	"bytes"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

// fragPkt encodes the DATA datagram carrying fragment index of a message
// of length bytes, whose piece is data at offset.
func fragPkt(t *testing.T, session uint64, stream uint32, seq uint64, ts int64, length, offset, index uint32, data []byte) []byte {
	t.Helper()
	f := packet.Fragment{Length: length, Offset: offset, Index: index, Data: data}
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Flags: packet.FlagMessages, Session: session, Stream: stream},
		Seq: seq, Timestamp: ts, Payload: packet.AppendFragment(nil, &f)}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fragments returns the datagrams of msg split into pieces of chunk
// bytes, from sequence first.
func fragments(t *testing.T, session uint64, first uint64, ts int64, msg []byte, chunk int) [][]byte {
	var out [][]byte
	for i, off := 0, 0; off < len(msg); i, off = i+1, off+chunk {
		end := min(off+chunk, len(msg))
		out = append(out, fragPkt(t, session, 0, first+uint64(i), ts, uint32(len(msg)), uint32(off), uint32(i), msg[off:end]))
	}
	return out
}

// TestReassemblyBoundAgainstEndlessFirstFragments: a peer sending first
// fragments of ever new 1 MiB messages, never completing one, cannot make
// the receiver hold more than the per-stream cap, nor the per-session cap
// across streams; every message pushed out is counted.
func TestReassemblyBoundAgainstEndlessFirstFragments(t *testing.T) {
	for _, mode := range []Mode{ModeOrdered, ModeUnordered, ModeLatest} {
		t.Run(mode.String(), func(t *testing.T) {
			const (
				msg        = 1 << 20
				perStream  = 3 * msg
				perSession = 5 * msg
				streams    = 3
			)
			c := newCore(t, Config{Mode: mode, MaxReassemblyBytes: perStream, MaxSessionReassemblyBytes: perSession, Latency: time.Hour})
			now := int64(time.Second)
			answer(t, c, addr(1), 7, 0, 0, 0, now)
			const n = 200
			for i := range n {
				for s := range uint32(streams) {
					seq := uint64(i) * 1000 // a new message each time, never completed
					c.Handle(fragPkt(t, 7, s, seq, now, msg, 0, 0, make([]byte, 100)), addr(1), now)
				}
				now += int64(time.Millisecond)
				c.Tick(now)
				st := c.Stats()
				var total uint64
				for _, x := range st.Streams {
					if x.ReassemblyBytes > perStream {
						t.Fatalf("after %d: stream %d holds %d bytes in reassembly, cap %d", i, x.Stream, x.ReassemblyBytes, perStream)
					}
					total += x.ReassemblyBytes
				}
				if total > perSession {
					t.Fatalf("after %d: session holds %d bytes in reassembly, cap %d", i, total, perSession)
				}
			}
			st := c.Stats()
			var dropped uint64
			for _, x := range st.Streams {
				dropped += x.ReassemblyDropped + x.FragmentsRefused
			}
			// Each stream held at most its cap's worth; the rest of the
			// n × streams messages were counted out.
			if dropped < n*streams-perSession/msg || st.Delivered != 0 {
				t.Fatalf("dropped %d of %d incomplete messages, delivered %d", dropped, n*streams, st.Delivered)
			}
		})
	}
}

// TestReassemblyOutOfOrder: the fragments of a message arriving in any
// order, interleaved with another message's, are delivered as whole
// messages in every mode (ordered: in sequence order).
func TestReassemblyOutOfOrder(t *testing.T) {
	a := bytes.Repeat([]byte("abcdefg"), 300) // 2100 bytes: 5 pieces of 500
	b := bytes.Repeat([]byte("XYZ"), 400)     // 1200 bytes: 3 pieces
	for _, mode := range []Mode{ModeOrdered, ModeUnordered, ModeLatest} {
		t.Run(mode.String(), func(t *testing.T) {
			c := newCore(t, Config{Mode: mode})
			now := int64(time.Second)
			fa := fragments(t, 7, 0, now, a, 500)
			fb := fragments(t, 7, 5, now+1, b, 500)
			order := [][]byte{fa[3], fa[0], fb[1], fa[4], fa[2], fb[0], fa[1], fb[2]}
			var got []Message
			for _, d := range order {
				c.Handle(d, addr(1), now)
				got = append(got, popAll(c)...)
			}
			now += int64(time.Second)
			c.Tick(now)
			got = append(got, popAll(c)...)
			want := [][]byte{a, b} // a completes (at fa[1]) before b (at fb[2])
			if len(got) != len(want) {
				t.Fatalf("delivered %d messages, want %d", len(got), len(want))
			}
			for i := range want {
				if !bytes.Equal(got[i].Payload, want[i]) {
					t.Fatalf("message %d: %d bytes, want %d", i, len(got[i].Payload), len(want[i]))
				}
			}
			if got[0].Seq != 0 {
				t.Fatalf("message a delivered with sequence %d, want its first fragment's, 0", got[0].Seq)
			}
			st := c.Stats().Streams[0]
			if st.ReassemblyBytes != 0 {
				t.Fatalf("%d bytes left in reassembly", st.ReassemblyBytes)
			}
		})
	}
}

// TestReassemblyExpires: a message missing a fragment at its deadline is
// dropped and counted, its memory given back.
func TestReassemblyExpires(t *testing.T) {
	c := newCore(t, Config{Mode: ModeUnordered, Latency: 100 * time.Millisecond, DisableNACK: true})
	now := int64(time.Second)
	fa := fragments(t, 7, 0, now, bytes.Repeat([]byte{1}, 1500), 500)
	c.Handle(fa[0], addr(1), now)
	c.Handle(fa[2], addr(1), now)
	if st := c.Stats().Streams[0]; st.ReassemblyBytes != 1500 {
		t.Fatalf("holding %d bytes, want 1500", st.ReassemblyBytes)
	}
	if at, ok := c.NextTimer(); !ok || at > now+int64(100*time.Millisecond) {
		t.Fatalf("next timer %d, want by the deadline %d", at, now+int64(100*time.Millisecond))
	}
	c.Tick(now + int64(101*time.Millisecond))
	st := c.Stats().Streams[0]
	if st.ReassemblyBytes != 0 || st.ReassemblyExpired != 1 || len(popAll(c)) != 0 {
		t.Fatalf("after the deadline: %d bytes held, %d expired", st.ReassemblyBytes, st.ReassemblyExpired)
	}
}

// TestFragmentOverMaxMessageRefused: fragments announcing a message over
// MaxMessage are refused and counted, nothing held.
func TestFragmentOverMaxMessageRefused(t *testing.T) {
	c := newCore(t, Config{MaxMessage: 4096})
	c.Handle(fragPkt(t, 7, 0, 0, 1, 4097, 0, 0, make([]byte, 100)), addr(1), 1)
	st := c.Stats().Streams[0]
	if st.FragmentsRefused != 1 || st.ReassemblyBytes != 0 {
		t.Fatalf("refused %d, holding %d", st.FragmentsRefused, st.ReassemblyBytes)
	}
}

// TestLatestDropsSupersededIncomplete: in latest mode, an incomplete
// message is dropped when a newer one completes, and its late fragments
// deliver nothing.
func TestLatestDropsSupersededIncomplete(t *testing.T) {
	a := bytes.Repeat([]byte{1}, 1500)
	b := bytes.Repeat([]byte{2}, 1000)
	c := newCore(t, Config{Mode: ModeLatest})
	now := int64(time.Second)
	fa := fragments(t, 7, 0, now, a, 500)
	fb := fragments(t, 7, 3, now+1, b, 500)
	for _, d := range [][]byte{fa[0], fa[2], fb[0], fb[1]} {
		c.Handle(d, addr(1), now)
	}
	got := popAll(c)
	if len(got) != 1 || !bytes.Equal(got[0].Payload, b) {
		t.Fatalf("delivered %d messages, want b alone", len(got))
	}
	st := c.Stats().Streams[0]
	if st.ReassemblyBytes != 0 || st.ReassemblyExpired != 1 {
		t.Fatalf("a: %d bytes still held, %d expired (superseded)", st.ReassemblyBytes, st.ReassemblyExpired)
	}
	c.Handle(fa[1], addr(1), now) // a's missing piece, too late
	if got := popAll(c); len(got) != 0 {
		t.Fatalf("a superseded message delivered: %d bytes", len(got[0].Payload))
	}
	if st := c.Stats().Streams[0]; st.ReassemblyBytes != 0 {
		t.Fatalf("a superseded message's late fragment held %d bytes", st.ReassemblyBytes)
	}
}

// TestOverlappingPiecesRefused: pieces that do not follow one cut (piece
// i at i·chunk) are refused, so a sender cannot make a message look
// complete with bytes missing.
func TestOverlappingPiecesRefused(t *testing.T) {
	c := newCore(t, Config{Mode: ModeUnordered})
	c.Handle(fragPkt(t, 7, 0, 0, 1, 1000, 0, 0, make([]byte, 500)), addr(1), 1)
	c.Handle(fragPkt(t, 7, 0, 1, 1, 1000, 250, 1, make([]byte, 750)), addr(1), 1) // overlaps the first
	c.Handle(fragPkt(t, 7, 0, 2, 1, 1000, 500, 2, make([]byte, 250)), addr(1), 1) // index 2 would start at 1000
	if got := popAll(c); len(got) != 0 {
		t.Fatalf("delivered a message of %d bytes from overlapping pieces", len(got[0].Payload))
	}
	if st := c.Stats().Streams[0]; st.FragmentsRefused != 2 {
		t.Fatalf("refused %d fragments, want 2", st.FragmentsRefused)
	}
}

// TestReassemblyAllocatesNothing: once warm, reassembling and delivering
// fragmented messages reuses its buffers. The count is an average over
// many messages (testing.AllocsPerRun): one measured message alone also
// counts what the runtime allocates meanwhile (on a loaded machine it
// starts an OS thread, 2-7 objects, in the window), while an allocation
// per message would still show as at least one per run.
func TestReassemblyAllocatesNothing(t *testing.T) {
	c := newCore(t, Config{Mode: ModeOrdered})
	msg := bytes.Repeat([]byte{7}, 100_000)
	now := int64(time.Second)
	seq := uint64(0)
	// round builds one message's datagrams, outside any measurement.
	round := func() [][]byte {
		var dgs [][]byte
		for i, off := 0, 0; off < len(msg); i, off = i+1, off+1000 {
			dgs = append(dgs, fragPkt(t, 7, 0, seq+uint64(i), now, uint32(len(msg)), uint32(off), uint32(i), msg[off:off+1000]))
		}
		seq += uint64(len(dgs))
		now += int64(time.Millisecond)
		return dgs
	}
	from := addr(1)
	deliverAll := func(dgs [][]byte) {
		for _, d := range dgs {
			c.Handle(d, from, now)
		}
		for _, ok := c.Pop(); ok; _, ok = c.Pop() {
		}
	}
	// Warm up past the loss window (1<<15 sequences), which the tracker
	// and delivery rings grow to with use.
	const warm = 400
	for range warm {
		deliverAll(round())
	}
	if st := c.Stats().Streams[0]; st.Reassembled != warm {
		t.Fatalf("reassembled %d of %d", st.Reassembled, warm)
	}
	const runs = 50
	rounds := make([][][]byte, runs+1) // AllocsPerRun calls once more to warm up
	for i := range rounds {
		rounds[i] = round()
	}
	next := 0
	allocs := testing.AllocsPerRun(runs, func() {
		deliverAll(rounds[next])
		next++
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 100 kB message reassembled and delivered", allocs)
	}
	if st := c.Stats().Streams[0]; st.Reassembled != warm+runs+1 {
		t.Fatalf("reassembled %d of %d", st.Reassembled, warm+runs+1)
	}
}
