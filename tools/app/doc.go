// Package app holds the logic behind the telewire command's send, recv and
// replay subcommands, and the statistics output the command writes
// ([OpenStats], [StatsRecord]: one JSON object at the end, or JSON Lines
// with one record per --stats-interval, each led by the build's
// [Version] and the effective settings): moving framed messages between standard streams and a
// sender or receiver, replaying the UDP datagrams of a capture file at
// their original timing, pacing, stop conditions, live progress and the
// final statistics. The command itself (tools/telewire) only parses flags
// into the option structs here, so everything the command does can be
// driven from a test in-process.
//
// # Prompt output
//
// [Recv] writes what the receiver has ready as one batch (Recv, then
// TryRecv until nothing more is ready) and flushes the batch, and the
// pcap copy, at once: a message never waits in recv for a later one, and
// under load the batches grow, so a burst still costs one write. With
// json framing the receiver's gap markers (receiver.Config.DeliverGaps)
// are written in band; see docs/cli.md.
//
// # Captures in and out
//
// [Replay] sends each UDP datagram of a pcap or pcapng file as one
// telewire message, and each original flow (source and destination address
// and port) on its own stream. The payloads travel byte-identical: the
// telewire wire format has no room for the original addresses, so the
// mapping from session and stream to flow goes beside the data, as a JSON
// file ([Flow], read back by [LoadFlows]).
//
// # Every flow, however many: several sender sessions
//
// A receiver bounds the streams it keeps per sender (MaxStreams in
// receiver.Config, 64 by default) and the senders it keeps (MaxSessions,
// 64):
// peer-driven state is capped, as a DoS defence. A replay used to send
// every flow from one session and skip the flows past the 64th. Flows are
// now numbered in order of first appearance and flow i goes out on stream
// i mod S of sender session i div S, S = [ReplayOptions].SessionStreams (64
// by default): 1 000 flows go out from 16 sessions, each with its own
// socket, so the receiver sees 16 senders of at most 64 streams and takes
// them all with its default limits. The mapping names each flow's session
// id, which the receiver hands on with every message
// (receiver.Message.Session), so `recv --pcap-out --flows` restores the
// original addresses of every flow.
//
// Why sessions rather than raising the receiver's bound or negotiating
// one: it works against any receiver as it is, old or new, with no change
// to the wire format and no weakening of the per-sender cap a receiver
// uses to protect itself from one peer; each session is an ordinary sender
// (its own pacing, repair and statistics), so nothing in the data path is
// special to replay. The price is a socket and a few goroutines per 64
// flows, and the receiver's bound on senders: with defaults, 64 x 64 = 4 096
// flows. Beyond that the replay does not pretend: it says at the start how
// many sessions it needs and which recv flags take them (--max-sessions N,
// or --max-streams S with replay --session-streams S), and if the receiver
// refuses sessions anyway, its reports never cover them, the summary says
// so and the replay exits non-zero. A receiver that grows its per-stream
// state with use could take more streams per sender; SessionStreams is the
// knob that matches it, and more streams per session then means fewer
// sockets. One replay sends at most [MaxFlowsLimit] flows (65 536);
// datagrams of further flows are not sent, and that too makes it
// incomplete.
//
// Each session's retransmit memory and queue are sized from what its flows
// send (a flow of three datagrams does not need 8 MiB of retransmit
// buffer), so memory follows the capture rather than the flow count.
//
// # Skipped, lost, and the exit status
//
// The summary lists what was left out by choice or because the capture
// does not hold a whole UDP datagram, by reason and count: --filter,
// --max-flows, not IP, not UDP, truncated (captured shorter than sent),
// malformed, fragments that never completed a datagram. Those do not make
// a replay incomplete. What was not sent because of a limit (a datagram
// over the largest telewire payload, flows beyond MaxFlowsLimit) does.
//
// After the last message the senders linger (at most
// [ReplayOptions].Linger) until the receiver's REPORTs (sender.StreamStats.Receiver)
// confirm every datagram: a stream's datagrams are confirmed when the
// receiver reports them received, less those received after their delivery
// deadline (Late). At the end each datagram is confirmed, lost (the
// receiver reports it missing after repair, or late) or unconfirmed (no
// report covers it: the receiver stopped, refused the session or stream,
// or its last report predates it). Anything lost, unconfirmed or not sent
// makes Replay return an [*IncompleteError]: the command exits
// [ExitIncomplete] (4), or [ExitNoFeedback] (3) when no REPORT came back at
// all. A signal stops the sending, not the linger: the verdict then covers
// what was sent. What the receiving application does with a delivered
// message (a reader that falls behind its queue) is beyond the sender's
// view; recv's own summary counts it.
//
// [Recv] with [RecvOptions].PcapOut writes every delivered message as a
// UDP datagram into a pcap file, stamped with its receive time. A message
// whose session and stream the mapping file lists gets its original
// addresses and ports (an entry without a session, from an older replay,
// matches its stream in any session); any other message gets a
// deterministic stand-in: source = the sender's IP address with port = the
// stream id (its low 16 bits), destination = the receiver's own address.
package app
