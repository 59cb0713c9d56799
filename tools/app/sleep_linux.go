package app

import "syscall"

// sleepNanos blocks the calling goroutine's thread in nanosleep(2) for d
// nanoseconds. The kernel wakes it within tens of microseconds, where a Go
// timer on Linux may take a millisecond (the runtime's poller sleeps in
// whole milliseconds), which the replay's pacing could not absorb.
func sleepNanos(d int64) {
	ts := syscall.NsecToTimespec(d)
	_ = syscall.Nanosleep(&ts, nil) // EINTR: the caller checks the clock again
}
