package app

import (
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
