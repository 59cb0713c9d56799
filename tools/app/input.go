package app

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"time"

	"github.com/telewire/telewire/tools/framing"
)

// The input reader's hand-over: batches of messages stored end to end.
const (
	// inputBatches is how many batches circulate between the reading
	// goroutine and the sender: one being filled, one being sent, and
	// room for the reader to run ahead while the sender is held by its
	// pacer.
	inputBatches = 4
	// inputBatchBytes and inputBatchMessages bound one batch: it is
	// handed over when either is reached (or sooner, see inputReader).
	inputBatchBytes    = 64 << 10
	inputBatchMessages = 1024
	// inputBufferBytes is the read buffer under the framing.Reader.
	inputBufferBytes = 64 << 10
)

// inputBatch is a run of messages read from the input, stored end to end
// in data: message i is data[ends[i-1]:ends[i]] (from 0 for the first).
// err, set on the last batch only, is io.EOF or what ended the reading.
type inputBatch struct {
	data []byte
	ends []int
	err  error
}

// inputReader reads framed messages from an io.Reader in a goroutine of
// its own and hands them to the caller of Next in batches, so that the
// caller can stop waiting for input (a signal, a cancelled context) even
// while a read is blocked: a read(2) on a pipe or a terminal cannot be
// interrupted portably.
//
// The reading goroutine fills a batch for as long as the read buffer
// holds another complete message, and hands it over before any read that
// could block: a message that has arrived is never held back waiting
// for the next one, and at full speed one hand-over carries up to
// inputBatchMessages messages. The batches are allocated once and
// recycled; reading allocates nothing per message.
//
// An inputReader is used by one goroutine (Next, Stop).
type inputReader struct {
	full   chan *inputBatch // filled batches, in order
	free   chan *inputBatch // batches to fill
	done   chan struct{}    // closed by Stop
	exited chan struct{}    // closed when the reading goroutine returns
	in     io.Reader

	cur *inputBatch // being handed out by Next
	i   int         // next message of cur
}

// newInputReader starts reading messages of framing f, up to max bytes
// each, from in.
func newInputReader(in io.Reader, f framing.Framing, max int) *inputReader {
	r := &inputReader{
		full:   make(chan *inputBatch, inputBatches),
		free:   make(chan *inputBatch, inputBatches),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
		in:     in,
	}
	for range inputBatches {
		r.free <- &inputBatch{
			// Room for one message beyond the byte bound: a batch is
			// handed over once past it, so it never grows.
			data: make([]byte, 0, inputBatchBytes+max),
			ends: make([]int, 0, inputBatchMessages),
		}
	}
	// framing.NewReader keeps a *bufio.Reader of at least its own size as
	// it is, so br is the buffer it reads through and Buffered and Peek
	// see what it has not consumed yet. (Were it to wrap br in a buffer
	// of its own, the checks would see less and only hand batches over
	// sooner: a message in br can always be read without blocking.)
	br := bufio.NewReaderSize(in, inputBufferBytes)
	fr := framing.NewReader(br, f, max)
	complete := lineBuffered
	if f == framing.Len32 {
		complete = len32Buffered
	}
	go r.read(fr, func() bool { return complete(br) })
	return r
}

// lineBuffered reports whether br holds a whole line, so reading it
// cannot block.
func lineBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered()) // never reads: n <= Buffered
	return bytes.IndexByte(b, '\n') >= 0
}

// len32Buffered reports whether br holds a whole len32 message.
func len32Buffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return len(b) >= 4 && uint64(len(b)-4) >= uint64(binary.BigEndian.Uint32(b))
}

// read is the reading goroutine.
func (r *inputReader) read(fr *framing.Reader, complete func() bool) {
	defer close(r.exited)
	for {
		var b *inputBatch
		select {
		case b = <-r.free:
		case <-r.done:
			return
		}
		b.data, b.ends, b.err = b.data[:0], b.ends[:0], nil
		for {
			msg, err := fr.Next()
			if err != nil {
				b.err = err
				break
			}
			b.data = append(b.data, msg...)
			b.ends = append(b.ends, len(b.data))
			if len(b.data) >= inputBatchBytes || len(b.ends) == cap(b.ends) || !complete() {
				break
			}
		}
		select {
		case r.full <- b:
		case <-r.done:
			return
		}
		if b.err != nil {
			return
		}
	}
}

// Next returns the next message, valid until the next call, or the error
// that ended the input (io.EOF at its clean end). Once ctx is done it
// still returns the messages already read, without waiting for more,
// and then errStopped.
func (r *inputReader) Next(ctx context.Context) ([]byte, error) {
	for {
		if b := r.cur; b != nil {
			if r.i < len(b.ends) {
				start := 0
				if r.i > 0 {
					start = b.ends[r.i-1]
				}
				r.i++
				return b.data[start:b.ends[r.i-1]], nil
			}
			if b.err != nil {
				return nil, b.err
			}
			r.free <- b // never blocks: there are as many slots as batches
			r.cur = nil
		}
		select {
		case b := <-r.full:
			r.cur, r.i = b, 0
			continue
		default:
		}
		if ctx.Err() != nil {
			return nil, errStopped
		}
		select {
		case b := <-r.full:
			r.cur, r.i = b, 0
		case <-ctx.Done():
		}
	}
}

// Discard drops the messages read but not yet returned by Next, those of
// the batch being handed out and of the batches ready behind it, and
// returns how many there were. The
// reading goroutine may hand over more afterwards; Next would return
// them.
func (r *inputReader) Discard() int {
	n := 0
	if r.cur != nil {
		n += len(r.cur.ends) - r.i
		if r.cur.err != nil {
			return n // the last batch: nothing behind it
		}
		r.free <- r.cur
		r.cur = nil
	}
	for {
		select {
		case b := <-r.full:
			n += len(b.ends)
			if b.err != nil {
				r.cur, r.i = b, len(b.ends) // keep the end of input for Next
				return n
			}
			r.free <- b
		default:
			return n
		}
	}
}

// errStopped is returned by inputReader.Next once its context is done and
// every message already read has been returned.
var errStopped = context.Canceled

// Stop ends the reading goroutine. When it is blocked in a read, Stop
// interrupts the read if the input has read deadlines (an *os.File that
// is a non-blocking pipe, a net.Conn), and waits for it to return. If the
// input has none (the usual *os.File for stdin, in blocking mode), a read
// blocked there cannot be interrupted: Stop returns at once and the
// goroutine ends by itself when the read returns, touching nothing but
// its own batch; `telewire send` exits right after Stop, which ends it
// too.
func (r *inputReader) Stop() {
	close(r.done)
	select {
	case <-r.exited:
		return
	default:
	}
	if d, ok := r.in.(interface{ SetReadDeadline(time.Time) error }); ok && d.SetReadDeadline(time.Now()) == nil {
		<-r.exited
	}
}
