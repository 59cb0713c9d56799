//go:build !race

package guard

// raceEnabled is false: allocation counts are meaningful.
const raceEnabled = false
