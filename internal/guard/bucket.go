package guard

// Bucket is a token bucket: it holds up to Depth tokens and gains Depth
// tokens every PeriodNanos, continuously. A new Bucket is full. Tokens are
// whatever the caller counts: bytes, packets, key derivations.
//
// The zero value has no tokens and never refills; set Depth and
// PeriodNanos (both > 0) before use. They may be changed between calls,
// as [Peers] does when the round-trip time moves. A Bucket is not safe for
// concurrent use.
type Bucket struct {
	Depth       float64
	PeriodNanos int64

	level   float64
	at      int64
	started bool
}

func (b *Bucket) refill(now int64) {
	if !b.started {
		b.started, b.level, b.at = true, b.Depth, now
		return
	}
	if now > b.at && b.PeriodNanos > 0 {
		b.level += b.Depth * float64(now-b.at) / float64(b.PeriodNanos)
	}
	if now > b.at {
		b.at = now
	}
	b.level = min(b.level, b.Depth) // also when Depth shrank
}

// Allow takes n tokens at now if the bucket holds them and reports whether
// it did. A clock that goes backwards refills nothing.
func (b *Bucket) Allow(n float64, now int64) bool {
	b.refill(now)
	if b.level < n {
		return false
	}
	b.level -= n
	return true
}

// Level returns the tokens available at now.
func (b *Bucket) Level(now int64) float64 {
	b.refill(now)
	return b.level
}
