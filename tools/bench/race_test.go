//go:build race

package bench

// raceEnabled: allocation counts mean nothing under the race detector.
const raceEnabled = true
