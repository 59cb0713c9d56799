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
// and port) on its own stream, numbered from 0 in order of first
// appearance, up to [ReplayOptions].MaxFlows. The payloads travel
// byte-identical: the telewire wire format has no room for the original
// addresses, so the mapping from stream to flow goes beside the data, as a
// JSON file ([Flow], read back by [LoadFlows]).
//
// [Recv] with [RecvOptions].PcapOut writes every delivered message as a
// UDP datagram into a pcap file, stamped with its receive time. A stream
// the mapping file lists gets its original addresses and ports; any other
// stream gets a deterministic stand-in: source = the sender's IP address
// with port = the stream id (its low 16 bits), destination = the
// receiver's own address.
package app
