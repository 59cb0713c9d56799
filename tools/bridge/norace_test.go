//go:build !race

package bridge_test

// raceEnabled is true when the race detector is on: it slows everything
// several times, so the long runs are shortened.
const raceEnabled = false
