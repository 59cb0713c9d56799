package loop

import (
	"sync"
	"time"
)

// errorLogInterval is the least time between two log lines about the same
// kind of socket failure (read or write). A peer that is down makes every
// datagram to it fail (ICMP port unreachable reported on the socket as
// ECONNREFUSED); the condition is logged once per interval with the number
// of failures left out since the previous line, and every failure is
// counted in WriteErrors or ReadErrors.
const errorLogInterval = 10 * time.Second

// errLimiter decides which failures of one kind are logged: the first,
// then the first after each errorLogInterval of the loop's clock. Its zero
// value is ready to use; it is safe for concurrent use.
type errLimiter struct {
	mu         sync.Mutex
	logged     bool   // a line has been logged
	next       int64  // clock reading from which the next line may be logged
	suppressed uint64 // failures not logged since the last line
}

// allow records a failure at now (nanoseconds of the loop's clock) and
// reports whether to log it and how many failures were left out before
// it.
func (e *errLimiter) allow(now int64) (ok bool, suppressed uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.logged && now < e.next {
		e.suppressed++
		return false, 0
	}
	suppressed, e.suppressed = e.suppressed, 0
	e.logged, e.next = true, now+int64(errorLogInterval)
	return true, suppressed
}
