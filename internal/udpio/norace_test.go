//go:build !race

package udpio

// raceEnabled is false: allocation counts are meaningful.
const raceEnabled = false
