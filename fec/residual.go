package fec

import "math"

// ResidualLoss returns the fraction of DATA packets still lost after FEC
// when every packet (data and parity) is lost independently with
// probability p, for blocks of k data and m parity shards. With n = k+m and
// J the number of a block's n packets lost, a block is repaired when
// J <= m, and otherwise loses on average J·k/n data packets, so
//
//	residual = Σ_{j=m+1..n} (j/n)·C(n,j)·p^j·(1-p)^(n-j).
//
// For k=10, m=3, p=0.05 it is 9.8e-4: 98% of the losses are repaired.
func ResidualLoss(k, m int, p float64) float64 {
	if k < 1 || m < 0 || p <= 0 {
		return 0
	}
	if p >= 1 {
		return 1
	}
	n := k + m
	lp, lq := math.Log(p), math.Log1p(-p)
	lgn, _ := math.Lgamma(float64(n + 1))
	sum := 0.0
	for j := m + 1; j <= n; j++ {
		lgj, _ := math.Lgamma(float64(j + 1))
		lgr, _ := math.Lgamma(float64(n - j + 1))
		pmf := math.Exp(lgn - lgj - lgr + float64(j)*lp + float64(n-j)*lq)
		sum += float64(j) / float64(n) * pmf
	}
	return sum
}

// ResidualLossBurst returns the fraction of DATA packets still lost after
// FEC under bursty loss, for blocks of k data and m parity shards
// interleaved to depth d. Loss follows a two-state Markov chain (the
// Gilbert model: every packet sent in the bad state is lost) fitted to the
// long-run loss rate p and the mean burst length meanBurst in packets: the
// chain leaves the bad state with probability r = 1/meanBurst and enters it
// with q = p·r/(1-p). A mean burst below 1/(1-p), shorter than independent
// loss would give, is raised to it, so the model is never more optimistic
// than ResidualLoss, which it equals at meanBurst = 1/(1-p).
//
// A block's data shards are d packets apart and its parity follows its last
// data shard packet by packet (parity of the other interleaved blocks sent
// in between is ignored). The probability of the chain over a gap of g
// packets is p + (1-p)·λ^g from bad to bad and p·(1-λ^g) from good to bad,
// with λ = 1-q-r. A dynamic program over the block's n = k+m positions
// tracks the chain state, the number lost (capped at m+1) and the expected
// number of data shards lost, which gives exactly
// E[data lost · 1{more than m lost}] / k.
func ResidualLossBurst(k, m, d int, p, meanBurst float64) float64 {
	if k < 1 || m < 0 || p <= 0 {
		return 0
	}
	if p >= 1 {
		return 1
	}
	if d < 1 {
		d = 1
	}
	meanBurst = math.Max(meanBurst, 1/(1-p))
	r := 1 / meanBurst
	q := p * r / (1 - p)
	lambda := 1 - q - r
	top := min(m+1, 256)

	// prob[s][j] and lost[s][j]: probability of state s (0 good, 1 bad)
	// with j losses so far, and the expected data losses on those paths.
	var prob, lost, nprob, nlost [2][258]float64
	prob[0][0], prob[1][1], lost[1][1] = 1-p, p, p // position 0: data
	for pos := 1; pos < k+m; pos++ {
		gap := 1
		if pos < k {
			gap = d
		}
		lg := math.Pow(lambda, float64(gap))
		toBad := [2]float64{p * (1 - lg), p + (1-p)*lg}
		data := pos < k
		nprob, nlost = [2][258]float64{}, [2][258]float64{}
		for s := 0; s < 2; s++ {
			for j := 0; j <= top; j++ {
				pr, lo := prob[s][j], lost[s][j]
				if pr == 0 && lo == 0 {
					continue
				}
				g, b := 1-toBad[s], toBad[s]
				nprob[0][j] += g * pr
				nlost[0][j] += g * lo
				jb := min(j+1, top)
				nprob[1][jb] += b * pr
				nlost[1][jb] += b * lo
				if data {
					nlost[1][jb] += b * pr
				}
			}
		}
		prob, lost = nprob, nlost
	}
	return (lost[0][top] + lost[1][top]) / float64(k)
}
