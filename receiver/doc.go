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
//
// # Memory: state grows with use, within one budget
//
// A stream starts small (about 5 KiB: its loss window bitmap, a 16-slot
// reorder ring) and grows only as its traffic asks: the reorder ring
// doubles when messages spread out, up to ReorderCapacity; the missing set
// doubles with the gaps, up to MaxMissing; the delay histogram (16 KiB)
// comes with the first delay sample, the NACK buffer with the first NACK,
// the FEC decoder (about 15 KiB of tables) with the first protected DATA or
// PARITY, and its ring of shards grows a page at a time with the sequences
// it sees. Each growth, and each held message's payload copy, is charged
// to one receiver-wide budget, Config.MaxStateBytes (default 64 MiB),
// before it happens: at the budget new sessions and streams are refused
// (Stats.BudgetRefused) and growth is refused (Stats.BudgetDenied: a
// message not held, the oldest gaps given up, a shard not kept for FEC, a
// stream without FEC); Stats.StateBytes says what is charged now.
//
// # Unauthenticated peers
//
// Without a key (plain mode) nothing a datagram says about its origin is
// authenticated: anyone who can send UDP to the receiver can forge DATA
// from any source address and session id. The receiver cannot stop that;
// it limits what such a peer can claim.
//
// A new sender starts unvalidated. As soon as the amplification limit
// allows (its second or third datagram), the receiver sends it a REPORT
// carrying a challenge (packet.FlagChallenge): 32 bits of the receiver's
// clock and a 32-bit tag, an AES CBC-MAC under a key only this receiver
// process holds, over the sender's address, its session id and that time.
// A sender answers at once with a HEARTBEAT carrying the challenge back
// (packet.FlagAnswer); the answer validates the session, and its round trip
// becomes the stream's first RTT for NACK retry timing (before any
// retransmission has been timed; see SeedRTT). Answers are checked with no
// state kept per challenge, so a flood of sessions that never answer costs
// no memory to challenge, and a real sender whose state was evicted
// meanwhile is recognised when its answer comes. Answers older than 10 s
// are refused. Challenges go in every REPORT until the sender answers,
// and while a stream has no round trip measured.
//
// Until it has answered, a session is served as any other, but all
// unvalidated sessions together share a quarter of the budget: a flood of
// forged DATA from any number of
// addresses, ports, sessions and streams claims at most MaxStateBytes/4
// (16 MiB by default), and the rest stays for validated senders. When the
// session table (MaxSessions) or the budget is full, a new sender may
// evict the oldest unvalidated session whose 1 s grace time has passed
// (Stats.SessionsEvicted): a real sender answers within a round trip, so
// only the silent keep their slots by being young, and a flood must keep
// creating sessions to hold the table, each of which a newcomer can evict
// a second later.
//
// What this does not do: a peer that receives the challenge (its source
// address is real, or it can see the receiver's packets on the path)
// answers it like any sender and is then validated, bounded only by
// MaxSessions, MaxStreams and the budget. A forged datagram with a new
// session id from a real sender's address ends that sender's session (a
// restart, as without validation). A forged tag is accepted with
// probability 2^-32 per answer. With a key (Config.KeyFile) every session is
// authenticated from its first datagram: none of this applies, and the
// budget alone bounds memory.
package receiver
