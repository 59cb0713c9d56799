// Package guard holds telewire's defences against peers that replay, spoof
// or flood: an anti-replay window over sealed packets' counters
// ([Window]), per-address anti-amplification and retransmission budgets
// ([Peers]) and a token bucket ([Bucket]) for anything else that must be
// rate-limited.
//
// Like packet, fec and reliability it is pure logic: no sockets, no
// goroutines, no clock (time comes in as int64 nanoseconds), fixed memory
// chosen at construction, and nothing on the per-packet path allocates.
// None of its types is safe for concurrent use; each belongs to one core.
//
// # Where it sits in the data path
//
// Receive side (both ends): a sealed datagram is opened by package seal
// first; only if it authenticates does its counter go through the
// session's Window (per session and direction, and per receiver salt at a
// sender). A replay is dropped and counted there, before any sequence
// window, statistic or delivery sees it.
//
// Sender side: every datagram from an address is counted with
// [Peers.OnReceive]; every datagram the sender sends in answer to one (a
// retransmission, an "unavailable" NACK, a challenge) goes through
// [Peers.AllowSend] or [Peers.AllowRetransmit] first. Until the address is
// validated ([Peers.Validate]: the sender's configured receiver from the
// start; another address once its REPORT echoes, to the nanosecond, the
// send timestamp of the DATA it names as its newest, which only a receiver
// of that packet knows; with encryption, any authentic feedback) the sender
// sends it at most three times the bytes it received from it (QUIC's rule,
// RFC 9000 §8.1), so a spoofed NACK cannot turn the sender into an
// amplifier. Retransmissions are further capped per address per round trip.
package guard
