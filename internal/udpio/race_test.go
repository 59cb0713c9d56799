//go:build race

package udpio

// raceEnabled: the race detector makes sync.Pool drop items at random, so
// x/net's pooled batch scratch space is reallocated and allocation counts
// mean nothing.
const raceEnabled = true
