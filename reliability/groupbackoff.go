package reliability

import "math"

// GroupBackoff returns how long a receiver of a multicast group waits
// before it requests a missing packet, ns: a draw from a truncated
// exponential distribution over [0, window), with the group's size
// groupSize setting its shape, and u a uniform random number in [0, 1).
//
// The distribution is the one of Nonnenmacher and Biersack ("Scalable
// feedback for large groups", 1999), which NORM (RFC 5740) uses for its
// NACK back-off: with λ = ln(groupSize) + 1, the wait is
// window/λ · ln(u·(e^λ − 1) + 1). Most receivers draw a wait near the end
// of the window and few near its start, so of many receivers that lost
// the same packet one asks well before the rest, and the repair it
// brings (sent to the group) reaches the others before they ask. The
// expected number of requests per loss then grows like e^(λ·d/window)
// where d is the delay from one request to the repair's arrival, instead
// of like groupSize; a window of ten round trips keeps it near 2 for
// groups of 100 (see tools/sim's group scenarios).
//
// A group of one (or less) waits 0: a single receiver asks at once.
func GroupBackoff(window int64, groupSize int, u float64) int64 {
	if groupSize <= 1 || window <= 0 {
		return 0
	}
	if !(u > 0) { // NaN too
		return 0
	}
	u = min(u, 1)
	lambda := math.Log(float64(groupSize)) + 1
	w := float64(window) / lambda * math.Log(u*math.Expm1(lambda)+1)
	return min(max(int64(w), 0), window)
}
