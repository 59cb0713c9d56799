package capture

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

func openAll(t *testing.T, name string, opts Options) ([]Datagram, Stats) {
	t.Helper()
	r, err := Open(filepath.Join(testdataDir, name), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := readAll(t, r)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return got, r.Stats()
}

// TestStatsByReason pins the per-reason counts of captures whose contents
// are known frame by frame.
func TestStatsByReason(t *testing.T) {
	tests := []struct {
		file string
		want Stats
	}{
		{"gen__noise.pcap", Stats{Records: 12, Datagrams: 3, NotIP: 3, NotUDP: 3, Malformed: 3}},
		{"gen__truncated.pcap", Stats{Records: 8, Datagrams: 2, Truncated: 5, FragmentsHeld: 1, FragmentsExpired: 1}},
		{"gen__fragments.pcap", Stats{Records: 16, Datagrams: 5, Reassembled: 4, FragmentsHeld: 10, FragmentsDuplicate: 1}},
		{"gen__ipv6_ext.pcap", Stats{Records: 4, Datagrams: 3, Reassembled: 1, FragmentsHeld: 1}},
		{"tcpdumpgit__dns_udp_2.pcap", Stats{Records: 2, Datagrams: 1, Truncated: 1}},
		{"ndpigit__syslog.pcap", Stats{Records: 94, Datagrams: 77, NotUDP: 17}},
		{"wireshark__many_interfaces.1.pcapng", Stats{Records: 64, Datagrams: 32, NotUDP: 32}},
		{"dnscollector__dnsdump_ip4_fragmented+udp.pcap", Stats{Records: 3, Datagrams: 2, Reassembled: 1, FragmentsHeld: 1}},
		{"dnscollector__dnsdump_ip6_fragmented+udp.pcap", Stats{Records: 3, Datagrams: 2, Reassembled: 1, FragmentsHeld: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, st := openAll(t, tt.file, Options{})
			if st != tt.want {
				t.Errorf("stats\n got  %+v\n want %+v", st, tt.want)
			}
		})
	}
}

// TestMixedLinkTypes is the pcapng trap: pcapgo's NgReader, left to its
// default, drops packets of interfaces whose link type differs from the
// first interface's; the Reader must return the NULL interface's too.
func TestMixedLinkTypes(t *testing.T) {
	const name = "wireshark__many_interfaces.1.pcapng"
	got, _ := openAll(t, name, Options{})
	perIface := map[int]int{}
	for _, d := range got {
		perIface[d.Interface]++
	}
	if perIface[10] != 2 || perIface[0] != 30 {
		t.Fatalf("datagrams per interface %v, want 30 on 0 (Ethernet) and 2 on 10 (NULL)", perIface)
	}

	// The trap itself, to show what the option guards against.
	f, err := os.Open(filepath.Join(testdataDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ng, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, _, err := ng.ReadPacketData(); err != nil {
			break
		}
		n++
	}
	if n >= 64 {
		t.Fatalf("pcapgo's default reader returned all %d packets; the trap is gone", n)
	}
}

// TestTimestampsStepBackwards: the many_interfaces capture steps back in
// time once; the reader returns times as recorded, for replay to handle.
func TestTimestampsStepBackwards(t *testing.T) {
	got, _ := openAll(t, "wireshark__many_interfaces.1.pcapng", Options{})
	back := 0
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			back++
		}
	}
	if back == 0 {
		t.Fatal("no backward step among the returned datagrams")
	}
}

// TestTruncatedDatagramNeverWhole: a datagram cut by the snap length is
// never returned; the one returned from dns_udp_2 is the whole 56-byte one.
func TestTruncatedDatagramNeverWhole(t *testing.T) {
	got, st := openAll(t, "tcpdumpgit__dns_udp_2.pcap", Options{})
	if len(got) != 1 || st.Truncated != 1 {
		t.Fatalf("%d datagrams, %d truncated; want 1 and 1", len(got), st.Truncated)
	}
	if len(got[0].Payload) != 56 {
		t.Fatalf("payload %d bytes, want the whole 56", len(got[0].Payload))
	}
}

func TestTimestampResolutions(t *testing.T) {
	got, _ := openAll(t, "gen__nanosecond_bigendian.pcap", Options{})
	if want := mixedDatagrams(14, 8)[0].Time; !got[0].Time.Equal(want) {
		t.Fatalf("time %v, want %v", got[0].Time, want)
	}
}

func TestFilterOption(t *testing.T) {
	f, err := ParseFilter("dst port 53")
	if err != nil {
		t.Fatal(err)
	}
	got, st := openAll(t, "gopacket__test_dns.pcap", Options{Filter: f})
	all, _ := openAll(t, "gopacket__test_dns.pcap", Options{})
	want := 0
	for _, d := range all {
		if d.Dst.Port() == 53 {
			want++
		}
	}
	if len(got) != want || st.Filtered != uint64(len(all)-want) || want == 0 {
		t.Fatalf("%d returned, %d filtered; want %d of %d", len(got), st.Filtered, want, len(all))
	}
}

