package netem

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/bits"
	"testing"
	"time"
)

func mustLink(t testing.TB, s string, seed int64) *Link {
	t.Helper()
	l, err := NewLink(mustSpec(t, s), seed)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// drain dequeues everything due at or before now, calling fn with the
// time each packet was due.
func drain(l *Link, now int64, fn func(at int64, pkt []byte)) {
	for {
		at, ok := l.Next()
		if !ok || at > now {
			return
		}
		pkt, ok := l.Dequeue(at)
		if !ok {
			panic("Next said due but Dequeue refused")
		}
		fn(at, pkt)
	}
}

func TestLinkDelayOrderAndCopy(t *testing.T) {
	l := mustLink(t, "delay 10ms", 1)
	pkt := []byte("hello")
	l.Enqueue(0, pkt)
	pkt[0] = 'j' // the link keeps its own copy
	if _, ok := l.Dequeue(int64(10*time.Millisecond) - 1); ok {
		t.Fatal("delivered early")
	}
	at, ok := l.Next()
	if !ok || at != int64(10*time.Millisecond) {
		t.Fatalf("Next = %v, %v", at, ok)
	}
	got, ok := l.Dequeue(at)
	if !ok || string(got) != "hello" {
		t.Fatalf("Dequeue = %q, %v", got, ok)
	}
	if _, ok := l.Next(); ok {
		t.Fatal("queue not empty")
	}
	if s := l.Stats(); s.Enqueued != 1 || s.Delayed != 1 || s.Dequeued != 1 || s.DequeuedBytes != 5 {
		t.Fatalf("stats %+v", s)
	}
}

func TestLinkJitterReorders(t *testing.T) {
	// tfifo semantics: with jitter larger than the packet spacing, the
	// link delivers in delivery-time order, not arrival order.
	l := mustLink(t, "delay 100ms 75ms", 3)
	for i := range 1000 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(i))
		l.Enqueue(int64(i)*int64(time.Millisecond), b[:])
	}
	last, outOfOrder, n := int64(-1), 0, 0
	prevSeq := -1
	drain(l, math.MaxInt64, func(at int64, pkt []byte) {
		if at < last {
			t.Fatalf("delivery times went backwards")
		}
		last = at
		seq := int(binary.BigEndian.Uint32(pkt))
		if seq < prevSeq {
			outOfOrder++
		}
		prevSeq = seq
		n++
	})
	if n != 1000 || outOfOrder == 0 {
		t.Fatalf("delivered %d, out of order %d", n, outOfOrder)
	}
}

func TestLinkCorruptFlipsOneBit(t *testing.T) {
	l := mustLink(t, "corrupt 100%", 4)
	orig := bytes.Repeat([]byte{0x5a}, 64)
	for i := range 100 {
		l.Enqueue(int64(i), orig)
		got, ok := l.Dequeue(int64(i))
		if !ok {
			t.Fatal("not delivered")
		}
		diff := 0
		for j := range got {
			diff += bits.OnesCount8(got[j] ^ orig[j])
		}
		if diff != 1 {
			t.Fatalf("%d bits differ", diff)
		}
	}
	if s := l.Stats(); s.Corrupted != 100 {
		t.Fatalf("stats %+v", s)
	}
	if orig[0] != 0x5a {
		t.Fatal("caller's buffer modified")
	}
}

func TestLinkRateThroughput(t *testing.T) {
	// 1 mbit/s, 1250-byte packets = 10 ms each. Offer one every 5 ms
	// (2 mbit/s) into a large queue: deliveries are spaced exactly 10 ms
	// and throughput is the configured rate.
	l := mustLink(t, "rate 1mbit limit 100000", 1)
	pkt := make([]byte, 1250)
	const n = 2000
	var first, lastAt int64 = -1, 0
	var delivered uint64
	for i := range n {
		now := int64(i) * int64(5*time.Millisecond)
		drain(l, now, func(at int64, p []byte) {
			if first < 0 {
				first = at
			}
			lastAt = at
			delivered += uint64(len(p))
		})
		l.Enqueue(now, pkt)
	}
	drain(l, math.MaxInt64, func(at int64, p []byte) {
		lastAt = at
		delivered += uint64(len(p))
	})
	// the first packet finishes at 10 ms; n-1 more follow at 10 ms each
	if first != int64(10*time.Millisecond) || lastAt != int64(n)*int64(10*time.Millisecond) {
		t.Fatalf("first %v last %v", time.Duration(first), time.Duration(lastAt))
	}
	bps := float64(delivered-1250) * 8 / (float64(lastAt-first) / 1e9)
	within(t, "throughput bit/s", bps, 1e6, 0.001)
}

func TestLinkLimitDrops(t *testing.T) {
	// overload a 1 mbit/s link 2x with a 50-packet queue: it never holds
	// more than 50, drops about half, and still delivers at line rate.
	l := mustLink(t, "rate 1mbit limit 50", 1)
	pkt := make([]byte, 1250)
	maxLen := 0
	for i := range 10000 {
		now := int64(i) * int64(5*time.Millisecond)
		drain(l, now, func(int64, []byte) {})
		l.Enqueue(now, pkt)
		maxLen = max(maxLen, l.Len())
	}
	s := l.Stats()
	if maxLen != 50 || s.LimitDropped < 4900 || s.LimitDropped > 5100 {
		t.Fatalf("max queue %d, stats %+v", maxLen, s)
	}
	// byte cap
	l = mustLink(t, "delay 1s", 1)
	l.SetByteLimit(3000)
	for range 5 {
		l.Enqueue(0, pkt)
	}
	if l.Len() != 2 || l.Stats().LimitDropped != 3 {
		t.Fatalf("byte cap: len %d stats %+v", l.Len(), l.Stats())
	}
}

