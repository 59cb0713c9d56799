//go:build race

package netem

// raceEnabled: the race detector makes sync.Pool (which x/net's batch
// writes use) drop items at random, so allocation counts mean nothing.
const raceEnabled = true
