package reliability

import (
	"math"
	"math/bits"

	"github.com/telewire/telewire/packet"
)

// Tracker defaults and limits.
const (
	// DefaultWindow is the default receive window in sequences (4 KiB of
	// bitmap).
	DefaultWindow = 1 << 15
	// MinWindow is the smallest receive window.
	MinWindow = 64
	// MaxWindow is the largest receive window: one NACK may span at most
	// packet.MaxNACKSpan sequences, and every gap the tracker holds lies in
	// the window, so any set of them fits the span rule.
	MaxWindow = packet.MaxNACKSpan
	// DefaultMaxMissing is the default number of missing sequences
	// remembered for NACKing.
	DefaultMaxMissing = 8192
	// MaxMaxMissing is the largest MaxMissing accepted.
	MaxMaxMissing = 1 << 20

	// DefaultReorderFloor is the default least time a gap waits before it
	// is NACKed, ns.
	DefaultReorderFloor = 1_000_000
	// DefaultReorderCeiling is the default most time a gap waits before it
	// is NACKed, ns, however much reordering was seen.
	DefaultReorderCeiling = 100_000_000
	// DefaultNACKInterval is the default least time between NACK rounds, ns.
	DefaultNACKInterval = 5_000_000
	// DefaultMaxNACKRetries is the default number of times a sequence is
	// requested before it is given up.
	DefaultMaxNACKRetries = 8
	// DefaultRetrySpan is TrackerConfig.RetrySpan's default, ns: 1 s.
	DefaultRetrySpan int64 = 1e9
	// DefaultMaxNACKRanges is the default most ranges one AppendNACK call
	// emits: four full NACK packets.
	DefaultMaxNACKRanges = 4 * packet.MaxRanges

	// fallbackRTO replaces a non-positive rto passed to AppendNACK, ns.
	fallbackRTO = 100_000_000
	// maxRTO caps the rto passed to AppendNACK, ns, so backoff cannot
	// overflow.
	maxRTO = 1 << 40
	// maxBackoffShift caps the exponential backoff at 64 times the RTO.
	maxBackoffShift = 6
	// linearRetries is how many requests of a sequence are spaced one RTO
	// apart before the backoff doubles.
	linearRetries = 4
)

