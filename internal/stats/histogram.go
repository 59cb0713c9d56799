package stats

import (
	"math"
	"math/bits"
)

// Geometry of [DelayHistogram]. A recorded delay is kept in a block of
// width 2^l ns at one of numLevels levels:
//
//   - level 0 holds relative delays v < level0Limit exactly (width 1 ns);
//   - level l >= 1 holds blocks of width 2^l whose lower edge lies between
//     62.5*2^l and level0Limit*2^l ns above the minimum, so a block is never
//     wider than 1/62.5 of any delay in it: about 64 blocks per octave.
//
// Blocks are aligned to multiples of 2^l in (biased) raw-delay coordinates,
// not relative to the minimum, which is what makes lowering the minimum
// exact (see [DelayHistogram]).
const (
	level0Limit = 126 // v < level0Limit is kept exactly at level 0; level l ends at level0Limit<<l
	level0Slots = 128 // ring size for level 0 (power of two >= level0Limit)
	levelSlots  = 64  // ring size for levels >= 1 (power of two >= the 64 blocks a level spans)
	numLevels   = 31  // levels 0..30; level 30 ends at 126*2^30 ns, about 135 s
	topLevel    = numLevels - 1
	numSlots    = level0Slots + (numLevels-1)*levelSlots

	// RangeNanos is the largest relative delay (exclusive) that
	// [DelayHistogram] records within its stated precision, 126*2^30 ns
	// (about 135.3 s). Larger delays are clamped into the top bucket.
	RangeNanos = uint64(level0Limit) << topLevel

	// RelativeErrorDivisor states the precision of [DelayHistogram]: for a
	// relative delay v below [RangeNanos], a reported quantile differs from
	// the exact one by at most v/RelativeErrorDivisor (0.8%); below
	// 126 ns it is exact.
	RelativeErrorDivisor = 125
)

// DelayHistogram records one-way delays and reports percentiles relative to
// the minimum delay seen, so a constant clock offset between sender and
// receiver cancels. Raw delay = recvNanos - sentNanos, which may be any
// int64 (the two clocks have unrelated epochs, so raw values can be huge or
// negative).
//
// # Precision and range
//
// [DelayHistogram.Quantile] returns the nearest-rank quantile of the
// relative delays (raw delay minus the smallest raw delay recorded) within
// a relative error of 1/[RelativeErrorDivisor] (0.8%): relative delays below
// 126 ns are exact, larger ones are kept in log-linear buckets of about 64
// per octave, up to [RangeNanos] (about 135 s). Delays beyond that are
// clamped into the top bucket, so a quantile that falls among them reads
// about 135 s (never more than [DelayHistogram.Max]). Max and Count are
// exact.
//
// # A minimum that falls later
//
// The minimum is not known in advance: the first samples may carry
// queueing delay, and with sender and receiver clocks running at slightly
// different rates the raw delay drifts, so the minimum may fall by a few
// nanoseconds on every packet. Re-bucketing recorded values relative to a
// new minimum would normally cost precision each time (a sample's position
// inside its bucket is unknown), and the loss would add up over thousands of
// small drops. This histogram avoids that loss entirely:
//
//   - Buckets are aligned blocks in raw-delay coordinates: at level l, the
//     block of raw delay x is x>>l (x being the raw delay mapped
//     order-preservingly onto uint64). The minimum only decides at which
//     level a sample is kept: the finest level whose block starts less than
//     126*2^l ns above the minimum. That rule puts every sample in a block
//     at most v/62.5 wide and keeps each level to at most 64 consecutive
//     blocks, stored in a ring indexed by the low bits of the block number.
//   - When the minimum falls, every relative delay grows, and blocks whose
//     start has moved past their level's limit are moved up to the level
//     the rule now picks. An aligned block of width 2^l lies wholly inside
//     one aligned block of any coarser level, so the move is exact: counts
//     are carried, never split or guessed.
//
// The state is therefore a function of the multiset of samples and the
// final minimum alone, whatever the order they arrived in: the percentiles
// are exactly as good as if the minimum had been known from the start. A
// fall of the minimum costs one pass over the blocks that change level
// (about one per level for a small fall, at most every bucket for a large
// one); other observations cost a few arithmetic operations.
//
// # Cost
//
// A DelayHistogram is a fixed array of 2048 counters (16 KiB) and never
// allocates. The zero value is ready to use. It is not safe for concurrent
// use.
type DelayHistogram struct {
	counts [numSlots]uint64
	n      uint64 // samples recorded
	min    uint64 // smallest biased raw delay; valid when n > 0
	max    uint64 // largest biased raw delay; valid when n > 0
}

// Summary is the compact view of a [DelayHistogram] carried in a receiver
// report: percentiles and maximum of the one-way delay relative to the
// minimum delay seen, in nanoseconds.
type Summary struct {
	P50 uint64 `json:"p50_ns"` // median relative delay, ns
	P90 uint64 `json:"p90_ns"` // 90th percentile relative delay, ns
	P99 uint64 `json:"p99_ns"` // 99th percentile relative delay, ns
	Max uint64 `json:"max_ns"` // exact maximum relative delay, ns
}

