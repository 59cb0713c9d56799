package packet

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strconv"
)

// Sizes and limits of the wire format, in bytes unless said otherwise.
const (
	// Magic is the first two bytes of every telewire packet ("TW").
	Magic uint16 = 0x5457
	// Version is the wire format version this package speaks.
	Version = 1

	// HeaderLen is the size of the common header.
	HeaderLen = 24
	// DataHeaderLen is the size of a DATA body before its payload.
	DataHeaderLen = 16
	// ParityHeaderLen is the size of a PARITY body before its shard.
	ParityHeaderLen = 12
	// NACKHeaderLen is the size of a NACK body before its ranges.
	NACKHeaderLen = 4
	// RangeLen is the encoded size of one NACK range.
	RangeLen = 12
	// ReportLen is the size of a REPORT body.
	ReportLen = 160
	// HeartbeatLen is the size of a HEARTBEAT body.
	HeartbeatLen = 24
	// ChallengeLen is what FlagChallenge adds to a REPORT body.
	ChallengeLen = 8
	// AnswerLen is what FlagAnswer adds to a HEARTBEAT body.
	AnswerLen = 16
	// GroupLen is what FlagGroup adds to a HEARTBEAT body.
	GroupLen = 4
	// MaxGroupReceivers bounds Heartbeat.Receivers.
	MaxGroupReceivers = 1 << 20
	// ProofLen is what FlagProof adds to a NACK body.
	ProofLen = 16
	// EphemeralLen is the size of an X25519 public key in a handshake.
	EphemeralLen = 32
	// HelloLen is the size of a HELLO body and of a WELCOME body.
	HelloLen = EphemeralLen + 8
	// RetryLen is the size of a RETRY body.
	RetryLen = 16
	// SubscriptionLen is the size of a SUBSCRIBE or GOODBYE body without
	// FlagToken: the nonce, the reason and reserved bytes.
	SubscriptionLen = 16
	// TokenLen is what FlagToken adds to a SUBSCRIBE or GOODBYE body, and
	// what a TOKEN body carries after SubscriptionLen: the token's issue
	// time and its MAC.
	TokenLen = 8 + TokenMACLen
	// TokenMACLen is the size of a token's MAC.
	TokenMACLen = 16
	// AuthLen is what FlagAuth adds to a SUBSCRIBE or GOODBYE body, after
	// the token: a MAC under the pre-shared key (see package seal).
	AuthLen = 16

	// MaxPacketLen is the largest datagram telewire sends or accepts: the
	// largest UDP payload over IPv4.
	MaxPacketLen = 65507
	// MaxPayload is the largest DATA payload.
	MaxPayload = MaxPacketLen - HeaderLen - DataHeaderLen
	// MaxShard is the largest PARITY shard.
	MaxShard = MaxPacketLen - HeaderLen - ParityHeaderLen
	// MaxRanges is the most ranges one NACK carries.
	MaxRanges = 64
	// MaxRangeLen is the most sequences one NACK range names.
	MaxRangeLen = 1 << 16
	// MaxNACKSpan is the most sequences between the first and the last
	// sequence named by one NACK.
	MaxNACKSpan = 1 << 20
)

// Header field offsets.
const (
	offMagic    = 0
	offVersion  = 2
	offKind     = 3
	offFlags    = 4
	offEnvelope = 5 // 0 plain, 1 or 2 sealed
	offLength   = 6
	offSession  = 8
	offStream   = 16
	offCRC      = 20
)

// Kind says what a packet carries.
type Kind uint8

// The packet kinds of wire format v1. Values 13 to 255 are reserved.
// Kinds 6 to 9 are the key exchange of sealed mode (see package seal); a
// plain receiver or sender never sends them and treats them as unexpected.
// Kinds 10 to 12 are unicast subscription (a sender that accepts
// subscribers); other peers count them as unexpected.
const (
	KindData      Kind = 1  // application payload, sender to receiver
	KindParity    Kind = 2  // FEC parity shard, sender to receiver
	KindNACK      Kind = 3  // missing ranges (receiver to sender) or unavailable ranges (sender to receiver)
	KindReport    Kind = 4  // receiver statistics, receiver to sender
	KindHeartbeat Kind = 5  // highest sequence sent, sender to receiver
	KindHello     Kind = 6  // handshake initiation: the sender's ephemeral key, sender to receiver
	KindWelcome   Kind = 7  // handshake response: the receiver's ephemeral key, receiver to sender
	KindConfirm   Kind = 8  // first packet under new traffic keys, empty, sender to receiver
	KindRetry     Kind = 9  // "I hold no key for this packet: handshake again", receiver to sender
	KindSubscribe Kind = 10 // "send me the stream" (with FlagToken: the token echoed), receiver to sender
	KindToken     Kind = 11 // the address-validation token answering a SUBSCRIBE, sender to receiver
	KindGoodbye   Kind = 12 // the subscription ends, either way, with a reason
	kindMax            = KindGoodbye
)

