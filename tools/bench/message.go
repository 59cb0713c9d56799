package bench

import (
	"encoding/binary"
	"errors"
)

// Layout of a bench message. Every transport carries the same bytes as its
// application payload: the raw baselines send them as the whole datagram,
// telewire and the peers as one message.
const (
	// MessageSize is the default size of every message the bench sends,
	// in bytes (the 200-byte telemetry record); Options.Size
	// changes it for a run.
	MessageSize = 200
	// MaxSize is the largest Options.Size: 16 MiB. Raw UDP carries at
	// most RawMaxSize of it; telewire at most its MaxMessage (1 MiB by
	// default, raised to the run's size here).
	MaxSize = 16 << 20
	// RawMaxSize is the largest message a raw transport carries: one UDP
	// datagram over IPv4.
	RawMaxSize = 65507

	offMagic = 0  // 4 bytes: Magic
	offSeq   = 4  // 8 bytes: sequence number, big-endian, from 0 per case
	offSent  = 12 // 8 bytes: sender's Nanotime at send, big-endian
	// StampLen is the length of the stamp at the start of a message; the
	// rest is filler.
	StampLen = 20
)

// WarmupBit marks the sequence numbers of warm-up messages, which the
// sender sends before the measured ones (session set-up, first
// allocations, cold caches) and the receiver leaves out of every figure.
const WarmupBit = 1 << 63

// Magic starts every bench message, so a stray datagram is not mistaken
// for one.
const Magic = 0x54574231 // "TWB1"

// Errors of ParseStamp, to be tested with errors.Is.
var (
	// ErrShortMessage is returned for a message shorter than StampLen.
	ErrShortMessage = errors.New("bench: message shorter than its stamp")
	// ErrBadMagic is returned for a message that does not start with Magic.
	ErrBadMagic = errors.New("bench: message without the bench magic")
)

// PutStamp writes the magic, seq and the send time sentNanos (a Nanotime
// reading) at the start of msg, which must be at least StampLen long. It
// does not allocate.
func PutStamp(msg []byte, seq uint64, sentNanos int64) {
	_ = msg[StampLen-1] // one bounds check; a short buffer is a programming error
	binary.BigEndian.PutUint32(msg[offMagic:], Magic)
	binary.BigEndian.PutUint64(msg[offSeq:], seq)
	binary.BigEndian.PutUint64(msg[offSent:], uint64(sentNanos))
}

// ParseStamp reads the sequence number and send time that PutStamp wrote.
// It never panics: a short message or a wrong magic returns an error
// ErrShortMessage or ErrBadMagic (bare sentinels, so that the receive
// loop does not allocate even for a stray datagram).
func ParseStamp(msg []byte) (seq uint64, sentNanos int64, err error) {
	if len(msg) < StampLen {
		return 0, 0, ErrShortMessage
	}
	if binary.BigEndian.Uint32(msg[offMagic:]) != Magic {
		return 0, 0, ErrBadMagic
	}
	return binary.BigEndian.Uint64(msg[offSeq:]), int64(binary.BigEndian.Uint64(msg[offSent:])), nil
}
