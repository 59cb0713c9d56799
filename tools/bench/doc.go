// Package bench measures telewire on loopback against the raw batched UDP
// baseline in the same run. Its Go benchmarks (go test -bench . ./tools/bench)
// report messages per second and allocations per message for both, so a
// result is always read as a ratio to what the kernel and x/net give a
// hand-rolled loop on the same machine at the same moment.
package bench
