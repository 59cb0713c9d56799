//go:build !race

package sim

// raceEnabled is false: simulations and group scenarios run at full size.
const raceEnabled = false
