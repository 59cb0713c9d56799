package fec

import (
	"fmt"
	"math"

	"github.com/telewire/telewire/packet"
)

// Adaptive defaults.
const (
	// DefaultTargetResidual is the default loss rate to leave after FEC.
	DefaultTargetResidual = 1e-3
	// DefaultMaxOverhead is the default ceiling on M/K.
	DefaultMaxOverhead = 0.5
	// DefaultAdaptiveMaxK is the default largest K Adaptive chooses.
	DefaultAdaptiveMaxK = 32
	// DefaultAdaptiveMaxM is the default largest M Adaptive chooses.
	DefaultAdaptiveMaxM = 16
	// DefaultHoldNanos is the default time after protection was last
	// raised during which it is not lowered.
	DefaultHoldNanos = 2_000_000_000
	// DefaultDecayWeight is the default weight of a lower measurement in
	// the loss estimate.
	DefaultDecayWeight = 0.25
)

// AdaptiveConfig configures Adaptive. The zero value is valid and means the
// defaults.
type AdaptiveConfig struct {
	// TargetResidual is the loss rate to leave after FEC, in (0, 1).
	// Default DefaultTargetResidual (0.1%).
	TargetResidual float64
	// MaxOverhead is the ceiling on parity per data shard, M/K. Default
	// DefaultMaxOverhead (50%).
	MaxOverhead float64
	// MinK and MaxK bound the data shards per block, 1 <= MinK <= MaxK <=
	// 255. Defaults 1 and DefaultAdaptiveMaxK.
	MinK, MaxK int
	// MaxM bounds the parity shards per block, 1..255. Default
	// DefaultAdaptiveMaxM.
	MaxM int
	// MaxInterleave bounds the interleaving depth considered, 1..255.
	// Interleaving spreads bursts over blocks at the price of latency (see
	// the package documentation). Default 1: none.
	MaxInterleave int
	// AllowOff lets M drop to 0 (FEC off) while no loss is measured.
	// Default false: at least one parity shard per block.
	AllowOff bool
	// MaxDelayNanos is the encoder's block time limit. With the packet
	// rate measured from reports it caps K·D, so that blocks fill before
	// the limit rather than leave as partial blocks. Default
	// DefaultMaxDelayNanos; negative means no cap.
	MaxDelayNanos int64
	// HoldNanos is how long after protection was last raised it is not
	// lowered. Default DefaultHoldNanos.
	HoldNanos int64
	// DecayWeight is the weight, in (0, 1], of a measurement below the
	// current estimate (exponential smoothing toward it). Default
	// DefaultDecayWeight.
	DecayWeight float64
}

func (c *AdaptiveConfig) setDefaults() {
	if c.TargetResidual == 0 {
		c.TargetResidual = DefaultTargetResidual
	}
	if c.MaxOverhead == 0 {
		c.MaxOverhead = DefaultMaxOverhead
	}
	if c.MinK == 0 {
		c.MinK = 1
	}
	if c.MaxK == 0 {
		c.MaxK = DefaultAdaptiveMaxK
	}
	if c.MaxM == 0 {
		c.MaxM = DefaultAdaptiveMaxM
	}
	if c.MaxInterleave == 0 {
		c.MaxInterleave = 1
	}
	if c.MaxDelayNanos == 0 {
		c.MaxDelayNanos = DefaultMaxDelayNanos
	}
	if c.HoldNanos == 0 {
		c.HoldNanos = DefaultHoldNanos
	}
	if c.DecayWeight == 0 {
		c.DecayWeight = DefaultDecayWeight
	}
}

func (c *AdaptiveConfig) validate() error {
	switch {
	case !(c.TargetResidual > 0 && c.TargetResidual < 1),
		!(c.MaxOverhead > 0) || c.MaxOverhead*float64(c.MaxK) < 1,
		c.MinK < 1 || c.MinK > c.MaxK || c.MaxK > 255,
		c.MaxM < 1 || c.MaxM > 255,
		c.MaxInterleave < 1 || c.MaxInterleave > MaxInterleave,
		c.HoldNanos < 0,
		!(c.DecayWeight > 0 && c.DecayWeight <= 1):
		return fmt.Errorf("%w: adaptive config %+v", ErrBadParams, *c)
	}
	return nil
}

