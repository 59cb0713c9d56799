// Package replay is the timing half of telewire's capture replay: given the
// capture timestamps of datagrams read by the capture package, it computes
// when each should be sent so that a replay reproduces the original timing,
// or a scaled or fixed-rate version of it.
//
//	capture.Reader ──ts──▶ replay.Scheduler ──sendAt──▶ caller waits, sender.Send
//	                                                     └─▶ replay.Accuracy (sendAt vs actual)
//
// The package is pure logic: no sockets, no goroutines, no clock reads. Times
// are int64 nanoseconds; send times are on the caller's monotonic clock
// (telewire's internal/clock), relative to the start time given to [New].
// Each send time is computed from the start and the total elapsed capture
// time, never by adding waits one to another, so a replay does not drift
// however long the file, and a late send does not delay the ones after it.
//
// A capture may hold decades-long gaps (several captures joined, a clock
// reset) and timestamps that step backwards (interfaces with different clocks
// in one pcapng file). Gaps are capped ([Config.MaxGapNanos], 1 s by default)
// and backward steps count as no gap; both are counted in [Stats].
package replay

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrConfig is wrapped by the errors New returns for an invalid Config.
var ErrConfig = errors.New("replay: invalid configuration")

const (
	// DefaultMaxGapNanos is the default cap on one gap between consecutive
	// capture timestamps: 1 s.
	DefaultMaxGapNanos = int64(time.Second)
	// NoGapCap, as Config.MaxGapNanos, disables the cap.
	NoGapCap = -1
	// Forever, as Config.Loops, replays the capture without end.
	Forever = -1
)

// Config selects the pacing. The zero value replays once at the original
// speed with gaps capped at 1 s. Speed, TopSpeed and PPS are exclusive.
type Config struct {
	// Speed multiplies the pace: 2 replays twice as fast, 0.5 at half speed.
	// 0 means 1.
	Speed float64
	// TopSpeed sends every datagram at once: every send time is the start.
	TopSpeed bool
	// PPS, when positive, sends at this fixed rate in packets per second,
	// ignoring capture timestamps (and MaxGapNanos, LoopGapNanos).
	PPS float64
	// Loops is the number of passes over the capture; 0 means 1, Forever
	// repeats without end.
	Loops int
	// MaxGapNanos caps one gap between consecutive capture timestamps, in
	// capture-time nanoseconds (before Speed applies). 0 means
	// DefaultMaxGapNanos; NoGapCap disables the cap.
	MaxGapNanos int64
	// LoopGapNanos is the capture-time gap between the last datagram of a
	// pass and the first of the next. Default 0.
	LoopGapNanos int64
}

// Stats counts what the scheduler did.
type Stats struct {
	// Packets is the number of send times computed.
	Packets uint64 `json:"packets"`
	// Passes is the number of passes begun (1 after the first Next).
	Passes int `json:"passes"`
	// BackwardSteps counts timestamps earlier than the one before them,
	// scheduled with no gap.
	BackwardSteps uint64 `json:"backward_steps"`
	// CappedGaps counts gaps longer than MaxGapNanos, shortened to it.
	CappedGaps uint64 `json:"capped_gaps"`
	// CappedNanos is the capture time removed by the cap, saturating.
	CappedNanos int64 `json:"capped_ns"`
}

// Scheduler computes send times for a sequence of capture timestamps. The
// zero value is not usable; call New. Not safe for concurrent use.
type Scheduler struct {
	cfg      Config
	start    int64
	elapsed  int64 // capture time since the first datagram: sum of the scheduled gaps
	prev     int64 // previous capture timestamp in this pass
	havePrev bool  // prev is set
	index    uint64
	stats    Stats
}

