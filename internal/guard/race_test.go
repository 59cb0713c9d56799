//go:build race

package guard

// raceEnabled: the race detector allocates on its own account, so
// allocation counts mean nothing.
const raceEnabled = true
