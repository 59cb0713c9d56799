package receiver

import (
	"net/netip"

	"github.com/telewire/telewire/packet"
)

// maxPartials bounds the messages a stream reassembles at once, whatever
// their size: a peer announcing many tiny fragmented messages fills this
// before the byte caps. Past it the oldest is dropped (ReassemblyDropped).
const maxPartials = 64

// partial is a message being reassembled from its fragments.
type partial struct {
	first    uint64 // sequence of its fragment 0
	buf      []byte // the message, len = its length; charged to the budget at cap
	got      int    // bytes received so far
	ts       int64  // send time (every fragment carries the message's)
	deadline int64  // receiver clock: past it the message is lost
	origin   Origin // OriginFirst unless a fragment was repaired (the last repair's origin)
	// firstAt is when the latest fragment sent once (not repaired)
	// arrived: the message's path delay, its original transmission
	// complete, ends there.
	firstAt int64
	// chunk is the piece size of every fragment but the last (0 until a
	// fragment tells it): fragment i must start at i·chunk, so that
	// pieces of distinct fragments never overlap and the message is
	// complete exactly when its bytes are all in.
	chunk int
}

// pieceFits reports whether f is a piece of p's message as the sender
// cut it: every piece but the last chunk bytes, piece i at i·chunk. It
// learns the chunk from the first fragment that tells it.
func (p *partial) pieceFits(f *packet.Fragment) bool {
	c := len(f.Data)
	if f.Last() {
		if f.Index == 0 {
			c = len(p.buf) // the whole message in one piece
		} else if f.Offset%f.Index != 0 {
			return false
		} else {
			c = int(f.Offset / f.Index)
		}
	}
	if p.chunk == 0 {
		p.chunk = c
	}
	return c == p.chunk && len(f.Data) <= c && uint64(f.Offset) == uint64(f.Index)*uint64(c)
}

// reassembly is one stream's messages in reassembly, oldest first. Its
// memory is bounded by Config.MaxReassemblyBytes per stream,
// MaxSessionReassemblyBytes per session, maxPartials and the state
// budget; whatever is held is charged to the budget.
type reassembly struct {
	parts []partial
	bytes int // bytes held: the sum of the buffers' capacities

	reassembled uint64 // messages completed
	dropped     uint64 // incomplete messages dropped to make room (a cap hit)
	expired     uint64 // incomplete messages whose deadline passed, or superseded (latest)
	refused     uint64 // fragments not taken: message over MaxMessage, a length disagreeing, no room
}

// addFragment takes one fragment (the tracker's first copy of sequence
// seq) into the stream's reassembly. When it completes its message it
// returns that message as a held whose buffer carries the charge.
func (c *Core) addFragment(s *session, st *stream, from netip.AddrPort, f *packet.Fragment, seq uint64, ts int64, origin Origin, deadline, now int64) *held {
	r := &st.reasm
	n := int(f.Length)
	if n > c.cfg.MaxMessage {
		r.refused++
		return nil
	}
	first := seq - uint64(f.Index)
	i := r.find(first)
	if i < 0 {
		if from, ok := st.delivery.WantFrom(); ok && c.cfg.Mode == ModeLatest && packet.SeqLess(first, from) {
			r.refused++ // older than what latest delivery has delivered: superseded already
			return nil
		}
		// A new message: make room under the caps, oldest first.
		for len(r.parts) > 0 && (len(r.parts) >= maxPartials || r.bytes+n > c.cfg.MaxReassemblyBytes) {
			c.dropPartial(s, st, 0)
			r.dropped++
		}
		for s.reasmBytes+n > c.cfg.MaxSessionReassemblyBytes {
			if !c.dropOldestInSession(s) {
				break
			}
		}
		buf := c.pool.getBig(n)
		m := cap(buf) // what is held, and charged
		if r.bytes+m > c.cfg.MaxReassemblyBytes || s.reasmBytes+m > c.cfg.MaxSessionReassemblyBytes || !c.reserve(s, m) {
			r.refused++
			if s.reasmBytes+m <= c.cfg.MaxSessionReassemblyBytes && r.bytes+m <= c.cfg.MaxReassemblyBytes {
				c.stats.BudgetDenied++
			}
			c.pool.putBig(buf)
			return nil
		}
		r.parts = append(r.parts, partial{first: first, buf: buf, ts: ts, deadline: deadline})
		r.bytes += m
		s.reasmBytes += m
		i = len(r.parts) - 1
	}
	p := &r.parts[i]
	if len(p.buf) != n || !p.pieceFits(f) {
		r.refused++ // fragments of one message disagree on its length or its cut
		return nil
	}
	p.got += copy(p.buf[f.Offset:], f.Data)
	if origin != OriginFirst {
		p.origin = origin
	} else {
		p.firstAt = now
	}
	if p.got < n {
		return nil
	}
	// Complete: the buffer and its charge pass to the held message.
	h := c.pool.get()
	h.m = Message{
		Source:       from,
		Session:      s.id,
		Stream:       st.id,
		Seq:          first,
		SentNanos:    p.ts,
		ReceiveNanos: now,
		Origin:       p.origin,
		Payload:      p.buf,
	}
	h.buf = p.buf
	n = cap(p.buf)
	if p.firstAt != 0 {
		// The path's delay for the whole message: until the last of its
		// fragments that came first time (a repaired message's repair
		// time is the NACK round trip's, counted there).
		c.observe(s, st, p.ts, p.firstAt)
	}
	r.bytes -= n
	s.reasmBytes -= n
	r.remove(i)
	r.reassembled++
	if c.cfg.Mode == ModeLatest {
		// Older incomplete messages are superseded by this one: dropped,
		// and their fragments no longer asked for (delivery's WantFrom
		// moves past them).
		for len(r.parts) > 0 && packet.SeqLess(r.parts[0].first, first) {
			c.dropPartial(s, st, 0)
			r.expired++
		}
	}
	return h
}