// bias maps an int64 onto a uint64 preserving order. Because 2^63 is a
// multiple of every block width, blocks aligned in the biased coordinates
// are aligned in raw coordinates too.
func bias(raw int64) uint64 { return uint64(raw) ^ (1 << 63) }

// levelSlot returns the counter index of block k at level l >= 1.
func levelSlot(l uint, k uint64) int {
	return level0Slots + int(l-1)*levelSlots + int(k&(levelSlots-1))
}

// levelTop returns the offset j, counted in blocks from m>>l, of the last
// block that level l >= 1 can hold for minimum m. Level l's blocks are
// those whose start (m>>l + j)<<l lies in [m + 62.5*2^l, m + 126*2^l):
// with r = m mod 2^l that is j in [63, 125] when r == 0, [63, 126] when
// 0 < r <= 2^(l-1), and [64, 126] otherwise. Every one of them is within 64
// blocks below levelTop, so one ring of 64 slots holds a level.
func levelTop(m uint64, l uint) uint64 {
	if m&(1<<l-1) == 0 {
		return level0Limit - 1
	}
	return level0Limit
}

// slotFor returns the counter that holds biased raw delay x when the
// minimum is m <= x: the finest level l whose block containing x starts
// less than level0Limit<<l above m, clamped to the top block of the top
// level.
func slotFor(x, m uint64) int {
	v := x - m
	if v < level0Limit {
		return int(x & (level0Slots - 1))
	}
	// l is the smallest level with v < 126*2^l; that level always qualifies
	// (its block starts at or below x). Level l-1 may qualify too when x's
	// block there starts lower; no finer level can, as its block starts at
	// least v - 2^(l-2) >= 126*2^(l-2) above m.
	l := uint(bits.Len64(v / level0Limit))
	if l >= 2 {
		f := l - 1
		if (x&^(1<<f-1))-m < level0Limit<<f {
			l = f
		}
	}
	if l > topLevel {
		return levelSlot(topLevel, m>>topLevel+levelTop(m, topLevel))
	}
	return levelSlot(l, x>>l)
}

// Observe records one raw delay, recvNanos - sentNanos, in nanoseconds.
// It does not allocate.
func (h *DelayHistogram) Observe(rawDelayNanos int64) {
	x := bias(rawDelayNanos)
	if h.n == 0 {
		h.min, h.max = x, x
	} else {
		if x < h.min {
			h.lowerMin(x)
		}
		if x > h.max {
			h.max = x
		}
	}
	h.counts[slotFor(x, h.min)]++
	h.n++
}

// lowerMin moves recorded blocks to the levels chosen for the new minimum
// m2 < h.min, then sets h.min = m2. Levels are processed from the top down
// so that a moved block always lands in a level that no longer holds blocks
// about to leave, and each ring keeps distinct blocks in distinct slots.
func (h *DelayHistogram) lowerMin(m2 uint64) {
	m := h.min
	d := m - m2
	var clamped uint64 // counts leaving the top level, re-clamped below
	for l := uint(topLevel); l >= 1; l-- {
		q := m >> l
		r := m & (1<<l - 1)
		limit := uint64(level0Limit) << l
		top := levelTop(m, l)
		// A block at offset j starts f = j<<l - r above m (0 < f < limit for
		// every block the level can hold) and f + d above m2; it leaves when
		// f + d >= limit. That is monotone in j, so scan down from the top.
		for j := top; j+levelSlots > top; j-- {
			if d < limit-(j<<l-r) {
				break
			}
			k := q + j
			i := levelSlot(l, k)
			c := h.counts[i]
			if c == 0 {
				continue
			}
			h.counts[i] = 0
			if l == topLevel {
				clamped += c
				continue
			}
			// Every delay in block k shares its coarser blocks, so the block
			// start picks the destination of all of them.
			h.counts[slotFor(k<<l, m2)] += c
		}
	}
	if clamped != 0 {
		h.counts[levelSlot(topLevel, m2>>topLevel+levelTop(m2, topLevel))] += clamped
	}
	// Level 0: delay m+j sits in slot (m+j) mod 128 and leaves when
	// j + d >= level0Limit.
	for j := uint64(level0Limit - 1); ; j-- {
		if d < level0Limit-j {
			break
		}
		x := m + j
		i := int(x & (level0Slots - 1))
		if c := h.counts[i]; c != 0 {
			h.counts[i] = 0
			h.counts[slotFor(x, m2)] += c
		}
		if j == 0 {
			break
		}
	}
	h.min = m2
}

// Count returns the number of delays recorded since the zero value or the
// last Reset.
func (h *DelayHistogram) Count() uint64 { return h.n }

