package reliability

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/telewire/telewire/packet"
)

// dop is one step of a delivery scenario: a Push (push true) or draining
// Pop at a time, with the expected result. Sequences are offsets from the
// start.
type dop struct {
	push     bool
	seq      uint64
	deadline int64
	want     PushResult
	now      int64
	popped   []uint64 // what draining Pop at now returns
	flush    bool     // call Flush before draining
	resync   bool     // call Resync(seq) instead
}

func push(seq uint64, deadline int64, want PushResult) dop {
	return dop{push: true, seq: seq, deadline: deadline, want: want}
}

func pop(now int64, popped ...uint64) dop { return dop{now: now, popped: popped} }

func TestDeliveryScenarios(t *testing.T) {
	cases := []struct {
		name string
		cfg  DeliveryConfig
		ops  []dop
		want DeliveryStats
		from uint64 // expected WantFrom at the end (offset), if fromOK
		ok   bool
	}{
		{
			name: "ordered in order",
			ops: []dop{
				push(0, 10, PushAccepted), push(1, 10, PushAccepted), push(2, 10, PushAccepted),
				pop(0, 0, 1, 2),
			},
			want: DeliveryStats{Delivered: 3}, from: 3, ok: true,
		},
		{
			name: "ordered gap filled before the deadline",
			ops: []dop{
				push(0, 10, PushAccepted), pop(0, 0),
				push(2, 50, PushAccepted), push(3, 60, PushAccepted), pop(49),
				push(1, 70, PushAccepted), pop(49, 1, 2, 3),
			},
			want: DeliveryStats{Delivered: 4}, from: 4, ok: true,
		},
		{
			name: "ordered gap skipped at the deadline, late arrival refused",
			ops: []dop{
				push(0, 10, PushAccepted), push(2, 50, PushAccepted), push(4, 70, PushAccepted),
				pop(49, 0), pop(50, 2), pop(69), push(1, 0, PushLate), pop(70, 4),
				push(3, 0, PushLate), push(4, 0, PushLate),
			},
			want: DeliveryStats{Delivered: 3, Skipped: 2, Late: 3}, from: 5, ok: true,
		},
		{
			name: "ordered: any expired deadline releases the gap",
			ops: []dop{
				push(0, 10, PushAccepted), pop(0, 0),
				push(2, 100, PushAccepted), push(3, 40, PushAccepted),
				pop(39), pop(40, 2, 3),
			},
			want: DeliveryStats{Delivered: 3, Skipped: 1}, from: 4, ok: true,
		},
		{
			name: "ordered: start moves down until the first delivery",
			ops: []dop{
				push(5, 100, PushAccepted), push(3, 100, PushAccepted), pop(0, 3),
				push(4, 100, PushAccepted), pop(0, 4, 5), push(2, 100, PushLate),
				push(6, 100, PushAccepted), push(6, 100, PushDuplicate), pop(0, 6),
			},
			want: DeliveryStats{Delivered: 4, Late: 1, Duplicates: 1}, from: 7, ok: true,
		},
		{
			name: "ordered overflow drops and skips the blocking gap",
			cfg:  DeliveryConfig{Capacity: 4},
			ops: []dop{
				push(0, 100, PushAccepted), pop(0, 0),
				push(2, 100, PushAccepted), push(3, 100, PushAccepted), push(4, 100, PushAccepted),
				push(6, 100, PushDropped), pop(0, 2, 3, 4),
				push(6, 100, PushAccepted), pop(0),
			},
			want: DeliveryStats{Delivered: 4, Skipped: 1, Dropped: 1, Buffered: 1}, from: 5, ok: true,
		},
		{
			name: "ordered jump with nothing held skips the gap",
			cfg:  DeliveryConfig{Capacity: 8},
			ops: []dop{
				push(0, 100, PushAccepted), pop(0, 0), push(100, 100, PushAccepted), pop(0, 100),
			},
			want: DeliveryStats{Delivered: 2, Skipped: 99}, from: 101, ok: true,
		},
		{
			name: "ordered resync discards and restarts without skipping",
			cfg:  DeliveryConfig{Capacity: 8},
			ops: []dop{
				push(0, 100, PushAccepted), pop(0, 0), push(2, 100, PushAccepted),
				{resync: true, seq: 1000}, push(1000, 100, PushAccepted), pop(0, 1000),
				push(999, 100, PushLate),
			},
			want: DeliveryStats{Delivered: 2, Dropped: 1, Resyncs: 1, Late: 1}, from: 1001, ok: true,
		},
		{
			name: "ordered flush",
			ops: []dop{
				push(0, 100, PushAccepted), pop(0, 0), push(3, 100, PushAccepted), push(5, 100, PushAccepted),
				pop(0), {flush: true, popped: []uint64{3, 5}},
			},
			want: DeliveryStats{Delivered: 3, Skipped: 3}, from: 6, ok: true,
		},
		{
			name: "unordered delivers in arrival order",
			cfg:  DeliveryConfig{Mode: ModeUnordered, Capacity: 2},
			ops: []dop{
				push(5, 0, PushAccepted), push(3, 0, PushAccepted), push(4, 0, PushDropped),
				pop(0, 5, 3), push(4, 0, PushAccepted), pop(0, 4),
			},
			want: DeliveryStats{Delivered: 3, Dropped: 1},
		},
		{
			name: "latest keeps only the newest",
			cfg:  DeliveryConfig{Mode: ModeLatest},
			ops: []dop{
				push(1, 0, PushAccepted), push(3, 0, PushAccepted), push(2, 0, PushSuperseded),
				push(3, 0, PushDuplicate), pop(0, 3),
				push(2, 0, PushLate), push(3, 0, PushDuplicate),
				push(5, 0, PushAccepted), push(4, 0, PushSuperseded), push(6, 0, PushAccepted), pop(0, 6),
			},
			want: DeliveryStats{Delivered: 2, Superseded: 4, Late: 1, Duplicates: 2}, from: 7, ok: true,
		},
	}
	for _, c := range cases {
		for _, start := range wrapStarts {
			t.Run(fmt.Sprintf("%s/start=%d", c.name, start), func(t *testing.T) {
				d := NewDelivery[string](c.cfg)
				for i, op := range c.ops {
					switch {
					case op.push:
						if got := d.Push(start+op.seq, fmt.Sprint(op.seq), op.deadline); got != op.want {
							t.Fatalf("op %d: Push(+%d) = %v, want %v", i, op.seq, got, op.want)
						}
						continue
					case op.resync:
						d.Resync(start + op.seq)
						continue
					case op.flush:
						d.Flush()
					}
					var got []uint64
					for {
						seq, item, ok := d.Pop(op.now)
						if !ok {
							break
						}
						if item != fmt.Sprint(seq-start) {
							t.Fatalf("op %d: Pop returned item %q for +%d", i, item, seq-start)
						}
						got = append(got, seq-start)
					}
					if !slices.Equal(got, op.popped) {
						t.Fatalf("op %d: Pop at %d gave %v, want %v", i, op.now, got, op.popped)
					}
				}
				if s := d.Stats(); s != c.want {
					t.Fatalf("stats\n got %+v\nwant %+v", s, c.want)
				}
				from, ok := d.WantFrom()
				if ok != c.ok || (ok && from != start+c.from) {
					t.Fatalf("WantFrom = +%d %v, want +%d %v", from-start, ok, c.from, c.ok)
				}
			})
		}
	}
}

