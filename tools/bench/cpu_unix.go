//go:build unix

package bench

import "syscall"

// ProcessCPUNanos returns the CPU time this process has used so far, user
// plus system, all threads (getrusage RUSAGE_SELF), in nanoseconds.
func ProcessCPUNanos() (int64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), nil
}