// TrackerConfig configures a Tracker. The zero value gives the defaults;
// out-of-range values are clamped or rounded as each field says.
type TrackerConfig struct {
	// Window is how many sequences are tracked behind the highest one
	// known to have been sent. A power of two in [MinWindow, MaxWindow];
	// other values are rounded up to one and clamped; 0 means
	// DefaultWindow (1<<15). The window bitmap takes Window/8 bytes.
	// Arrivals older than the window are ArrivalStale; a jump forward by
	// more than the window is ArrivalResync.
	Window int
	// MaxMissing is how many missing sequences are remembered for NACKing,
	// in [1, MaxMaxMissing]; 0 means DefaultMaxMissing (8192). Beyond it the
	// oldest are given up and counted in GivenUpOverflow. The missing set
	// grows on demand up to MaxMissing*3/2 entries of 40 bytes (480 KiB at
	// the default), so a stream with little loss costs little.
	MaxMissing int
	// ReorderFloor is the least time, ns, a gap waits before its first
	// NACK; 0 means DefaultReorderFloor (1 ms). See Tracker.ReorderTolerance.
	ReorderFloor int64
	// NACKAtOnceUntilReordered, when set, NACKs a gap as soon as it is
	// found until the stream has shown reordering (a gap filled by its
	// own original, Reordered in the stats); from the first such arrival
	// on, ReorderFloor and the rest of ReorderTolerance apply. On a path
	// that does not reorder, the reorder wait only adds latency to every
	// repair, and a floor below the caller's timer resolution costs a
	// whole timer tick (about 1 ms for a Go timer in an idle process);
	// a path that does reorder pays one spurious NACK, which teaches the
	// tolerance. Default false: the floor applies from the start.
	NACKAtOnceUntilReordered bool
	// ReorderCeiling is the most time, ns, a gap waits before its first
	// NACK; 0 means DefaultReorderCeiling (100 ms). Raised to ReorderFloor
	// if below it.
	ReorderCeiling int64
	// NACKInterval is the least time, ns, between two AppendNACK calls
	// that repeat a request; 0 means DefaultNACKInterval (5 ms). First
	// requests are not held back by it: they go out when due, so a gap
	// found just after a round is not kept waiting, and their rounds are
	// bounded by the arrivals that find gaps (each finds at most one).
	NACKInterval int64
	// MaxNACKRetries is how many times one sequence is requested before it
	// is given up (GivenUpRetries), provided it has been missing for
	// RetrySpan; 0 means DefaultMaxNACKRetries (8), at most 1000.
	MaxNACKRetries int
	// RetrySpan is the least time, ns, a sequence is requested for before
	// MaxNACKRetries may give it up: until then it is requested again at
	// the longest backoff. The retries of a short round trip (8 within 70
	// ms at the 2 ms floor) would otherwise all fall inside the sender's
	// once-per-round-trip suppression when a loaded host stretches its
	// round trip, and a repair the sender could still make would be
	// abandoned. 0 means DefaultRetrySpan (1 s, the sender's default
	// retransmit buffer age); delivery's own deadline still ends the wait
	// sooner in ordered mode.
	RetrySpan int64
	// MaxNACKRanges is the most ranges one AppendNACK call emits; further
	// due gaps wait for the next round. 0 means DefaultMaxNACKRanges (256,
	// four packets).
	MaxNACKRanges int
	// Budget, if not nil, is asked before the missing set grows (MemBytes
	// tells what the Tracker holds). When it refuses, the oldest missing
	// sequences are given up to make room (GivenUpOverflow).
	Budget Budget
	// NACKBackoff, if not nil, returns an extra wait, ns (>= 0), added to
	// every request time: once per gap found, for its first request (on
	// top of the reorder tolerance; retry false), and once per AppendNACK
	// call for the next retry of what it requested (retry true).
	// A receiver of a multicast group returns a random wait there (see
	// GroupBackoff), so that of the receivers that lost the same packet
	// one asks first and the retransmission, sent to the whole group,
	// reaches the others before they ask: the arrival fills their gap and
	// cancels their request. Nil: no extra wait (one receiver).
	NACKBackoff func(retry bool) int64
}

// normalize returns cfg with defaults filled in and values clamped.
func (cfg TrackerConfig) normalize() TrackerConfig {
	w := cfg.Window
	if w <= 0 {
		w = DefaultWindow
	}
	w = min(max(w, MinWindow), MaxWindow)
	w = 1 << bits.Len(uint(w-1)) // round up to a power of two
	cfg.Window = w
	if cfg.MaxMissing <= 0 {
		cfg.MaxMissing = DefaultMaxMissing
	}
	cfg.MaxMissing = min(cfg.MaxMissing, MaxMaxMissing)
	if cfg.ReorderFloor <= 0 {
		cfg.ReorderFloor = DefaultReorderFloor
	}
	if cfg.ReorderCeiling <= 0 {
		cfg.ReorderCeiling = DefaultReorderCeiling
	}
	cfg.ReorderCeiling = max(cfg.ReorderCeiling, cfg.ReorderFloor)
	if cfg.NACKInterval <= 0 {
		cfg.NACKInterval = DefaultNACKInterval
	}
	if cfg.MaxNACKRetries <= 0 {
		cfg.MaxNACKRetries = DefaultMaxNACKRetries
	}
	cfg.MaxNACKRetries = min(cfg.MaxNACKRetries, 1000)
	if cfg.RetrySpan <= 0 {
		cfg.RetrySpan = DefaultRetrySpan
	}
	if cfg.MaxNACKRanges <= 0 {
		cfg.MaxNACKRanges = DefaultMaxNACKRanges
	}
	return cfg
}

// Arrival classifies one DATA arrival.
type Arrival uint8

