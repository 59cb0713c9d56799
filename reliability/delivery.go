package reliability

import (
	"math"
	"math/bits"
	"unsafe"

	"github.com/telewire/telewire/packet"
)

// Delivery defaults and limits.
const (
	// DefaultDeliveryCapacity is the default number of messages a Delivery
	// holds.
	DefaultDeliveryCapacity = 1024
	// MaxDeliveryCapacity is the largest Delivery capacity.
	MaxDeliveryCapacity = 1 << 20
	// InitialDeliverySlots is the ring a Delivery starts with (or its
	// capacity, if smaller): the ring doubles as messages spread out, so a
	// stream that never reorders much never pays for its full capacity.
	InitialDeliverySlots = 16
)

// Mode is a Delivery's ordering discipline.
type Mode uint8

// Delivery modes.
const (
	// ModeOrdered delivers in sequence order. A message waits for missing
	// earlier ones until its own deadline; then the gap before it is
	// skipped and counted in Skipped.
	ModeOrdered Mode = iota
	// ModeUnordered delivers messages in arrival order, at once.
	ModeUnordered
	// ModeLatest delivers a message only if it is newer than the last one
	// delivered; of several waiting, only the newest is delivered and the
	// rest are Superseded.
	ModeLatest
)

var modeNames = [...]string{"ordered", "unordered", "latest"}

// String returns the mode's name, e.g. "ordered".
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "invalid"
}

// DeliveryConfig configures a Delivery. The zero value is ordered delivery
// with the default capacity.
type DeliveryConfig struct {
	// Mode is the ordering discipline; the zero value is ModeOrdered.
	Mode Mode
	// Capacity is the most messages held, rounded up to a power of two, at
	// most MaxDeliveryCapacity; 0 means DefaultDeliveryCapacity (1024). In
	// ModeOrdered it is also the furthest a message may be ahead of the
	// next one to deliver: size it to the packets that arrive within the
	// longest deadline. The ring starts at InitialDeliverySlots and
	// doubles when a message needs more room, up to Capacity.
	Capacity int
	// Budget, if not nil, is asked before the ring grows (MemBytes tells
	// what the Delivery holds now). A refused growth is treated as the
	// ring being full: PushDropped.
	Budget Budget
}

// PushResult says what Push did with a message.
type PushResult uint8

// PushResult values.
const (
	// PushAccepted: the message is held for delivery.
	PushAccepted PushResult = iota
	// PushLate: delivery has already passed this sequence (ordered), or a
	// newer one was delivered (latest). Counted in Late.
	PushLate
	// PushDuplicate: this sequence is already held or was just delivered
	// (latest). Counted in Duplicates.
	PushDuplicate
	// PushSuperseded: a newer message is already waiting (latest). Counted
	// in Superseded.
	PushSuperseded
	// PushDropped: no room. Counted in Dropped. In ModeOrdered the gaps
	// blocking delivery are then skipped at once, so that the stream moves
	// on.
	PushDropped
)

var pushNames = [...]string{"accepted", "late", "duplicate", "superseded", "dropped"}

// String returns the result's name, e.g. "late".
func (r PushResult) String() string {
	if int(r) < len(pushNames) {
		return pushNames[r]
	}
	return "invalid"
}

// DeliveryStats are a Delivery's counters.
type DeliveryStats struct {
	Delivered  uint64 // messages returned by Pop
	Skipped    uint64 // sequences passed over without a message (lost after repair)
	Late       uint64 // messages pushed after delivery had passed them
	Superseded uint64 // messages never delivered because a newer one was (latest)
	Duplicates uint64 // messages pushed twice
	Dropped    uint64 // messages refused for lack of room, or discarded by Resync
	Resyncs    uint64 // Resync calls
	Buffered   uint64 // messages held now (a gauge)
}

// dslot is one held message.
type dslot[T any] struct {
	item     T
	deadline int64
	seq      uint64
	full     bool
}

