package capture

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testdataDir holds the captures and their tshark golden files.
const testdataDir = "../../testdata/pcap"

// goldenRecord is one line of a .golden file made by regen-golden.sh.
type goldenRecord struct {
	time     time.Time
	iface    int
	src, dst netip.AddrPort
	payload  []byte
	line     int
}

func parseEpoch(s string) (time.Time, error) {
	secStr, fracStr, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secStr, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	fracStr = (fracStr + "000000000")[:9]
	ns, err := strconv.ParseInt(fracStr, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(sec, ns).UTC(), nil
}

func loadGolden(t *testing.T, path string) []goldenRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []goldenRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) != 7 {
			t.Fatalf("%s:%d: %d fields, want 7", path, n, len(fields))
		}
		ts, err := parseEpoch(fields[0])
		if err != nil {
			t.Fatalf("%s:%d: time: %v", path, n, err)
		}
		iface, err1 := strconv.Atoi(fields[1])
		sp, err2 := strconv.ParseUint(fields[3], 10, 16)
		dp, err3 := strconv.ParseUint(fields[5], 10, 16)
		sa, err4 := netip.ParseAddr(fields[2])
		da, err5 := netip.ParseAddr(fields[4])
		payload, err6 := hex.DecodeString(fields[6])
		if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		out = append(out, goldenRecord{
			time: ts, iface: iface,
			src: netip.AddrPortFrom(sa, uint16(sp)), dst: netip.AddrPortFrom(da, uint16(dp)),
			payload: payload, line: n,
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// readAll returns every datagram of a capture, payloads copied, and the
// reader's final error (nil at a clean end).
func readAll(t testing.TB, r *Reader) ([]Datagram, error) {
	t.Helper()
	var out []Datagram
	for {
		d, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		d.Payload = bytes.Clone(d.Payload)
		out = append(out, d)
	}
}

// TestGolden compares the reader's datagrams for every capture in testdata
// with what tshark reported (regen-golden.sh): same count, order, times,
// interfaces, endpoints and payload bytes.
func TestGolden(t *testing.T) {
	goldens, err := filepath.Glob(filepath.Join(testdataDir, "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if len(goldens) < 10 {
		t.Fatalf("found %d golden files in %s, want at least 10", len(goldens), testdataDir)
	}
	for _, g := range goldens {
		capPath := strings.TrimSuffix(g, ".golden")
		t.Run(filepath.Base(capPath), func(t *testing.T) {
			want := loadGolden(t, g)
			r, err := Open(capPath, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := readAll(t, r)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if len(got) != len(want) {
				t.Errorf("%d datagrams, tshark has %d (stats %+v)", len(got), len(want), r.Stats())
			}
			for i := range min(len(got), len(want)) {
				g, w := got[i], want[i]
				if !g.Time.Equal(w.time) || g.Interface != w.iface || g.Src != w.src || g.Dst != w.dst || !bytes.Equal(g.Payload, w.payload) {
					t.Fatalf("datagram %d (golden line %d):\n got  %v if%d %v -> %v %x\n want %v if%d %v -> %v %x",
						i, w.line, g.Time, g.Interface, g.Src, g.Dst, g.Payload, w.time, w.iface, w.src, w.dst, w.payload)
				}
			}
			st := r.Stats()
			if st.Datagrams != uint64(len(got)) {
				t.Errorf("Stats.Datagrams %d, returned %d", st.Datagrams, len(got))
			}
			if sum := st.Datagrams + st.FragmentsHeld + st.Filtered + st.Skipped(); sum != st.Records {
				t.Errorf("stats do not add up: %+v", st)
			}
		})
	}
}
