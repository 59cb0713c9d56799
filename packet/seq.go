package packet

// SeqDiff returns a-b in serial-number arithmetic: the signed distance from b
// to a, correct across the 2^64 wrap as long as the true distance is below
// 2^63.
func SeqDiff(a, b uint64) int64 { return int64(a - b) }

// SeqLess reports whether a comes before b in serial-number arithmetic.
func SeqLess(a, b uint64) bool { return int64(a-b) < 0 }

// SeqMax returns whichever of a and b comes later in serial-number
// arithmetic.
func SeqMax(a, b uint64) uint64 {
	if SeqLess(a, b) {
		return b
	}
	return a
}