func TestDeliveryNextDeadline(t *testing.T) {
	d := NewDelivery[int](DeliveryConfig{})
	if _, ok := d.NextDeadline(); ok {
		t.Fatal("empty delivery has a deadline")
	}
	d.Push(0, 0, 5)
	d.Pop(0)
	d.Push(3, 3, 80)
	d.Push(2, 2, 60)
	d.Push(4, 4, 70)
	if at, ok := d.NextDeadline(); !ok || at != 60 {
		t.Fatalf("NextDeadline = %d %v, want 60", at, ok)
	}
	if _, _, ok := d.Pop(59); ok {
		t.Fatal("popped before any deadline")
	}
	// At 60 the gap before 2 is skipped and 2, 3, 4 flow; nothing is left.
	for want := uint64(2); want <= 4; want++ {
		if seq, _, ok := d.Pop(60); !ok || seq != want {
			t.Fatalf("Pop = %d %v, want %d", seq, ok, want)
		}
	}
	d.Push(7, 7, 90)
	d.Push(6, 6, 95)
	if at, _ := d.NextDeadline(); at != 90 {
		t.Fatalf("NextDeadline after refill = %d, want 90 (recomputed)", at)
	}
	for _, m := range []Mode{ModeUnordered, ModeLatest} {
		x := NewDelivery[int](DeliveryConfig{Mode: m})
		x.Push(1, 1, 10)
		if _, ok := x.NextDeadline(); ok {
			t.Fatalf("%v has a deadline", m)
		}
	}
	if Mode(7).String() != "invalid" || ModeLatest.String() != "latest" || PushSuperseded.String() != "superseded" {
		t.Fatal("names")
	}
}

