package receiver

// queue is the bounded FIFO between the receiver's core and Recv. Payloads
// are copied into one byte ring, so steady-state delivery allocates
// nothing. The message at the head is "lent" to the caller of Recv and its
// bytes stay valid until the next pop.
type queue struct {
	msgs  []Message // ring of cap(msgs)
	head  int       // index of the oldest message
	n     int       // messages held, the lent one included
	lent  bool      // msgs[head] has been handed out
	buf   []byte    // payload ring
	wrOff int       // where the next payload goes
}

func newQueue(messages, bytes int) *queue {
	return &queue{msgs: make([]Message, messages), buf: make([]byte, bytes)}
}

// rdOff is where the oldest held payload starts.
func (q *queue) rdOff() int { return q.msgs[q.head].off }

// reserve finds room for n payload bytes, returning the offset.
func (q *queue) reserve(n int) (int, bool) {
	if q.n == 0 {
		q.wrOff = 0
		if n > len(q.buf) {
			return 0, false
		}
		return 0, true
	}
	rd := q.rdOff()
	if q.wrOff >= rd { // used: [rd, wrOff)
		if q.wrOff+n <= len(q.buf) {
			return q.wrOff, true
		}
		if n < rd { // wrap to the start, keeping wrOff != rd
			return 0, true
		}
		return 0, false
	}
	// wrapped, used: [rd, end) and [0, wrOff)
	if q.wrOff+n < rd {
		return q.wrOff, true
	}
	return 0, false
}

// push copies m (and its payload) in. It reports false when full.
func (q *queue) push(m *Message) bool {
	if q.n == len(q.msgs) {
		return false
	}
	off, ok := q.reserve(len(m.Payload))
	if !ok {
		return false
	}
	end := off + copy(q.buf[off:], m.Payload)
	slot := &q.msgs[(q.head+q.n)%len(q.msgs)]
	*slot = *m
	slot.Payload = q.buf[off:end:end]
	slot.off = off
	q.wrOff = end
	q.n++
	return true
}

// pop releases the message lent last time and lends the next one.
func (q *queue) pop() (Message, bool) {
	if q.lent {
		q.msgs[q.head] = Message{}
		q.head = (q.head + 1) % len(q.msgs)
		q.n--
		q.lent = false
	}
	if q.n == 0 {
		return Message{}, false
	}
	q.lent = true
	return q.msgs[q.head], true
}

// waiting returns the messages not yet handed out.
func (q *queue) waiting() int {
	if q.lent {
		return q.n - 1
	}
	return q.n
}