// Arrival values returned by Tracker.OnData.
const (
	// ArrivalNew is the first copy of this sequence: deliver it.
	ArrivalNew Arrival = iota
	// ArrivalDuplicate is a sequence already received: drop it.
	ArrivalDuplicate
	// ArrivalStale is older than the window: the tracker cannot tell
	// whether it was received, so it is not delivered; counted in Stale.
	ArrivalStale
	// ArrivalResync means the stream jumped beyond the window (sender
	// reset, long outage): the tracker restarted at this sequence, gave up
	// every pending gap and NACKs no gap for the jump. Deliver it, and
	// resynchronise anything ordered by sequence (Delivery.Resync).
	ArrivalResync
)

var arrivalNames = [...]string{"new", "duplicate", "stale", "resync"}

// String returns the arrival's name, e.g. "duplicate".
func (a Arrival) String() string {
	if int(a) < len(arrivalNames) {
		return arrivalNames[a]
	}
	return "invalid"
}

// Source says how a sequence reached the receiver. It refines the counters
// and keeps FEC recoveries and retransmissions out of the reordering
// estimate.
type Source uint8

// Source values for Tracker.OnArrival.
const (
	// SourceUnknown: the caller does not say (OnData).
	SourceUnknown Source = iota
	// SourceOriginal: a DATA packet without packet.FlagRetransmit.
	SourceOriginal
	// SourceRetransmit: a DATA packet with packet.FlagRetransmit.
	SourceRetransmit
	// SourceFEC: rebuilt from parity by the FEC decoder.
	SourceFEC
)

// ArrivalInfo details an ArrivalNew or ArrivalResync.
type ArrivalInfo struct {
	// Reordered: the sequence arrived after a later sequence (it filled a
	// gap or came late).
	Reordered bool
	// WasMissing: it had been counted missing, so this is a recovery (also
	// true if the gap had already been given up).
	WasMissing bool
	// NewlyMissing is how many sequences this arrival found missing (the
	// gap it revealed).
	NewlyMissing uint64
	// SinceNACKNanos is the time since the sequence was last NACKed, 0 if
	// it never was. For a retransmission it approximates a round trip.
	SinceNACKNanos int64
	// SinceDetectedNanos is, for a recovery, the time since the sequence
	// was found missing: how long its repair took.
	SinceDetectedNanos int64
}

// TrackerStats are a Tracker's cumulative counters. They reconcile as
//
//	Missing == Recovered + GivenUp + Pending
//	GivenUp == GivenUpOverflow + GivenUpWindow + GivenUpResync +
//	           GivenUpRetries + GivenUpDeadline + GivenUpUnavailable
//
// and every OnData call counts in exactly one of Received, Duplicates and
// Stale (Received includes resync arrivals).
type TrackerStats struct {
	Received           uint64 // distinct sequences received (ArrivalNew and ArrivalResync)
	Missing            uint64 // sequences ever found missing (before repair; includes gaps later filled by reordering)
	Recovered          uint64 // missing sequences that arrived while still pending
	RecoveredRTX       uint64 // of Recovered, those with SourceRetransmit
	RecoveredFEC       uint64 // of Recovered, those with SourceFEC
	ArrivedAfterGiveUp uint64 // missing sequences that arrived after they were given up (not in Recovered)
	Duplicates         uint64 // copies of sequences already received
	Reordered          uint64 // sequences that arrived after a later sequence
	Stale              uint64 // arrivals older than the window
	Resyncs            uint64 // jumps beyond the window
	Pending            uint64 // missing sequences still wanted now (a gauge)

	GivenUp            uint64 // missing sequences no longer requested, all reasons
	GivenUpOverflow    uint64 // dropped because more than MaxMissing were pending
	GivenUpWindow      uint64 // slid out of the window while pending
	GivenUpResync      uint64 // pending when the stream resynchronised
	GivenUpRetries     uint64 // requested MaxNACKRetries times without answer
	GivenUpDeadline    uint64 // before the GiveUpBefore floor (delivery passed them)
	GivenUpUnavailable uint64 // the sender said it no longer has them

	NACKed        uint64 // sequences requested for the first time
	NACKRetries   uint64 // repeated requests for a sequence
	NACKRounds    uint64 // AppendNACK calls that emitted ranges
	NACKPackets   uint64 // NACK packets those rounds fill (see SplitNACK)
	NACKVetoed    uint64 // due requests held back because the Recoverer could recover them
	SpuriousNACKs uint64 // sequences NACKed that then arrived as SourceOriginal
}