// find returns the index of the partial message starting at first, or -1.
func (r *reassembly) find(first uint64) int {
	for i := range r.parts {
		if r.parts[i].first == first {
			return i
		}
	}
	return -1
}

func (r *reassembly) remove(i int) {
	copy(r.parts[i:], r.parts[i+1:])
	r.parts[len(r.parts)-1] = partial{}
	r.parts = r.parts[:len(r.parts)-1]
}

// dropPartial discards st's incomplete message i and gives back its
// memory.
func (c *Core) dropPartial(s *session, st *stream, i int) {
	r := &st.reasm
	buf := r.parts[i].buf
	r.bytes -= cap(buf)
	s.reasmBytes -= cap(buf)
	c.unreserve(s, cap(buf))
	r.remove(i)
	c.pool.putBig(buf)
}

// dropOldestInSession drops the oldest incomplete message of s, across
// its streams: of those heading each stream's list (each list is oldest
// first), the one with the earliest deadline. It reports false when s
// holds none.
func (c *Core) dropOldestInSession(s *session) bool {
	var oldest *stream
	for _, st := range s.streams {
		if len(st.reasm.parts) > 0 && (oldest == nil || st.reasm.parts[0].deadline < oldest.reasm.parts[0].deadline) {
			oldest = st
		}
	}
	if oldest == nil {
		return false
	}
	c.dropPartial(s, oldest, 0)
	oldest.reasm.dropped++
	return true
}

// expireReassembly drops st's incomplete messages whose deadline has
// passed: a missing fragment did not come in time, so the message is lost.
func (c *Core) expireReassembly(s *session, st *stream, now int64) {
	r := &st.reasm
	for i := 0; i < len(r.parts); {
		if r.parts[i].deadline <= now {
			c.dropPartial(s, st, i)
			r.expired++
			continue
		}
		i++
	}
}

// nextReassemblyDeadline returns the earliest deadline of st's incomplete
// messages.
func (st *stream) nextReassemblyDeadline() (int64, bool) {
	var at int64
	ok := false
	for i := range st.reasm.parts {
		if d := st.reasm.parts[i].deadline; !ok || d < at {
			at, ok = d, true
		}
	}
	return at, ok
}

// heldKind says what a held entry of delivery carries.
type heldKind uint8

const (
	heldWhole  heldKind = iota // one message, h.m.Payload
	heldPacked                 // a MapMessages payload of several messages, h.m.Payload
	heldNone                   // nothing to deliver: a fragment's place in ordered delivery
)

// deliver moves what h carries into the queue Recv reads.
func (c *Core) deliver(st *stream, h *held) {
	switch h.kind {
	case heldNone:
		return
	case heldWhole:
		c.push(st, &h.m)
		return
	}
	var it packet.Messages
	if it.Init(h.m.Payload, h.m.SentNanos) != nil {
		return // validated when it arrived
	}
	m := h.m
	for k := 0; ; k++ {
		ts, msg, ok := it.Next()
		if !ok {
			break
		}
		if c.cfg.Mode == ModeLatest && k < it.Count()-1 {
			st.packedSuperseded++ // latest: only the newest of a datagram counts
			continue
		}
		m.SentNanos, m.Payload, m.Index = ts, msg, uint16(k)
		c.push(st, &m)
	}
}

func (c *Core) push(st *stream, m *Message) {
	if c.queue.push(m) {
		c.stats.Delivered++
		st.delivered++
		return
	}
	c.stats.QueueOverflow++
	if c.cfg.DeliverGaps && c.cfg.Mode == ModeOrdered {
		c.queueFull(st, m.Seq, m.Seq) // reported by a marker once room returns
	}
}
