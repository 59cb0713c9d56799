// Package framing splits a byte stream into messages and joins messages
// into a byte stream, in the framings the telewire command speaks on
// stdin and stdout:
//
//   - line: one message per line, terminated by '\n' (the newline is not
//     part of the message; a final line without one is still a message).
//     A Writer refuses a payload that contains a newline (ErrNewline).
//   - len32: a 4-byte big-endian length followed by that many bytes, for
//     binary payloads.
//   - json (output only): one JSON object per line per message, with the
//     message's metadata, and one per gap the receiver skipped; see
//     AppendJSONMessage and AppendJSONGap.
package framing

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Framing names a message framing.
type Framing string

// The framings.
const (
	Line  Framing = "line"
	Len32 Framing = "len32"
	JSON  Framing = "json" // output only: see AppendJSONMessage
)

// ParseOutput returns the output framing named s: line, len32 or json.
func ParseOutput(s string) (Framing, error) {
	switch Framing(s) {
	case Line, Len32, JSON:
		return Framing(s), nil
	}
	return "", fmt.Errorf("unknown framing %q (want line, len32 or json)", s)
}

// Parse returns the input framing named s: line or len32.
func Parse(s string) (Framing, error) {
	switch Framing(s) {
	case Line, Len32:
		return Framing(s), nil
	}
	return "", fmt.Errorf("unknown framing %q (want line or len32)", s)
}

// ErrTooLong is returned for a message longer than the reader's limit.
var ErrTooLong = errors.New("framing: message longer than the limit")

// ErrTruncated is returned when the stream ends inside a len32 message.
var ErrTruncated = errors.New("framing: stream ends inside a message")

// Reader reads framed messages. It is not safe for concurrent use.
type Reader struct {
	f   Framing
	r   *bufio.Reader
	max int
	buf []byte
}

// NewReader returns a Reader of framing f over r accepting messages of up
// to max bytes.
func NewReader(r io.Reader, f Framing, max int) *Reader {
	return &Reader{f: f, r: bufio.NewReaderSize(r, 1<<16), max: max, buf: make([]byte, 0, 4096)}
}

// Next returns the next message, valid until the next call, or io.EOF at
// the clean end of the stream.
func (r *Reader) Next() ([]byte, error) {
	if r.f == Len32 {
		return r.nextLen32()
	}
	return r.nextLine()
}

func (r *Reader) nextLine() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.r.ReadSlice('\n')
		r.buf = append(r.buf, chunk...)
		if len(r.buf) > r.max+1 || (len(r.buf) > r.max && r.buf[len(r.buf)-1] != '\n') {
			return nil, fmt.Errorf("%w (%d bytes)", ErrTooLong, r.max)
		}
		switch {
		case err == nil:
			return r.buf[:len(r.buf)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(r.buf) == 0 {
				return nil, io.EOF
			}
			return r.buf, nil // last line without a newline
		default:
			return nil, err
		}
	}
}

func (r *Reader) nextLen32() ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err // io.EOF: clean end
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(r.max) {
		return nil, fmt.Errorf("%w: %d > %d bytes", ErrTooLong, n, r.max)
	}
	if cap(r.buf) < int(n) {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	return r.buf, nil
}

// ErrNewline is returned by a line Writer for a payload that contains a
// newline: written as is it would become several messages to the reader,
// so it is refused (and counted, see Writer.Refused) instead.
var ErrNewline = errors.New("framing: payload contains a newline, which line framing cannot carry (use --framing len32 or json)")

// FlushThreshold is the buffered size past which a Writer hands its
// buffer to the underlying writer without waiting for Flush.
const FlushThreshold = 64 << 10

// Writer writes framed messages into its own buffer and hands the buffer
// to the underlying writer at Flush, or once it passes FlushThreshold. It
// is made for a caller that knows when a batch ends: write the messages
// that are waiting, then Flush, so that no message waits in the buffer for
// one that may never come. Write allocates nothing once the buffer has
// grown to hold a batch. A Writer is not safe for concurrent use.
type Writer struct {
	f       Framing
	w       io.Writer
	buf     []byte
	refused uint64
}

// NewWriter returns a Writer of framing f (Line, Len32 or JSON) over w.
func NewWriter(w io.Writer, f Framing) *Writer {
	return &Writer{f: f, w: w, buf: make([]byte, 0, FlushThreshold+4096)}
}

// Write writes one message with no metadata (JSON framing writes only its
// payload fields). Line framing refuses a payload with a newline
// (ErrNewline), writing nothing.
func (w *Writer) Write(msg []byte) error { return w.WriteMessage(nil, msg) }

// WriteMessage writes one message; m is its metadata, which only JSON
// framing writes (nil: none). Line framing refuses a payload with a
// newline (ErrNewline), writing nothing. An error other than ErrNewline is
// the underlying writer's.
func (w *Writer) WriteMessage(m *Meta, payload []byte) error {
	switch w.f {
	case Len32:
		w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(len(payload)))
		w.buf = append(w.buf, payload...)
	case JSON:
		w.buf = AppendJSONMessage(w.buf, m, payload)
	default:
		if bytes.IndexByte(payload, '\n') >= 0 {
			w.refused++
			return ErrNewline
		}
		w.buf = append(w.buf, payload...)
		w.buf = append(w.buf, '\n')
	}
	if len(w.buf) >= FlushThreshold {
		return w.Flush()
	}
	return nil
}

// WriteGap writes a range of sequences the receiver passed over. Only JSON
// framing carries gaps; the others write nothing.
func (w *Writer) WriteGap(g *Gap) error {
	if w.f != JSON {
		return nil
	}
	w.buf = AppendJSONGap(w.buf, g)
	if len(w.buf) >= FlushThreshold {
		return w.Flush()
	}
	return nil
}

// Buffered returns the bytes written but not yet flushed.
func (w *Writer) Buffered() int { return len(w.buf) }

// Refused returns how many payloads line framing refused (ErrNewline).
func (w *Writer) Refused() uint64 { return w.refused }

// Flush hands the buffered bytes to the underlying writer, in one Write.
func (w *Writer) Flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.w.Write(w.buf)
	if err == nil && n < len(w.buf) {
		err = io.ErrShortWrite
	}
	if err != nil {
		// Keep what was not taken, so that a caller may retry.
		w.buf = w.buf[:copy(w.buf, w.buf[n:])]
		return err
	}
	w.buf = w.buf[:0]
	return nil
}