// Tracker is the receive side of one stream: it records which sequences
// arrived in a power-of-two bitmap ring (like a replay window), finds gaps,
// remembers the missing sequences in a bounded ordered set, and schedules
// NACKs for them. All comparisons use serial arithmetic, so a stream may
// start anywhere and wrap past 2^64.
//
// The window covers [next-Window, next), where next is one past the highest
// sequence known to have been sent (by DATA or HEARTBEAT). Every sequence in
// the window that belongs to the stream and has not arrived has been counted
// missing exactly once.
//
// A Tracker is not safe for concurrent use. Its methods never allocate
// except when the missing set first grows towards its bound.
type Tracker struct {
	cfg  TrackerConfig
	w    uint64 // window, a power of two
	mask uint64
	bits []uint64

	started     bool
	next        uint64 // one past the highest sequence known sent
	base        uint64 // lowest sequence known to belong to the stream (>= next-w once slid)
	highest     uint64 // highest sequence received
	haveHighest bool
	wantFrom    uint64 // GiveUpBefore floor
	haveWant    bool

	miss missingRing

	nacked    bool  // a NACK round has happened
	lastNACK  int64 // time of the last round that repeated a request or ran out of ranges
	lastFull  bool  // that round ran out of ranges: the next waits NACKInterval whatever it carries
	nextFirst int64 // earliest due time of a live entry not yet requested (may be early, never late)
	nextRetry int64 // earliest due time of a live entry requested before (may be early, never late)
	jitter    int64
	reoAvg    int64 // smoothed reordering delay, ns
	reoDev    int64 // its mean deviation, ns
	reoSample uint64

	stats TrackerStats
}

// NewTracker returns a Tracker for one stream. It allocates the window
// bitmap (Window/8 bytes) now and the missing set on demand.
func NewTracker(cfg TrackerConfig) *Tracker {
	cfg = cfg.normalize()
	w := uint64(cfg.Window)
	t := &Tracker{
		cfg:  cfg,
		w:    w,
		mask: w - 1,
		bits: make([]uint64, w/64),
		miss: newMissingRing(cfg.MaxMissing),
	}
	t.miss.budget = cfg.Budget
	return t
}

// MemBytes returns the bytes the Tracker holds: its window bitmap and its
// missing set.
func (t *Tracker) MemBytes() int { return 8*len(t.bits) + missEntrySize*len(t.miss.buf) }

// takeEvicted counts the missing sequences the set dropped for want of
// budget as given up.
func (t *Tracker) takeEvicted() {
	t.miss.refused = false
	if n := t.miss.evicted; n > 0 {
		t.miss.evicted = 0
		t.giveUpCount(n, &t.stats.GivenUpOverflow)
	}
}

// Config returns the tracker's configuration with defaults filled in.
func (t *Tracker) Config() TrackerConfig { return t.cfg }

func (t *Tracker) bit(seq uint64) bool {
	p := seq & t.mask
	return t.bits[p>>6]&(1<<(p&63)) != 0
}

func (t *Tracker) setBit(seq uint64) {
	p := seq & t.mask
	t.bits[p>>6] |= 1 << (p & 63)
}

// clearBits clears n bits starting at the slot of first, wrapping around
// the ring.
func (t *Tracker) clearBits(first, n uint64) {
	if n >= t.w {
		clear(t.bits)
		return
	}
	p := first & t.mask
	for n > 0 {
		off := p & 63
		k := min(64-off, n)
		var m uint64 = 1<<k - 1 // k == 64 wraps to all ones
		t.bits[p>>6] &^= m << off
		p = (p + k) & t.mask
		n -= k
	}
}

