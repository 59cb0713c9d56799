// Package packet is telewire's wire format, version 1: the header every
// datagram carries, the five data and feedback kinds, the four kinds of
// sealed mode's key exchange and the three of unicast subscription, their encoding and decoding, the message map
// that packs messages into and splits them across DATA datagrams, and
// sequence arithmetic.
//
// The package is pure logic over byte slices: no sockets, no goroutines, no
// clock. Encoding appends into a buffer the caller owns ([Packet.AppendTo]);
// decoding parses into a reusable [Packet] whose Payload aliases the datagram
// ([Packet.Parse]). Neither allocates.
//
// # Header
//
// Every packet starts with a 24-byte header. Multi-byte integers are
// big-endian.
//
//	offset size field
//	     0    2 magic 0x54 0x57 ("TW"); anything else is foreign traffic
//	     2    1 version, 1
//	     3    1 kind: 1 DATA, 2 PARITY, 3 NACK, 4 REPORT, 5 HEARTBEAT,
//	              6 HELLO, 7 WELCOME, 8 CONFIRM, 9 RETRY,
//	              10 SUBSCRIBE, 11 TOKEN, 12 GOODBYE (13..255 reserved)
//	     4    1 flags (per kind; unknown bits are rejected)
//	     5    1 envelope: 0 plain; 1 or 2 sealed (see below)
//	     6    2 length of the whole packet in bytes, header included; must equal the datagram length
//	     8    8 session id: random per sender start
//	    16    4 stream id
//	    20    4 CRC-32C (Castagnoli) of bytes 0..19 followed by bytes 24..length-1
//
// A sealed packet (encryption on, see internal/seal) keeps this layout with
// three differences: the envelope byte says which way it was sealed (1
// sender to receiver, 2 receiver to sender), the CRC field carries a key
// tag (the AEAD tag or a MAC replaces the checksum), and the body is
// encrypted after an 8-byte counter or, for the key exchange, followed by
// a MAC. Parse refuses a sealed datagram with ErrSealed; the opener hands
// the decrypted or authenticated body to ParseBody.
//
// The checksum lets a receiver tell a corrupted datagram from a good one
// before any state moves. UDP's own checksum is optional over IPv4 and is not
// applied by in-process links, and Reed-Solomon decoding cannot tell a corrupt
// shard from a good one, so telewire carries its own. CRC-32C runs in hardware
// on amd64 and arm64.
//
// # DATA (kind 1), sender to receiver
//
//	offset size field
//	    24    8 sequence number
//	    32    8 sender timestamp, nanoseconds of the sender's monotonic clock
//	    40    n payload (n = length - 40, at most MaxPayload)
//
// Flag [FlagRetransmit] marks a retransmission: same sequence and timestamp as
// the original. Flag [FlagMessages] says the payload begins with a message
// map (see "Messages and datagrams"); without it the payload is one whole
// message, as senders from before the flag send it.
//
// # PARITY (kind 2), sender to receiver
//
//	offset size field
//	    24    8 first sequence number of the FEC block
//	    32    1 K, data shards in the block (1..255)
//	    33    1 M, parity shards in the block (1..255, K+M <= 256)
//	    34    1 index of this parity shard (0..M-1)
//	    35    1 stride: the block's data sequences are first, first+stride, ... (1..255)
//	    36    n parity shard (n = length - 36, at least 1)
//
// Flag [FlagMessages] on a PARITY says the block's DATA carry message maps,
// so that a receiver reads a payload FEC rebuilds (which has no header)
// right. A sender flags all its DATA and PARITY, or none.
//
// # NACK (kind 3), receiver to sender; with [FlagUnavailable], sender to receiver
//
//	offset size field
//	    24    2 count of ranges, 1..MaxRanges
//	    26    2 reserved, must be 0
//	    28 12*c ranges: first sequence (8 bytes), number of sequences (4 bytes, 1..MaxRangeLen)
//
//	 28+12*c  8 with [FlagProof] only: sequence of the newest DATA the receiver has received
//	 36+12*c  8 with [FlagProof] only: that DATA's send timestamp (the proof)
//
// Ranges are in increasing sequence order and do not overlap or touch; the
// whole NACK spans at most MaxNACKSpan sequences. Without FlagUnavailable it
// asks for the listed sequences; with FlagUnavailable the sender says it no
// longer has them, so the receiver stops asking. The proof of [FlagProof] is
// a value only a receiver of the stream's DATA knows: without encryption a
// sender answers a NACK beyond the amplification limit only when its proof
// is, to the nanosecond, the send time of that sequence, sent lately,
// whatever the NACK's source address says. A NACK flagged [FlagHistory] asks
// a multicast sender for messages sent before its receiver joined: the
// sender answers it to that receiver alone (not to the group), within the
// same rules, and refuses one naming more than MaxJoinHistory sequences.
//
// # REPORT (kind 4), receiver to sender
//
// A fixed block of ReportLen bytes after the header, laid out as the fields
// of [Report] in declaration order (int64/uint64 fields 8 bytes, uint32 fields
// 4 bytes); see [Report] for units. Flag [FlagEarly] marks a report sent
// before its interval closed (fast streams report every 256 packets): its
// interval figures are the previous interval's. Flag [FlagChallenge] adds 8
// bytes after the block (offset 184): a challenge the receiver chose, which
// the sender answers at once with a HEARTBEAT flagged [FlagAnswer].
//
// # HEARTBEAT (kind 5), sender to receiver
//
//	offset size field
//	    24    8 start: first sequence number this stream sent
//	    32    8 next: the sequence number the next DATA will carry
//	    40    8 sender timestamp, nanoseconds
//	    48    8 with [FlagAnswer] only: the challenge of the REPORT answered
//	    56    8 with [FlagAnswer] only: ns between that REPORT's arrival and this HEARTBEAT (>= 0)
//	    48    4 with [FlagGroup] only: receivers of the multicast group the sender hears, 1..2^20
//
// Every sequence in [start, next) has been sent, so a receiver that has seen
// less knows the tail of a burst was lost. A HEARTBEAT with [FlagAnswer]
// proves to the receiver that the sender's address receives what is sent to
// it (only a receiver of the REPORT knows its challenge), and gives it a round
// trip: the time since it sent the challenge, less the hold. A multicast
// sender's periodic HEARTBEATs carry [FlagGroup] and the number of receivers
// it holds a view of, to which each receiver scales its NACK back-off; an
// answer never does ([FlagAnswer] and [FlagGroup] together are
// [ErrBadFlags]), so the group size, when present, is at offset 48.
//
// # Messages and datagrams
//
// A sequence number names a DATA datagram: the unit of loss detection,
// NACK, retransmission and FEC, whatever it carries. Messages map onto
// datagrams in two ways, both inside the payload of a DATA flagged
// [FlagMessages], so that a lost datagram is repaired as one unit and FEC
// rebuilds the map with the messages:
//
// Whole messages (map byte [MapMessages]): one or more messages that fit
// in one datagram. A sender packs the messages queued on one stream while
// its writer is busy; an idle sender's message goes out at once, alone.
//
//	offset size field (from the start of the payload)
//	     0    1 map: 0
//	     1    2 count of messages, 1..65535
//	     3      count entries, each:
//	          v   varint (LEB128) of length<<1 | d
//	          v   with d = 1 only: signed (zig-zag) varint, the message's
//	              send time less the DATA timestamp, ns (never 0)
//	          n   the message (length bytes)
//
// The DATA timestamp is the first message's send time; a message sent at
// the same nanosecond as the DATA timestamp has no delta. Varints are in
// their shortest form and the entries fill the payload exactly, so each
// list has one encoding.
//
// A fragment (map byte [MapFragment]): one piece of a message too large
// for a datagram. A message of n bytes goes out in consecutive sequences,
// one piece each, every piece but the last as large as the datagram
// allows; every fragment carries the message's send time.
//
//	offset size field (from the start of the payload)
//	     0    1 map: 1
//	     1    4 length of the whole message, 1..MaxMessageLimit (16 MiB)
//	     5    4 offset of this piece in the message
//	     9    4 index: this fragment's sequence less the first fragment's
//	    13    p the piece, at least 1 byte; offset + p <= length
//
// The index is 0 exactly when the offset is 0, and at most the offset.
// The receiver reassembles between repair and delivery: a message is
// delivered whole, with the sequence of its first fragment, when its last
// missing piece arrives; past its deadline, or pushed out by the memory
// caps on reassembly, it is dropped and counted. Delivery and statistics
// (delay, jitter, delivered, late, superseded) are per message; loss and
// repair counts (Lost, RecoveredRTX, RecoveredFEC, the REPORT's loss
// figures that drive adaptive FEC and pacing) stay per datagram, the unit
// that is lost and repaired. In latest mode only the newest message of a
// packed datagram is delivered, and an incomplete message is dropped when
// a newer one completes, its missing fragments no longer asked for.
//
// Compatibility: the wire version stays 1. A receiver from before
// FlagMessages rejects such a DATA or PARITY with ErrBadFlags, a typed
// error, rather than misparse it; this receiver still takes unflagged DATA
// as one whole message.
//
// # Optional fields
//
// The three optional fields above are the only variable parts besides
// payloads and ranges; each is present exactly when its flag is set, so the
// format keeps one encoding per packet. A peer from before they existed
// rejects the flags (ErrBadFlags); the packets without them are unchanged.
//
// # Key exchange (kinds 6 to 9), sealed mode only
//
// These kinds exist only inside seal's envelope: package seal adds the
// MAC or AEAD tag and says what each field means cryptographically. A
// plain receiver or sender counts them as unexpected. Flags must be 0.
//
// HELLO (kind 6), sender to receiver, and WELCOME (kind 7), receiver to
// sender:
//
//	offset size field
//	    24   32 ephemeral X25519 public key (RFC 7748)
//	    56    8 timestamp: HELLO, the sender's clock in nanoseconds;
//	              WELCOME, the HELLO's timestamp echoed
//
// CONFIRM (kind 8), sender to receiver: an empty body.
//
// RETRY (kind 9), receiver to sender:
//
//	offset size field
//	    24    4 key tag of the sealed packet the receiver holds no key for
//	    28    4 reserved, must be 0
//	    32    8 counter of that packet
//
// # Subscription (kinds 10 to 12), unicast fan-out
//
// A sender that accepts subscribers (send --listen) streams to each
// address that proved it receives there. SUBSCRIBE (kind 10), receiver to
// sender; TOKEN (kind 11), sender to receiver; GOODBYE (kind 12), sender to
// receiver or receiver to sender. One layout for the three:
//
//	offset size field
//	    24    8 nonce: chosen at random by the subscriber, echoed by the sender
//	    32    4 reason, GOODBYE only (0 otherwise): 0 leaving, 1 too slow
//	              (dropped by the sender), 2 sender closing, 3 no room
//	    36    4 reserved, must be 0
//	    40    8 with [FlagToken] only: token, the sender's clock when issued
//	    48   16 with [FlagToken] only: token, its MAC
//	    64   16 with [FlagAuth] only (it requires [FlagToken]): MAC under the pre-shared key
//
// A SUBSCRIBE without the flag (40 bytes) asks to join; the sender answers
// with a TOKEN (64 bytes, flagged: 1.6 times what asked, so a forged
// source address cannot make the sender an amplifier; a TOKEN without the
// flag carries no token and is ignored) carrying a token only it can make, bound to the subscriber's address and nonce. The subscriber
// echoes it in a SUBSCRIBE flagged [FlagToken], which proves it receives
// at its address; only then does the sender add it and send it the stream.
// A subscriber leaves with a GOODBYE flagged [FlagToken] (the token it was
// admitted with, so that nobody off the path can unsubscribe it); a sender
// that drops a subscriber tells it with a GOODBYE (no flag) naming the
// subscriber's nonce, in the sender's session. SUBSCRIBE's session and
// stream fields are 0: the subscriber knows no session yet; the sender
// fills its session into TOKEN and GOODBYE.
//
// With a key (sealed mode), a subscriber's echo and its GOODBYE are also
// flagged [FlagAuth] and end with a MAC under the pre-shared key
// (HMAC-SHA256 under the handshake's MAC key, label "telewire/v2
// subscription", over the datagram's first 20 bytes and its body before
// the MAC, truncated to 16 bytes; see package seal): a sender with a key
// admits no one and drops no one without it. The first SUBSCRIBE and the
// TOKEN stay as they are (the token exchange is stateless and cannot
// amplify, so it needs no key), and the sender's GOODBYE to a subscriber
// whose handshake is complete travels sealed under that subscriber's
// traffic keys like any packet of the session.
//
// # Sequence numbers
//
// Sequence numbers travel as 64 bits. The four bytes this costs per packet
// (against 32 bits with extension at the receiver) buy a format with no
// extension logic and no ambiguity after an outage of any length; a stream at
// ten million packets per second would take 58 000 years to wrap. Comparisons
// still use serial-number arithmetic ([SeqLess], [SeqDiff]) so that a stream
// may start anywhere, including just below 2^64.
package packet
