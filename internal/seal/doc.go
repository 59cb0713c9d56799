// Package seal is telewire's optional authenticated encryption: a
// handshake that gives each session fresh traffic keys from a pre-shared
// key (PSK) and two ephemeral X25519 keys, and the AES-256-GCM sealing of
// every packet under those keys.
//
// The package is pure logic over byte slices, like packet: no sockets, no
// goroutines, no clock. Sealing and opening allocate nothing; checking a
// handshake message allocates nothing; a key agreement (X25519 key
// generation and Diffie-Hellman, about 0.1 ms) allocates a little.
//
// # Where it sits in the data path
//
// A sender with a key sends nothing before a handshake with its receiver
// has given it traffic keys: its first packets wait (boundedly) for one
// round trip. Then it encodes packets as usual and seals each just before
// it goes into the outbox; every transmission is sealed anew, so a
// retransmission or a parity packet draws a fresh counter and never reuses
// a nonce. A receiver opens a datagram before anything else looks at it: a
// datagram that fails [Opener.Open] is dropped and counted without
// creating a session, moving a window or touching a statistic. The counter
// Open returns then goes through the key's anti-replay window (package
// guard) before the body is parsed.
//
// # Keys from the pre-shared key
//
// The PSK is 32 random bytes read from a key file ([LoadKeyFile]; the
// format is documented there). From it, with HKDF-SHA256 (RFC 5869, the
// standard library's crypto/hkdf), once per key file:
//
//	PRK     = HKDF-Extract(salt = "telewire/v1 psk", IKM = PSK)
//	key id  = HKDF-Expand(PRK, "telewire/v1 key id", 4)
//	mac key = HKDF-Expand(PRK, "telewire/v2 handshake mac", 32)
//
// The key id travels in every handshake message so that a peer with
// another key file is told apart from a forger ([ErrKeyMismatch]); it is a
// PRF output and says nothing about the key. The MAC key authenticates the
// handshake. No packet is ever sealed under a key derived from the PSK
// alone.
//
// # The handshake
//
// Two messages, sender (initiator, i) to receiver (responder, r) and back,
// then a confirmation; packet kinds and byte layouts are in package packet
// (HELLO, WELCOME, CONFIRM, RETRY):
//
//	HELLO   = hdr(HELLO, session) || e_i || ts          || mac1
//	          mac1 = HMAC-SHA256(mac key, "telewire/v2 hello" || hdr || e_i || ts)[:16]
//	WELCOME = hdr(WELCOME, session) || e_r || ts (echo) || mac2
//	          mac2 = HMAC-SHA256(mac key, "telewire/v2 welcome" || HELLO || hdr || e_r || ts)[:16]
//	CONFIRM = an empty packet sealed under the new traffic keys
//
// e_i and e_r are X25519 public keys (RFC 7748, crypto/ecdh), each from a
// private key drawn from crypto/rand for this handshake. ts is the
// sender's clock in nanoseconds, strictly increasing from one handshake of
// a session to the next. hdr is the 24-byte header with the envelope byte
// set to the direction, the length field, and the CRC field holding the
// key id; the MAC covers all of it. Both ends then compute
//
//	DH     = X25519(own ephemeral private key, peer's ephemeral public key)
//	th     = SHA-256("telewire/v2 transcript" || HELLO || WELCOME)
//	secret = HKDF-Extract(salt = th, IKM = DH || PRK)
//	k1     = HKDF-Expand(secret, "telewire/v2 to-receiver", 32)   sender → receiver
//	k2     = HKDF-Expand(secret, "telewire/v2 to-sender", 32)     receiver → sender
//	tag    = HKDF-Expand(secret, "telewire/v2 key tag", 4)
//
// and discard their ephemeral private keys: the receiver at once, inside
// [Handshaker.Respond]; the sender as soon as the WELCOME is accepted. The
// pattern is Noise's NNpsk0 (an unauthenticated ephemeral-ephemeral
// exchange with the PSK mixed in before the first message) with the PSK
// authenticating both messages by MAC rather than by an AEAD over an empty
// payload, and the PSK entering the key schedule as well: compare the
// Noise Protocol Framework's pre-shared key patterns and WireGuard's
// optional PSK mixed into its handshake (Donenfeld, NDSS 2017). There are
// no static keys, so there is no identity beyond "holds the PSK".
//
// What each property rests on:
//
//   - Authentication. Only a holder of the PSK can compute mac1, mac2 or a
//     RETRY's MAC (HMAC-SHA256 is a PRF; 128-bit truncation leaves a
//     forgery chance of 2^-128 per try). mac2 covers the whole HELLO, so a
//     WELCOME answers one HELLO and no other: a sender accepts no WELCOME
//     it did not ask for, and an on-path attacker cannot splice a WELCOME
//     onto another exchange. The traffic keys also depend on the PSK (PRK
//     in the IKM), so even a flaw in the MAC's use would not give keys to
//     someone without the PSK.
//   - Forward secrecy. The traffic keys are a function of DH, which needs
//     one of the two ephemeral private keys (the computational
//     Diffie-Hellman assumption on Curve25519). Those exist only in memory,
//     only for the handshake, and are never written anywhere. Whoever later
//     obtains the key file holds PRK and the recorded e_i, e_r and
//     transcript, but not DH: the recorded traffic stays sealed. Traffic
//     keys live in memory while in use; rekeying (below) bounds what a
//     compromise of a running process reveals to the current keys.
//   - Receiver freshness. A receiver draws a new e_r for every HELLO it
//     answers (a byte-identical repeat of a HELLO it is still waiting on is
//     answered with the same WELCOME, at no new cost). A recording of a
//     session replayed into any receiver, a restarted one included, gets a
//     WELCOME with a new e_r and so new keys, which the recorded packets
//     were not sealed under: they name a key tag it does not hold and are
//     dropped as such, and a packet whose tag were rewritten would fail the
//     GCM tag. No recorded packet can be delivered anywhere but where it
//     was first delivered.
//   - Replay into the live receiver. Within a session each traffic key has
//     its own anti-replay window over its counters (RFC 6479, package
//     guard), and the receiver refuses a HELLO whose ts is not newer than
//     that of the handshake the session runs on, so a recorded HELLO cannot
//     reopen a live session.
//   - Key confirmation. The receiver keeps no session state for a
//     handshake until a packet sealed under its keys arrives (normally the
//     CONFIRM): that proves the sender holds e_i's private key, which a
//     replayer of the HELLO does not. Until then the answer sits in a
//     fixed-size table (the receiver's pending handshakes), which a
//     replayed HELLO can churn but not grow.
//
// What it does not give: identity hiding or protection against a PSK
// holder (any holder can act as either end, as with any shared key); and a
// sender's first packets wait one round trip, because data sent with the
// HELLO (0-RTT) could only be sealed under a key derived from the PSK
// alone, and would be replayable into any receiver.
//
// # Subscription MAC
//
// A subscriber with a key proves it holds the key when it echoes the
// sender's token and when it leaves (packet.FlagAuth; see packet/doc.go
// and docs/security.md): its SUBSCRIBE echo and its GOODBYE end with
//
//	auth = HMAC-SHA256(mac key, "telewire/v2 subscription" || datagram[0:20] || body before auth)[:16]
//
// ([Handshaker.AuthSubscription], [Handshaker.CheckSubscription]): the
// whole datagram but the checksum field, which is computed after. Like a
// RETRY's MAC it rests on the pre-shared key alone; it is bound to the
// subscriber's address and to a fresh token by what it covers. A sender
// with several destinations makes the handshake above with each of them,
// each with its own ephemeral keys and traffic keys.
//
// # Retries, restarts and rekeying
//
// A sender resends the same HELLO until a WELCOME arrives (the receiver
// answers a repeat with its stored WELCOME), after 100 ms or three round
// trips, each wait half as long again, at most 2 s. A receiver that gets a
// sealed packet under keys it does not hold (it restarted, or the packet
// is a replay) answers with a RETRY naming the packet's key tag and
// counter, MACed with the PSK; the sender handshakes again if the RETRY
// names its current key tag and a counter it has used, and ignores it
// otherwise; once the new handshake completes it resends, under the new
// keys, the DATA it had sealed from that counter on. So a receiver restart
// delays the packets in flight and those sent before the first RETRY
// returns (one round trip's worth) rather than losing them. The RETRY's
// MAC keeps anyone without the PSK from forcing a handshake; a recorded
// RETRY names keys no longer in use and is ignored. A PSK holder can force
// handshakes, one per round trip, which is no more than it could do by
// being a receiver. RETRYs are rate-limited (64/s) and sent only for
// packets at least as long, so they never amplify.
//
// The sender rekeys (a new handshake, new ephemerals, new keys) after a
// configured time (default 2 minutes) or number of packets (default 2^32)
// under one key, whichever comes first. Packets keep flowing under the old
// keys until the WELCOME arrives; both ends keep the previous keys for 5 s
// after the switch, so nothing in flight across a rekey is lost.
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
// The counter belongs to the [Sealer] (one per traffic key and direction):
// it starts at 0 and goes up by one for every packet sealed, whatever its
// kind, so DATA, its retransmissions, PARITY, HEARTBEAT, CONFIRM, NACK and
// REPORT each take a different value. A counter never wraps: at 2^64-1 the
// sealer refuses ([ErrExhausted]); rekeying comes long before. Each
// handshake's keys are new (two distinct transcripts give independent
// HKDF outputs; two handshakes of one session even have distinct
// timestamps), the two directions have different keys, and a sealer never
// repeats a counter, so no nonce repeats under a key.
//
// # Sealed datagram
//
// The 24-byte header keeps its layout (see package packet) with three
// differences: the reserved byte at offset 5, zero in a plain packet, holds
// the direction the packet was sealed for (1 or 2); the length covers the
// whole sealed datagram; and the CRC field holds the 4-byte key tag of the
// traffic keys instead of a checksum. Both directions, overhead 24 bytes:
//
//	offset size field
//	     0   24 header (reserved byte = direction, CRC field = key tag)
//	    24    8 counter
//	    32    n body, encrypted (n = length - 48)
//	  32+n   16 GCM tag
//
// The associated data is everything before the body: header and counter.
// So magic, version, kind, flags, direction, length, session, stream, key
// tag and counter are all authenticated, and the body is both
// authenticated and secret. The CRC-32C is dropped when sealed: the tag
// detects any corruption (a random change survives with probability
// 2^-128 against the CRC's 2^-32), and computing both would cost a second
// pass over every packet. The key tag lets a receiver find the keys for a
// packet (a session has at most two, around a rekey) and tell a packet
// under keys it does not hold from a forgery.
//
// HELLO, WELCOME and RETRY are not encrypted (they carry only public
// values) but end with their 16-byte MAC in place of a GCM tag, with the
// envelope byte set to their direction and the PSK's key id in the CRC
// field.
//
// # Denial of service
//
// A HELLO is checked (one HMAC, no allocation) before any key agreement;
// forged ones cost that and are counted. Authentic HELLOs can only be
// replays of recorded ones; the receiver answers at most 64 per second
// with a key agreement (a token bucket; a repeat of a pending HELLO costs
// none), remembers at most 256 answers in a table allocated once, and
// allocates no session before key confirmation. A WELCOME is no longer
// than its HELLO, a RETRY no longer than the packet that drew it, and the
// receiver rations RETRYs and repeated WELCOMEs too, so a replayed HELLO
// with a forged source reflects little and amplifies nothing. What is
// not done: WireGuard's cookie reply under load, which would let the
// receiver tell a flood of replayed HELLOs from a live sender's before the
// key agreement; a sustained flood of distinct recorded HELLOs can
// therefore delay new handshakes (senders keep retrying) while costing the
// receiver a bounded 64 agreements per second.
package seal
