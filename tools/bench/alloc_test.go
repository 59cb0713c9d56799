package bench

import (
	"context"
	"testing"
)

// countSender is a Sender that only counts, so that the sending loop's own
// allocations show.
type countSender struct{ n, flushes int }

func (s *countSender) Send([]byte) error { s.n++; return nil }
func (s *countSender) Flush() error      { s.flushes++; return nil }
func (s *countSender) Close() error      { return nil }
func (s *countSender) Wire() (uint64, uint64, map[string]uint64) {
	return 0, 0, nil
}

func TestPumpAllocs(t *testing.T) {
	s := &countSender{}
	msg := newMessage(0)
	ctx := context.Background()
	var p pacer
	allocs := testing.AllocsPerRun(20, func() {
		pump(ctx, s, p, msg, 0, 1e9, 1000, 0) // stops at 1000 messages
	})
	if allocs != 0 {
		t.Errorf("pump of 1000 messages: %v allocations, want 0", allocs)
	}
	if s.n != 21*1000 || s.flushes != 21*((1000+maxBurst-1)/maxBurst) {
		t.Errorf("sent %d in %d flushes", s.n, s.flushes)
	}
}

func TestCollectorTakeAllocs(t *testing.T) {
	c := &collector{set: NewSeqSet(1 << 20), done: make(chan struct{})}
	msg := newMessage(0)
	var seq uint64
	PutStamp(msg, 0, 0)
	c.take(msg, 1) // the first delivery reads the CPU clock once
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		PutStamp(msg, seq, 100)
		c.take(msg, 150)
		c.take(msg, 150)             // duplicate
		c.take(msg[:5], 150)         // invalid
		PutStamp(msg, WarmupBit, 99) // warm-up
		c.take(msg, 150)
	})
	if allocs != 0 {
		t.Errorf("take: %v allocations, want 0", allocs)
	}
	if c.delivered.Load() != 1002 || c.duplicates.Load() != 1001 || c.invalid.Load() != 1001 || c.warmup.Load() != 1001 {
		t.Errorf("delivered %d duplicates %d invalid %d warm-up %d", c.delivered.Load(), c.duplicates.Load(), c.invalid.Load(), c.warmup.Load())
	}
	if s := c.hist.Summary(); s.P50Nanos != 50 {
		t.Errorf("latency p50 %d, want 50", s.P50Nanos)
	}
}
