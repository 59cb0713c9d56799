//go:build !race

package receiver

// raceEnabled is false: flood tests run at full size.
const raceEnabled = false
