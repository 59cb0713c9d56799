// Package receiver is the receiving end of telewire: it reads batches of
// datagrams (internal/udpio), rejects malformed ones, keeps per-sender
// state keyed by address and session id (a new session id is a restarted
// sender), finds gaps (reliability.Tracker), rebuilds losses from parity
// (fec.Decoder), NACKs what parity cannot rebuild, delivers messages in
// the chosen mode (reliability.Delivery: ordered within a latency budget,
// unordered, or latest), and measures per stream: loss before and after
// repair, duplicates, reordering, RFC 3550 jitter and one-way delay
// percentiles above the minimum. Every report interval it sends each
// sender a REPORT with those figures and the echo of the newest sender
// timestamp, from which the sender computes the round-trip time.
//
// [Core] is the protocol state machine, free of sockets, goroutines and
// clocks, so simulations (tools/sim) drive it on a fake clock. [Receiver]
// runs a Core over a real socket and hands messages out through Recv.
//
// Everything a peer can make the receiver hold is bounded: sessions,
// streams per session, messages held for ordering, messages waiting for
// Recv, missing sequences remembered, FEC blocks. What is dropped at a
// bound is counted in Stats.
package receiver
