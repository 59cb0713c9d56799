// Package udpio is telewire's batched UDP socket: the bottom of the data path,
// below packet encoding on the sender (step 5, "batch write") and above packet
// decoding on the receiver (step 6, "batch read"). It moves opaque datagrams
// and knows nothing about telewire packets.
//
// A [Conn] wraps a *net.UDPConn with golang.org/x/net's ipv4 or ipv6
// PacketConn (chosen by the socket's address family; a wildcard ":port"
// socket is an IPv6 dual-stack socket) and moves many datagrams per system
// call with ReadBatch/WriteBatch, which are recvmmsg/sendmmsg on Linux. On
// other platforms x/net moves one message per call behind the same API, and
// [Config.NoBatch] selects the portable one-datagram-per-call path
// (ReadMsgUDPAddrPort/WriteToUDPAddrPort) everywhere.
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
// Allocation: the write paths and the NoBatch read path do not allocate. The
// batched read path allocates what x/net's ReadBatch allocates for each
// message's source address (a *net.UDPAddr and its IP slice: 2 allocations
// per datagram received, measured by TestReadAllocs); udpio adds nothing to
// it and turns the address into a netip.AddrPort without allocating.
package udpio
