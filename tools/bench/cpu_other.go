//go:build !unix

package bench

import "errors"

// ProcessCPUNanos is not available on this platform: the bench reports no
// CPU time.
func ProcessCPUNanos() (int64, error) {
	return 0, errors.ErrUnsupported
}
