//go:build !race

package sim

// raceEnabled is false: group scenarios run at full size.
const raceEnabled = false
