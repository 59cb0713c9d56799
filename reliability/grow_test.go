package reliability

import (
	"math/rand/v2"
	"testing"
)

// countingBudget grants up to limit bytes in all.
type countingBudget struct{ used, limit, refused int }

func (b *countingBudget) Reserve(n int) bool {
	if b.used+n > b.limit {
		b.refused++
		return false
	}
	b.used += n
	return true
}

func (b *countingBudget) Release(n int) { b.used -= n }

// TestDeliveryGrowsWithUse: a Delivery starts with a small ring, grows
// (charging its budget) as messages spread out, and delivers exactly what
// a full-size ring would: everything, in order, across the growth.
func TestDeliveryGrowsWithUse(t *testing.T) {
	for _, start := range []uint64{0, 1, 1<<64 - 300} {
		b := &countingBudget{limit: 1 << 30}
		d := NewDelivery[uint64](DeliveryConfig{Capacity: 4096, Budget: b})
		small := d.MemBytes()
		if small > 2048 {
			t.Fatalf("a new Delivery holds %d bytes", small)
		}
		rng := rand.New(rand.NewPCG(1, start))
		seqs := make([]uint64, 2000)
		for i := range seqs {
			seqs[i] = start + uint64(i)
		}
		// Shuffle within windows of 700: the ring must reach 1024.
		for w := 0; w < len(seqs); w += 700 {
			win := seqs[w:min(w+700, len(seqs))]
			rng.Shuffle(len(win), func(i, j int) { win[i], win[j] = win[j], win[i] })
		}
		// The first arrival fixes the start; make it the true first.
		for i, s := range seqs {
			if s == start {
				seqs[0], seqs[i] = seqs[i], seqs[0]
			}
		}
		var got []uint64
		for _, s := range seqs {
			if r := d.Push(s, s, 1<<40); r != PushAccepted {
				t.Fatalf("push %d: %v", s-start, r)
			}
			for {
				seq, item, ok := d.Pop(0)
				if !ok {
					break
				}
				if seq != item {
					t.Fatalf("seq %d carries %d", seq, item)
				}
				got = append(got, seq)
			}
		}
		if len(got) != len(seqs) {
			t.Fatalf("delivered %d of %d", len(got), len(seqs))
		}
		for i, s := range got {
			if s != start+uint64(i) {
				t.Fatalf("delivery %d is %d", i, s-start)
			}
		}
		if d.MemBytes() <= small || b.used != d.MemBytes()-small {
			t.Fatalf("grew to %d bytes, budget charged %d (started at %d)", d.MemBytes(), b.used, small)
		}
	}
}

// TestDeliveryBudgetRefusal: a refused growth is a full ring: the message
// is dropped and counted, and the ring keeps its size.
func TestDeliveryBudgetRefusal(t *testing.T) {
	for _, mode := range []Mode{ModeOrdered, ModeUnordered} {
		b := &countingBudget{limit: 0}
		d := NewDelivery[int](DeliveryConfig{Mode: mode, Capacity: 1024, Budget: b})
		size := d.MemBytes()
		d.Push(0, 0, 1<<40)
		dropped := 0
		for s := uint64(2); s < 100; s++ { // 1 missing: ordered holds them all
			if d.Push(s, 0, 1<<40) == PushDropped {
				dropped++
			}
		}
		if dropped == 0 || d.Stats().Dropped != uint64(dropped) || b.refused == 0 || d.MemBytes() != size {
			t.Fatalf("%v: dropped %d, stats %+v, refused %d, %d -> %d bytes", mode, dropped, d.Stats(), b.refused, size, d.MemBytes())
		}
	}
}

// TestDeliveryGrowUnordered: unordered delivery grows past its first ring
// and keeps arrival order across the copy.
func TestDeliveryGrowUnordered(t *testing.T) {
	d := NewDelivery[int](DeliveryConfig{Mode: ModeUnordered, Capacity: 256})
	for i := range 10 { // wrap the head first
		d.Push(uint64(i), i, 0)
		d.Pop(0)
	}
	for i := 10; i < 210; i++ {
		if r := d.Push(uint64(i), i, 0); r != PushAccepted {
			t.Fatalf("push %d: %v", i, r)
		}
	}
	for i := 10; i < 210; i++ {
		if _, v, ok := d.Pop(0); !ok || v != i {
			t.Fatalf("pop %d: %d %v", i, v, ok)
		}
	}
}

