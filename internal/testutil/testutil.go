// Package testutil holds small helpers shared by telewire's tests.
package testutil

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Eventually polls cond every millisecond until it holds or timeout
// passes, then fails the test with msg. It is for conditions that depend
// on real sockets and goroutines, where there is no event to wait on.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(time.Millisecond)
	}
}

// NoLeaks records the goroutines running now and, at cleanup, fails the
// test if more are still running a few seconds later, printing their
// stacks.
func NoLeaks(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(),
					strings.TrimSpace(string(buf[:n])))
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}