// Delivery is the receiver's last stage for one stream: it holds messages
// pushed as they arrive and hands them out with Pop in the order its Mode
// demands, skipping gaps whose deadline passed. It is generic over the
// caller's message type, holds at most Capacity messages in an array
// allocated up front, and does not allocate per message.
//
// Push only first copies (Tracker.OnData's ArrivalNew and ArrivalResync):
// Delivery finds duplicates it still holds, not those it has delivered
// (except the last one in ModeLatest). After Pushes, drain Pop until it
// reports nothing, then arm a timer for NextDeadline. Call WantFrom after
// Pop and pass it to Tracker.GiveUpBefore so that sequences delivery no
// longer wants are not NACKed.
//
// A Delivery is not safe for concurrent use.
type Delivery[T any] struct {
	mode   Mode
	mask   uint64 // len(slots)-1
	limit  uint64 // the configured capacity: the ring grows up to it
	budget Budget
	slots  []dslot[T]
	occ    []uint64 // ordered: occupancy bitmap of slots

	count int
	head  int // unordered: index of the oldest message

	// ordered
	started  bool   // next is set
	fixed    bool   // something was delivered or skipped, or Resync set next: arrivals never move next down
	begun    bool   // something was delivered or skipped, or Resync set next: StartAt refuses
	next     uint64 // next sequence to deliver
	top      uint64 // highest sequence held
	flushTo  uint64 // gaps before this are skipped at once
	flushing bool
	minDL    int64 // earliest deadline held (valid unless minDirty)
	minDirty bool

	// latest
	last     uint64
	haveLast bool

	stats DeliveryStats
}

// NewDelivery returns a Delivery holding messages of type T. Its ring
// starts small (InitialDeliverySlots) and grows with use.
func NewDelivery[T any](cfg DeliveryConfig) *Delivery[T] {
	c := cfg.Capacity
	if c <= 0 {
		c = DefaultDeliveryCapacity
	}
	c = 1 << bits.Len(uint(min(c, MaxDeliveryCapacity)-1))
	mode := cfg.Mode
	if mode > ModeLatest {
		mode = ModeOrdered
	}
	d := &Delivery[T]{mode: mode, limit: uint64(c), budget: cfg.Budget, minDL: math.MaxInt64}
	n := min(c, InitialDeliverySlots)
	if mode == ModeLatest {
		n, d.limit = 1, 1
	}
	d.alloc(n)
	return d
}

// alloc gives the delivery an empty ring of n slots (a power of two).
func (d *Delivery[T]) alloc(n int) {
	d.slots = make([]dslot[T], n)
	d.mask = uint64(n - 1)
	if d.mode == ModeOrdered {
		d.occ = make([]uint64, (n+63)/64)
	}
}

// MemBytes returns the bytes of the Delivery's ring and bitmap (not of
// the items it holds).
func (d *Delivery[T]) MemBytes() int {
	return len(d.slots)*int(unsafe.Sizeof(dslot[T]{})) + 8*len(d.occ)
}

// grow enlarges the ring to hold at least n messages (ordered: n
// sequences from next), within the configured capacity and the budget. It
// reports whether the ring now has that room.
func (d *Delivery[T]) grow(n uint64) bool {
	if n <= d.mask+1 {
		return true
	}
	if n > d.limit {
		return false
	}
	size := uint64(1) << bits.Len64(n-1)
	oldBytes := d.MemBytes()
	old, oldOcc, oldMask := d.slots, d.occ, d.mask
	newBytes := int(size) * int(unsafe.Sizeof(dslot[T]{}))
	if d.mode == ModeOrdered {
		newBytes += 8 * int((size+63)/64)
	}
	if d.budget != nil && !d.budget.Reserve(newBytes-oldBytes) {
		return false
	}
	d.alloc(int(size))
	switch d.mode {
	case ModeOrdered:
		for w, word := range oldOcc {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &= word - 1
				s := old[w<<6|b]
				i := s.seq & d.mask
				d.slots[i] = s
				d.occ[i>>6] |= 1 << (i & 63)
			}
		}
	case ModeUnordered:
		for k := range d.count {
			d.slots[k] = old[(uint64(d.head)+uint64(k))&oldMask]
		}
		d.head = 0
	}
	return true
}

// Mode returns the delivery's mode.
func (d *Delivery[T]) Mode() Mode { return d.mode }

// Len returns how many messages are held.
func (d *Delivery[T]) Len() int { return d.count }

// Stats returns the delivery's counters.
func (d *Delivery[T]) Stats() DeliveryStats {
	s := d.stats
	s.Buffered = uint64(d.count)
	return s
}

// Push offers message item with sequence seq; deadline (monotonic ns) is
// when, in ModeOrdered, it stops waiting for missing earlier messages. The
// other modes ignore deadline.
func (d *Delivery[T]) Push(seq uint64, item T, deadline int64) PushResult {
	switch d.mode {
	case ModeUnordered:
		if d.count == len(d.slots) && !d.grow(uint64(d.count)+1) {
			d.stats.Dropped++
			return PushDropped
		}
		s := &d.slots[(d.head+d.count)&int(d.mask)]
		s.item, s.seq, s.deadline, s.full = item, seq, deadline, true
		d.count++
		return PushAccepted
	case ModeLatest:
		return d.pushLatest(seq, item, deadline)
	}
	return d.pushOrdered(seq, item, deadline)
}