// OnData records the arrival of DATA sequence seq at time now (monotonic
// ns). It is OnArrival with SourceUnknown.
func (t *Tracker) OnData(seq uint64, now int64) (Arrival, ArrivalInfo) {
	return t.OnArrival(seq, now, SourceUnknown)
}

// OnArrival records that sequence seq reached the receiver at time now by
// way of src. Use it instead of OnData when the source is known: FEC
// recoveries and retransmissions are counted apart and do not feed the
// reordering estimate, and an original that arrives after its NACK does.
func (t *Tracker) OnArrival(seq uint64, now int64, src Source) (Arrival, ArrivalInfo) {
	var info ArrivalInfo
	if !t.started {
		t.started = true
		t.base, t.next = seq, seq
	}
	if d := packet.SeqDiff(seq, t.next); d >= 0 {
		if uint64(d) >= t.w {
			t.resync(seq)
			t.setBit(seq)
			t.next = seq + 1
			t.received(seq, &info)
			return ArrivalResync, info
		}
		old := t.next
		t.slide(seq + 1)
		info.NewlyMissing = uint64(d)
		t.addMissingBack(old, uint64(d), now)
		t.setBit(seq)
		t.received(seq, &info)
		return ArrivalNew, info
	}
	if t.next-seq > t.w {
		t.stats.Stale++
		return ArrivalStale, info
	}
	if t.bit(seq) {
		t.stats.Duplicates++
		return ArrivalDuplicate, info
	}
	t.setBit(seq)
	if packet.SeqLess(seq, t.base) {
		// An arrival from before the first sequence seen: the stream
		// started earlier, and the sequences between are missing.
		n := t.base - seq - 1
		t.addMissingFront(seq+1, n, now)
		t.base = seq
		info.NewlyMissing = n
	} else {
		info.WasMissing = true
		t.recover(seq, now, src, &info)
	}
	t.received(seq, &info)
	return ArrivalNew, info
}

// received counts a first copy of seq and updates the highest sequence.
func (t *Tracker) received(seq uint64, info *ArrivalInfo) {
	t.stats.Received++
	if !t.haveHighest || packet.SeqLess(t.highest, seq) {
		t.highest, t.haveHighest = seq, true
		return
	}
	info.Reordered = true
	t.stats.Reordered++
}

// recover removes seq from the missing set after it arrived.
func (t *Tracker) recover(seq uint64, now int64, src Source, info *ArrivalInfo) {
	i, ok := t.miss.find(seq)
	if !ok {
		t.stats.ArrivedAfterGiveUp++
		return
	}
	e := t.miss.at(i)
	t.stats.Recovered++
	if e.tries > 0 {
		info.SinceNACKNanos = now - e.lastNACK
	}
	info.SinceDetectedNanos = now - e.detected
	switch src {
	case SourceRetransmit:
		t.stats.RecoveredRTX++
	case SourceFEC:
		t.stats.RecoveredFEC++
	case SourceOriginal:
		if e.tries > 0 {
			t.stats.SpuriousNACKs++
		}
		t.observeReorder(now - e.detected)
	default:
		// Unknown source: only an arrival before any NACK is surely a
		// reordering.
		if e.tries == 0 {
			t.observeReorder(now - e.detected)
		}
	}
	t.miss.kill(i)
	t.miss.trim()
}

// observeReorder feeds the reordering delay estimator, RFC 6298 style.
func (t *Tracker) observeReorder(d int64) {
	d = min(max(d, 0), maxRTTSample)
	if t.reoSample == 0 {
		t.reoAvg, t.reoDev = d, d/2
	} else {
		dev := t.reoAvg - d
		if dev < 0 {
			dev = -dev
		}
		t.reoDev += (dev - t.reoDev) / 4
		t.reoAvg += (d - t.reoAvg) / 8
	}
	t.reoSample++
}

