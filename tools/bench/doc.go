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
// Each case is one Transport (raw-single, raw-batch, raw-gso, tw-nack,
// tw-fec, tw-auto, tw-sealed, raw-pingpong and, when named in --only,
// raw-udpio, raw-netpoll, tw-gso, tw-spin, tw-nopack, the references
// ref-loop and ref-iperf3, the commands cmd-default, cmd-nopack and
// cmd-gso, and the fan-out cases fan-mcast1/10/50, fan-ucast1/10/50 and
// fan-sub1/10/50; the peers program adds
// kcp and kcp-fec) at one offered load
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
// # The baseline
//
// raw-batch is the best a plain batched loop does on the machine, not a
// socket library's figure: on Linux its sender and receiver own blocking
// sockets (outside Go's netpoller, whose epoll registration costs a wake-up
// for every datagram freed), the sender is connected and writes 64
// messages per sendmmsg, the receiver blocks in recvmmsg with
// MSG_WAITFORONE. raw-udpio runs the same batches through internal/udpio,
// the socket layer telewire uses, so that the gap between the two is the
// socket layer's and the gap between raw-udpio and tw-nack telewire's.
// Telewire rows run the default configuration (sender GSO off, receiver
// GRO on) unless their name says otherwise (tw-gso, tw-spin).
//
// # Cross-checks
//
// Two references check the baseline in the same run, at full speed on
// the clean link (Report.CrossCheck, printed under the table): ref-loop
// is the minimal loop — raw-batch's sockets and batches, but the sender
// writes one unchanging batch over and over (Blaster) and the receiver
// only counts datagrams (BatchCounter): no stamp, copy or clock reading
// per message, no warm-up, no latency; ref-iperf3 runs iperf3 -u -b 0 -l
// SIZE (a Debian package; .ci/run installs it), server and client started
// by the parent, and reports the client's sending rate and the server's
// receiving rate (iperf3 writes one datagram per sendto and reads one per
// recv, and loses what its reader cannot keep up with). Neither is the
// baseline: they say whether raw-batch is the best a plain loop does.
//
// # The commands
//
// cmd-default, cmd-nopack and cmd-gso measure what a user runs (issue
// #16's "through the commands"): the parent starts the telewire binary
// (Options.Exec) as
//
//	telewire recv --listen 127.0.0.1:0 --count N --framing len32 --idle 2s --stats FILE > /dev/null
//	telewire send --to ADDR --gen market --count N --size SIZE [--no-pack | --gso]
//
// with N = Options.CommandCount (--count, default 1 000 000), and the
// run's span is from just before send is started to recv's exit after its
// Nth message. Delivered comes from recv's --stats, CPU from each
// process's rusage; there are no latency figures.
//
// # Fan-out
//
// A Transport with Receivers > 1 opens that many receiving ends in the
// receiving worker; with SharedAddr the first listens on ListenAddr (for
// fan-mcast, the group FanoutGroup on lo) and the rest on the group and
// port it bound, and the sender is given the group. The case's figures
// are those of the median receiver (by delivered messages per second);
// RecvResult.PerReceiver lists every one. Case.VsOne divides each run by
// the run of the family's one-receiver transport (Transport.Family), so
// the report reads "per receiver 0.38× one receiver's, sender CPU per
// message 2.1×". Three families share this machinery (fanout builds
// them), tw-nack (FEC off) each:
//
//   - fan-mcast: IP multicast, as above; the kernel copies each datagram
//     to every member.
//   - fan-ucast: a static unicast list, `send --to a,b,c`: each end
//     listens on a loopback port of its own and the sender is given the
//     comma-separated list (sender.Config.To), so it writes every
//     datagram once per destination (outbox.Batch.Fanout).
//   - fan-sub: subscriptions, `send --listen` with `recv --subscribe`
//     (Transport.Subscribe): the sending worker opens the sender first
//     (op open, listening on 127.0.0.1:0), every receiving end subscribes
//     to it from its own port (the token echo), and send waits until all
//     have joined (JoinWait at most) before the warm-up, so that every
//     measured message is owed to every receiver.
//
// All N receivers share the receiving worker process, and at full speed
// the two cores with the sender.
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
//	send:  {"op":"open","transport":"fan-sub10"}                    → {"addr":SENDER}       (fan-sub only: the sender listens first)
//	recv:  {"op":"listen","transport":"tw-nack","max_messages":N}  → {"addr":"127.0.0.1:P"} (fan-sub: "addr":SENDER given, to subscribe to)
//	relay: {"op":"relay","addr":RECV,"fwd":"loss random 5%","rev":…} → {"addr":RELAY}   (lossy cases only)
//	send:  {"op":"send","transport":…,"addr":RELAY or RECV,"rate":R,"duration_ns":D,…} → {"send":{sent,start_ns,end_ns}}
//	recv:  {"op":"drain","sent":N,"idle_ns":…,"max_wait_ns":…}      → {"recv":{delivered,latency,cpu_ns,…}}
//	send:  {"op":"close"}                                           → {"send":{cpu_ns,wire_bytes,…}}
//	relay: {"op":"relay-stop"}                                      → {"relay":{fwd,rev}}
//
// Every reply that ends a side's part of a case carries that process's
// memory (MemSummary: RSS and Go heap, see below).
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
// # The ping-pong baseline
//
// raw-pingpong measures what the host itself costs a message: the sending
// worker writes each message with one sendmsg on a plain net.UDPConn and
// blocks reading until the receiving worker, another plain net.UDPConn,
// echoes it back; the case's latency figures are half of each round trip
// (SendResult.HalfRTT; see RoundTripper), paced like every other case
// (at 1k msgs/s a message every millisecond, each finding both ends
// parked in the Go netpoller, as telewire's ends are at that load). It
// runs on the clean link only. Its p50 is the reference of the issue's
// target "added p50 one-way latency at 0% loss and 1k msgs/s within 10 µs
// of a raw ping-pong's half round trip": every other case at the same
// load and loss gets Case.VsPingPong, its p50 minus the ping-pong's, run
// by run, printed under the section as "added p50 vs raw ping-pong".
//
// Apples to apples: a telewire case's one-way latency runs from the
// sender's Nanotime just before Send to the receiver's Nanotime just after
// Next returns, the clock shared by both processes; the half round trip
// runs from the same stamp to the sender's Nanotime just after the echo
// is read, halved. Both therefore include the sending system call, the
// loopback, and one wake-up of a goroutine parked in the netpoller per
// direction; telewire adds its own work and goroutine hand-offs, which is
// what the difference shows. The echo is written after the receiving
// worker has read its clock for the message, so the ping-pong case also
// reports the stamped one-way (Figures.ForwardP50Nanos) beside the half
// round trip: that the two agree is the check that halving the round
// trip measures what the stamps measure. (A lost echo would stall a ping
// for EchoTimeout; on loopback none are lost, and counters say so.)
//
// # Memory
//
// Each worker samples its own resident set (/proc/self/statm) and Go heap
// in use (runtime/metrics /memory/classes/heap/objects:bytes) every 20 ms
// through each case, with an open file re-read at offset 0, so sampling
// allocates nothing: the sender from the end of its warm-up until just
// before it is closed, the receiver from its first measured delivery
// until the end of its drain (before it is closed), the relay while it
// relays. Each reports the first sample, the one half-way through, the
// last and the largest (MemSummary), keeping at most 128 samples however
// long the case; Figures carries them per side. A side is flat over a
// case when its end RSS is at most FlatRSSRatio (1.10) times its RSS
// half-way: no growth over the second half. The first sample is not the
// reference because telewire's fixed buffers (the sender's retransmit
// ring, the receiver's windows and queues), allocated whole when a
// session starts, become resident only as they are first written, which
// at 100k msgs/s takes seconds: RSS climbs to a plateau and stays there,
// while a leak keeps climbing. (For the same reason the Go heap, which
// counts those buffers whole from the start, can exceed the RSS.) The
// heap in use also holds garbage until the next collection, which with a
// large live heap and little garbage may be minutes away, so each side
// also reports the live heap the last collection found and how many
// collections ran during the case: RSS that climbs while the live heap
// stays put is garbage awaiting GOGC's target, not a leak. The
// table shows each side's end RSS (a * marks growth beyond 1.10) and,
// under each section, after warm-up → half-way → end (max) of RSS and
// heap with the verdict. For the memory target:
//
//	telewire bench --only tw-nack,100k,clean --duration 60s --runs 1
//
// # Busy polling
//
// tw-spin is tw-nack with receiver.Config.BusyPoll = SpinBusyPoll (2 ms):
// the receiver's socket reader polls instead of parking while datagrams
// keep coming within 2 ms of each other (see udpio.Config.BusyPoll). It
// is left out of the default matrix (Transport.Optional), as it holds a
// core busy; name it in --only. Measured here at 1k msgs/s (2 vCPUs at
// load average 12-14, medians of 5 runs), it bought little: p50 123 µs
// against tw-nack's 134 µs, but p99 5.7 ms against 1.5 ms and 3× the CPU
// per message, since the spinning receiver takes the core the sender and
// the rest of the host need. The reader's wake-up is one of three
// goroutine hand-offs on telewire's path (the sender's writer, the
// receiver's reader, the goroutine in Recv), and the only one it removes.
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
