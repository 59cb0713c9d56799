//go:build race

package sim

// raceEnabled: the race detector slows the simulation about tenfold, so
// the largest runs and group scenarios shrink.
const raceEnabled = true
