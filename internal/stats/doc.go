// Package stats holds the receiver-side statistics that telewire reports
// back to the sender in REPORT packets (step 13 of the data path in
// ARCHITECTURE.md): the RFC 3550 interarrival jitter ([Jitter]) and the
// distribution of one-way delay ([DelayHistogram], summarised as a
// [Summary] of percentiles and the maximum).
//
// The receiver feeds both with the sender's timestamp from each packet and
// the receive time it stamped at read. The two clocks have unrelated epochs,
// so neither estimator ever looks at an absolute one-way delay: jitter works
// on differences of transit times, and the histogram reports delays relative
// to the smallest delay it has seen, so a constant clock offset cancels.
//
// Like packet, fec and reliability, this package is pure logic: no clock
// reads (times arrive as int64 nanoseconds), no goroutines, no allocation
// per observation, and memory fixed at the size of each value. Values are
// not safe for concurrent use; the receiver owns one of each per stream.
package stats
