// Package bench is the library behind `telewire bench`: it measures
// telewire against raw UDP (and, through tools/bench/peers, against
// kcp-go) on loopback, with the sending and receiving ends in separate
// processes, and reports every telewire figure as a ratio to raw batched
// UDP measured in the same run, so that a result on a noisy, shared
// machine is read against what the kernel gives a hand-rolled loop at the
// same moment.
//
// # What is measured
//
// Each case is one Transport (raw-single, raw-batch, tw-nack, tw-fec,
// tw-auto; the peers program adds kcp and kcp-fec) at one offered load
// (full speed, or paced at 1k, 10k, 100k messages/s) through one link
// (direct loopback, or a tools/netem Relay dropping 1% or 5% at random
// each way). The sender sends 200-byte messages for Options.Duration; each
// starts with a stamp (PutStamp: magic, sequence number, send time). The
// receiver counts distinct sequence numbers (SeqSet, so duplicates and
// strays are not delivered twice) and records one-way latency in a
// Histogram. Figures per case and run (Figures): messages/s and Mbit/s of
// goodput over the span from the first send to the last delivery,
// completeness (delivered/sent), CPU time per message of each process
// (getrusage), wire bytes per message, latency p50/p99/p99.9/max. The
// matrix is walked once per run; Report gives each figure's median and
// min–max over the runs, and the per-run ratios to raw-batch (VsRaw).
//
// # Processes and clocks
//
// Run starts three worker processes through Options.Worker — for the
// telewire command, its own binary re-executed as
//
//	telewire bench --worker recv|send|relay
//
// — and keeps them for the whole bench. The parent drives them over their
// stdin and stdout, one JSON Request per line answered by one JSON Reply
// per line (Serve implements the worker side):
//
//	recv:  {"op":"listen","transport":"tw-nack","max_messages":N}  → {"addr":"127.0.0.1:P"}
//	relay: {"op":"relay","addr":RECV,"fwd":"loss random 5%","rev":…} → {"addr":RELAY}   (lossy cases only)
//	send:  {"op":"send","transport":…,"addr":RELAY or RECV,"rate":R,"duration_ns":D,…} → {"send":{sent,start_ns,end_ns}}
//	recv:  {"op":"drain","sent":N,"idle_ns":…,"max_wait_ns":…}      → {"recv":{delivered,latency,cpu_ns,…}}
//	send:  {"op":"close"}                                           → {"send":{cpu_ns,wire_bytes,…}}
//	relay: {"op":"relay-stop"}                                      → {"relay":{fwd,rev}}
//
// The sender stays open while the receiver drains, so that telewire and
// kcp can still repair the tail; the drain ends when every message sent
// has arrived, after Options.Idle without a delivery, or after
// Options.MaxWait. Closing a worker's stdin ends it.
//
// Latency is one-way without clock synchronisation: both ends read
// CLOCK_MONOTONIC (Nanotime), which is one clock for every process on the
// host. It runs from just before the sender's Send to just after the
// receiver's Next returns, so it includes both transports' queueing and
// the ordering wait of telewire's ordered delivery.
//
// On two cores, three processes compete: the sender and receiver each
// want a core at full speed, and in lossy cases the relay (one read and
// one write syscall per datagram) caps full-speed throughput for every
// transport alike. CPU time is per process, so the relay's is not charged
// to the transports.
//
// # Hot paths
//
// The sending loop (sendFor) and the receiving loop (collector.run) do not
// allocate per message, nor do PutStamp, ParseStamp, Histogram.Record and
// SeqSet.Add; the allocation tests prove it. Paced sending sleeps with
// nanosleep at a 1 ns timer slack on Linux (time.Sleep would round to about
// a millisecond).
//
// The Go benchmark BenchmarkLoopback (go test -bench Loopback) is a
// quicker in-process check: one sender and one receiver goroutine, raw
// batched UDP against telewire, closed loop.
package bench
