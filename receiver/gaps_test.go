package receiver

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
)

// drainCore pops everything waiting and describes it: "5" for a message
// with sequence 5, "gap 2-3 deadline" for a marker.
func drainCore(c *Core) []string {
	var out []string
	for {
		m, ok := c.Pop()
		if !ok {
			return out
		}
		if m.Gap != GapNone {
			if len(m.Payload) != 0 || m.SentNanos != 0 {
				out = append(out, fmt.Sprintf("bad marker %+v", m))
			}
			out = append(out, fmt.Sprintf("gap %d-%d %s", m.Seq, m.GapLast, m.Gap))
			continue
		}
		out = append(out, fmt.Sprint(m.Seq))
	}
}

func sameList(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestGapMarkersDeadline: with DeliverGaps, a gap skipped at its deadline
// comes out as one marker between the messages around it, and the markers
// add up to the stream's Skipped; without it Recv sees messages only.
func TestGapMarkersDeadline(t *testing.T) {
	for _, opt := range []bool{false, true} {
		c := newCore(t, Config{DeliverGaps: opt, DisableNACK: true, Latency: 100 * time.Millisecond})
		now := int64(time.Second)
		for _, seq := range []uint64{0, 1, 4, 5, 9} {
			c.Handle(dataPkt(t, 1, 7, seq, now), addr(0), now)
		}
		c.Tick(now + 60*ms)  // past the startup hold: 0 and 1 go
		c.Tick(now + 200*ms) // past every deadline
		got := drainCore(c)
		want := []string{"0", "1", "4", "5", "9"}
		if opt {
			want = []string{"0", "1", "gap 2-3 deadline", "4", "5", "gap 6-8 deadline", "9"}
		}
		if !sameList(got, want) {
			t.Fatalf("DeliverGaps %v: got %q, want %q", opt, got, want)
		}
		if s := c.Stats().Streams[0]; s.Skipped != 5 {
			t.Fatalf("skipped %d, want 5", s.Skipped)
		}
	}
}

// TestGapMarkersCarryTheStream: a marker names the stream and session it
// belongs to and when it was passed.
func TestGapMarkersCarryTheStream(t *testing.T) {
	c := newCore(t, Config{DeliverGaps: true, DisableNACK: true})
	now := int64(time.Second)
	c.Handle(dataPkt(t, 0xabc, 3, 10, now), addr(1), now)
	c.Handle(dataPkt(t, 0xabc, 3, 12, now), addr(1), now)
	c.Tick(now + int64(time.Second))
	c.Pop()
	m, ok := c.Pop()
	if !ok || m.Gap != GapDeadline || m.Seq != 11 || m.GapLast != 11 || m.Stream != 3 || m.Session != 0xabc ||
		m.Source != addr(1) || m.ReceiveNanos != now+int64(time.Second) {
		t.Fatalf("marker %+v", m)
	}
}

// TestGapMarkersResync: a jump beyond the window is one resync marker.
func TestGapMarkersResync(t *testing.T) {
	c := newCore(t, Config{DeliverGaps: true, Window: 1024, DisableNACK: true})
	now := int64(time.Second)
	for seq := range uint64(3) {
		c.Handle(dataPkt(t, 1, 0, seq, now), addr(0), now)
	}
	c.Tick(now + int64(time.Second))
	c.Handle(dataPkt(t, 1, 0, 100_000, now+int64(time.Second)), addr(0), now+int64(time.Second))
	c.Tick(now + int64(2*time.Second))
	want := []string{"0", "1", "2", "gap 3-99999 resync", "100000"}
	if got := drainCore(c); !sameList(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestGapMarkersOverflow: a message beyond the reorder buffer's reach
// makes delivery skip the gaps in its way at once, reported as overflow.
func TestGapMarkersOverflow(t *testing.T) {
	c := newCore(t, Config{DeliverGaps: true, ReorderCapacity: 16, DisableNACK: true})
	now := int64(time.Second)
	c.Handle(dataPkt(t, 1, 0, 0, now), addr(0), now)
	c.Tick(now + 60*ms) // 0 delivered
	c.Handle(dataPkt(t, 1, 0, 2, now), addr(0), now+60*ms)
	c.Handle(dataPkt(t, 1, 0, 40, now), addr(0), now+60*ms) // 40-1 >= 16: dropped, flush
	c.Tick(now + 61*ms)
	got := drainCore(c)
	want := []string{"0", "gap 1-1 overflow", "2"}
	if !sameList(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// Nothing held now: the next message too far ahead moves delivery to it.
	c.Handle(dataPkt(t, 1, 0, 100, now), addr(0), now+62*ms)
	want = []string{"gap 3-99 overflow", "100"}
	if got := drainCore(c); !sameList(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if s := c.Stats().Streams[0]; s.Skipped != 1+97 {
		t.Fatalf("skipped %d, want 98", s.Skipped)
	}
}

// TestGapMarkersQueueFull: what a full queue drops is reported, as one
// queue_full marker, once there is room again.
func TestGapMarkersQueueFull(t *testing.T) {
	c := newCore(t, Config{DeliverGaps: true, QueueMessages: 4, DisableNACK: true})
	now := int64(time.Second)
	for seq := range uint64(10) {
		c.Handle(dataPkt(t, 1, 0, seq, now), addr(0), now)
	}
	c.Tick(now + 60*ms)
	if got, want := drainCore(c), []string{"0", "1", "2", "3"}; !sameList(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	c.Handle(dataPkt(t, 1, 0, 10, now), addr(0), now+61*ms)
	if got, want := drainCore(c), []string{"gap 4-9 queue_full", "10"}; !sameList(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if st := c.Stats(); st.QueueOverflow != 6 {
		t.Fatalf("queue overflow %d, want 6", st.QueueOverflow)
	}
}

// TestGapMarkersOnlyOrdered: the modes that never skip give no markers.
func TestGapMarkersOnlyOrdered(t *testing.T) {
	for _, mode := range []Mode{ModeUnordered, ModeLatest} {
		c := newCore(t, Config{DeliverGaps: true, Mode: mode, DisableNACK: true})
		for _, seq := range []uint64{0, 5, 9} {
			c.Handle(dataPkt(t, 1, 0, seq, 1), addr(0), 1)
			for _, s := range drainCore(c) {
				if s[0] == 'g' {
					t.Fatalf("%v: marker %s", mode, s)
				}
			}
		}
	}
}

// TestGapMarkersAllocateNothing: the path with markers stays free of
// allocation.
func TestGapMarkersAllocateNothing(t *testing.T) {
	c := newCore(t, Config{DeliverGaps: true, DisableNACK: true})
	buf := make([]byte, 0, 256)
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Payload: make([]byte, 200)}
	seq := uint64(0)
	next := func() []byte {
		p.Seq, p.Timestamp = seq, int64(seq)*1000
		seq += 2 // every other one lost: a marker per message
		b, _ := p.AppendTo(buf[:0])
		return b
	}
	from := addr(0)
	c.Handle(next(), from, 1)
	c.Tick(int64(time.Second))
	now := int64(time.Second)
	if n := testing.AllocsPerRun(1000, func() {
		now += int64(time.Second)
		c.Handle(next(), from, now)
		c.Tick(now)
		for _, ok := c.Pop(); ok; _, ok = c.Pop() {
		}
	}); n != 0 {
		t.Fatalf("Handle+Tick+Pop with gap markers allocates %.1f times per datagram", n)
	}
}

// gapChecker pops a Core's output and checks that, per stream, messages
// and gap markers cover the sequences from the first delivered on exactly
// once and in order (start markers, out of order by nature, must lie
// before that run), and counts what it saw.
type gapChecker struct {
	t       testing.TB
	c       *Core
	next    map[gapKey]uint64
	reasons map[GapReason]int

	delivered, markerSeqs, startSeqs uint64
}

type gapKey struct {
	session uint64
	stream  uint32
}

func newGapChecker(t testing.TB, c *Core) *gapChecker {
	return &gapChecker{t: t, c: c, next: map[gapKey]uint64{}, reasons: map[GapReason]int{}}
}

// pop takes one message or marker and checks it; false when none waits.
func (g *gapChecker) pop() bool {
	m, ok := g.c.Pop()
	if !ok {
		return false
	}
	k := gapKey{m.Session, m.Stream}
	first, last := m.Seq, m.Seq
	if m.Gap != GapNone {
		last = m.GapLast
		if packet.SeqLess(last, first) || len(m.Payload) != 0 || m.SentNanos != 0 || m.Gap > GapQueueFull {
			g.t.Fatalf("bad marker %+v", m)
		}
		g.markerSeqs += last - first + 1
		g.reasons[m.Gap]++
		if m.Gap == GapStart {
			g.startSeqs += last - first + 1
			if want, ok := g.next[k]; ok && !packet.SeqLess(last, want) {
				g.t.Fatalf("start marker %d-%d not before the delivered run (next %d)", first, last, want)
			}
			return true
		}
	} else {
		g.delivered++
	}
	if want, ok := g.next[k]; ok && first != want {
		g.t.Fatalf("%v %d-%d follows %d: a sequence missed or repeated", m.Gap, first, last, want-1)
	}
	g.next[k] = last + 1
	return true
}

// finish drains the core and checks the counts against its Stats: exact
// when the queue never overflowed.
func (g *gapChecker) finish() {
	for g.pop() {
	}
	st := g.c.Stats()
	var skipped uint64
	for _, s := range st.Streams {
		skipped += s.Skipped
	}
	if g.delivered != st.Delivered {
		g.t.Fatalf("popped %d messages, Delivered %d", g.delivered, st.Delivered)
	}
	if st.QueueOverflow == 0 && g.markerSeqs != skipped {
		g.t.Fatalf("markers cover %d sequences (%d start), Skipped %d", g.markerSeqs, g.startSeqs, skipped)
	}
	if g.markerSeqs > skipped+st.QueueOverflow {
		g.t.Fatalf("markers cover %d sequences, more than Skipped %d + QueueOverflow %d", g.markerSeqs, skipped, st.QueueOverflow)
	}
}

// TestGapMarkersCoverEverySequence: over random traffic (loss, reordering,
// duplicates, jumps beyond the window, a stream's first messages coming
// late, a small reorder buffer, a small queue, ticks at random times), the
// messages and gap markers Pop hands out cover each stream's sequences
// from the first delivered on exactly once and in order, and the markers
// add up to what Stats counts.
func TestGapMarkersCoverEverySequence(t *testing.T) {
	reasons := map[GapReason]int{}
	for seed := range uint64(40) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 77))
			cfg := Config{
				DeliverGaps: true, DisableNACK: true, Window: 1024,
				Latency:         time.Duration(5+rng.IntN(50)) * time.Millisecond,
				ReorderCapacity: 16 << rng.IntN(4),
			}
			smallQueue := seed%3 == 0
			if smallQueue {
				cfg.QueueMessages = 8 + rng.IntN(32)
			}
			c := newCore(t, cfg)
			g := newGapChecker(t, c)
			drain := func() {
				for i := 0; ; i++ {
					if smallQueue && i >= 4 && rng.IntN(2) == 0 {
						return // a slow reader: the queue fills
					}
					if !g.pop() {
						return
					}
				}
			}
			now := int64(time.Second)
			for _, stream := range []uint32{1, 2} {
				seq := uint64(rng.IntN(1 << 20))
				held := seq // the stream's first two messages come late
				seq += 2
				for i := range 3000 {
					if i == 500 {
						c.Handle(dataPkt(t, 9, stream, held, now), addr(0), now)
						c.Handle(dataPkt(t, 9, stream, held+1, now), addr(0), now)
					}
					now += int64(rng.IntN(300)) * int64(time.Microsecond)
					switch r := rng.IntN(1000); {
					case r < 100: // lost
					case r < 101: // jump beyond the window
						seq += 5000
					default:
						s := seq
						if rng.IntN(10) == 0 && s > 3 { // reordered: an earlier one now
							s -= uint64(1 + rng.IntN(3))
						}
						c.Handle(dataPkt(t, 9, stream, s, now), addr(0), now)
						if rng.IntN(20) == 0 {
							c.Handle(dataPkt(t, 9, stream, s, now), addr(0), now) // duplicate
						}
					}
					seq++
					if rng.IntN(8) == 0 {
						c.Tick(now)
					}
					drain()
				}
			}
			for range 100 { // let every deadline pass
				now += int64(10 * time.Millisecond)
				c.Tick(now)
				drain()
			}
			g.finish()
			if !smallQueue && c.Stats().QueueOverflow != 0 {
				t.Fatal("the queue overflowed without a slow reader")
			}
			for r, n := range g.reasons {
				reasons[r] += n
			}
		})
	}
	t.Logf("markers by reason: %v", reasons)
	for _, r := range []GapReason{GapDeadline, GapOverflow, GapResync, GapStart, GapQueueFull} {
		if reasons[r] == 0 {
			t.Errorf("no %v marker in any run: the scenarios do not exercise it", r)
		}
	}
}

// FuzzGapMarkers drives a Core with gap markers on through a program of
// arrivals, jumps, ticks and pops read from the input, and checks after
// every step that what Pop hands out covers each stream exactly once.
func FuzzGapMarkers(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0, 3, 0, 5, 1, 200, 2, 9})
	f.Add([]byte{3, 17, 40, 0, 0, 0, 2, 1, 0, 1, 3, 10, 0, 2, 1, 250, 2, 255})
	f.Add([]byte{255, 255, 255, 0, 9, 3, 5, 0, 0, 1, 255, 2, 4, 0, 1, 1, 99})
	f.Fuzz(func(t *testing.T, prog []byte) {
		at := 0
		u8 := func() byte {
			if at >= len(prog) {
				return 0
			}
			at++
			return prog[at-1]
		}
		b0, b1, b2 := u8(), u8(), u8()
		cfg := Config{
			DeliverGaps: true, DisableNACK: true,
			SessionTimeout:  1000 * time.Hour, // so that Stats still has the stream at the end
			Window:          64 << (b0 % 4),
			Latency:         time.Duration(1+int(b1)) * time.Millisecond,
			ReorderCapacity: 1 + int(b2)%64,
			QueueMessages:   1 + int(b0>>2)%64,
			QueueBytes:      packet.MaxPayload, // the least: a fresh Core per run must be cheap
		}
		c := newCore(t, cfg)
		g := newGapChecker(t, c)
		now := int64(time.Second)
		var cursor uint64
		for at < len(prog) {
			op, arg := u8(), u8()
			stream := uint32(op >> 6)
			switch op % 5 {
			case 0: // the next message of the cursor, on time
				c.Handle(dataPkt(t, 1, stream, cursor, now), addr(0), now)
				cursor++
			case 1: // a message arg behind or ahead of the cursor
				c.Handle(dataPkt(t, 1, stream, cursor+uint64(arg)-128, now-int64(arg)*int64(time.Millisecond)), addr(0), now)
			case 2: // time passes
				now += int64(arg) * int64(100*time.Microsecond)
				c.Tick(now)
			case 3: // the reader takes up to arg
				for range int(arg) {
					if !g.pop() {
						break
					}
				}
			case 4: // a jump
				cursor += uint64(arg) * 64
			}
		}
		now += int64(time.Hour) // past every deadline
		c.Tick(now)
		g.finish()
	})
}
