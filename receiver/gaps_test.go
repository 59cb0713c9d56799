package receiver

import (
	"fmt"
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
