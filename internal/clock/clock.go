// Package clock is telewire's single time abstraction: monotonic nanoseconds
// behind an interface, so that the sender and receiver read time from the
// real monotonic clock in production and from a [Fake] that tests and
// simulations move by hand.
//
// Pure packages (packet, reliability, fec) never read a clock; they take
// "now" as an int64 argument in the same unit. Only sender and receiver, and
// the tools driving them, hold a Clock.
package clock

import (
	"sync/atomic"
	"time"
)

// Clock reports monotonic time in nanoseconds. Values are only meaningful
// relative to other values from the same Clock. Implementations are safe for
// concurrent use.
type Clock interface {
	// Now returns the current monotonic time in nanoseconds.
	Now() int64
}

// Mono is the production Clock: nanoseconds of Go's monotonic clock elapsed
// since the Mono was created. The zero value is not usable; call [NewMono].
type Mono struct {
	epoch time.Time
}

// NewMono returns a monotonic clock whose zero is the moment of the call.
func NewMono() *Mono { return &Mono{epoch: time.Now()} }

// Now returns the nanoseconds elapsed since NewMono; it never goes backwards.
func (m *Mono) Now() int64 { return int64(time.Since(m.epoch)) }

// Fake is a manually driven Clock for deterministic tests and simulations.
// Its zero value reads 0. It is safe for concurrent use.
type Fake struct {
	now atomic.Int64
}

// NewFake returns a Fake reading start nanoseconds.
func NewFake(start int64) *Fake {
	f := &Fake{}
	f.now.Store(start)
	return f
}

// Now returns the fake time in nanoseconds.
func (f *Fake) Now() int64 { return f.now.Load() }

// Advance moves the fake time forward by d (negative d is ignored, keeping
// the clock monotonic) and returns the new time.
func (f *Fake) Advance(d time.Duration) int64 {
	if d < 0 {
		return f.now.Load()
	}
	return f.now.Add(int64(d))
}

// Set moves the fake time to t if t is later than the current time, keeping
// the clock monotonic, and returns the resulting time.
func (f *Fake) Set(t int64) int64 {
	for {
		cur := f.now.Load()
		if t <= cur {
			return cur
		}
		if f.now.CompareAndSwap(cur, t) {
			return t
		}
	}
}
