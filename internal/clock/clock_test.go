package clock

import (
	"testing"
	"time"
)

func TestFakeIsMonotonic(t *testing.T) {
	f := NewFake(100)
	if got := f.Advance(50); got != 150 {
		t.Fatalf("Advance(50) = %d, want 150", got)
	}
	if got := f.Advance(-10); got != 150 {
		t.Fatalf("Advance(-10) moved the clock to %d", got)
	}
	if got := f.Set(120); got != 150 {
		t.Fatalf("Set(120) moved the clock back to %d", got)
	}
	if got := f.Set(1000); got != 1000 || f.Now() != 1000 {
		t.Fatalf("Set(1000) = %d, Now = %d", got, f.Now())
	}
}

func TestMonoAdvances(t *testing.T) {
	m := NewMono()
	a := m.Now()
	deadline := time.Now().Add(time.Second)
	for m.Now() == a {
		if time.Now().After(deadline) {
			t.Fatal("monotonic clock did not advance within a second")
		}
	}
	if b := m.Now(); b < a {
		t.Fatalf("clock went backwards: %d then %d", a, b)
	}
}