var kindNames = [...]string{"INVALID", "DATA", "PARITY", "NACK", "REPORT", "HEARTBEAT", "HELLO", "WELCOME", "CONFIRM", "RETRY",
	"SUBSCRIBE", "TOKEN", "GOODBYE"}

// IsSubscription reports whether k is one of the subscription kinds
// (SUBSCRIBE, TOKEN, GOODBYE).
func (k Kind) IsSubscription() bool { return k >= KindSubscribe && k <= KindGoodbye }

// IsHandshake reports whether k is one of the key-exchange kinds (HELLO,
// WELCOME, CONFIRM, RETRY).
func (k Kind) IsHandshake() bool { return k >= KindHello && k <= KindRetry }

// String returns the kind's name, e.g. "DATA".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "KIND(" + strconv.Itoa(int(k)) + ")"
}

// Flags is the per-kind flag byte.
type Flags uint8

// Flags defined by wire format v1.
const (
	// FlagRetransmit marks a DATA packet sent again in answer to a NACK.
	FlagRetransmit Flags = 1 << 0
	// FlagProtected marks a DATA packet that FEC parity will cover: the
	// receiver keeps it for its FEC decoder from the stream's first
	// message, rather than from the first PARITY, which comes a block
	// too late to rebuild that block's losses.
	FlagProtected Flags = 1 << 1
	// FlagMessages marks a DATA packet whose payload begins with a message
	// map (MapMessages: one or more whole messages; MapFragment: a piece of
	// one), and a PARITY packet whose block's DATA all do. Every DATA and
	// PARITY of this version carries it; a receiver from before it
	// rejects them (ErrBadFlags), and a DATA without it is one whole
	// message, as before. See "Messages and datagrams".
	FlagMessages Flags = 1 << 2
	// FlagUnavailable marks a NACK sent by the sender: the listed sequences
	// are no longer buffered and will never be retransmitted.
	FlagUnavailable Flags = 1 << 0
	// FlagEarly marks a REPORT sent between two ReportIntervals because
	// data arrives fast (for the sender's congestion controller): its
	// counters and echo are current, while IntervalLossPPM and
	// BurstMeanMilli repeat those of the last closed interval.
	FlagEarly Flags = 1 << 0
	// FlagChallenge marks a REPORT carrying a challenge (Packet.Challenge,
	// ChallengeLen more bytes): a value the receiver chose and only a
	// receiver of this REPORT knows. The sender answers it at once with a
	// HEARTBEAT flagged FlagAnswer.
	FlagChallenge Flags = 1 << 1
	// FlagAnswer marks a HEARTBEAT answering a REPORT's challenge
	// (Heartbeat.Answer and AnswerHoldNanos, AnswerLen more bytes): it
	// proves to the receiver that the sender's address receives its
	// feedback, and times the round trip.
	FlagAnswer Flags = 1 << 0
	// FlagGroup marks a HEARTBEAT of a multicast sender carrying the number
	// of receivers it hears (Heartbeat.Receivers, GroupLen more bytes), so
	// that each receiver scales its NACK back-off to the group it is in.
	// A HEARTBEAT answering a challenge (FlagAnswer) carries none: the two
	// flags together are ErrBadFlags.
	FlagGroup Flags = 1 << 1
	// FlagProof marks a NACK carrying the sequence and send timestamp of
	// the newest DATA the receiver has received (Packet.ProofSeq and
	// ProofTimestamp, ProofLen more bytes); the timestamp, to the
	// nanosecond, is known only to a receiver of that DATA: without
	// encryption, the sender answers a NACK beyond the amplification limit
	// only if it proves that.
	FlagProof Flags = 1 << 1
	// FlagToken marks a SUBSCRIBE or GOODBYE carrying a token
	// (Subscription.TokenTime and TokenMAC, TokenLen more bytes): in a
	// SUBSCRIBE the token a TOKEN gave this address, echoed to prove the
	// subscriber receives there; in a receiver's GOODBYE the token it was
	// admitted with, so that nobody else can unsubscribe it. A sender's
	// TOKEN always carries it (one without is valid on the wire but says
	// nothing, and is ignored).
	FlagToken Flags = 1 << 0
	// FlagHistory marks a NACK of a receiver that joined a running
	// multicast stream asking for messages sent before it joined (its
	// Config.JoinHistory): the sender answers it to that receiver alone,
	// not to the group, and refuses one naming more than
	// MaxJoinHistory sequences.
	FlagHistory Flags = 1 << 2
	// FlagAuth marks a SUBSCRIBE or GOODBYE carrying, after its token
	// (FlagAuth requires FlagToken), a MAC under the pre-shared key
	// (Subscription.Auth, AuthLen more bytes): a subscriber with a key
	// proves it holds the key when it echoes the token and when it
	// leaves, so that nobody without the key is admitted or can end its
	// subscription. The MAC covers the whole datagram but the checksum
	// field and itself (see package seal).
	FlagAuth Flags = 1 << 1
)