// slide moves next forward to newNext, at most one window: bits of the
// sequences entering the window are cleared and pending sequences leaving
// it are given up.
func (t *Tracker) slide(newNext uint64) {
	t.clearBits(t.next, newNext-t.next)
	t.next = newNext
	lo := newNext - t.w
	if packet.SeqLess(t.base, lo) {
		t.base = lo
	}
	if t.haveWant && packet.SeqLess(t.wantFrom, lo) {
		t.wantFrom = lo
	}
	t.giveUpBelow(lo, &t.stats.GivenUpWindow)
}

// resync restarts the tracker at seq: everything pending is given up.
func (t *Tracker) resync(seq uint64) {
	t.stats.Resyncs++
	t.giveUpCount(uint64(t.miss.live), &t.stats.GivenUpResync)
	t.miss.reset()
	clear(t.bits)
	t.base, t.next = seq, seq
	t.haveWant = false
}

// giveUpCount adds n to GivenUp and to one reason counter.
func (t *Tracker) giveUpCount(n uint64, reason *uint64) {
	t.stats.GivenUp += n
	*reason += n
}

// giveUpBelow gives up every pending sequence before seq.
func (t *Tracker) giveUpBelow(seq uint64, reason *uint64) {
	m := &t.miss
	for m.n > 0 && packet.SeqLess(m.at(0).seq, seq) {
		if m.at(0).live {
			m.live--
			t.giveUpCount(1, reason)
		}
		m.head++
		if m.head == len(m.buf) {
			m.head = 0
		}
		m.n--
	}
	m.trim()
}

// addMissingBack records the n sequences from first as missing; they follow
// every pending entry.
func (t *Tracker) addMissingBack(first, n uint64, now int64) {
	if n == 0 {
		return
	}
	t.stats.Missing += n
	if t.haveWant && packet.SeqLess(first, t.wantFrom) {
		k := min(uint64(packet.SeqDiff(t.wantFrom, first)), n)
		t.giveUpCount(k, &t.stats.GivenUpDeadline)
		first += k
		n -= k
	}
	m := &t.miss
	maxLive := uint64(m.maxLive)
	if n > maxLive {
		// The gap alone overflows the set: keep its newest maxLive.
		k := n - maxLive
		t.giveUpCount(k+uint64(m.live), &t.stats.GivenUpOverflow)
		m.reset()
		first += k
		n = maxLive
	} else if over := uint64(m.live) + n; over > maxLive {
		t.giveUpOldest(int(over-maxLive), &t.stats.GivenUpOverflow)
	}
	due := now + t.ReorderTolerance() + t.groupWait(false)
	t.noteDue(due)
	for i := range n {
		m.pushBack(missEntry{seq: first + i, detected: now, due: due, live: true})
	}
	t.takeEvicted()
}

// addMissingFront records the n sequences from first as missing; they
// precede every pending entry.
func (t *Tracker) addMissingFront(first, n uint64, now int64) {
	if n == 0 {
		return
	}
	t.stats.Missing += n
	if t.haveWant && packet.SeqLess(first, t.wantFrom) {
		k := min(uint64(packet.SeqDiff(t.wantFrom, first)), n)
		t.giveUpCount(k, &t.stats.GivenUpDeadline)
		first += k
		n -= k
	}
	m := &t.miss
	room := uint64(m.maxLive - m.live)
	if n > room {
		// These are the oldest sequences of all: the ones that do not fit
		// are given up at once.
		k := n - room
		t.giveUpCount(k, &t.stats.GivenUpOverflow)
		first += k
		n = room
	}
	due := now + t.ReorderTolerance()
	if n > 0 {
		due += t.groupWait(false)
		t.noteDue(due)
	}
	for i := n; i > 0; i-- {
		m.pushFront(missEntry{seq: first + i - 1, detected: now, due: due, live: true})
	}
	t.takeEvicted()
}