// Max returns the exact largest relative delay recorded, in nanoseconds:
// the largest raw delay minus the smallest. It is 0 if h is empty.
func (h *DelayHistogram) Max() uint64 {
	if h.n == 0 {
		return 0
	}
	return h.max - h.min
}

// Quantile returns the q-quantile of the recorded delays relative to the
// minimum, in nanoseconds: the nearest-rank value, i.e. the ceil(q*Count)-th
// smallest, within the precision stated on [DelayHistogram]. q is clamped
// to [0, 1] (NaN counts as 0): Quantile(0) is 0 and Quantile(1) is Max().
// It returns 0 if h is empty. It does not allocate.
func (h *DelayHistogram) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	return h.valueAtRank(rankOf(q, h.n))
}

// Summary returns the 50th, 90th and 99th percentiles and the maximum of
// the relative delay, as [DelayHistogram.Quantile] and
// [DelayHistogram.Max] report them; all zero if h is empty.
func (h *DelayHistogram) Summary() Summary {
	return Summary{
		P50: h.Quantile(0.50),
		P90: h.Quantile(0.90),
		P99: h.Quantile(0.99),
		Max: h.Max(),
	}
}

// Reset forgets every recorded delay, including the minimum.
func (h *DelayHistogram) Reset() {
	*h = DelayHistogram{}
}

// rankOf converts quantile q into a 1-based nearest rank among n > 0
// samples.
func rankOf(q float64, n uint64) uint64 {
	if !(q > 0) { // also catches NaN
		return 1
	}
	if q >= 1 {
		return n
	}
	r := math.Ceil(q * float64(n))
	if r < 1 {
		return 1
	}
	if r >= float64(n) {
		return n
	}
	return uint64(r)
}

// valueAtRank walks the blocks in increasing order of delay and returns the
// representative relative delay of the one holding the rank-th smallest
// sample (1 <= rank <= h.n). Level 0 values are exact; a block at a coarser
// level reports its midpoint, capped at the exact maximum. Walking level by
// level is in increasing order: a block that holds samples at level l
// starts above every block of level l-1, and its midpoint lies above theirs.
func (h *DelayHistogram) valueAtRank(rank uint64) uint64 {
	if rank >= h.n {
		return h.max - h.min
	}
	m := h.min
	var cum uint64
	for j := uint64(0); j < level0Limit; j++ {
		cum += h.counts[(m+j)&(level0Slots-1)]
		if cum >= rank {
			return j
		}
	}
	for l := uint(1); l <= topLevel; l++ {
		q := m >> l
		r := m & (1<<l - 1)
		top := levelTop(m, l)
		for j := top - (levelSlots - 1); j <= top; j++ {
			c := h.counts[levelSlot(l, q+j)]
			if c == 0 {
				continue
			}
			cum += c
			if cum >= rank {
				mid := j<<l - r + 1<<(l-1)
				return min(mid, h.max-h.min)
			}
		}
	}
	// Unreachable while the counts add up to h.n; the maximum is the safe
	// answer if they ever did not.
	return h.max - h.min
}

// Cumulative fills cum[i] with the number of recorded delays whose relative
// value (in nanoseconds) is at most bounds[i], for increasing bounds, and
// returns an estimate of the sum of all relative delays. It is the view a
// Prometheus histogram needs, computed from the recorded blocks rather than
// per sample, so recording stays as cheap as before.
//
// A block is counted under the first bound at or above its representative
// value (exact at level 0, the block's midpoint above, as
// [DelayHistogram.Quantile] reports it), so a count is off only for delays
// within 1/[RelativeErrorDivisor] of a bound; the sum carries the same
// relative error. cum must be at least as long as bounds; delays above the
// last bound are in none of them (Count holds all). It does not allocate.
func (h *DelayHistogram) Cumulative(bounds []uint64, cum []uint64) (sum float64) {
	cum = cum[:len(bounds)]
	clear(cum)
	if h.n == 0 {
		return 0
	}
	span := h.max - h.min
	bi := 0 // blocks come in increasing order of delay, so the bound only moves up
	add := func(v, c uint64) {
		v = min(v, span)
		sum += float64(v) * float64(c)
		for bi < len(bounds) && v > bounds[bi] {
			bi++
		}
		if bi < len(bounds) {
			cum[bi] += c
		}
	}
	m := h.min
	for j := uint64(0); j < level0Limit; j++ {
		if c := h.counts[(m+j)&(level0Slots-1)]; c != 0 {
			add(j, c)
		}
	}
	for l := uint(1); l <= topLevel; l++ {
		q := m >> l
		r := m & (1<<l - 1)
		top := levelTop(m, l)
		for j := top - (levelSlots - 1); j <= top; j++ {
			if c := h.counts[levelSlot(l, q+j)]; c != 0 {
				add(j<<l-r+1<<(l-1), c)
			}
		}
	}
	for i := 1; i < len(cum); i++ {
		cum[i] += cum[i-1]
	}
	return sum
}
