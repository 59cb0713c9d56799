package netem

import "math"

// LinkStats counts what a Link did. All counts are packets except
// DequeuedBytes.
type LinkStats struct {
	Enqueued      uint64 // packets offered to Enqueue
	Dropped       uint64 // copies lost by the loss model
	LimitDropped  uint64 // copies dropped because the queue was full (limit or byte cap; with a rate, the rate-limited drops)
	Duplicated    uint64 // packets that produced a second copy
	Corrupted     uint64 // copies with a flipped bit
	Reordered     uint64 // copies sent at once, ahead of delayed ones
	Delayed       uint64 // copies queued with a delivery time after their arrival
	Dequeued      uint64 // copies handed out by Dequeue
	DequeuedBytes uint64 // bytes handed out by Dequeue
}

type entry struct {
	at  int64
	key uint64 // tie-break at equal times: reordered first (LIFO, as netem's head insert), then FIFO
	tag uint64 // the caller's tag, see EnqueueTagged
	buf []byte
}

func (a *entry) less(b *entry) bool {
	return a.at < b.at || (a.at == b.at && a.key < b.key)
}

// Link is one direction of an emulated link: a [Model] plus the queue it
// feeds, ordered by delivery time like netem's tfifo. Enqueue copies the
// packet in (into pooled buffers, so a Link in steady state allocates
// nothing), Next says when the next packet is due, and Dequeue hands it
// out.
//
// A Link is pure: time is an argument (int64 nanoseconds on any clock the
// caller likes) and it never reads a clock or starts a goroutine. Its
// results are exact when the driver, as an event loop on a fake clock
// does, dequeues every packet due at or before a time before enqueueing a
// packet that arrives at that time; the queue limit then counts exactly
// the packets netem would hold.
//
// Memory is bounded by the limit: at most Limit packets are queued plus
// the one last returned by Dequeue. A Link is not safe for concurrent use.
type Link struct {
	m     *Model
	heap  []entry
	free  [][]byte
	out   []byte // buffer returned by the last Dequeue, recycled at the next
	seq   uint64
	bytes int
	stats LinkStats

	slotOn      bool
	slotAt      int64 // current slot instant
	slotPending int64 // pre-drawn interval to the next slot
	slotPackets int   // budget left in the current slot
	slotBytes   int
}

// NewLink returns an empty Link emulating spec, its randomness seeded by
// seed (or by spec.Seed when spec.HasSeed). It fails only if spec does not
// Validate.
func NewLink(spec Spec, seed int64) (*Link, error) {
	m, err := NewModel(spec, seed)
	if err != nil {
		return nil, err
	}
	l := &Link{m: m, slotOn: spec.SlotMax > 0, slotAt: math.MinInt64}
	if l.slotOn {
		l.slotPending = m.slotDelay()
	}
	return l, nil
}

// Model returns the link's model (for its Spec and limits).
func (l *Link) Model() *Model { return l.m }

// SetByteLimit caps the bytes the queue may hold; see Model.SetByteLimit.
func (l *Link) SetByteLimit(n int) { l.m.SetByteLimit(n) }

// Len returns the number of packets queued.
func (l *Link) Len() int { return len(l.heap) }

// Stats returns the counters.
func (l *Link) Stats() LinkStats { return l.stats }

// Enqueue offers a packet arriving at now (nanoseconds). The link copies
// pkt; the caller keeps ownership of it. Whatever the model decides (drop,
// one or two copies, corruption of a copy) is reflected in Stats.
func (l *Link) Enqueue(now int64, pkt []byte) { l.EnqueueTagged(now, pkt, 0) }

// EnqueueTagged is Enqueue with a tag that every queued copy of the packet
// carries and DequeueTagged returns: the caller's handle on per-packet
// data the link does not hold, such as a destination address. The number
// of copies queued (0, 1 or 2) is the change in Len.
func (l *Link) EnqueueTagged(now int64, pkt []byte, tag uint64) {
	l.stats.Enqueued++
	d := l.m.Decide(now, len(pkt), QueueState{Packets: len(l.heap), Bytes: l.bytes})
	if d.N == 2 {
		l.stats.Duplicated++
		l.apply(now, pkt, tag, &d.Copies[1])
	}
	l.apply(now, pkt, tag, &d.Copies[0])
}