// TestDeliveryLatestNeverGoesBack pushes random sequences around a moving
// point, pops at random, and checks that latest mode never delivers a
// sequence at or before one it has delivered, and that every push is
// accounted for.
func TestDeliveryLatestNeverGoesBack(t *testing.T) {
	for _, start := range wrapStarts {
		rng := rand.New(rand.NewPCG(7, start))
		d := NewDelivery[uint64](DeliveryConfig{Mode: ModeLatest})
		var last uint64
		have := false
		pushed := uint64(0)
		accepted := uint64(0)
		for i := range 20000 {
			seq := start + uint64(i/4) + uint64(rng.IntN(40))
			if d.Push(seq, seq, 0) == PushAccepted {
				accepted++
			}
			pushed++
			if rng.IntN(3) == 0 {
				if s, item, ok := d.Pop(0); ok {
					if item != s || (have && !packet.SeqLess(last, s)) {
						t.Fatalf("start %d: delivered %d after %d", start, s-start, last-start)
					}
					last, have = s, true
				}
			}
		}
		s := d.Stats()
		// Every accepted message is delivered, superseded while waiting, or
		// still held; every push is accepted or refused in one counter.
		refused := s.Late + s.Duplicates
		supersededOnPush := pushed - accepted - refused
		if s.Delivered+(s.Superseded-supersededOnPush)+s.Buffered != accepted {
			t.Fatalf("start %d: accounting %+v, pushed %d accepted %d", start, s, pushed, accepted)
		}
	}
}

func TestDeliveryOrderedRandom(t *testing.T) {
	// Random arrival order with drops; deadlines are arrival plus a budget.
	// Delivered sequences must increase, and delivered + skipped must cover
	// every sequence up to the last delivered exactly once.
	for _, start := range wrapStarts {
		rng := rand.New(rand.NewPCG(11, start))
		d := NewDelivery[uint64](DeliveryConfig{Capacity: 256})
		const n = 20000
		var lastOut uint64
		haveOut := false
		now := int64(0)
		for i := range n {
			now += 1000
			seq := start + uint64(i)
			if rng.IntN(10) == 0 {
				continue // lost
			}
			if rng.IntN(5) == 0 && i > 0 {
				seq -= uint64(rng.IntN(min(i, 30))) // late copy of an earlier one, maybe
			}
			d.Push(seq, seq, now+20_000)
			for {
				s, item, ok := d.Pop(now)
				if !ok {
					break
				}
				if item != s || (haveOut && !packet.SeqLess(lastOut, s)) {
					t.Fatalf("start %d: delivered %d after %d", start, s-start, lastOut-start)
				}
				lastOut, haveOut = s, true
			}
		}
		d.Flush()
		for {
			s, _, ok := d.Pop(now)
			if !ok {
				break
			}
			lastOut = s
		}
		st := d.Stats()
		next, _ := d.WantFrom()
		if next != lastOut+1 {
			t.Fatalf("start %d: WantFrom %d after delivering %d", start, next-start, lastOut-start)
		}
		firstSeq := lastOut + 1 - (st.Delivered + st.Skipped)
		if packet.SeqLess(firstSeq, start) || firstSeq-start > 30 {
			t.Fatalf("start %d: delivered %d + skipped %d do not cover the stream up to %d", start, st.Delivered, st.Skipped, lastOut-start)
		}
		if st.Buffered != 0 {
			t.Fatalf("start %d: %d left after flush", start, st.Buffered)
		}
	}
}
