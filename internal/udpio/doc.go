// Package udpio is telewire's batched UDP socket: the bottom of the data path,
// below packet encoding on the sender (step 5, "batch write") and above packet
// decoding on the receiver (step 6, "batch read"). It moves opaque datagrams
// and knows nothing about telewire packets.
//
// A [Conn] wraps a *net.UDPConn with golang.org/x/net's ipv4 or ipv6
// PacketConn (chosen by the socket's address family; a wildcard ":port"
// socket is an IPv6 dual-stack socket) and moves many datagrams per system
// call with ReadBatch/WriteBatch, which are recvmmsg/sendmmsg on Linux. On
// Linux the batched read is udpio's own recvmmsg through the socket's
// RawConn (mmsg_linux.go): x/net's ReadBatch allocates a source address
// per message, this one decodes it in place. On other platforms x/net
// moves one message per call behind the same API, and
// [Config.NoBatch] selects the portable one-datagram-per-call path
// (ReadMsgUDPAddrPort/WriteToUDPAddrPort) everywhere.
//
// On Linux a batching Conn then takes its socket out of Go's netpoller
// (direct_linux.go; [Config.Netpoll] keeps it in): it duplicates the
// descriptor, closes the net.UDPConn, and serves reads and writes with its
// own recvmmsg and sendmmsg, waiting in ppoll(2) on the calling
// goroutine's thread when there is nothing to read or no buffer space,
// with eventfds for a new read deadline and for Close. The netpoller's
// epoll entry was woken by every datagram the socket sent (its buffer
// freed signals write space), which cost a batched sender on loopback
// 20–40% of its throughput (the bench's raw-netpoll against raw-udpio,
// same run: 8.5 against 5.8 µs of CPU per message) and a reader 10–15 µs
// per wake-up after a quiet spell (one-way p50 at 1k msgs/s: +10.8 µs over
// half a raw ping-pong in the netpoller, −0.5 µs outside it). Before it
// blocks, a Read yields the processor once, so that what the caller made
// runnable with the last batch (a goroutine waiting in Recv) runs at once
// instead of waiting for the runtime to take the processor from a thread
// blocked in a system call.
//
// On Linux a Conn also uses UDP segmentation offloads, each on by default
// where the kernel supports it and detected when the socket is opened:
//
//   - GSO (send, Linux 4.18+): WriteBatch coalesces each run of consecutive
//     datagrams to one destination and of one size (the last may be
//     shorter) into a single message with a UDP_SEGMENT control message,
//     up to [MaxGSOSegments] datagrams and [MaxGSOBytes4]/[MaxGSOBytes6]
//     bytes; the kernel segments it (or the NIC does), so one system call
//     and one trip down the stack carry up to 64 datagrams. Payloads are
//     not copied: each datagram is one element of the message's iovec. A
//     kernel that refuses a coalesced message gets its datagrams again one
//     by one, and GSO is narrowed or turned off (see [Config.NoGSO]).
//   - GRO (receive, Linux 5.0+): the kernel may deliver several datagrams
//     of one flow as one coalesced read with a UDP_GRO control message
//     giving the segment size (on loopback, every UDP_SEGMENT message
//     arrives so); Read splits it into Datagrams that are slices of the
//     receive buffer. Receive buffers are then [GROBufferSize] bytes each.
//
// Both are on by default because they win at every size measured.
// BenchmarkOffload (loopback, one sender and one receiver goroutine kept at
// most 2048 datagrams apart, 64 datagrams per WriteBatch, 2 vCPUs shared
// with other work at load average 5-6, so ±20% noise), medians of
// go test -bench Offload -benchtime 1s -count 3, in datagrams/s received:
//
//	size    single   batch 64   GSO (into recvmmsg)   GSO + GRO
//	  64      143k       120k        497k                 3.5M
//	 200       89k       125k        499k                 3.4M
//	 256       91k        78k        322k                 4.3M
//	1200      105k       106k        205k                 1.6M
//
// GSO alone is bound by the receiver, which still takes one datagram per
// message; with GRO both sides pay per 64 datagrams what they paid per
// datagram. Neither adds latency: GSO only coalesces what one WriteBatch
// call was given, and GRO only what the kernel already holds.
//
// [Config.BusyPoll] turns on an optional busy-poll receive mode, off by
// default: a Read with nothing left to hand out polls the socket
// (poll(2), zero timeout) in a loop, yielding to other goroutines between
// polls, for up to BusyPoll before it parks in the netpoller; a poll that
// finds data is followed by the usual recvmmsg, which returns at once.
// Polling goes through the socket's syscall.RawConn, so it needs nothing
// from x/net (whose ReadBatch with MSG_DONTWAIT would allocate an error
// for every empty poll), allocates nothing, and a Close ends it at the
// next poll. A busy-polling Conn stays in the netpoller. It trades a CPU core for the wake-up of a parked goroutine.
// The kernel's SO_BUSY_POLL is a different thing: it makes blocking
// receives and epoll spin on a NIC's NAPI queue; loopback has no NAPI
// context (a loopback datagram is delivered inside the sender's system
// call), so on loopback it has no effect.
//
// All receive buffers and message headers are allocated once, in [New]:
// Read hands out slices of them and they are reused by the next Read.
//
// On Linux the socket also asks the kernel for its receive-queue drop counter
// (SO_RXQ_OVFL), so [Stats.KernelDrops] tells loss inside this host's socket
// buffer apart from loss on the network, and a receive-buffer request capped
// by net.core.rmem_max is retried with SO_RCVBUFFORCE when the process has
// CAP_NET_ADMIN (likewise for the send buffer).
//
// Allocation: on Linux no read or write path allocates (TestReadAllocs,
// TestGROReadAllocs, TestWriteAllocs, TestGSOAllocs). Elsewhere the batched
// read allocates what x/net's ReadBatch allocates for each message's source
// address (a *net.UDPAddr and its IP slice).
package udpio
