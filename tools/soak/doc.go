// Package soak runs telewire for a long time at a high rate through a
// lossy link and checks that nothing drifts: it is what `telewire soak`
// runs.
//
// One process holds the whole data path: a sender.Sender streaming
// numbered, checksummed messages, a tools/netem Relay on loopback that
// loses datagrams each way (default [DefaultLink]), and a
// receiver.Receiver whose messages a consumer goroutine verifies as they
// come out of Recv. FEC and NACK run at their defaults. Every
// [Options].Interval a [Sample] records the process's memory (heap in use
// and heap objects from runtime/metrics, which unlike
// runtime.ReadMemStats does not stop the world; RSS from /proc/self/statm
// on Linux), its goroutines and GC cycles, and the transport's counters.
//
// # The tail and the reconciliation
//
// When the load stops, the sender keeps running and sends "fence"
// messages (flagged in the payload, not counted as load) until delivery
// has moved past the last load message: ordered delivery can only skip a
// gap that has something after it, so without fences a loss at the very
// end would be neither delivered nor skipped. Then the sender closes and
// the receiver is given until nothing is held and the consumer has read
// everything the receiver queued (bounded by [Options].Drain).
// [Reconcile] then checks, from the consumer's own view of the payloads
// and the receiver's counters receiver.StreamStats.Skipped and
// receiver.Stats.QueueOverflow, that every load message was delivered
// exactly once or counted as skipped, that no payload was corrupt or out
// of order, and that the consumer read exactly receiver.Stats.Delivered
// messages. Any difference is reported, never absorbed.
//
// # Memory
//
// [Judge] calls memory flat when, over the samples taken under load after
// the warm-up, the highest heap in use of the second half is at most
// [FlatRatio] times the highest of the first half, and the goroutine count
// never changed. Heap in use climbs between collections, so each half must
// contain a completed GC cycle for its peak to mean anything; fewer than
// [MinJudgedSamples] judged samples, or a half without a GC cycle, is
// inconclusive. [Options].ForceGC collects before each sample, which makes
// heap in use the retained heap and guarantees the cycles.
package soak
