//go:build race

package receiver

// raceEnabled: the race detector slows the per-datagram path about tenfold,
// so flood tests shrink.
const raceEnabled = true
