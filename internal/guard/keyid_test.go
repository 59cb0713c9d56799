package guard

import "testing"

func TestForeignKeys(t *testing.T) {
	var f ForeignKeys
	// Corruption: a different id each time is never a mismatch.
	for i := range uint32(100) {
		if f.Observe(0xdead0000 + i) {
			t.Fatalf("id %d called a mismatch", i)
		}
	}
	// A peer with another key: from the MismatchRun-th datagram on.
	for i := 1; i <= 10; i++ {
		if got := f.Observe(42); got != (i >= MismatchRun) {
			t.Fatalf("datagram %d of id 42: mismatch %v", i, got)
		}
	}
	// One corrupted datagram in between restarts the run.
	if f.Observe(7) || f.Observe(42) {
		t.Fatal("a run broken by another id still counted")
	}
}