// Adaptive chooses the sender's FEC parameters from the receiver's
// REPORTs. The rule:
//
//  1. Estimate. The loss rate p and mean burst length b of each report
//     interval are compared with the current estimates. A higher value
//     replaces the estimate at once (protection rises within one report).
//     A lower one is ignored for HoldNanos after the last rise, then moves
//     the estimate toward it by DecayWeight per report (protection falls
//     slowly, and not on one lucky interval).
//  2. Constrain. The packet rate (HighestSeq advance over time between
//     reports) times MaxDelayNanos caps K·D, so blocks fill before the
//     encoder's time limit.
//  3. Choose. Over MinK <= K <= MaxK, 1 <= D <= MaxInterleave and
//     M <= min(MaxM, MaxOverhead·K), find for each (K, D) the least M whose
//     residual loss ResidualLossBurst(K, M, D, p, b) meets TargetResidual;
//     take the pair with the least overhead M/K, then the smaller D, then
//     the smaller K. If no pair meets the target within the ceiling, take
//     the least residual loss the ceiling allows. ResidualLossBurst is the
//     binomial ResidualLoss when loss is independent; bursts are answered
//     by a larger M or, when allowed, by interleaving, whichever costs less
//     overhead.
//
// The zero value is not usable; call NewAdaptive. Adaptive is pure logic
// (time comes in as now) and not safe for concurrent use.
type Adaptive struct {
	cfg AdaptiveConfig

	started  bool
	p, b     float64 // loss and burst estimates
	raisedAt int64

	haveLast bool
	lastSeq  uint64
	lastAt   int64
	rate     float64 // packets per second, 0 if unknown

	k, m, d int
	res     float64 // modelled residual loss of the choice

	// Inputs of the last search, to skip searches that cannot change the
	// choice.
	searched         bool
	searchP, searchB float64
	searchLimit      int
	searchAt         int64 // when Update last searched
	searchedInUpdate bool
	searches         uint64 // searches run (for tests)
}

// minSearchInterval is the least time, ns, between two searches started by
// Update. A search costs milliseconds, and the reports that start it come
// from the network: without this a peer sending REPORTs with figures that
// change every time (or many receivers of one stream) would make the
// sender search for each one. Honest receivers report every 100 ms, so the
// interval delays nothing for them; reports in between still move the
// estimates, which the next search after the interval uses.
const minSearchInterval = 50_000_000

// NewAdaptive returns an Adaptive whose initial choice assumes no loss. It
// fails with ErrBadParams if the configuration is out of range.
func NewAdaptive(cfg AdaptiveConfig) (*Adaptive, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := &Adaptive{cfg: cfg}
	a.choose()
	return a, nil
}

// Update takes a REPORT received at now (sender clock, nanoseconds) and
// returns the K and M to use; Params also gives the interleaving depth.
// Searches for new parameters are at least 50 ms apart whatever the report
// rate: a report sooner than that after the last search moves the
// estimates, and the first report after the interval acts on them.
func (a *Adaptive) Update(r packet.Report, now int64) (k, m int) {
	p := min(float64(r.IntervalLossPPM)/1e6, 1)
	b := float64(r.BurstMeanMilli) / 1000
	switch {
	case !a.started:
		a.started, a.p, a.b, a.raisedAt = true, p, b, now
	case p > a.p || b > a.b:
		a.p, a.b, a.raisedAt = max(a.p, p), max(a.b, b), now
	case now-a.raisedAt >= a.cfg.HoldNanos:
		w := a.cfg.DecayWeight
		a.p += (p - a.p) * w
		if p > 0 {
			a.b += (b - a.b) * w
		}
	}
	if a.haveLast {
		dt := now - a.lastAt
		ds := packet.SeqDiff(r.HighestSeq, a.lastSeq)
		if dt > 0 && ds >= 0 {
			a.rate = float64(ds) * 1e9 / float64(dt)
		}
	}
	a.haveLast, a.lastSeq, a.lastAt = true, r.HighestSeq, now
	if a.searchedInUpdate && now-a.searchAt < minSearchInterval && now >= a.searchAt {
		return a.k, a.m
	}
	if a.choose() {
		a.searchAt, a.searchedInUpdate = now, true
	}
	return a.k, a.m
}

