package soak

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

func TestParseStatm(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
		err  error
	}{
		{"1234 567 89 1 0 400 0\n", 567, nil},
		{"1 2", 2, nil},
		{"  10   20\n", 20, nil},
		{"18446744073709551615 18446744073709551615 0", 1<<64 - 1, nil},
		{"1 18446744073709551616", 0, errStatm},
		{"", 0, errStatm},
		{"123\n", 0, errStatm},
		{"12 x3 4", 0, errStatm},
		{"12\t34", 0, errStatm},
	}
	for _, c := range cases {
		got, err := parseStatm([]byte(c.in))
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("parseStatm(%q) = %d, %v; want %d, %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestRSS(t *testing.T) {
	b := rssBytes()
	if runtime.GOOS != "linux" {
		if b != -1 {
			t.Fatalf("rss %d off Linux, want -1 (n/a)", b)
		}
		return
	}
	if b <= 0 {
		t.Fatalf("rss %d on Linux", b)
	}
}

func FuzzParseStatm(f *testing.F) {
	f.Add([]byte("1234 567 89 1 0 400 0\n"))
	f.Add([]byte("1 2"))
	f.Add([]byte("99999999999999999999 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := parseStatm(b)
		if err != nil {
			return
		}
		// The value is the second decimal field of the text.
		fields := strings.Fields(string(b))
		if len(fields) < 2 {
			t.Fatalf("parseStatm(%q) = %d with fewer than two fields", b, v)
		}
		if want, err := strconv.ParseUint(fields[1], 10, 64); err != nil || want != v {
			t.Fatalf("parseStatm(%q) = %d; second field %q parses as %d, %v", b, v, fields[1], want, err)
		}
	})
}
