package soak

import (
	"errors"
	"math"
)

// errStatm is returned by parseStatm for text that is not /proc/PID/statm.
var errStatm = errors.New("soak: malformed statm")

// parseStatm returns the resident set size in pages, the second field of
// /proc/PID/statm ("size resident shared text lib data dt", decimal page
// counts separated by spaces). It never panics.
func parseStatm(b []byte) (residentPages uint64, err error) {
	field := 0
	var v uint64
	digits := 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] >= '0' && b[i] <= '9' {
			d := uint64(b[i] - '0')
			if v > (math.MaxUint64-d)/10 {
				return 0, errStatm
			}
			v = v*10 + d
			digits++
			continue
		}
		if i < len(b) && b[i] != ' ' && b[i] != '\n' {
			return 0, errStatm
		}
		if digits > 0 {
			if field == 1 {
				return v, nil
			}
			field++
			v, digits = 0, 0
		}
	}
	return 0, errStatm
}
