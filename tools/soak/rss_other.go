//go:build !linux

package soak

// rssBytes returns -1: the resident set size is only read on Linux
// (/proc/self/statm); samples show it as n/a elsewhere.
func rssBytes() int64 { return -1 }
