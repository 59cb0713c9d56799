// Package framing splits a byte stream into messages and joins messages
// into a byte stream, in the two framings the telewire command speaks on
// stdin and stdout:
//
//   - line: one message per line, terminated by '\n' (the newline is not
//     part of the message; a final line without one is still a message);
//   - len32: a 4-byte big-endian length followed by that many bytes, for
//     binary payloads.
package framing

import (
	"bufio"
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
)

// Parse returns the framing named s.
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

// Writer writes framed messages through a buffer; call Flush at the end.
type Writer struct {
	f Framing
	w *bufio.Writer
}

// NewWriter returns a Writer of framing f over w.
func NewWriter(w io.Writer, f Framing) *Writer {
	return &Writer{f: f, w: bufio.NewWriterSize(w, 1<<16)}
}

// Write writes one message.
func (w *Writer) Write(msg []byte) error {
	if w.f == Len32 {
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
		if _, err := w.w.Write(hdr[:]); err != nil {
			return err
		}
		_, err := w.w.Write(msg)
		return err
	}
	if _, err := w.w.Write(msg); err != nil {
		return err
	}
	return w.w.WriteByte('\n')
}

// Flush writes buffered data to the underlying writer.
func (w *Writer) Flush() error { return w.w.Flush() }
