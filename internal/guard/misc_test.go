package guard

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	b := Bucket{Depth: 10, PeriodNanos: int64(time.Second)}
	now := int64(5e9)
	for i := range 10 {
		if !b.Allow(1, now) {
			t.Fatalf("full bucket refused token %d", i)
		}
	}
	if b.Allow(1, now) {
		t.Fatal("empty bucket allowed")
	}
	if b.Allow(1, now+int64(99*time.Millisecond)) || !b.Allow(1, now+int64(100*time.Millisecond)) {
		t.Fatal("refill is not Depth per period")
	}
	if b.Allow(1, now) { // the clock went back: no refill
		t.Fatal("refilled from a backwards clock")
	}
	if l := b.Level(now + int64(time.Hour)); l != 10 {
		t.Fatalf("level %v after an hour, want the depth", l)
	}
	b.Depth = 4
	if l := b.Level(now + int64(time.Hour)); l != 4 {
		t.Fatalf("level %v after shrinking the depth", l)
	}
	var z Bucket
	if z.Allow(1, 0) || z.Allow(1, 1e12) {
		t.Fatal("zero Bucket allowed")
	}
}
