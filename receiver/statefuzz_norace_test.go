//go:build !race

package receiver

// memoryRounds is how many slices of 5000 random operations the memory
// tests run (see statefuzz_race_test.go).
const memoryRounds = 30
