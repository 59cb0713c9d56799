package bench

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestNanotimeIsClockMonotonic checks that Nanotime reads the clock other
// processes read as CLOCK_MONOTONIC: each reading falls between two
// clock_gettime(CLOCK_MONOTONIC) calls made around it.
func TestNanotimeIsClockMonotonic(t *testing.T) {
	for range 1000 {
		var a, b unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &a); err != nil {
			t.Fatal(err)
		}
		n := Nanotime()
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &b); err != nil {
			t.Fatal(err)
		}
		if n < a.Nano() || n > b.Nano() {
			t.Fatalf("Nanotime %d outside CLOCK_MONOTONIC readings [%d, %d]", n, a.Nano(), b.Nano())
		}
	}
}
