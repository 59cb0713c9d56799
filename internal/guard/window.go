package guard

// Window sizes, in counters.
const (
	// DefaultWindow is the default anti-replay window: 32704 counters,
	// (512-1) blocks of 64 bits, 4 KiB of bitmap per session and
	// direction. A sealed packet is refused as too old only when a packet
	// sealed 32704 or more packets after it has already arrived: at a
	// million packets per second that is 33 ms of reordering, at 100 000
	// per second 327 ms, beyond the default 200 ms latency budget. It
	// matches the receiver's loss window (reliability.DefaultWindow, 32768
	// sequences) to within one block, and a session's counter advances at
	// least as fast as any one stream's sequence, so a packet the loss
	// tracker would still take is never mistaken for a replay.
	DefaultWindow = (512 - 1) * blockBits
	// MinWindow is the smallest window: one block.
	MinWindow = blockBits
	// MaxWindow is the largest window: 2^20 counters (128 KiB).
	MaxWindow = 1 << 20
)

const blockBits = 64

// Verdict is what a Window says about a counter.
type Verdict uint8

// Window verdicts.
const (
	// Fresh: not seen, inside the window or ahead of it.
	Fresh Verdict = iota
	// Replay: seen before.
	Replay
	// TooOld: behind the window; whether it was seen is no longer known.
	TooOld
)

var verdictNames = [...]string{"fresh", "replay", "too-old"}

// String returns "fresh", "replay" or "too-old".
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}

// Window is an RFC 6479 anti-replay window over 64-bit packet counters: a
// ring of 64-bit blocks, cleared a block at a time as the highest counter
// advances, so that accepting a packet costs O(1) however far ahead it
// jumps.
//
// With size W, a counter c is Fresh when it is above the highest counter
// accepted so far, or when highest - c < W and c has not been accepted;
// a counter W or more below the highest is TooOld. So a packet reordered
// by W-1 places is accepted and one reordered by W is not. Counters are
// compared as plain unsigned integers: package seal never lets a counter
// wrap. The first counter accepted may be any value.
//
// The zero value is not usable; use [NewWindow]. A Window is not safe for
// concurrent use.
type Window struct {
	bits    []uint64
	mask    uint64 // len(bits) - 1
	size    uint64
	highest uint64
	started bool
}

// NewWindow returns a window of size counters, clamped to [MinWindow,
// MaxWindow]; 0 means DefaultWindow. Its bitmap holds the next power of two
// of size/64+1 blocks.
func NewWindow(size int) *Window {
	if size == 0 {
		size = DefaultWindow
	}
	size = min(max(size, MinWindow), MaxWindow)
	need := (size+blockBits-1)/blockBits + 1 // one spare block for the partly filled newest one
	n := 1
	for n < need {
		n <<= 1
	}
	return &Window{bits: make([]uint64, n), mask: uint64(n - 1), size: uint64(size)}
}

// Size returns the window size in counters.
func (w *Window) Size() uint64 { return w.size }

// Highest returns the highest counter accepted and whether any has been.
func (w *Window) Highest() (uint64, bool) { return w.highest, w.started }

// Check returns the verdict for c without recording it.
func (w *Window) Check(c uint64) Verdict {
	switch {
	case !w.started || c > w.highest:
		return Fresh
	case w.highest-c >= w.size:
		return TooOld
	case w.bits[(c/blockBits)&w.mask]&(1<<(c%blockBits)) != 0:
		return Replay
	}
	return Fresh
}

// Accept returns the verdict for c and, if it is Fresh, records c. Call
// it only for packets that have been authenticated, so that a forger
// cannot move the window.
func (w *Window) Accept(c uint64) Verdict {
	if !w.started {
		w.started, w.highest = true, c
		clear(w.bits)
		w.bits[(c/blockBits)&w.mask] = 1 << (c % blockBits)
		return Fresh
	}
	if c > w.highest {
		cur, next := w.highest/blockBits, c/blockBits
		n := min(next-cur, uint64(len(w.bits)))
		for i := uint64(1); i <= n; i++ {
			w.bits[(cur+i)&w.mask] = 0
		}
		w.highest = c
	} else if w.highest-c >= w.size {
		return TooOld
	}
	blk, bit := &w.bits[(c/blockBits)&w.mask], uint64(1)<<(c%blockBits)
	if *blk&bit != 0 {
		return Replay
	}
	*blk |= bit
	return Fresh
}

// Reset forgets every counter, as for a new session.
func (w *Window) Reset() {
	w.started, w.highest = false, 0
}
