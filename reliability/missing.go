package reliability

import "github.com/telewire/telewire/packet"

// missEntry is one sequence found missing and still wanted. Entries live in
// a missingRing in increasing sequence order.
type missEntry struct {
	seq      uint64
	detected int64 // when the gap was found, ns
	due      int64 // when the entry may next go into a NACK, ns
	lastNACK int64 // when it last went into a NACK, ns (valid if tries > 0)
	tries    uint16
	live     bool // false: recovered or given up, a tombstone awaiting compaction
}

// missEntrySize is the size of a missEntry in bytes, for the memory figures
// in the documentation.
const missEntrySize = 40

// minRingSlots is the first allocation of a missingRing.
const minRingSlots = 64

// missingRing is a deque of missEntry in increasing sequence order. Removal
// from the middle leaves a tombstone, so lookups stay a binary search and
// removals stay O(log n). At most maxLive entries are live; the backing
// array grows on demand up to maxLive*3/2 slots, so that compaction, when
// needed, frees at least maxLive/2 slots and costs O(1) amortized per entry.
type missingRing struct {
	budget  Budget // asked before buf grows; nil: unmetered
	evicted uint64 // live entries dropped (or refused) because the budget refused growth
	refused bool   // the budget refused growth during the current addition: do not ask again
	buf     []missEntry
	head    int // index in buf of slot 0
	n       int // slots in use, live and dead
	live    int
	maxLive int
	maxCap  int
}

func newMissingRing(maxLive int) missingRing {
	return missingRing{maxLive: maxLive, maxCap: maxLive + max(maxLive/2, 1)}
}

// at returns slot i (0 = oldest) of the ring.
func (m *missingRing) at(i int) *missEntry {
	j := m.head + i
	if j >= len(m.buf) {
		j -= len(m.buf)
	}
	return &m.buf[j]
}

// reset drops every entry without freeing the backing array.
func (m *missingRing) reset() {
	m.head, m.n, m.live = 0, 0, 0
}

// makeRoom ensures at least one free slot, by compacting tombstones away or
// by growing the backing array. It reports false when the array is full of
// live entries and the budget refused to let it grow.
func (m *missingRing) makeRoom() bool {
	dead := m.n - m.live
	if len(m.buf) < m.maxCap && (dead == 0 || dead < m.n/2) {
		size := min(max(2*len(m.buf), minRingSlots), m.maxCap)
		if m.budget != nil && (m.refused || !m.budget.Reserve((size-len(m.buf))*missEntrySize)) {
			m.refused = true
			if dead == 0 {
				return false
			}
			m.compact()
			return true
		}
		nb := make([]missEntry, size)
		k := 0
		for i := range m.n {
			if e := m.at(i); e.live {
				nb[k] = *e
				k++
			}
		}
		m.buf, m.head, m.n = nb, 0, k
		return true
	}
	m.compact()
	return true
}

// compact drops the tombstones in place: the write position never passes
// the read position.
func (m *missingRing) compact() {
	k := 0
	for i := range m.n {
		if e := m.at(i); e.live {
			*m.at(k) = *e
			k++
		}
	}
	m.n = k
}

// pushBack appends e, which must follow every entry in sequence order. The
// caller keeps live below maxLive.
func (m *missingRing) pushBack(e missEntry) {
	if m.n == len(m.buf) && !m.makeRoom() {
		m.evicted++ // out of budget: counted as given up
		if m.live == 0 {
			return // no room at all: e is given up
		}
		m.kill(0) // the oldest entry makes way
		m.trim()
	}
	*m.at(m.n) = e
	m.n++
	m.live++
}

// pushFront prepends e, which must precede every entry in sequence order.
// The caller keeps live below maxLive.
func (m *missingRing) pushFront(e missEntry) {
	if m.n == len(m.buf) && !m.makeRoom() {
		m.evicted++ // out of budget: e, the oldest of all, is given up
		return
	}
	m.head--
	if m.head < 0 {
		m.head += len(m.buf)
	}
	m.n++
	m.live++
	*m.at(0) = e
}

// kill turns the live entry at slot i into a tombstone. Slots keep their
// indexes until the caller runs trim, so a scan may kill as it goes.
func (m *missingRing) kill(i int) {
	m.at(i).live = false
	m.live--
}

// trim drops tombstones at the front; the whole ring when nothing is live.
func (m *missingRing) trim() {
	if m.live == 0 {
		m.reset()
		return
	}
	for m.n > 0 && !m.at(0).live {
		m.head++
		if m.head == len(m.buf) {
			m.head = 0
		}
		m.n--
	}
}

// search returns the first slot whose sequence is not before seq, or m.n.
func (m *missingRing) search(seq uint64) int {
	lo, hi := 0, m.n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if packet.SeqLess(m.at(mid).seq, seq) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// find returns the slot holding the live entry for seq.
func (m *missingRing) find(seq uint64) (int, bool) {
	i := m.search(seq)
	if i < m.n {
		if e := m.at(i); e.seq == seq && e.live {
			return i, true
		}
	}
	return 0, false
}
