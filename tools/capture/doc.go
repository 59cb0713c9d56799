// Package capture reads UDP datagrams out of packet capture files and writes
// datagrams back as captures. It is the file end of telewire's replay path:
//
//	capture file ──▶ capture.Reader ──▶ replay.Scheduler ──▶ sender.Send
//	                                                            │ UDP
//	capture file ◀── capture.Writer ◀── receiver delivery ◀─────┘
//
// A user replays production traffic through telewire by reading a pcap or
// pcapng file with a [Reader], pacing the payloads with the replay package,
// and sending each payload as a telewire DATA message; what the receiver
// delivers can be written back with a [Writer] and compared with the input in
// Wireshark or tshark.
//
// # Reading
//
// [Open] and [NewReader] sniff the format from the first bytes: classic pcap
// (microsecond or nanosecond timestamps, either byte order), pcapng (several
// sections and interfaces, per-interface link type and timestamp resolution),
// and either of them gzip-compressed. File parsing is done by gopacket's
// pcapgo and header decoding by gopacket's layers; this package adds the walk
// from the link layer to the outermost UDP header:
//
//   - link types Ethernet (1), Linux cooked SLL (113) and SLL2 (276), raw IP
//     (101, 12, and IPv4 228 / IPv6 229), BSD loopback NULL (0) and LOOP (108);
//   - 802.1Q / 802.1ad (QinQ) VLAN tags and PPPoE session headers, up to 8
//     of them in a frame;
//   - IPv4 and IPv6, with IPv6 extension headers (hop-by-hop, routing,
//     destination options, AH, mobility, HIP, shim6) skipped;
//   - IPv4 and IPv6 fragments reassembled by a bounded reassembler (see
//     [Options.MaxPendingDatagrams] and [Options.FragmentTimeout]).
//
// Only the outermost UDP header of a frame is used: UDP carried inside a
// tunnel (6in4, IP-in-IP, GRE) or quoted inside an ICMP error is not a
// datagram of the capture and is counted under [Stats].NotUDP.
//
// Every frame that does not yield a datagram is counted once under the reason
// it was skipped ([Stats]); the reader never panics on a malformed file and
// reads it record by record, so memory stays bounded whatever its size. A
// datagram whose captured bytes are fewer than its IP or UDP length fields
// announce (a capture with a short snap length) is counted as Truncated and
// never returned as if it were whole.
//
// # Filtering
//
// A [Filter] selects datagrams by port, address, prefix, flow and address
// family. [ParseFilter] compiles a short tcpdump-like expression; the grammar
// is documented there.
//
// # Writing
//
// A [Writer] writes datagrams as a classic pcap file with Ethernet, raw IP,
// Linux SLL/SLL2 or BSD NULL framing and correct IPv4/IPv6 and UDP headers and
// checksums, optionally fragmenting datagrams larger than an MTU.
//
// # Concurrency and buffers
//
// A Reader or Writer is used by one goroutine at a time. The Payload of a
// Datagram returned by [Reader.Next] aliases the reader's buffers and is valid
// until the next call to Next; copy it to keep it. Reading and writing do not
// allocate per packet once buffers have grown to the largest frame.
package capture