func TestGzip(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(testdataDir, "wireshark__sip.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(raw)
	zw.Close()
	r, err := NewReader(&z, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, r)
	if err != nil || len(got) != 6 {
		t.Fatalf("%d datagrams, err %v; want 6", len(got), err)
	}
}

func TestBadInputErrors(t *testing.T) {
	if _, err := NewReader(bytes.NewReader([]byte("hello world, not a capture")), Options{}); !errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("text: %v, want ErrUnknownFormat", err)
	}
	if _, err := NewReader(bytes.NewReader(nil), Options{}); !errors.Is(err, ErrUnknownFormat) {
		t.Fatalf("empty: %v, want ErrUnknownFormat", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte{0xd4, 0xc3, 0xb2, 0xa1, 9, 9}), Options{}); !errors.Is(err, ErrMalformedFile) {
		t.Fatalf("short pcap header: %v, want ErrMalformedFile", err)
	}
	if _, err := NewReader(bytes.NewReader(nil), Options{MaxPendingDatagrams: -1}); err == nil {
		t.Fatal("negative MaxPendingDatagrams accepted")
	}
	if _, err := Open(filepath.Join(testdataDir, "missing.pcap"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}

	raw, err := os.ReadFile(filepath.Join(testdataDir, "gopacket__test_dns.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	// Cut inside the last record: the datagrams before it, then ErrFileTruncated.
	r, err := NewReader(bytes.NewReader(raw[:len(raw)-5]), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, r)
	if !errors.Is(err, ErrFileTruncated) || len(got) != 9 {
		t.Fatalf("cut file: %d datagrams, err %v; want 9 and ErrFileTruncated", len(got), err)
	}
	if _, err2 := r.Next(); !errors.Is(err2, ErrFileTruncated) {
		t.Fatalf("error not sticky: %v", err2)
	}
	// A record whose captured length exceeds its original length.
	bad := bytes.Clone(raw)
	bad[pcapFileHeaderLen+8] = 0xff
	r, err = NewReader(bytes.NewReader(bad), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, r); !errors.Is(err, ErrMalformedFile) {
		t.Fatalf("bad record length: %v, want ErrMalformedFile", err)
	}
}

// TestPrefixes reads every prefix of every capture: no panic, the datagrams
// are a prefix of the whole file's, and the end is clean or a typed error.
func TestPrefixes(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testdataDir, "*.pcap*"))
	for _, path := range files {
		if filepath.Ext(path) == ".golden" {
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := NewReader(bytes.NewReader(raw), Options{})
		full, err := readAll(t, r)
		if err != nil {
			t.Fatal(err)
		}
		step := max(1, len(raw)/300)
		for n := 0; n < len(raw); n += step {
			r, err := NewReader(bytes.NewReader(raw[:n]), Options{})
			if err != nil {
				continue
			}
			got, err := readAll(t, r)
			if err != nil && !errors.Is(err, ErrFileTruncated) && !errors.Is(err, ErrMalformedFile) {
				t.Fatalf("%s[:%d]: untyped error %v", filepath.Base(path), n, err)
			}
			if len(got) > len(full) {
				t.Fatalf("%s[:%d]: %d datagrams, whole file has %d", filepath.Base(path), n, len(got), len(full))
			}
			for i := range got {
				if !bytes.Equal(got[i].Payload, full[i].Payload) {
					t.Fatalf("%s[:%d]: datagram %d differs", filepath.Base(path), n, i)
				}
			}
		}
	}
}

func TestCloseEndsReading(t *testing.T) {
	r, err := Open(filepath.Join(testdataDir, "gopacket__test_dns.pcap"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next after Close: %v", err)
	}
}

// TestNoAllocs: reading plain UDP frames does not allocate once warm.
func TestNoAllocs(t *testing.T) {
	for _, opts := range []WriterOptions{{}, {LinkType: 113}, {VLANs: []uint16{7, 8}}} {
		var dgs []Datagram
		for range 300 {
			dgs = append(dgs, mixedDatagrams(20, 4)...)
		}
		body := writeCapture(t, opts, dgs)
		r, err := NewReader(bytes.NewReader(body), Options{Filter: MustFilter(t, "port 5000 or port 5001 or port 6000")})
		if err != nil {
			t.Fatal(err)
		}
		for range 8 {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		}
		allocs := testing.AllocsPerRun(500, func() {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("link %v: %.2f allocations per datagram, want 0", opts, allocs)
		}
	}
}

// MustFilter parses expr or fails the test.
func MustFilter(t testing.TB, expr string) Filter {
	t.Helper()
	f, err := ParseFilter(expr)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFragmentTimeoutOption(t *testing.T) {
	// In gen__fragments the fragments of one datagram share a timestamp,
	// but the IPv6 datagram (t+1ms) is interleaved with the IPv4 one (t+2ms):
	// with a 1 ns timeout the IPv6 one expires each time an IPv4 fragment
	// arrives, and only it is lost.
	got, st := openAll(t, "gen__fragments.pcap", Options{FragmentTimeout: time.Nanosecond})
	if st.Reassembled != 3 || st.FragmentsExpired != 4 || len(got) != 4 {
		t.Fatalf("with a 1 ns timeout: %d datagrams, stats %+v", len(got), st)
	}
	// One slot: the interleaved IPv6 and IPv4 datagrams evict each other.
	_, st = openAll(t, "gen__fragments.pcap", Options{MaxPendingDatagrams: 1})
	if st.FragmentsExpired == 0 || st.Reassembled >= 4 {
		t.Fatalf("with one slot: stats %+v", st)
	}
}
