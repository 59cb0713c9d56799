package bench

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// pacer sleeps the sending goroutine until a message is due. On Linux it
// locks the goroutine to its thread, sets the thread's timer slack to 1 ns
// and sleeps with nanosleep, which wakes within tens of microseconds;
// time.Sleep rounds short sleeps up to about a millisecond, which would
// turn 100k msgs/s into bursts of a hundred.
type pacer struct{}

func newPacer() pacer {
	runtime.LockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0) // best effort: default slack is 50 µs
	return pacer{}
}

// sleep blocks for about d nanoseconds.
func (pacer) sleep(d int64) {
	ts := unix.NsecToTimespec(d)
	_ = unix.Nanosleep(&ts, nil) // EINTR: waking early only sends on time
}

func (pacer) stop() { runtime.UnlockOSThread() }
