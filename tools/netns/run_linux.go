package netns

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

func checkOS() error { return nil }

// enterAndRun moves the calling thread, which the caller has locked, into
// the network namespace bound at path, runs fn, and moves the thread back,
// whether fn returns, panics or ends the goroutine (runtime.Goexit). It
// sets *stranded when the thread could not be moved back and must not be
// unlocked.
func enterAndRun(path string, fn func() error, stranded *bool) (err error) {
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open own namespace: %w", err)
	}
	defer unix.Close(self)
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", path, err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: enter %s: %w", path, err)
	}
	defer func() { // before self is closed
		if lerr := unix.Setns(self, unix.CLONE_NEWNET); lerr != nil {
			*stranded = true
			err = errors.Join(err, fmt.Errorf("netns: leave %s: %w", path, lerr))
		}
	}()
	return fn()
}