// MaxJoinHistory is the most sequences one FlagHistory NACK may name.
const MaxJoinHistory = 1024

// allowedFlags holds the flag bits each kind may carry.
var allowedFlags = [kindMax + 1]Flags{
	KindData:      FlagRetransmit | FlagProtected | FlagMessages,
	KindParity:    FlagMessages,
	KindNACK:      FlagUnavailable | FlagProof | FlagHistory,
	KindReport:    FlagEarly | FlagChallenge,
	KindHeartbeat: FlagAnswer | FlagGroup,
	KindSubscribe: FlagToken | FlagAuth,
	KindToken:     FlagToken,
	KindGoodbye:   FlagToken | FlagAuth,
}

// Errors returned by Parse and AppendTo. They are sentinels so that callers
// can test them with errors.Is and so that rejecting a malformed datagram
// allocates nothing, even under a flood.
var (
	ErrShort       = errors.New("packet: datagram shorter than its header or body")
	ErrTooLarge    = errors.New("packet: datagram or payload larger than the maximum")
	ErrBadMagic    = errors.New("packet: bad magic, not a telewire packet")
	ErrBadVersion  = errors.New("packet: unsupported version")
	ErrUnknownKind = errors.New("packet: unknown packet kind")
	ErrBadFlags    = errors.New("packet: flag bits not defined for this kind")
	ErrLength      = errors.New("packet: length field disagrees with the datagram")
	ErrChecksum    = errors.New("packet: checksum mismatch, datagram corrupted")
	ErrBadField    = errors.New("packet: field value out of range")
	ErrBadRanges   = errors.New("packet: NACK ranges empty, unordered, overlapping or too wide")
	ErrSealed      = errors.New("packet: datagram is sealed (encrypted); open it before parsing")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the part every packet carries besides magic, version, length and
// checksum, which Parse checks and AppendTo fills in.
type Header struct {
	Kind    Kind
	Flags   Flags
	Session uint64 // random per sender start
	Stream  uint32
}

// Range is a run of consecutive sequence numbers: First, First+1, ...,
// First+Len-1 (modulo 2^64).
type Range struct {
	First uint64
	Len   uint32
}

// Last returns the last sequence number of the range.
func (r Range) Last() uint64 { return r.First + uint64(r.Len) - 1 }

// Parity describes a PARITY packet's place in its FEC block.
type Parity struct {
	First  uint64 // first data sequence of the block
	K      uint8  // data shards in the block
	M      uint8  // parity shards in the block
	Index  uint8  // this parity shard, 0..M-1
	Stride uint8  // distance between the block's data sequences
}

// Heartbeat is the body of a HEARTBEAT packet.
type Heartbeat struct {
	Start     uint64 // first sequence the stream sent
	Next      uint64 // sequence the next DATA will carry
	Timestamp int64  // sender clock, nanoseconds
	// With FlagAnswer only (zero otherwise): the challenge of the REPORT
	// answered, and the time between that REPORT's arrival and this
	// HEARTBEAT, ns.
	Answer          uint64
	AnswerHoldNanos int64
	// With FlagGroup only (zero otherwise): how many receivers of the
	// multicast group the sender holds a view of, 1..MaxGroupReceivers.
	Receivers uint32
}

// Handshake is the body of the key-exchange kinds. Which fields matter
// depends on the kind:
//
//	HELLO    Ephemeral (the sender's), Timestamp (the sender's clock)
//	WELCOME  Ephemeral (the receiver's), Timestamp (the HELLO's, echoed)
//	RETRY    KeyTag and Counter of the sealed packet the receiver could not open
//	CONFIRM  nothing: the body is empty
type Handshake struct {
	Ephemeral [EphemeralLen]byte // X25519 public key
	Timestamp int64              // nanoseconds of the sender's clock
	KeyTag    uint32
	Counter   uint64
}

// Reasons a GOODBYE gives (Subscription.Reason).
const (
	// ReasonLeaving: the subscriber leaves (receiver to sender).
	ReasonLeaving uint8 = 0
	// ReasonSlow: the sender dropped the subscriber, which kept losing
	// data it could no longer repair (Config.SlowReceiver "disconnect").
	ReasonSlow uint8 = 1
	// ReasonClosing: the sender is closing.
	ReasonClosing uint8 = 2
	// ReasonFull: the sender has no room for another subscriber.
	ReasonFull uint8 = 3
	// reasonMax is the highest reason defined.
	reasonMax = ReasonFull
)

// Subscription is the body of the subscription kinds:
//
//	SUBSCRIBE Nonce; with FlagToken the token of the TOKEN answering it
//	TOKEN     Nonce (the SUBSCRIBE's, echoed), TokenTime, TokenMAC
//	GOODBYE   Nonce (the subscriber's), Reason; a receiver's with
//	          FlagToken the token it was admitted with
//
// With FlagAuth (SUBSCRIBE and GOODBYE, only with FlagToken) Auth follows
// the token: a MAC under the pre-shared key, computed and checked by
// package seal.
//
// The token is opaque to the receiver: the sender's clock when it was
// issued and a MAC the sender computes over it, the subscriber's address
// and nonce with a secret of its own (see package sender).
type Subscription struct {
	Nonce     uint64 // chosen at random by the subscriber
	Reason    uint8  // GOODBYE only: ReasonLeaving, ReasonSlow, ReasonClosing, ReasonFull
	TokenTime int64  // sender clock, nanoseconds
	TokenMAC  [TokenMACLen]byte
	Auth      [AuthLen]byte // with FlagAuth only
}

// Report is the body of a REPORT packet: the receiver's view of one stream,
// sent every report interval. Counters are cumulative since the receiver
// first saw the session; figures named Nanos are durations in nanoseconds.
type Report struct {
	EchoTimestamp   int64  // sender timestamp of the newest DATA received (0 if none)
	EchoHoldNanos   int64  // time between receiving that DATA and sending this report
	HighestSeq      uint64 // highest sequence received
	Received        uint64 // distinct DATA sequences received, first copy or retransmission
	Lost            uint64 // sequences found missing (before repair)
	Unrecovered     uint64 // sequences given up on (lost after repair)
	RecoveredRTX    uint64 // missing sequences that arrived by retransmission
	RecoveredFEC    uint64 // missing sequences rebuilt from parity
	Duplicates      uint64 // copies of sequences already received
	Reordered       uint64 // sequences that arrived after a later one
	Late            uint64 // sequences that arrived after their delivery deadline
	NACKsSent       uint64 // NACK packets sent for this stream
	Retransmits     uint64 // DATA packets received flagged as retransmissions, duplicates included
	JitterNanos     uint64 // RFC 3550 interarrival jitter
	DelayP50Nanos   uint64 // one-way delay percentiles above the minimum seen
	DelayP90Nanos   uint64
	DelayP99Nanos   uint64
	DelayMaxNanos   uint64
	Malformed       uint64 // datagrams from this sender's address rejected by the decoder
	IntervalLossPPM uint32 // loss before repair in the last interval, parts per million (<= 1e6)
	BurstMeanMilli  uint32 // mean length of loss bursts in the last interval, in thousandths of a packet
}

// Packet is one decoded or to-be-encoded telewire packet. Which fields
// matter depends on Kind:
//
//	DATA      Seq, Timestamp, Payload
//	PARITY    Parity, Payload (the shard)
//	NACK      Ranges
//	REPORT    Report
//	HEARTBEAT Heartbeat
//	HELLO, WELCOME, CONFIRM, RETRY Handshake
//	SUBSCRIBE, TOKEN, GOODBYE Subscription
//
// The zero value is empty and ready for Parse. A Packet is meant to be reused
// across datagrams: Parse overwrites only the fields of the parsed kind, and
// Payload aliases the parsed datagram, so the datagram must outlive the use
// of Payload. A Packet is not safe for concurrent use.
type Packet struct {
	Header
	Seq       uint64
	Timestamp int64
	Payload   []byte
	Parity    Parity
	Ranges    []Range // after Parse, aliases storage inside the Packet
	Report    Report
	Heartbeat Heartbeat
	Handshake Handshake
	// Subscription is the body of SUBSCRIBE, TOKEN and GOODBYE.
	Subscription Subscription

	// NACK with FlagProof only (zero otherwise): see FlagProof.
	ProofSeq       uint64
	ProofTimestamp int64
	// REPORT with FlagChallenge only (zero otherwise), after the fixed
	// block: see FlagChallenge. (Report is the fixed block alone.)
	Challenge uint64

	rangeBuf [MaxRanges]Range
}

// EncodedLen returns the number of bytes AppendTo will append for p.
func (p *Packet) EncodedLen() int {
	switch p.Kind {
	case KindData:
		return HeaderLen + DataHeaderLen + len(p.Payload)
	case KindParity:
		return HeaderLen + ParityHeaderLen + len(p.Payload)
	case KindNACK:
		return HeaderLen + NACKHeaderLen + RangeLen*len(p.Ranges) + p.optional(FlagProof, ProofLen)
	case KindReport:
		return HeaderLen + ReportLen + p.optional(FlagChallenge, ChallengeLen)
	case KindHeartbeat:
		return HeaderLen + HeartbeatLen + p.optional(FlagAnswer, AnswerLen) + p.optional(FlagGroup, GroupLen)
	case KindHello, KindWelcome:
		return HeaderLen + HelloLen
	case KindConfirm:
		return HeaderLen
	case KindRetry:
		return HeaderLen + RetryLen
	case KindSubscribe, KindToken, KindGoodbye:
		return HeaderLen + SubscriptionLen + p.optional(FlagToken, TokenLen) + p.optional(FlagAuth, AuthLen)
	}
	return 0
}

// optional returns n if p carries flag f, else 0.
func (p *Packet) optional(f Flags, n int) int {
	if p.Flags&f != 0 {
		return n
	}
	return 0
}

// AppendTo appends the encoding of p to b and returns the extended slice.
// It validates p as Parse would validate the result and returns b unchanged
// with an error if p cannot be encoded. It allocates only when b lacks
// capacity.
func (p *Packet) AppendTo(b []byte) ([]byte, error) {
	if err := p.validate(); err != nil {
		return b, err
	}
	n := p.EncodedLen()
	if n > MaxPacketLen {
		return b, ErrTooLarge
	}
	start := len(b)
	b = appendHeader(b, &p.Header, n)
	switch p.Kind {
	case KindData:
		b = binary.BigEndian.AppendUint64(b, p.Seq)
		b = binary.BigEndian.AppendUint64(b, uint64(p.Timestamp))
		b = append(b, p.Payload...)
	case KindParity:
		b = binary.BigEndian.AppendUint64(b, p.Parity.First)
		b = append(b, p.Parity.K, p.Parity.M, p.Parity.Index, p.Parity.Stride)
		b = append(b, p.Payload...)
	case KindNACK:
		b = binary.BigEndian.AppendUint16(b, uint16(len(p.Ranges)))
		b = append(b, 0, 0)
		for _, r := range p.Ranges {
			b = binary.BigEndian.AppendUint64(b, r.First)
			b = binary.BigEndian.AppendUint32(b, r.Len)
		}
		if p.Flags&FlagProof != 0 {
			b = binary.BigEndian.AppendUint64(b, p.ProofSeq)
			b = binary.BigEndian.AppendUint64(b, uint64(p.ProofTimestamp))
		}
	case KindReport:
		b = p.Report.appendTo(b)
		if p.Flags&FlagChallenge != 0 {
			b = binary.BigEndian.AppendUint64(b, p.Challenge)
		}
	case KindHeartbeat:
		b = binary.BigEndian.AppendUint64(b, p.Heartbeat.Start)
		b = binary.BigEndian.AppendUint64(b, p.Heartbeat.Next)
		b = binary.BigEndian.AppendUint64(b, uint64(p.Heartbeat.Timestamp))
		if p.Flags&FlagAnswer != 0 {
			b = binary.BigEndian.AppendUint64(b, p.Heartbeat.Answer)
			b = binary.BigEndian.AppendUint64(b, uint64(p.Heartbeat.AnswerHoldNanos))
		}
		if p.Flags&FlagGroup != 0 {
			b = binary.BigEndian.AppendUint32(b, p.Heartbeat.Receivers)
		}
	case KindHello, KindWelcome:
		b = append(b, p.Handshake.Ephemeral[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(p.Handshake.Timestamp))
	case KindRetry:
		b = binary.BigEndian.AppendUint32(b, p.Handshake.KeyTag)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint64(b, p.Handshake.Counter)
	case KindSubscribe, KindToken, KindGoodbye:
		sub := &p.Subscription
		b = binary.BigEndian.AppendUint64(b, sub.Nonce)
		b = binary.BigEndian.AppendUint32(b, uint32(sub.Reason))
		b = binary.BigEndian.AppendUint32(b, 0)
		if p.Flags&FlagToken != 0 {
			b = binary.BigEndian.AppendUint64(b, uint64(sub.TokenTime))
			b = append(b, sub.TokenMAC[:]...)
		}
		if p.Flags&FlagAuth != 0 {
			b = append(b, sub.Auth[:]...)
		}
	}
	pkt := b[start:]
	binary.BigEndian.PutUint32(pkt[offCRC:], checksum(pkt))
	return b, nil
}

func appendHeader(b []byte, h *Header, length int) []byte {
	b = binary.BigEndian.AppendUint16(b, Magic)
	b = append(b, Version, byte(h.Kind), byte(h.Flags), 0)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	b = binary.BigEndian.AppendUint64(b, h.Session)
	b = binary.BigEndian.AppendUint32(b, h.Stream)
	return binary.BigEndian.AppendUint32(b, 0) // checksum, filled in last
}

// checksum computes the CRC-32C of pkt with its checksum field skipped.
func checksum(pkt []byte) uint32 {
	c := crc32.Update(0, castagnoli, pkt[:offCRC])
	return crc32.Update(c, castagnoli, pkt[HeaderLen:])
}

// validate checks the fields AppendTo encodes against the rules Parse
// enforces, so that everything telewire sends is something it accepts.
func (p *Packet) validate() error {
	if p.Kind == 0 || p.Kind > kindMax {
		return ErrUnknownKind
	}
	if p.Flags&^allowedFlags[p.Kind] != 0 {
		return ErrBadFlags
	}
	switch p.Kind {
	case KindData:
		if len(p.Payload) > MaxPayload {
			return ErrTooLarge
		}
		if p.Flags&FlagMessages != 0 {
			return validateMap(p.Payload, p.Timestamp)
		}
	case KindParity:
		if len(p.Payload) > MaxShard {
			return ErrTooLarge
		}
		return validateParity(&p.Parity, len(p.Payload))
	case KindNACK:
		return validateRanges(p.Ranges)
	case KindReport:
		return validateReport(&p.Report)
	case KindHeartbeat:
		if p.Flags&FlagAnswer != 0 && p.Heartbeat.AnswerHoldNanos < 0 {
			return ErrBadField
		}
		if p.Flags&(FlagAnswer|FlagGroup) == FlagAnswer|FlagGroup {
			return ErrBadFlags
		}
		if p.Flags&FlagGroup != 0 && !validReceivers(p.Heartbeat.Receivers) {
			return ErrBadField
		}
		return validateHeartbeat(&p.Heartbeat)
	case KindSubscribe, KindToken, KindGoodbye:
		return p.validateSubscription()
	}
	return nil
}

// validateSubscription checks what a subscription body's fields may hold:
// a reason only in a GOODBYE, and a known one; token fields only with
// their flag.
func (p *Packet) validateSubscription() error {
	sub := &p.Subscription
	switch {
	case p.Kind != KindGoodbye && sub.Reason != 0, sub.Reason > reasonMax:
		return ErrBadField
	case p.Flags&FlagToken == 0 && (sub.TokenTime != 0 || sub.TokenMAC != [TokenMACLen]byte{}):
		return ErrBadField // fields without their flag: one encoding per packet
	case p.Flags&FlagAuth != 0 && p.Flags&FlagToken == 0:
		return ErrBadFlags // the MAC follows the token: one offset for it
	case p.Flags&FlagAuth == 0 && sub.Auth != [AuthLen]byte{}:
		return ErrBadField
	}
	return nil
}

// PeekHeader checks b's magic and version and returns its header without
// validating length, checksum or body. It lets a demultiplexer route a
// datagram before parsing it in full.
func PeekHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	if binary.BigEndian.Uint16(b[offMagic:]) != Magic {
		return Header{}, ErrBadMagic
	}
	if b[offVersion] != Version {
		return Header{}, ErrBadVersion
	}
	return Header{
		Kind:    Kind(b[offKind]),
		Flags:   Flags(b[offFlags]),
		Session: binary.BigEndian.Uint64(b[offSession:]),
		Stream:  binary.BigEndian.Uint32(b[offStream:]),
	}, nil
}

// Parse decodes the datagram b into p. It checks, in order: size, magic,
// version, kind, flags, that the envelope byte says plain (ErrSealed
// otherwise), that the length field equals
// len(b), the checksum, and then every field of the body. On error p's
// contents are unspecified and the error is one of this package's sentinels.
// On success p.Payload (DATA and PARITY) aliases b. Parse never allocates and
// never reads outside b.
func (p *Packet) Parse(b []byte) error {
	if len(b) > MaxPacketLen {
		return ErrTooLarge
	}
	h, err := PeekHeader(b)
	if err != nil {
		return err
	}
	if h.Kind == 0 || h.Kind > kindMax {
		return ErrUnknownKind
	}
	if h.Flags&^allowedFlags[h.Kind] != 0 {
		return ErrBadFlags
	}
	if b[offEnvelope] != 0 {
		return ErrSealed
	}
	if int(binary.BigEndian.Uint16(b[offLength:])) != len(b) {
		return ErrLength
	}
	if binary.BigEndian.Uint32(b[offCRC:]) != checksum(b) {
		return ErrChecksum
	}
	p.Header = h
	return p.parseBody(b[HeaderLen:])
}

// ParseBody decodes a packet whose header h and body arrived apart: the
// body of a sealed datagram, decrypted and authenticated by its opener,
// with the header PeekHeader read from the datagram. It checks h's kind and
// flags and then every field of the body, as Parse does; the length and
// checksum are the opener's business. On success p.Payload aliases body.
func (p *Packet) ParseBody(h Header, body []byte) error {
	if h.Kind == 0 || h.Kind > kindMax {
		return ErrUnknownKind
	}
	if h.Flags&^allowedFlags[h.Kind] != 0 {
		return ErrBadFlags
	}
	if len(body) > MaxPacketLen-HeaderLen {
		return ErrTooLarge
	}
	p.Header = h
	return p.parseBody(body)
}

func (p *Packet) parseBody(body []byte) error {
	switch p.Kind {
	case KindData:
		return p.parseData(body)
	case KindParity:
		return p.parseParity(body)
	case KindNACK:
		return p.parseNACK(body)
	case KindReport:
		return p.parseReport(body)
	case KindHeartbeat:
		return p.parseHeartbeat(body)
	case KindSubscribe, KindToken, KindGoodbye:
		return p.parseSubscription(body)
	default: // the handshake kinds
		return p.parseHandshake(body)
	}
}

// parseHandshake decodes the fixed-size bodies of HELLO, WELCOME, CONFIRM
// and RETRY.
func (p *Packet) parseHandshake(body []byte) error {
	want := p.EncodedLen() - HeaderLen
	if len(body) != want {
		if len(body) < want {
			return ErrShort
		}
		return ErrLength
	}
	h := &p.Handshake
	switch p.Kind {
	case KindHello, KindWelcome:
		copy(h.Ephemeral[:], body)
		h.Timestamp = int64(binary.BigEndian.Uint64(body[EphemeralLen:]))
		h.KeyTag, h.Counter = 0, 0
	case KindRetry:
		if binary.BigEndian.Uint32(body[4:]) != 0 {
			return ErrBadField
		}
		*h = Handshake{KeyTag: binary.BigEndian.Uint32(body), Counter: binary.BigEndian.Uint64(body[8:])}
	default: // KindConfirm
		*h = Handshake{}
	}
	return nil
}

// parseSubscription decodes the body of SUBSCRIBE, TOKEN and GOODBYE.
func (p *Packet) parseSubscription(body []byte) error {
	want := p.EncodedLen() - HeaderLen
	if len(body) != want {
		if len(body) < want {
			return ErrShort
		}
		return ErrLength
	}
	reason := binary.BigEndian.Uint32(body[8:])
	if reason > uint32(reasonMax) || binary.BigEndian.Uint32(body[12:]) != 0 {
		return ErrBadField
	}
	sub := &p.Subscription
	*sub = Subscription{Nonce: binary.BigEndian.Uint64(body), Reason: uint8(reason)}
	if p.Flags&FlagToken != 0 {
		sub.TokenTime = int64(binary.BigEndian.Uint64(body[SubscriptionLen:]))
		copy(sub.TokenMAC[:], body[SubscriptionLen+8:])
	}
	if p.Flags&FlagAuth != 0 {
		copy(sub.Auth[:], body[len(body)-AuthLen:])
	}
	return p.validateSubscription()
}

func (p *Packet) parseData(body []byte) error {
	if len(body) < DataHeaderLen {
		return ErrShort
	}
	p.Seq = binary.BigEndian.Uint64(body)
	p.Timestamp = int64(binary.BigEndian.Uint64(body[8:]))
	p.Payload = body[DataHeaderLen:]
	if p.Flags&FlagMessages != 0 {
		return validateMap(p.Payload, p.Timestamp)
	}
	return nil
}

func (p *Packet) parseParity(body []byte) error {
	if len(body) < ParityHeaderLen+1 {
		return ErrShort
	}
	p.Parity = Parity{
		First:  binary.BigEndian.Uint64(body),
		K:      body[8],
		M:      body[9],
		Index:  body[10],
		Stride: body[11],
	}
	p.Payload = body[ParityHeaderLen:]
	return validateParity(&p.Parity, len(p.Payload))
}

func validateParity(par *Parity, shardLen int) error {
	switch {
	case shardLen == 0:
		return ErrShort
	case par.K == 0, par.M == 0, int(par.K)+int(par.M) > 256:
		return ErrBadField
	case par.Index >= par.M, par.Stride == 0:
		return ErrBadField
	}
	return nil
}

func (p *Packet) parseNACK(body []byte) error {
	if len(body) < NACKHeaderLen {
		return ErrShort
	}
	n := int(binary.BigEndian.Uint16(body))
	if body[2] != 0 || body[3] != 0 {
		return ErrBadField
	}
	if n == 0 || n > MaxRanges {
		return ErrBadRanges
	}
	want := NACKHeaderLen + n*RangeLen + p.optional(FlagProof, ProofLen)
	if len(body) != want {
		if len(body) < want {
			return ErrShort
		}
		return ErrLength
	}
	p.ProofSeq, p.ProofTimestamp = 0, 0
	if p.Flags&FlagProof != 0 {
		p.ProofSeq = binary.BigEndian.Uint64(body[want-ProofLen:])
		p.ProofTimestamp = int64(binary.BigEndian.Uint64(body[want-8:]))
	}
	rs := p.rangeBuf[:n]
	for i := range rs {
		off := NACKHeaderLen + i*RangeLen
		rs[i] = Range{
			First: binary.BigEndian.Uint64(body[off:]),
			Len:   binary.BigEndian.Uint32(body[off+8:]),
		}
	}
	p.Ranges = rs
	return validateRanges(rs)
}

// validateRanges enforces the NACK range rules: 1..MaxRanges ranges, each
// 1..MaxRangeLen long, increasing, separated by at least one sequence, and
// spanning at most MaxNACKSpan sequences in all.
func validateRanges(rs []Range) error {
	if len(rs) == 0 || len(rs) > MaxRanges {
		return ErrBadRanges
	}
	for i, r := range rs {
		if r.Len == 0 || r.Len > MaxRangeLen {
			return ErrBadRanges
		}
		if i > 0 {
			// The gap from the previous range's end must be positive in
			// serial arithmetic: at least one sequence not named between
			// them.
			gap := SeqDiff(r.First, rs[i-1].Last())
			if gap < 2 {
				return ErrBadRanges
			}
		}
	}
	if span := SeqDiff(rs[len(rs)-1].Last(), rs[0].First); span < 0 || span >= MaxNACKSpan {
		return ErrBadRanges
	}
	return nil
}

func (p *Packet) parseHeartbeat(body []byte) error {
	if p.Flags&(FlagAnswer|FlagGroup) == FlagAnswer|FlagGroup {
		return ErrBadFlags
	}
	want := HeartbeatLen + p.optional(FlagAnswer, AnswerLen) + p.optional(FlagGroup, GroupLen)
	if len(body) != want {
		if len(body) < want {
			return ErrShort
		}
		return ErrLength
	}
	p.Heartbeat = Heartbeat{
		Start:     binary.BigEndian.Uint64(body),
		Next:      binary.BigEndian.Uint64(body[8:]),
		Timestamp: int64(binary.BigEndian.Uint64(body[16:])),
	}
	if p.Flags&FlagAnswer != 0 {
		p.Heartbeat.Answer = binary.BigEndian.Uint64(body[24:])
		p.Heartbeat.AnswerHoldNanos = int64(binary.BigEndian.Uint64(body[32:]))
		if p.Heartbeat.AnswerHoldNanos < 0 {
			return ErrBadField
		}
	}
	if p.Flags&FlagGroup != 0 {
		p.Heartbeat.Receivers = binary.BigEndian.Uint32(body[HeartbeatLen:])
		if !validReceivers(p.Heartbeat.Receivers) {
			return ErrBadField
		}
	}
	return validateHeartbeat(&p.Heartbeat)
}

// validReceivers reports whether n is a group size a HEARTBEAT may carry.
func validReceivers(n uint32) bool { return n >= 1 && n <= MaxGroupReceivers }

func validateHeartbeat(hb *Heartbeat) error {
	if SeqDiff(hb.Next, hb.Start) < 0 {
		return ErrBadField
	}
	return nil
}

// MarkRetransmit sets FlagRetransmit on the encoded DATA packet b in place
// and re-seals its checksum, so that a sender can resend a stored packet
// without decoding and encoding it again. It returns ErrUnknownKind if b
// is not a DATA packet and ErrShort if b is shorter than a header.
func MarkRetransmit(b []byte) error {
	if len(b) < HeaderLen+DataHeaderLen {
		return ErrShort
	}
	if Kind(b[offKind]) != KindData {
		return ErrUnknownKind
	}
	b[offFlags] |= byte(FlagRetransmit)
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	return nil
}

// Refinish rewrites the length field and the checksum of the encoded
// packet b, whose body was changed or grown in place since it was
// encoded: a sender packing one more message into a DATA datagram it has
// queued. It returns ErrShort if b is shorter than a header and
// ErrTooLarge if it is longer than MaxPacketLen.
func Refinish(b []byte) error {
	if len(b) < HeaderLen {
		return ErrShort
	}
	if len(b) > MaxPacketLen {
		return ErrTooLarge
	}
	binary.BigEndian.PutUint16(b[offLength:], uint16(len(b)))
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	return nil
}