func TestLinkDuplicates(t *testing.T) {
	l := mustLink(t, "delay 1ms duplicate 5%", 2)
	const n = 100_000
	got := 0
	for i := range n {
		now := int64(i) * int64(100*time.Microsecond)
		drain(l, now, func(int64, []byte) { got++ })
		l.Enqueue(now, []byte{1, 2, 3})
	}
	drain(l, math.MaxInt64, func(int64, []byte) { got++ })
	s := l.Stats()
	if f := float64(s.Duplicated) / n; math.Abs(f-0.05) > 0.003 {
		t.Errorf("duplicated fraction %.4f", f)
	}
	if uint64(got) != n+s.Duplicated {
		t.Errorf("delivered %d, want %d", got, n+s.Duplicated)
	}
}

func TestLinkSlots(t *testing.T) {
	// slots 10 ms apart, 2 packets each: packets arriving every 1 ms
	// leave in pairs at slot instants only.
	l := mustLink(t, "slot 10ms packets 2", 1)
	for i := range 6 {
		l.Enqueue(int64(i)*int64(time.Millisecond), []byte{byte(i)})
	}
	var times []time.Duration
	drain(l, math.MaxInt64, func(at int64, p []byte) { times = append(times, time.Duration(at)) })
	want := []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond,
		20 * time.Millisecond, 30 * time.Millisecond, 30 * time.Millisecond}
	if len(times) != len(want) {
		t.Fatalf("times %v", times)
	}
	for i := range want {
		if times[i] != want[i] {
			t.Fatalf("times %v, want %v", times, want)
		}
	}
	// random slot spacing stays within [min, max]
	l = mustLink(t, "slot 1ms 3ms packets 1", 5)
	for i := range 200 {
		l.Enqueue(0, []byte{byte(i)})
	}
	prev := int64(0)
	drain(l, math.MaxInt64, func(at int64, _ []byte) {
		if gap := at - prev; gap < int64(time.Millisecond) || gap > int64(3*time.Millisecond) {
			t.Fatalf("slot gap %v", time.Duration(gap))
		}
		prev = at
	})
}

// TestLinkSimulation drives a sender and a receiver through two Links on a
// fake clock (data one way, acknowledgements back), the way the telewire
// simulations do, and checks that the same seed replays the same run.
func TestLinkSimulation(t *testing.T) {
	run := func(seed int64) (received int, acks int, last int64) {
		fwd := mustLink(t, "delay 5ms 1ms loss 2%", seed)
		rev := mustLink(t, "delay 5ms 1ms", seed+1)
		var now int64
		const interval = int64(time.Millisecond)
		sent := 0
		for sent < 5000 || fwd.Len() > 0 || rev.Len() > 0 {
			// next event: a send, or the earlier of the two links
			next := int64(math.MaxInt64)
			if sent < 5000 {
				next = int64(sent) * interval
			}
			if at, ok := fwd.Next(); ok && at < next {
				next = at
			}
			if at, ok := rev.Next(); ok && at < next {
				next = at
			}
			now = next
			for {
				pkt, ok := fwd.Dequeue(now)
				if !ok {
					break
				}
				received++
				rev.Enqueue(now, pkt[:2]) // ack
			}
			for {
				if _, ok := rev.Dequeue(now); !ok {
					break
				}
				acks++
			}
			if sent < 5000 && int64(sent)*interval == now {
				fwd.Enqueue(now, []byte{byte(sent >> 8), byte(sent), 0, 0, 0, 0})
				sent++
			}
		}
		return received, acks, now
	}
	r1, a1, l1 := run(7)
	r2, a2, l2 := run(7)
	if r1 != r2 || a1 != a2 || l1 != l2 {
		t.Fatalf("same seed, different runs: %d/%d/%d vs %d/%d/%d", r1, a1, l1, r2, a2, l2)
	}
	if loss := 1 - float64(r1)/5000; loss < 0.01 || loss > 0.03 || a1 != r1 {
		t.Fatalf("received %d acks %d", r1, a1)
	}
}

func TestLinkNoAllocSteadyState(t *testing.T) {
	l := mustLink(t, "delay 5ms 1ms 25% distribution normal loss gemodel 1% 30% duplicate 1% corrupt 1% reorder 5% rate 100mbit limit 1000", 1)
	pkt := make([]byte, 1200)
	var now int64
	step := func() {
		now += int64(50 * time.Microsecond)
		for {
			if _, ok := l.Dequeue(now); !ok {
				break
			}
		}
		l.Enqueue(now, pkt)
	}
	for range 10000 { // warm the pool and the heap
		step()
	}
	if a := testing.AllocsPerRun(10000, step); a != 0 {
		t.Fatalf("%v allocations per packet", a)
	}
}

func BenchmarkLink(b *testing.B) {
	l := mustLink(b, "delay 5ms 1ms distribution normal loss 2% duplicate 1% reorder 5% rate 1gbit", 1)
	pkt := make([]byte, 1200)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	var now int64
	for b.Loop() {
		now += int64(10 * time.Microsecond)
		for {
			if _, ok := l.Dequeue(now); !ok {
				break
			}
		}
		l.Enqueue(now, pkt)
	}
}

func BenchmarkParseSpec(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSpec("delay 5ms 1ms 25% distribution normal loss 2% rate 10mbit"); err != nil {
			b.Fatal(err)
		}
	}
}
