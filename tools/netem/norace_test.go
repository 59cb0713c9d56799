//go:build !race

package netem

// raceEnabled is false: allocation counts are meaningful.
const raceEnabled = false
