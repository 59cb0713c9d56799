package udpio

import (
	"bufio"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestKernelDrops floods a receiver whose receive buffer is tiny without
// reading it, then drains it: the kernel's drop counter must come through.
func TestKernelDrops(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			// 1 byte asks for the kernel's minimum buffer (a few KiB).
			rx := listen(t, "127.0.0.1:0", Config{NoBatch: m.noBatch, BatchSize: 32, MaxDatagram: 2048, ReadBufferBytes: 1})
			tx := listen(t, "127.0.0.1:0", Config{BatchSize: 32})
			flood := datagrams(payloads(rand.New(rand.NewPCG(13, 14)), 64, 1024), rx.LocalAddr())
			for range 8 {
				if n, err := tx.WriteBatch(flood); n != len(flood) || err != nil {
					t.Fatalf("WriteBatch = %d, %v", n, err)
				}
			}
			if d := rx.Stats().KernelDrops; d != 0 {
				t.Fatalf("KernelDrops = %d before any read", d)
			}
			// The counter rides on datagrams queued after the drops, so send
			// numbered markers until one arrives behind the flood.
			if err := rx.SetReadDeadline(time.Now().Add(safetyTimeout)); err != nil {
				t.Fatal(err)
			}
			marker := []byte("marker")
			found := false
			markers := 0
			for ; !found; markers++ {
				if markers == 1000 {
					t.Fatal("no marker arrived")
				}
				if err := tx.WriteTo(marker, rx.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				dgs, err := rx.Read()
				if err != nil {
					t.Fatal(err)
				}
				for _, dg := range dgs {
					found = found || string(dg.Data) == "marker"
				}
			}
			s := rx.Stats()
			if s.KernelDrops == 0 {
				t.Fatalf("KernelDrops = 0 after flooding a small buffer; stats %+v", s)
			}
			sent := uint64(8*len(flood) + markers)
			if s.KernelDrops > sent {
				t.Fatalf("sent %d datagrams, yet KernelDrops = %d", sent, s.KernelDrops)
			}
			t.Logf("sent %d (%d markers), read %d, kernel dropped %d", sent, markers, s.DatagramsRead, s.KernelDrops)
		})
	}
}

// TestBufferSizesLinux checks the sizes Linux grants: twice an ordinary
// request, and past rmem_max only with CAP_NET_ADMIN (SO_RCVBUFFORCE).
func TestBufferSizesLinux(t *testing.T) {
	c := listen(t, "127.0.0.1:0", Config{ReadBufferBytes: 64 << 10, WriteBufferBytes: 96 << 10})
	if r, w := c.BufferSizes(); r != 128<<10 || w != 192<<10 {
		t.Fatalf("BufferSizes = %d, %d; want %d, %d", r, w, 128<<10, 192<<10)
	}

	rmemMax := readSysctl(t, "/proc/sys/net/core/rmem_max")
	wmemMax := readSysctl(t, "/proc/sys/net/core/wmem_max")
	want := max(rmemMax, wmemMax) * 2
	if want > MaxSocketBuffer {
		t.Skipf("rmem_max %d too large to exceed within MaxSocketBuffer", rmemMax)
	}
	c = listen(t, "127.0.0.1:0", Config{ReadBufferBytes: want, WriteBufferBytes: want})
	r, w := c.BufferSizes()
	if hasCapNetAdmin(t) {
		if r != 2*want || w != 2*want {
			t.Fatalf("with CAP_NET_ADMIN: BufferSizes = %d, %d; want forced %d", r, w, 2*want)
		}
	} else if r != 2*rmemMax || w != 2*wmemMax {
		t.Fatalf("without CAP_NET_ADMIN: BufferSizes = %d, %d; want capped %d, %d", r, w, 2*rmemMax, 2*wmemMax)
	}
	t.Logf("requested %d (rmem_max %d): granted read %d, write %d", want, rmemMax, r, w)
}

func readSysctl(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("cannot read %s: %v", path, err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// hasCapNetAdmin reads the effective capability set of this process.
func hasCapNetAdmin(t *testing.T) bool {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("cannot read capabilities: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("CapEff %q: %v", v, err)
			}
			return caps&(1<<unix.CAP_NET_ADMIN) != 0
		}
	}
	t.Skip("no CapEff line in /proc/self/status")
	return false
}

// cmsg builds one control message as the kernel lays it out.
func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func TestDropsFromOOB(t *testing.T) {
	ovfl := func(v uint32) []byte { return cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(v)) }
	other := cmsg(unix.SOL_IP, unix.IP_TTL, u32(64))
	cat := func(bs ...[]byte) (out []byte) {
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	tests := []struct {
		name  string
		oob   []byte
		drops uint32
		ok    bool
	}{
		{"empty", nil, 0, false},
		{"alone", ovfl(7), 7, true},
		{"after another", cat(other, ovfl(1<<31)), 1 << 31, true},
		{"before another", cat(ovfl(3), other), 3, true},
		{"other only", other, 0, false},
		{"short data", cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, []byte{1, 2}), 0, false},
		{"truncated header", ovfl(5)[:unix.SizeofCmsghdr-1], 0, false},
		{"truncated data", ovfl(5)[:unix.CmsgLen(0)+2], 0, false},
		{"length past end", cat(other[:len(other)-1]), 0, false},
		{"zero length", make([]byte, 32), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drops, ok := dropsFromOOB(tt.oob)
			if drops != tt.drops || ok != tt.ok {
				t.Fatalf("dropsFromOOB = %d, %v; want %d, %v", drops, ok, tt.drops, tt.ok)
			}
			for i := range tt.oob {
				dropsFromOOB(tt.oob[:i]) // every prefix: no panic
			}
		})
	}
	if a := testing.AllocsPerRun(100, func() { dropsFromOOB(tests[2].oob) }); a != 0 {
		t.Fatalf("dropsFromOOB allocates %v", a)
	}
}

// FuzzDropsFromOOB checks the parser against x/sys's allocating one: when
// that accepts the input, both must find the same (last) counter.
func FuzzDropsFromOOB(f *testing.F) {
	f.Add(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(9)))
	f.Add(append(cmsg(unix.SOL_IP, unix.IP_TTL, u32(1)), cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(2))...))
	f.Add(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, []byte{1}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		drops, ok := dropsFromOOB(oob)
		msgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil {
			return
		}
		var wantDrops uint32
		wantOK := false
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4 {
				wantDrops, wantOK = binary.NativeEndian.Uint32(m.Data), true
			}
		}
		if drops != wantDrops || ok != wantOK {
			t.Fatalf("dropsFromOOB = %d, %v; x/sys finds %d, %v", drops, ok, wantDrops, wantOK)
		}
	})
}
