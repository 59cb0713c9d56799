// Package seal is telewire's optional authenticated encryption: it turns a
// plain packet (header and body, as [packet.Packet.AppendTo] encodes it) into
// a sealed datagram and back, with AES-256-GCM under a key derived from a
// pre-shared key (PSK).
//
// The package is pure logic over byte slices, like packet: no sockets, no
// goroutines, no clock. Sealing and opening allocate nothing; deriving a
// session's key (once per session and direction) does.
//
// # Where it sits in the data path
//
// A sender encodes a packet as usual and seals it just before it goes into
// the outbox; every transmission is sealed anew, so a retransmission or a
// parity packet draws a fresh counter and never reuses a nonce. A receiver
// opens a datagram before anything else looks at it: a datagram that fails
// [Opener.Open] is dropped and counted without creating a session, moving a
// window or touching a statistic. The counter Open returns then goes through
// the session's anti-replay window (package guard) before the body is parsed.
//
// # Keys
//
// The PSK is 32 random bytes read from a key file ([LoadKeyFile]; the
// format is documented there). From it, with HKDF-SHA256 (RFC 5869, the
// standard library's crypto/hkdf):
//
//	PRK        = HKDF-Extract(salt = "telewire/v1 psk", IKM = PSK)       once per key file
//	key id     = HKDF-Expand(PRK, "telewire/v1 key id", 4)               once per key file
//	packet key = HKDF-Expand(PRK, "telewire/v1 packet key" || dir || session || salt, 32)
//
// dir is one byte (1 sender to receiver, 2 receiver to sender), session the
// 8-byte session id and salt the 8-byte receiver salt (zero from sender to
// receiver), both big-endian. Each (session, direction, salt) therefore has
// its own AES-256 key, and the two directions of a session never share one.
// The per-session values enter through HKDF's info rather than its salt:
// the PSK is already uniformly random, so extraction gains nothing from a
// varying salt (RFC 5869 §3.1), while info is where the RFC binds context
// (§3.2); this way the extract step runs once per key file and a session's
// key costs one HMAC.
//
// The session id is the sender's salt. It is 64 random bits drawn from
// crypto/rand at every sender start and already travels in every header, so
// the receiver learns it without a handshake. Two sender starts share a key
// only if they draw the same session id: with n starts under one PSK the
// chance is below n²/2^65 (2^-25 after a million starts). Even then their
// nonces collide only if their counter ranges overlap, and each sealer
// starts its counter at a random point of [0, 2^63) ([RandomCounter]): two
// runs of a billion packets overlap with probability about 2^-32, so the
// combined chance after a million starts is below 2^-57.
//
// The receiver's direction needs a salt of its own. A receiver that
// restarts while the sender keeps its session, or several receivers of one
// session, would otherwise all seal feedback under the same key with
// counters starting afresh. Each receiver therefore draws a random 64-bit
// salt ([RandomSalt]) when it starts and carries it in every sealed packet
// it sends; the sender derives the key for that salt. Feedback is a few
// packets per report interval, so the 8 bytes cost nothing that matters;
// DATA, the packets that are many and small, carries no salt.
//
// # Nonces
//
// AES-GCM takes a 12-byte nonce, built as
//
//	offset size field
//	     0    1 direction: 1 sender to receiver, 2 receiver to sender
//	     1    1 packet kind (header byte 3)
//	     2    2 zero
//	     4    8 counter, big-endian
//
// The counter belongs to the [Sealer] (one per session and direction): it
// starts where the caller says and goes up by one for every packet sealed,
// whatever its kind, so DATA, its retransmissions, PARITY, HEARTBEAT, NACK
// and REPORT each take a different value. It is not the DATA sequence
// number, which a retransmission repeats. A counter never wraps: when it
// reaches 2^64-1 the sealer refuses to seal ([ErrExhausted]) and the session
// must end. Since each key belongs to one sealer and that sealer never
// repeats a counter, no nonce repeats under one key; the direction and kind
// bytes bind the nonce to the packet's role as well (they are also in the
// associated data).
//
// # Sealed datagram
//
// The 24-byte header keeps its layout (see package packet) with three
// differences: the reserved byte at offset 5, zero in a plain packet, holds
// the direction the packet was sealed for (1 or 2); the length covers the
// whole sealed datagram; and the CRC field holds the 4-byte key id instead of
// a checksum.
//
// Sender to receiver (direction 1), overhead 24 bytes:
//
//	offset size field
//	     0   24 header (reserved byte = 1, CRC field = key id)
//	    24    8 counter
//	    32    n body, encrypted (n = length - 48)
//	  32+n   16 GCM tag
//
// Receiver to sender (direction 2), overhead 32 bytes:
//
//	offset size field
//	     0   24 header (reserved byte = 2, CRC field = key id)
//	    24    8 receiver salt
//	    32    8 counter
//	    40    n body, encrypted (n = length - 56)
//	  40+n   16 GCM tag
//
// The associated data is everything before the body: header, salt and
// counter. So magic, version, kind, flags, direction, length, session,
// stream, key id, salt and counter are all authenticated, and the body is
// both authenticated and secret.
//
// The CRC-32C is dropped when sealed. The tag already detects any corruption
// (a random change survives with probability 2^-128 against the CRC's
// 2^-32), and computing both would cost a second pass over every packet. The
// field carries the key id instead: a receiver whose key differs from the
// sender's sees a key id mismatch ([ErrKeyMismatch]) and can say so in its
// log, rather than counting every datagram as a forgery. The key id is a PRF
// output of the PSK and reveals nothing about it.
package seal
