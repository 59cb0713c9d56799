//go:build !linux

package app

import "time"

// sleepNanos sleeps for d nanoseconds with a Go timer (on Linux, nanosleep
// is used for its finer wake-up; see sleep_linux.go).
func sleepNanos(d int64) { time.Sleep(time.Duration(d)) }
