package app

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// SpoolInput copies r to its end into a new temporary file and returns the
// file's path and a function that removes it. It serves an input named "-"
// (standard input) to a reader that needs a file: replay reads its capture
// once to map the flows and again for each pass. Nothing is sent before the
// input has ended, so a live capture on a pipe is not replayed as it comes.
func SpoolInput(r io.Reader, pattern string) (path string, remove func(), err error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return "", nil, fmt.Errorf("spooling standard input: %w", err)
	}
	remove = func() { os.Remove(f.Name()) }
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		remove()
		return "", nil, fmt.Errorf("spooling standard input: %w", err)
	}
	if err := f.Close(); err != nil {
		remove()
		return "", nil, fmt.Errorf("spooling standard input: %w", err)
	}
	return f.Name(), remove, nil
}

// JSONLinesStamper is a writer for JSON Lines output made elsewhere (soak
// --json): every line that is a JSON object gets the build's "version"
// and the command's "settings" as its first members; other lines pass
// unchanged. It holds a line until its newline arrives; Flush writes
// whatever is held.
type JSONLinesStamper struct {
	w    io.Writer
	head []byte // `"version":{…},"settings":{…},`
	buf  []byte
}

// NewJSONLinesStamper returns a stamper writing to w.
func NewJSONLinesStamper(w io.Writer, settings map[string]string) (*JSONLinesStamper, error) {
	head, err := mergeJSON(versioned{Version: BuildVersion(), Settings: settings}, nil)
	if err != nil {
		return nil, err
	}
	// {"version":…} → "version":…,
	return &JSONLinesStamper{w: w, head: append(head[1:len(head)-1:len(head)-1], ',')}, nil
}

// Write stamps and writes every complete line of p (with what was held
// before it), and holds the rest. It reports len(p) written unless w
// failed.
func (s *JSONLinesStamper) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := s.buf[:i+1]
		var err error
		if len(line) > 3 && line[0] == '{' && line[1] != '}' {
			out := make([]byte, 0, len(line)+len(s.head))
			out = append(append(append(out, '{'), s.head...), line[1:]...)
			_, err = s.w.Write(out)
		} else {
			_, err = s.w.Write(line)
		}
		s.buf = s.buf[i+1:]
		if err != nil {
			return 0, err
		}
	}
}

// Flush writes a held partial line as it is.
func (s *JSONLinesStamper) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	return err
}
