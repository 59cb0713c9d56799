package netem

import "math"

// distTableSize is the number of quantiles in a distribution table, the
// same as the tables iproute2 ships (16384/4).
const distTableSize = 4096

// distClip is the largest magnitude a table entry may have, in units of
// Jitter: netem stores entries as int16 scaled by NETEM_DIST_SCALE (8192),
// so its tables saturate at ±32767/8192 ≈ 4.
const distClip = 32767.0 / 8192.0

// distTables holds, per Distribution, the inverse cumulative distribution
// function sampled at the midpoints (k+0.5)/N of N equal-probability
// intervals, in units of Jitter. A uniform random index into the table
// then draws from the distribution. DistUniform has no table.
//
// The shapes follow iproute2's netem table generators (normal.c, pareto.c,
// paretonormal.c, taken from NISTnet): the standard normal; a Pareto of
// shape 3 and scale 1 shifted by its mean 1.5 and scaled by 4/3; and, for
// paretonormal, 1/4 of the normal quantile plus 3/4 of the Pareto quantile
// at the same probability. We compute them here in float64 rather than
// load the int16 files, so values are not quantised to 1/8192.
var distTables = func() [4][]float64 {
	var t [4][]float64
	normal := make([]float64, distTableSize)
	pareto := make([]float64, distTableSize)
	mix := make([]float64, distTableSize)
	for k := range distTableSize {
		q := (float64(k) + 0.5) / distTableSize
		normal[k] = clip(math.Sqrt2 * math.Erfinv(2*q-1))
		pareto[k] = clip((math.Pow(1-q, -1.0/3) - 1.5) * 4 / 3)
		mix[k] = clip((normal[k] + 3*pareto[k]) / 4)
	}
	t[DistNormal], t[DistPareto], t[DistParetoNormal] = normal, pareto, mix
	return t
}()

func clip(x float64) float64 { return math.Max(-distClip, math.Min(distClip, x)) }
