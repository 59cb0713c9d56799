package receiver

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestQueueFIFOAndLending(t *testing.T) {
	q := newQueue(4, 100)
	for i := range 3 {
		if !q.push(&Message{Seq: uint64(i), Payload: bytes.Repeat([]byte{byte(i)}, 10)}) {
			t.Fatalf("push %d refused", i)
		}
	}
	m, ok := q.pop()
	if !ok || m.Seq != 0 || !bytes.Equal(m.Payload, bytes.Repeat([]byte{0}, 10)) {
		t.Fatalf("pop = %+v %v", m, ok)
	}
	// The lent message's bytes are not reused by a push before the next pop.
	for q.push(&Message{Payload: bytes.Repeat([]byte{9}, 10)}) {
	}
	if !bytes.Equal(m.Payload, bytes.Repeat([]byte{0}, 10)) {
		t.Fatal("lent payload overwritten")
	}
	if q.waiting() != 3 {
		t.Fatalf("waiting = %d", q.waiting())
	}
}

func TestQueueBounds(t *testing.T) {
	q := newQueue(8, 25)
	if !q.push(&Message{Payload: make([]byte, 20)}) {
		t.Fatal("first push refused")
	}
	if q.push(&Message{Payload: make([]byte, 10)}) {
		t.Fatal("byte bound not enforced")
	}
	if !q.push(&Message{Payload: nil}) {
		t.Fatal("empty payload refused")
	}
	if q.push(&Message{Payload: make([]byte, 26)}) {
		t.Fatal("oversized payload accepted")
	}
}

// TestQueueRandom drives the ring with random sizes against a reference
// FIFO: every popped payload must equal what was pushed, in order.
func TestQueueRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	q := newQueue(16, 1000)
	var ref [][]byte
	var seq uint64
	for range 100_000 {
		if rng.IntN(2) == 0 {
			p := make([]byte, rng.IntN(300))
			for i := range p {
				p[i] = byte(seq + uint64(i))
			}
			if q.push(&Message{Seq: seq, Payload: p}) {
				ref = append(ref, p)
				seq++
			}
			continue
		}
		m, ok := q.pop()
		if ok != (len(ref) > 0) {
			t.Fatalf("pop ok=%v with %d expected", ok, len(ref))
		}
		if !ok {
			continue
		}
		if !bytes.Equal(m.Payload, ref[0]) {
			t.Fatalf("seq %d payload differs", m.Seq)
		}
		ref = ref[1:]
	}
}

func TestQueueAllocatesNothing(t *testing.T) {
	q := newQueue(64, 1<<16)
	m := &Message{Payload: make([]byte, 200)}
	if n := testing.AllocsPerRun(1000, func() {
		q.push(m)
		q.pop()
	}); n != 0 {
		t.Fatalf("push/pop allocates %.1f times", n)
	}
}