func (d *Delivery[T]) pushLatest(seq uint64, item T, deadline int64) PushResult {
	if d.haveLast && !packet.SeqLess(d.last, seq) {
		if seq == d.last {
			d.stats.Duplicates++
			return PushDuplicate
		}
		d.stats.Late++
		return PushLate
	}
	s := &d.slots[0]
	if s.full {
		switch {
		case seq == s.seq:
			d.stats.Duplicates++
			return PushDuplicate
		case packet.SeqLess(seq, s.seq):
			d.stats.Superseded++
			return PushSuperseded
		}
		d.stats.Superseded++ // the waiting one
		d.count--
	}
	s.item, s.seq, s.deadline, s.full = item, seq, deadline, true
	d.count++
	return PushAccepted
}

func (d *Delivery[T]) pushOrdered(seq uint64, item T, deadline int64) PushResult {
	if !d.started {
		d.started, d.next, d.top = true, seq, seq
	}
	if packet.SeqLess(seq, d.next) {
		// Before anything is delivered the start may still move down, if
		// the held messages stay within capacity.
		if d.fixed || (d.count > 0 && (d.top-seq >= d.limit || !d.grow(d.top-seq+1))) {
			d.stats.Late++
			return PushLate
		}
		d.next = seq
	}
	ahead := seq - d.next
	if ahead > d.mask && ahead < d.limit {
		d.grow(ahead + 1) // if refused, handled below as beyond capacity
	}
	capacity := d.mask + 1
	if ahead >= capacity {
		if d.count > 0 {
			d.stats.Dropped++
			d.flushTo, d.flushing = seq-capacity+1, true
			return PushDropped
		}
		// Nothing held: jump, skipping the gap (a Resync beforehand makes
		// this free).
		if d.fixed {
			d.stats.Skipped += ahead
			d.begun = true
		}
		d.next = seq
	}
	i := seq & d.mask
	s := &d.slots[i]
	if s.full {
		d.stats.Duplicates++
		return PushDuplicate
	}
	s.item, s.seq, s.deadline, s.full = item, seq, deadline, true
	d.occ[i>>6] |= 1 << (i & 63)
	if d.count == 0 || packet.SeqLess(d.top, seq) {
		d.top = seq
	}
	if d.count == 0 || (!d.minDirty && deadline < d.minDL) {
		d.minDL, d.minDirty = deadline, false
	}
	d.count++
	return PushAccepted
}

// Pop returns the next message due for delivery at now (monotonic ns), ok
// false if there is none yet. In ModeOrdered a gap is skipped when any held
// message's deadline has passed, or after PushDropped or Flush. The zeroed
// slot releases the message: Delivery keeps no reference to it.
func (d *Delivery[T]) Pop(now int64) (seq uint64, item T, ok bool) {
	if d.count == 0 {
		return 0, item, false
	}
	switch d.mode {
	case ModeUnordered:
		s := &d.slots[d.head]
		d.head = (d.head + 1) & int(d.mask)
		return d.take(s)
	case ModeLatest:
		s := &d.slots[0]
		d.last, d.haveLast = s.seq, true
		return d.take(s)
	}
	s := &d.slots[d.next&d.mask]
	if !s.full {
		if !(d.flushing && packet.SeqLess(d.next, d.flushTo)) && d.minDeadline() > now {
			return 0, item, false
		}
		k := d.firstHeld()
		d.stats.Skipped += k - d.next
		d.next = k
		s = &d.slots[k&d.mask]
	}
	if s.deadline <= d.minDL {
		d.minDirty = true
	}
	i := d.next & d.mask
	d.occ[i>>6] &^= 1 << (i & 63)
	d.next++
	d.fixed, d.begun = true, true
	if d.flushing && !packet.SeqLess(d.next, d.flushTo) {
		d.flushing = false
	}
	return d.take(s)
}

// take empties s and counts the delivery.
func (d *Delivery[T]) take(s *dslot[T]) (uint64, T, bool) {
	seq, item := s.seq, s.item
	*s = dslot[T]{}
	d.count--
	d.stats.Delivered++
	if d.count == 0 {
		d.flushing, d.minDL, d.minDirty = false, math.MaxInt64, false
	}
	return seq, item, true
}

