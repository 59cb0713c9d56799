package reliability

import "math/bits"

// ResendLog sizes.
const (
	// DefaultResendLogSize is the default number of sequences a ResendLog
	// remembers.
	DefaultResendLogSize = 256
	// MaxResendLogSize is the largest ResendLog.
	MaxResendLogSize = 1 << 16
)

// ResendLog remembers when sequences were last resent to one destination,
// for a sender whose repairs reach only the receiver that asked (unicast
// fan-out): SendBuffer.OnNACKTo suppresses a repeat to that destination
// within the suppression time while another destination's request for the
// same sequence is still answered. It is a direct-mapped table of a fixed
// size, allocated once: a sequence whose slot a later resend took is
// forgotten, and a repeat of it may then be answered early (never one
// suppressed wrongly); the table need only hold the sequences resent to
// one destination within one suppression time. Not safe for concurrent
// use.
type ResendLog struct {
	slots []resendSlot
	mask  uint64
}

type resendSlot struct {
	seq  uint64
	at   int64 // ns
	full bool
}

// NewResendLog returns a ResendLog for size sequences, rounded up to a
// power of two and at most MaxResendLogSize; 0 or less means
// DefaultResendLogSize. It takes 24 bytes per sequence.
func NewResendLog(size int) *ResendLog {
	if size <= 0 {
		size = DefaultResendLogSize
	}
	size = 1 << bits.Len(uint(min(size, MaxResendLogSize)-1))
	return &ResendLog{slots: make([]resendSlot, size), mask: uint64(size - 1)}
}

// MemBytes returns the memory the log holds.
func (l *ResendLog) MemBytes() int { return 24 * len(l.slots) }

// recent reports whether seq was resent within window before now.
func (l *ResendLog) recent(seq uint64, now, window int64) bool {
	s := &l.slots[seq&l.mask]
	return s.full && s.seq == seq && now-s.at < window
}

// record notes seq resent at now.
func (l *ResendLog) record(seq uint64, now int64) {
	l.slots[seq&l.mask] = resendSlot{seq: seq, at: now, full: true}
}

// Forget takes back the resend of seq recorded by OnNACKTo, for a caller
// that did not send it after all (see SendBuffer.Unresend): the next
// request for it is answered.
func (l *ResendLog) Forget(seq uint64) {
	if s := &l.slots[seq&l.mask]; s.full && s.seq == seq {
		*s = resendSlot{}
	}
}