// New returns a Scheduler whose first datagram is due at startNanos on the
// caller's monotonic clock.
func New(cfg Config, startNanos int64) (*Scheduler, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	switch {
	case math.IsNaN(cfg.Speed) || math.IsInf(cfg.Speed, 0) || cfg.Speed < 0:
		return nil, bad("speed %v", cfg.Speed)
	case math.IsNaN(cfg.PPS) || math.IsInf(cfg.PPS, 0) || cfg.PPS < 0:
		return nil, bad("pps %v", cfg.PPS)
	case cfg.TopSpeed && (cfg.Speed != 0 || cfg.PPS != 0):
		return nil, bad("top speed excludes speed and pps")
	case cfg.PPS != 0 && cfg.Speed != 0:
		return nil, bad("speed and pps are exclusive")
	case cfg.Loops < Forever:
		return nil, bad("loops %d", cfg.Loops)
	case cfg.MaxGapNanos < NoGapCap:
		return nil, bad("max gap %d ns", cfg.MaxGapNanos)
	case cfg.LoopGapNanos < 0:
		return nil, bad("loop gap %d ns", cfg.LoopGapNanos)
	}
	if cfg.Speed == 0 {
		cfg.Speed = 1
	}
	if cfg.Loops == 0 {
		cfg.Loops = 1
	}
	if cfg.MaxGapNanos == 0 {
		cfg.MaxGapNanos = DefaultMaxGapNanos
	}
	return &Scheduler{cfg: cfg, start: startNanos}, nil
}

// Next returns the send time, on the caller's monotonic clock, of the next
// datagram, whose capture timestamp is captureNanos (e.g.
// Datagram.Time.UnixNano()). A send time may be in the past when the caller
// fell behind: send at once, and the following datagrams are still due at
// their own times.
func (s *Scheduler) Next(captureNanos int64) int64 {
	if s.stats.Passes == 0 {
		s.stats.Passes = 1
	}
	s.stats.Packets++
	i := s.index
	s.index++
	switch {
	case s.cfg.TopSpeed:
		return s.start
	case s.cfg.PPS > 0:
		return addSat(s.start, toNanos(float64(i)*1e9/s.cfg.PPS))
	}
	if s.havePrev {
		gap := captureNanos - s.prev
		if captureNanos < s.prev {
			s.stats.BackwardSteps++
			gap = 0
		} else if gap < 0 { // the subtraction overflowed: an enormous gap
			gap = math.MaxInt64
		}
		s.elapsed = addSat(s.elapsed, s.capGap(gap))
	}
	s.prev, s.havePrev = captureNanos, true
	if s.cfg.Speed == 1 {
		return addSat(s.start, s.elapsed) // exact, however long the replay
	}
	return addSat(s.start, toNanos(float64(s.elapsed)/s.cfg.Speed))
}

// capGap applies the gap cap, counting what it removes.
func (s *Scheduler) capGap(gap int64) int64 {
	if s.cfg.MaxGapNanos == NoGapCap || gap <= s.cfg.MaxGapNanos {
		return gap
	}
	s.stats.CappedGaps++
	s.stats.CappedNanos = addSat(s.stats.CappedNanos, gap-s.cfg.MaxGapNanos)
	return s.cfg.MaxGapNanos
}

// NextPass ends a pass over the capture. It reports whether Config.Loops asks
// for another; if so the next datagram (the first of the capture again) is
// scheduled LoopGapNanos after the last one.
func (s *Scheduler) NextPass() bool {
	if s.cfg.Loops != Forever && s.stats.Passes >= s.cfg.Loops {
		return false
	}
	if s.havePrev {
		s.elapsed = addSat(s.elapsed, s.cfg.LoopGapNanos)
	}
	s.havePrev = false
	s.stats.Passes = max(s.stats.Passes, 1) + 1
	return true
}

// Stats returns the counters so far.
func (s *Scheduler) Stats() Stats { return s.stats }

// Delay returns how long to wait, in nanoseconds, until sendAt when the
// monotonic clock reads now; 0 when sendAt has passed.
func Delay(sendAt, now int64) int64 {
	if sendAt <= now {
		return 0
	}
	return sendAt - now
}

// addSat returns a+b, saturating at the int64 limits.
func addSat(a, b int64) int64 {
	c := a + b
	if (b > 0 && c < a) || (b < 0 && c > a) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return c
}

// toNanos converts a non-negative float64 nanosecond count to int64,
// rounding to nearest and saturating.
func toNanos(f float64) int64 {
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(math.Round(f))
}
