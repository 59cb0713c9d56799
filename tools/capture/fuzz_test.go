package capture

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFilter: parsing never panics; a parsed filter's canonical String
// parses back to a filter with the same String and the same matches.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "udp", "udp port 5000 and dst 233.54.12.0/24", "src host 10.0.0.1",
		"dst port 53 or src port 53", "not port 123", "(ip6 or ip) and not (src net fd00::/8)",
		"src and dst portrange 1-1024", "flow [::1]:53 10.0.0.1:99", "!(port 1 || port 2) && udp",
		"src or dst 10.0.0.0/8", "((((port 1))))", "dst host fe80::1%eth0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := ParseFilter(expr)
		if err != nil {
			var fe *FilterError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFilterSyntax) {
				t.Fatalf("%q: untyped error %v", expr, err)
			}
			if fe.Offset < 0 || fe.Offset > len(expr) {
				t.Fatalf("%q: offset %d out of range", expr, fe.Offset)
			}
			return
		}
		s := flt.String()
		again, err := ParseFilter(s)
		if err != nil {
			t.Fatalf("%q: canonical %q does not parse: %v", expr, s, err)
		}
		if again.String() != s {
			t.Fatalf("%q: canonical %q reparses as %q", expr, s, again.String())
		}
		for i := range filterProbes {
			if flt.Match(&filterProbes[i]) != again.Match(&filterProbes[i]) {
				t.Fatalf("%q and %q disagree on probe %d", expr, s, i)
			}
		}
	})
}

// FuzzReader: any input is read without panic, with bounded results and
// counters that add up.
func FuzzReader(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdataDir, "*.pcap*"))
	for _, p := range files {
		if filepath.Ext(p) == ".golden" {
			continue
		}
		if b, err := os.ReadFile(p); err == nil && len(b) < 8192 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), Options{MaxPendingDatagrams: 4})
		if err != nil {
			return
		}
		for range 10000 {
			d, err := r.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrFileTruncated) && !errors.Is(err, ErrMalformedFile) {
					t.Fatalf("untyped error %v", err)
				}
				break
			}
			if len(d.Payload) > maxReassembled || !d.Src.IsValid() || !d.Dst.IsValid() {
				t.Fatalf("bad datagram %v -> %v, %d bytes", d.Src, d.Dst, len(d.Payload))
			}
		}
		st := r.Stats()
		if st.Datagrams+st.FragmentsHeld+st.Filtered+st.Skipped() != st.Records {
			t.Fatalf("stats do not add up: %+v", st)
		}
	})
}
