//go:build race

package sender

// memoryRounds is how many slices of 5000 random operations the memory
// tests run: fewer under the race detector, which is ten times slower and
// checks the same code.
const memoryRounds = 8