// TestTrackerBudget: with its budget spent the missing set stops growing,
// gives up its oldest gaps instead, and the counters still reconcile.
func TestTrackerBudget(t *testing.T) {
	b := &countingBudget{limit: 3 * minRingSlots * missEntrySize}
	tr := NewTracker(TrackerConfig{Budget: b})
	base := tr.MemBytes()
	for s := uint64(0); s < 4000; s += 2 { // every other sequence lost
		tr.OnData(s, int64(s))
	}
	st := tr.Stats()
	if b.refused == 0 || tr.MemBytes()-base != b.used || b.used > b.limit {
		t.Fatalf("budget: used %d of %d, refused %d, tracker grew by %d", b.used, b.limit, b.refused, tr.MemBytes()-base)
	}
	if st.GivenUpOverflow == 0 || st.Missing != st.Recovered+st.GivenUp+st.Pending {
		t.Fatalf("counters do not reconcile: %+v", st)
	}
	if st.Pending > uint64(b.limit/missEntrySize) {
		t.Fatalf("%d pending in a set of at most %d", st.Pending, b.limit/missEntrySize)
	}
}

// TestRetimeRetries: a NACK sent with a long default timeout is retried
// at the shorter one once the caller measures it, never later than first
// scheduled, and untouched entries keep their times.
func TestRetimeRetries(t *testing.T) {
	tr := NewTracker(TrackerConfig{NACKAtOnceUntilReordered: true, NACKInterval: 1})
	tr.OnData(0, 0)
	tr.OnData(2, 0) // 1 missing
	const long, short = 50_000_000, 4_000_000
	if rs := tr.AppendNACK(nil, 0, long, nil); len(rs) != 1 {
		t.Fatalf("first NACK %v", rs)
	}
	if at, _ := tr.NextNACKAt(); at != long {
		t.Fatalf("retry at %d, want %d", at, long)
	}
	tr.RetimeRetries(short)
	if at, _ := tr.NextNACKAt(); at != short {
		t.Fatalf("after retime, retry at %d, want %d", at, short)
	}
	tr.RetimeRetries(long) // never later
	if at, _ := tr.NextNACKAt(); at != short {
		t.Fatalf("a longer timeout moved the retry to %d", at)
	}
	if rs := tr.AppendNACK(nil, short, short, nil); len(rs) != 1 || rs[0].First != 1 {
		t.Fatalf("retry at the new time: %v", rs)
	}
}

// TestDeliveryStartAt: before anything is delivered, ordered delivery can
// be told the stream began lower, and then waits for the gap; after, not.
func TestDeliveryStartAt(t *testing.T) {
	d := NewDelivery[int](DeliveryConfig{Capacity: 64})
	d.Push(10, 10, 100)
	if !d.StartAt(7) {
		t.Fatal("StartAt refused before delivery")
	}
	if _, _, ok := d.Pop(50); ok {
		t.Fatal("delivered 10 while 7..9 are awaited")
	}
	d.Push(7, 7, 100)
	if seq, _, ok := d.Pop(50); !ok || seq != 7 {
		t.Fatalf("pop %d %v, want 7", seq, ok)
	}
	if seq, _, ok := d.Pop(100); !ok || seq != 10 || d.Stats().Skipped != 2 {
		t.Fatalf("pop %d %v, skipped %d: want 10 after the deadline, 2 skipped", seq, ok, d.Stats().Skipped)
	}
	if d.StartAt(3) {
		t.Fatal("StartAt moved a delivery that had begun")
	}
}

// TestDeliveryStartAtAfterAnchor: an Anchor (a HEARTBEAT heard before
// any DATA) fixes the start against late arrivals, not against StartAt:
// until something is delivered or skipped the caller may still move it
// down; after, not; and never after a Resync (a jump).
func TestDeliveryStartAtAfterAnchor(t *testing.T) {
	d := NewDelivery[int](DeliveryConfig{Capacity: 64})
	d.Anchor(10)
	if r := d.Push(9, 9, 100); r != PushLate {
		t.Fatalf("an arrival before the resync point: %v, want late", r)
	}
	d.Push(10, 10, 100)
	if !d.StartAt(7) {
		t.Fatal("StartAt refused after a Resync with nothing delivered")
	}
	if from, ok := d.WantFrom(); !ok || from != 7 {
		t.Fatalf("WantFrom %d %v, want 7", from, ok)
	}
	if _, _, ok := d.Pop(50); ok {
		t.Fatal("delivered 10 while 7..9 are awaited")
	}
	d.Push(8, 8, 100)
	if seq, _, ok := d.Pop(100); !ok || seq != 8 || d.Stats().Skipped != 1 {
		t.Fatalf("pop %d %v, skipped %d: want 8 after the deadline, 7 skipped", seq, ok, d.Stats().Skipped)
	}
	if d.StartAt(3) {
		t.Fatal("StartAt moved a delivery that had begun")
	}
	d.Anchor(40)
	d.Push(41, 41, 200)
	if !d.StartAt(39) {
		t.Fatal("StartAt refused after a second Anchor")
	}
	d.Resync(80)
	d.Push(81, 81, 300)
	if d.StartAt(79) {
		t.Fatal("StartAt moved the start below a Resync")
	}
}