// Params returns the current choice: data shards K, parity shards M and
// interleaving depth D.
func (a *Adaptive) Params() (k, m, d int) { return a.k, a.m, a.d }

// Estimate returns the loss rate and mean burst length the choice is based
// on, and the residual loss the model predicts for the choice.
func (a *Adaptive) Estimate() (loss, meanBurst, residual float64) { return a.p, a.b, a.res }

// choose applies step 3 of the rule to the current estimates and reports
// whether it searched. The search evaluates the loss model for every
// candidate (milliseconds of work), so it is skipped while the inputs stay
// within a few percent of those of the last search: the choice would not
// change, and reports arrive ten times a second per stream. Update also
// spaces searches by minSearchInterval.
func (a *Adaptive) choose() bool {
	c := &a.cfg
	limit := 0 // cap on K·D, 0 for none
	if a.rate > 0 && c.MaxDelayNanos > 0 {
		limit = max(1, int(a.rate*float64(c.MaxDelayNanos)/1e9))
	}
	if a.searched && near(a.p, a.searchP) && near(a.b, a.searchB) && near(float64(limit), float64(a.searchLimit)) {
		return false
	}
	a.searched, a.searchP, a.searchB, a.searchLimit = true, a.p, a.b, limit
	a.searches++
	if !a.search(limit) && limit > 0 {
		// The rate leaves no block size the ceiling allows; the encoder's
		// time limit will shorten the blocks whatever is chosen.
		a.search(0)
	}
	return true
}

// near reports whether x is within 3% of y (exactly equal when y is 0, so
// that the first loss after a clean period is always acted on).
func near(x, y float64) bool {
	if y == 0 {
		return x == 0
	}
	return math.Abs(x-y) <= 0.03*math.Abs(y)
}

// search finds the best (K, M, D) with K·D <= limit (if limit > 0) and
// reports whether any candidate was possible.
func (a *Adaptive) search(limit int) bool {
	c := &a.cfg
	type cand struct {
		k, m, d int
		over    float64
		res     float64
	}
	better := func(x, y cand, meetX, meetY bool) bool {
		switch {
		case meetX != meetY:
			return meetX
		case !meetX && x.res != y.res:
			return x.res < y.res
		case x.over != y.over:
			return x.over < y.over
		case x.d != y.d:
			return x.d < y.d
		}
		return x.k < y.k
	}
	mMin := 1
	if c.AllowOff && a.p == 0 {
		mMin = 0
	}
	var best cand
	var resAll [257]float64
	found, bestMeets := false, false
	for d := 1; d <= c.MaxInterleave; d++ {
		for k := c.MinK; k <= c.MaxK; k++ {
			if limit > 0 && k*d > limit {
				break
			}
			mMax := min(c.MaxM, 256-k, int(c.MaxOverhead*float64(k)+1e-9))
			if mMax < mMin || d*(k+mMax) > MaxGroupShards {
				continue
			}
			// The least M is tried alone (it is often enough); if it is
			// not, one pass of the model gives the residual for every M.
			var cd cand
			meets := false
			for m := mMin; m <= mMax; m++ {
				var res float64
				switch {
				case m == mMin || a.p <= 0 || a.p >= 1:
					res = ResidualLossBurst(k, m, d, a.p, a.b)
				default:
					if m == mMin+1 {
						residualLossBurstUpTo(k, d, a.p, a.b, resAll[:mMax+1])
					}
					res = resAll[m]
				}
				cd = cand{k: k, m: m, d: d, over: float64(m) / float64(k), res: res}
				if cd.res <= c.TargetResidual {
					meets = true
					break
				}
			}
			if !found || better(cd, best, meets, bestMeets) {
				best, found, bestMeets = cd, true, meets
			}
		}
	}
	if found {
		a.k, a.m, a.d, a.res = best.k, best.m, best.d, best.res
	}
	return found
}
