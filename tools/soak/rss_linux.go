package soak

import "os"

// rssBytes returns the process's resident set size from /proc/self/statm,
// or -1 if it cannot be read.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	pages, err := parseStatm(b)
	if err != nil {
		return -1
	}
	return int64(pages) * int64(os.Getpagesize())
}