// giveUpOldest gives up the k oldest pending sequences.
func (t *Tracker) giveUpOldest(k int, reason *uint64) {
	m := &t.miss
	for i := 0; k > 0 && i < m.n; i++ {
		if m.at(i).live {
			m.kill(i)
			t.giveUpCount(1, reason)
			k--
		}
	}
	m.trim()
}

// groupWait returns the NACKBackoff wait, 0 without one.
func (t *Tracker) groupWait(retry bool) int64 {
	if t.cfg.NACKBackoff == nil {
		return 0
	}
	return max(t.cfg.NACKBackoff(retry), 0)
}

// noteDue lowers the cached earliest due time of first requests, for
// entries about to be added.
func (t *Tracker) noteDue(due int64) {
	if t.miss.live == 0 {
		t.nextFirst, t.nextRetry = due, math.MaxInt64
		return
	}
	t.nextFirst = min(t.nextFirst, due)
}

// OnHeartbeat records a HEARTBEAT saying that every sequence in
// [start, next) was sent. Sequences in it not received become missing: the
// tail of a burst whose last packets were lost, or, for a tracker that has
// seen no DATA yet, everything from the stream start. A start before the
// first sequence seen extends the stream downward, within the window. A
// next more than a window ahead resynchronises the tracker at next (for a
// fresh tracker: a receiver that joined a long-running stream) with no gap
// counted. It returns how many sequences were newly found missing.
func (t *Tracker) OnHeartbeat(start, next uint64, now int64) (newlyMissing uint64) {
	if packet.SeqLess(next, start) {
		start = next
	}
	if !t.started {
		t.started = true
		if next-start > t.w {
			t.base, t.next = next, next
			return 0
		}
		t.base, t.next = start, start
	}
	if d := packet.SeqDiff(next, t.next); d > 0 {
		if uint64(d) > t.w {
			t.resync(next)
			return 0
		}
		old := t.next
		t.slide(next)
		t.addMissingBack(old, uint64(d), now)
		newlyMissing = uint64(d)
	}
	if packet.SeqLess(start, t.base) {
		s := packet.SeqMax(start, t.next-t.w)
		if packet.SeqLess(s, t.base) {
			n := t.base - s
			t.addMissingFront(s, n, now)
			t.base = s
			newlyMissing += n
		}
	}
	return newlyMissing
}

// Highest returns the highest sequence received, ok false before any.
func (t *Tracker) Highest() (seq uint64, ok bool) { return t.highest, t.haveHighest }

// Next returns one past the highest sequence known to have been sent, by
// DATA or HEARTBEAT; ok is false before either.
func (t *Tracker) Next() (seq uint64, ok bool) { return t.next, t.started }

// Pending returns how many missing sequences are still wanted.
func (t *Tracker) Pending() int { return t.miss.live }

// Stats returns the tracker's counters.
func (t *Tracker) Stats() TrackerStats {
	s := t.stats
	s.Pending = uint64(t.miss.live)
	return s
}

// GiveUpBefore says that sequences before seq are no longer wanted (their
// delivery deadline passed, or a newer one superseded them): pending ones
// are given up now (GivenUpDeadline) and gaps found later before seq are
// given up as they are found. The floor only moves forward.
func (t *Tracker) GiveUpBefore(seq uint64) {
	if t.haveWant && !packet.SeqLess(t.wantFrom, seq) {
		return
	}
	t.wantFrom, t.haveWant = seq, true
	t.giveUpBelow(seq, &t.stats.GivenUpDeadline)
}

// OnUnavailable records that the sender no longer has the sequences of r
// (a NACK with packet.FlagUnavailable): they are given up
// (GivenUpUnavailable). It returns how many pending sequences that ended.
func (t *Tracker) OnUnavailable(r packet.Range) int {
	m := &t.miss
	k := 0
	for i := m.search(r.First); i < m.n; i++ {
		e := m.at(i)
		if uint64(e.seq-r.First) >= uint64(r.Len) {
			break
		}
		if e.live {
			m.kill(i)
			k++
		}
	}
	m.trim()
	t.giveUpCount(uint64(k), &t.stats.GivenUpUnavailable)
	return k
}