// firstHeld returns the lowest sequence held (ordered, count > 0).
func (d *Delivery[T]) firstHeld() uint64 {
	start := d.next & d.mask
	n := uint64(len(d.occ))
	w := start >> 6
	word := d.occ[w] &^ (1<<(start&63) - 1)
	for k := uint64(0); ; k++ {
		if word != 0 {
			pos := (w<<6 | uint64(bits.TrailingZeros64(word)))
			return d.next + ((pos - start) & d.mask)
		}
		w = (w + 1) % n
		word = d.occ[w]
		if k > n {
			// Unreachable while count > 0; the bound keeps a broken
			// invariant from spinning.
			return d.next
		}
	}
}

// minDeadline returns the earliest deadline held, recomputing it if the
// message that held it was delivered.
func (d *Delivery[T]) minDeadline() int64 {
	if d.minDirty {
		d.minDL, d.minDirty = math.MaxInt64, false
		for w, word := range d.occ {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &= word - 1
				d.minDL = min(d.minDL, d.slots[w<<6|b].deadline)
			}
		}
	}
	return d.minDL
}

// NextDeadline returns, after Pop has been drained, when Pop may next
// return a message with no further Push: the earliest deadline held in
// ModeOrdered. ok is false when nothing is held or the mode has no
// deadlines.
func (d *Delivery[T]) NextDeadline() (int64, bool) {
	if d.mode != ModeOrdered || d.count == 0 {
		return 0, false
	}
	return d.minDeadline(), true
}

// WantFrom returns the lowest sequence delivery still wants: in
// ModeOrdered the next to deliver, once anything was delivered or skipped;
// in ModeLatest one past the newest held or delivered. Everything before it
// will never be delivered, so pass it to Tracker.GiveUpBefore. ok is false
// when there is no such floor yet, and always in ModeUnordered.
func (d *Delivery[T]) WantFrom() (uint64, bool) {
	switch d.mode {
	case ModeOrdered:
		return d.next, d.fixed
	case ModeLatest:
		if s := &d.slots[0]; s.full {
			return s.seq + 1, true
		}
		return d.last + 1, d.haveLast
	}
	return 0, false
}

// StartAt moves the start of ordered delivery down to seq, before anything
// was delivered or skipped: the stream is known to begin there, so Pop
// waits for the messages from seq on (until a held message's deadline)
// rather than delivering from the lowest held. After Anchor it may still
// move the start down until something is delivered or skipped; after
// Resync it may not. It reports false, doing nothing, in the other modes,
// once delivery has begun or was resynchronised, when seq is not below
// the start, or when the held messages would no longer fit.
func (d *Delivery[T]) StartAt(seq uint64) bool {
	if d.mode != ModeOrdered || d.begun || !d.started || !packet.SeqLess(seq, d.next) {
		return false
	}
	if d.count > 0 && (d.top-seq >= d.limit || !d.grow(d.top-seq+1)) {
		return false
	}
	d.next = seq
	return true
}

// Flush makes Pop deliver every held message at once, skipping the gaps
// between them (ModeOrdered; the other modes deliver at once anyway).
func (d *Delivery[T]) Flush() {
	if d.mode == ModeOrdered && d.count > 0 {
		d.flushTo, d.flushing = d.top+1, true
	}
}

// Flushing reports whether ordered delivery is skipping gaps at once
// (after Flush, or after Push returned PushDropped) rather than waiting for
// their deadline. A caller that reports skipped gaps reads it before Pop
// to tell the two causes apart.
func (d *Delivery[T]) Flushing() bool { return d.flushing }

// Resync restarts ordered delivery at seq, as when the Tracker reports
// ArrivalResync: messages still held are discarded (counted in Dropped;
// call Flush and drain Pop first to deliver them instead) and the jump is
// not counted as skipped. In ModeLatest it forgets the last delivered
// sequence, so that a stream restarted lower is delivered again.
func (d *Delivery[T]) Resync(seq uint64) {
	d.stats.Resyncs++
	d.stats.Dropped += uint64(d.count)
	clear(d.slots)
	clear(d.occ)
	d.count, d.head = 0, 0
	d.flushing, d.minDL, d.minDirty = false, math.MaxInt64, false
	d.started, d.fixed, d.begun, d.next, d.top = true, true, true, seq, seq
	d.haveLast = false
}

// Anchor is Resync for a stream of which nothing has arrived yet, at the
// point the sender says it has reached (a HEARTBEAT before any DATA): an
// arrival before seq is late, as after Resync, but until something is
// delivered or skipped StartAt may still move the start down (a late
// joiner asking for the history before that point).
func (d *Delivery[T]) Anchor(seq uint64) {
	d.Resync(seq)
	d.begun = false
}