func (l *Link) apply(now int64, pkt []byte, tag uint64, c *Copy) {
	switch c.Verdict {
	case Lost:
		l.stats.Dropped++
		return
	case LimitDrop:
		l.stats.LimitDropped++
		return
	}
	buf := l.get(len(pkt))
	copy(buf, pkt)
	if c.CorruptBit >= 0 {
		buf[c.CorruptBit/8] ^= 1 << (c.CorruptBit % 8)
		l.stats.Corrupted++
	}
	l.seq++
	key := l.seq | 1<<63
	if c.Reordered {
		key = 1<<63 - l.seq
		l.stats.Reordered++
	} else if c.At > now {
		l.stats.Delayed++
	}
	l.push(entry{at: c.At, key: key, tag: tag, buf: buf})
	l.bytes += len(buf)
}

// get returns a buffer of length n from the pool, growing one if needed.
func (l *Link) get(n int) []byte {
	if k := len(l.free); k > 0 {
		b := l.free[k-1]
		l.free[k-1] = nil
		l.free = l.free[:k-1]
		if cap(b) >= n {
			return b[:n]
		}
	}
	c := 512
	for c < n {
		c *= 2
	}
	return make([]byte, n, c)
}

// Next returns the time at which the earliest queued packet is due, or
// ok false when the queue is empty.
func (l *Link) Next() (at int64, ok bool) {
	if len(l.heap) == 0 {
		return 0, false
	}
	at = l.heap[0].at
	if !l.slotOn || l.slotAt >= at {
		if l.slotOn {
			return l.slotAt, true
		}
		return at, true
	}
	return at + l.slotPending, true
}

// nextLen returns the length of the packet the next Dequeue returns, or
// 0 when the queue is empty.
func (l *Link) nextLen() int {
	if len(l.heap) == 0 {
		return 0
	}
	return len(l.heap[0].buf)
}

// Dequeue returns the next packet due at or before now, or ok false when
// none is. The returned slice is owned by the Link and valid until the
// next call to Dequeue.
func (l *Link) Dequeue(now int64) (pkt []byte, ok bool) {
	pkt, _, ok = l.DequeueTagged(now)
	return pkt, ok
}

// DequeueTagged is Dequeue that also returns the tag the packet was
// enqueued with (0 for Enqueue).
func (l *Link) DequeueTagged(now int64) (pkt []byte, tag uint64, ok bool) {
	at, ok := l.Next()
	if !ok || at > now {
		return nil, 0, false
	}
	if l.out != nil {
		l.free = append(l.free, l.out)
		l.out = nil
	}
	if l.slotOn && l.slotAt < l.heap[0].at {
		// the slot lapsed before this packet was due: a new one opens
		// one slot interval after it is due
		l.openSlot(at)
	}
	e := l.pop()
	l.bytes -= len(e.buf)
	l.out = e.buf
	l.stats.Dequeued++
	l.stats.DequeuedBytes += uint64(len(e.buf))
	if l.slotOn {
		exhausted := false
		if l.m.spec.SlotPackets > 0 {
			l.slotPackets--
			exhausted = l.slotPackets <= 0
		}
		if l.m.spec.SlotBytes > 0 {
			l.slotBytes -= len(e.buf)
			exhausted = exhausted || l.slotBytes <= 0
		}
		if exhausted {
			l.openSlot(l.slotAt + l.slotPending)
		}
	}
	return e.buf, e.tag, true
}

func (l *Link) openSlot(at int64) {
	l.slotAt = at
	l.slotPending = l.m.slotDelay()
	l.slotPackets = l.m.spec.SlotPackets
	l.slotBytes = l.m.spec.SlotBytes
}

func (l *Link) push(e entry) {
	l.heap = append(l.heap, e)
	h := l.heap
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].less(&h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (l *Link) pop() entry {
	h := l.heap
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h[n] = entry{}
	h = h[:n]
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && h[c+1].less(&h[c]) {
			c++
		}
		if !h[c].less(&h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	l.heap = h
	return top
}
