package bench

import (
	_ "unsafe" // for go:linkname
)

// nanotime is the Go runtime's monotonic clock: CLOCK_MONOTONIC read
// through the vDSO on Linux. The runtime keeps this symbol linkable on
// purpose (it is on its list of names widely pulled by go:linkname).
//
//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Nanotime returns the host's monotonic clock in nanoseconds: on Linux,
// CLOCK_MONOTONIC, the same clock in every process on the machine (unlike
// the monotonic reading inside time.Time, which counts from the process's
// start). Two processes on one host can therefore subtract each other's
// readings, which is how the bench measures one-way latency: the sender
// writes Nanotime into each message and the receiver subtracts it from its
// own Nanotime at delivery. It does not allocate and costs one vDSO call.
func Nanotime() int64 { return nanotime() }
