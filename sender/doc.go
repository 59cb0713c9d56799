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
package sender
