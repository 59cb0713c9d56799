// Package sender is the sending end of telewire: it stamps each message
// with its stream, a 64-bit sequence number and the send time, encodes it
// (packet), protects it with Reed-Solomon parity (fec), keeps a copy for
// retransmission (reliability.SendBuffer), and writes it with batched
// sendmmsg calls (internal/udpio). On the same socket it reads the
// receiver's feedback: REPORTs give the round-trip time and the loss the
// adaptive FEC rule follows; NACKs are answered with retransmissions or an
// "unavailable" answer.
//
// [Core] is the protocol state machine, free of sockets, goroutines and
// clocks: every method takes the time as an argument, so simulations
// (tools/sim) drive it on a fake clock. [Sender] runs a Core over a real
// socket with one writer and one reader goroutine (internal/loop).
//
// A stream opens with a HEARTBEAT saying where it starts, and an idle
// stream sends HEARTBEATs carrying the next sequence, backing off from
// Config.HeartbeatInterval, so the receiver sees losses at the start and
// at the tail of a burst.
//
// # Feedback without a key
//
// Without a key, feedback's source address proves nothing: anyone may
// forge the configured receiver's. A REPORT counts (RTT sample, pacing,
// adaptive FEC, validating a new feedback address) only if its echo is the
// send time, to the nanosecond, of the sequence it names as its highest
// received: a value only a receiver of that DATA knows (the last 4096
// DATA per stream are remembered for the check). Others are counted
// (Stats.ReportsUnproven) and ignored. A NACK is answered beyond three
// times the bytes of unproven feedback from its source only if it carries
// the same kind of proof (packet.FlagProof); answers to unproven NACKs
// stay within that limit whatever the address, validated or not, and what
// could not be sent is taken back from the retransmit buffer, so that a
// forged NACK does not suppress the real one. A REPORT carrying a
// challenge (packet.FlagChallenge) is answered at once with a HEARTBEAT
// (packet.FlagAnswer) to the configured receiver: see the receiver
// package's "Unauthenticated peers".
package sender
