//go:build !race

package sim

// raceEnabled is false: simulations run at full size.
const raceEnabled = false
