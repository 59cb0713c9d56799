//go:build race

package sim

// raceEnabled: the race detector slows the simulated receivers about
// tenfold, so the largest group scenarios run shorter under it.
const raceEnabled = true
