// Package netem is telewire's userspace equivalent of Linux "tc qdisc ...
// netem": a seeded, reproducible emulation of a bad link (delay, jitter,
// loss, duplication, corruption, reordering, rate and queue limits) for
// machines whose kernel has no sch_netem, and for deterministic
// simulations. Tests and the demo put it between telewire's sender and
// receiver; no library package imports it.
//
// # Specs
//
// [ParseSpec] reads the option syntax of tc-netem(8), e.g.
//
//	spec, err := netem.ParseSpec("delay 5ms 1ms loss 2%")
//
// and [Spec.String] writes it back (ParseSpec(s.String()) == s). Every
// example of the man page (iproute2 man/man8/tc-netem.8) and of the Linux
// Foundation wiki (https://wiki.linuxfoundation.org/networking/netem)
// parses; see ParseSpec for the grammar and units. Errors are
// [*SpecError] values naming the bad token and its offset.
//
// # How the model maps to netem
//
// [Model] reproduces netem_enqueue (net/sched/sch_netem.c) decision by
// decision: the duplicate roll, then the loss roll (a packet both
// duplicated and lost leaves one copy), the duplicate's own pass through
// loss/corruption/limit/delay, corruption of one random bit, the queue
// limit, then either reordering (after ReorderGap-1 delayed packets, a
// packet is sent at once with probability ReorderPercent) or the delay:
// Delay plus Jitter times a draw from the distribution, with netem's
// correlation (each draw is (1-ρ)·fresh + ρ·previous). With a rate, a
// packet leaves at max(arrival+delay, previous departure) + its
// serialisation time (with tc's packet overhead and cell size). The loss
// models are netem's: "random" with optional correlation, the 4-state
// Markov chain and the Gilbert-Elliott model of Salsano, Ludovici and
// Ordine, "Definition of a general and intuitive loss model for packet
// networks and its implementation in the Netem module in the Linux kernel"
// (NetemCLG). Probabilities are compared as 32-bit integers as in the
// kernel, so rates match netem's to 2^-32.
//
// What differs from the kernel:
//   - Randomness is one PCG generator (math/rand/v2) per Model, seeded by
//     the caller or by "seed N"; the same seed and the same calls give
//     the same decisions.
//   - Distribution tables are computed here in float64 (4096 quantiles,
//     the shapes of iproute2's generators) rather than loaded as int16
//     files; "distribution uniform" is the default, as it is in the
//     kernel when no table is loaded (the man page's claim that normal is
//     the default does not hold). Table files and "slot distribution" are
//     not supported.
//   - Uniform jitter is continuous; the kernel's u32 modulo limits jitter
//     to about 2 s. Negative delays are clamped to zero.
//   - "loss gemodel P" alone defaults to r = 1-P as the man page states
//     (a Bernoulli loss of P); recent tc sends r = 100 %.
//   - "gap N" without "reorder" means reorder 100 % (the kernel's
//     compatibility rule); recent tc rejects it, but the wiki uses it.
//   - Slots are a renewal process: a slot opens one slot interval after
//     the head packet is due (or after the previous slot used up its
//     budget), and due packets leave at slot instants, which is the
//     kernel's behaviour without its dependence on when dequeue is polled.
//   - ecn and percentage rates are rejected (ErrUnsupported): a UDP proxy
//     cannot mark ECN and there is no device speed.
//   - A bare time is microseconds (tc's get_time), whatever the man page
//     says about milliseconds.
//
// # Simulations: Link
//
// [Link] is a Model plus its time-ordered queue, pure and allocation-free
// in steady state. A simulation runs two Links (data and feedback) on a
// fake clock:
//
//	fwd, _ := netem.NewLink(spec, seed)
//	fwd.Enqueue(now, pkt)              // copies pkt
//	at, ok := fwd.Next()               // when the next packet is due
//	pkt, ok = fwd.Dequeue(at)          // valid until the next Dequeue
//
// Process events in time order (dequeue what is due before enqueueing a
// later arrival) and the run is exact and repeatable.
//
// # Real sockets: Relay
//
// [Relay] is a UDP proxy applying a Spec each way: clients send to its
// listen address, it forwards (impaired by Fwd) to To from one socket per
// client and returns replies (impaired by Rev). Clients are bounded and
// expire when idle; each client direction has a delivery goroutine driven
// by a timer, which wakes slightly early and yields until the exact time.
// Its sockets have 4 MiB kernel buffers and move datagrams in batches
// (recvmmsg, and one sendmmsg for all the datagrams due when a deliverer
// wakes), so that at full speed the relay drops only what its Specs say;
// DirStats.KernelDrops and LimitDropped tell when it falls behind.
// Run returns when its context is cancelled, after every goroutine has
// finished.
//
// # A socket's own link: PacketConn
//
// [Wrap] (or [NewPacketConn]) puts a Link on each direction of an existing
// net.PacketConn, like a netem qdisc on that one socket: writes are
// impaired before they reach the wrapped conn, reads after they leave
// it. A perfect Spec passes that direction straight through.
package netem
