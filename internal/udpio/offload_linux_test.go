package udpio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// requireOffload skips the test unless c has the offloads asked for: a
// kernel too old for them is not a failure of this package (the fallback
// tests below cover that case by simulation).
func requireOffload(t *testing.T, c *Conn, gso, gro bool) {
	t.Helper()
	hasGSO, hasGRO := c.Offload()
	if (gso && !hasGSO) || (gro && !hasGRO) {
		t.Skipf("kernel lacks UDP offload: GSO %v, GRO %v", hasGSO, hasGRO)
	}
}

// sized returns one datagram per size, to, with distinct seeded contents
// (the index in the first two bytes when there is room).
func sized(rng *rand.Rand, to netip.AddrPort, sizes ...int) []Datagram {
	dgs := make([]Datagram, len(sizes))
	for i, size := range sizes {
		dgs[i] = Datagram{Data: payloads(rng, 1, size)[0], Addr: to}
		if size >= 2 {
			dgs[i].Data[0], dgs[i].Data[1] = byte(i>>8), byte(i)
		}
	}
	return dgs
}

func repeat(n, size int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// dataFor returns the payloads of the datagrams in dgs addressed to to.
func dataFor(dgs []Datagram, to netip.AddrPort) [][]byte {
	var out [][]byte
	for _, dg := range dgs {
		if dg.Addr == to {
			out = append(out, dg.Data)
		}
	}
	return out
}

// TestGSOCoalescing sends a batch mixing sizes, destinations, a short last
// segment and empty datagrams, and checks both what arrives (every
// datagram, intact and in order, at the right receiver, with and without
// GRO there) and how it was sent (how many UDP_SEGMENT messages, in one
// sendmmsg call).
func TestGSOCoalescing(t *testing.T) {
	for _, f := range families {
		for _, gro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/gro=%v", f.name, gro), func(t *testing.T) {
				tx := listen(t, f.addr, Config{BatchSize: 16})
				requireOffload(t, tx, true, false)
				rxA := listen(t, f.addr, Config{BatchSize: 4, MaxDatagram: 2048, NoGRO: !gro})
				rxB := listen(t, f.addr, Config{BatchSize: 4, MaxDatagram: 2048, NoGRO: !gro})
				a, b := rxA.LocalAddr(), rxB.LocalAddr()
				rng := rand.New(rand.NewPCG(21, 22))
				var dgs []Datagram
				add := func(to netip.AddrPort, sizes ...int) { dgs = append(dgs, sized(rng, to, sizes...)...) }
				add(a, 100, 100, 100, 60) // run 1: 3 full segments and a short last one
				add(a, 100, 100)          // run 2: the short one ended run 1
				add(b, 100, 100)          // run 3: another destination
				add(a, 0)                 // alone: empty datagrams are never coalesced
				add(a, 100, 100)          // run 4
				add(b, 50, 80)            // alone, then alone: a longer one cannot follow
				add(a, 7)                 // alone: the destination changes on both sides
				add(b, 1, 1, 1)           // run 5: one-byte segments
				n, err := tx.WriteBatch(dgs)
				if n != len(dgs) || err != nil {
					t.Fatalf("WriteBatch = %d, %v", n, err)
				}
				s := tx.Stats()
				if s.WriteSyscalls != 1 || s.GSOMessages != 5 || s.GSODatagrams != 13 || s.DatagramsWritten != uint64(len(dgs)) {
					t.Fatalf("stats %+v; want 1 call, 5 GSO messages of 13 datagrams, %d datagrams", s, len(dgs))
				}
				checkSame(t, readN(t, rxA, 10), dataFor(dgs, a), tx.LocalAddr())
				checkSame(t, readN(t, rxB, 7), dataFor(dgs, b), tx.LocalAddr())
				if gro && rxA.Stats().GROReads == 0 {
					t.Errorf("receiver with GRO saw no coalesced read: %+v", rxA.Stats())
				}
				if !gro && rxA.Stats().GROReads != 0 {
					t.Errorf("receiver without GRO counted coalesced reads: %+v", rxA.Stats())
				}
			})
		}
	}
}

// TestGSOLimits sends runs longer than the kernel takes in one message: more
// than MaxGSOSegments datagrams, and more than MaxGSOBytes4/6 bytes.
func TestGSOLimits(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			tx := listen(t, f.addr, Config{BatchSize: 8})
			requireOffload(t, tx, true, false)
			rx := listen(t, f.addr, Config{BatchSize: 64, MaxDatagram: 2048, ReadBufferBytes: 8 << 20})
			rng := rand.New(rand.NewPCG(23, 24))
			limit := MaxGSOBytes4
			if f.name == "v6" {
				limit = MaxGSOBytes6
			}
			cases := []struct {
				sizes    []int
				messages uint64
			}{
				{repeat(MaxGSOSegments+1, 64), 2}, // 64 + 1 (sent alone)
				{repeat(3*MaxGSOSegments, 10), 3}, // exactly three full messages
				{repeat(100, 1200), 2},            // 54 + 46: bytes bound first
			}
			// 63 segments of 1040 bytes (65520) fit IPv6's limit, not IPv4's.
			if limit == MaxGSOBytes4 {
				cases = append(cases, struct {
					sizes    []int
					messages uint64
				}{repeat(126, 1040), 3}) // 62 + 62 + 2
			} else {
				cases = append(cases, struct {
					sizes    []int
					messages uint64
				}{repeat(126, 1040), 2}) // 63 + 63
			}
			for i, tc := range cases {
				before := tx.Stats()
				dgs := sized(rng, rx.LocalAddr(), tc.sizes...)
				if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
					t.Fatalf("case %d: WriteBatch = %d, %v", i, n, err)
				}
				after := tx.Stats()
				msgs := after.GSOMessages - before.GSOMessages
				solo := uint64(len(dgs)) - (after.GSODatagrams - before.GSODatagrams)
				if msgs+solo != tc.messages || msgs == 0 {
					t.Errorf("case %d: %d GSO messages + %d datagrams alone, want %d messages", i, msgs, solo, tc.messages)
				}
				checkSame(t, readN(t, rx, len(dgs)), dataFor(dgs, rx.LocalAddr()), tx.LocalAddr())
			}
		})
	}
}

func TestGSORun(t *testing.T) {
	v4 := netip.MustParseAddrPort("127.0.0.1:1")
	v4b := netip.MustParseAddrPort("127.0.0.1:2")
	v6 := netip.MustParseAddrPort("[::1]:1")
	mapped := netip.MustParseAddrPort("[::ffff:127.0.0.1]:1")
	mk := func(to netip.AddrPort, sizes ...int) []Datagram {
		dgs := make([]Datagram, len(sizes))
		for i, s := range sizes {
			dgs[i] = Datagram{Data: make([]byte, s), Addr: to}
		}
		return dgs
	}
	half4, half6 := MaxGSOBytes4/2, MaxGSOBytes6/2
	tests := []struct {
		name   string
		dgs    []Datagram
		maxSeg int
		want   int
	}{
		{"empty batch", nil, MaxGSOBytes6, 0},
		{"one", mk(v4, 10), MaxGSOBytes6, 1},
		{"equal", mk(v4, 10, 10, 10), MaxGSOBytes6, 3},
		{"short last", mk(v4, 10, 10, 4, 4), MaxGSOBytes6, 3},
		{"longer next", mk(v4, 10, 11), MaxGSOBytes6, 1},
		{"empty first", mk(v4, 0, 0), MaxGSOBytes6, 1},
		{"empty next", mk(v4, 5, 0), MaxGSOBytes6, 1},
		{"other port", append(mk(v4, 5, 5), mk(v4b, 5)...), MaxGSOBytes6, 2},
		{"segment cap", mk(v4, repeat(MaxGSOSegments+5, 1)...), MaxGSOBytes6, MaxGSOSegments},
		{"v4 bytes fit", mk(v4, half4, half4), MaxGSOBytes6, 2},
		{"v4 bytes over", mk(v4, half4+1, half4+1), MaxGSOBytes6, 1},
		{"v4 short last fits", mk(v4, half4+1, half4-1), MaxGSOBytes6, 2},
		{"mapped v4 bytes over", mk(mapped, half4+1, half4+1), MaxGSOBytes6, 1},
		{"v6 bytes fit", mk(v6, half6, half6), MaxGSOBytes6, 2},
		{"v6 bytes over", mk(v6, half6+1, half6+1), MaxGSOBytes6, 1},
		{"ceiling", mk(v4, 100, 100), 99, 1},
		{"at ceiling", mk(v4, 100, 100), 100, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gsoRun(tt.dgs, tt.maxSeg); got != tt.want {
				t.Fatalf("gsoRun = %d, want %d", got, tt.want)
			}
		})
	}
}

// FuzzGSORun checks gsoRun's result against the rules it implements: a
// run is legal (one destination, sizes non-increasing only at the end,
// within the kernel's limits) and as long as the rules allow.
func FuzzGSORun(f *testing.F) {
	f.Add([]byte{10, 10, 10, 4}, []byte{0, 0, 0, 0}, uint16(65535))
	f.Add([]byte{0, 5}, []byte{0, 0}, uint16(65535))
	f.Add([]byte{9, 9, 9}, []byte{0, 1, 1}, uint16(9))
	f.Add(bytes.Repeat([]byte{255}, 100), make([]byte, 100), uint16(300))
	f.Fuzz(func(t *testing.T, sizes, dests []byte, maxSeg uint16) {
		to := []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:1"),
			netip.MustParseAddrPort("[::1]:1"),
			netip.MustParseAddrPort("127.0.0.1:2"),
		}
		dgs := make([]Datagram, len(sizes))
		for i, s := range sizes {
			d := byte(0)
			if i < len(dests) {
				d = dests[i] % byte(len(to))
			}
			// Sizes up to 255 × 200 reach the byte limits.
			dgs[i] = Datagram{Data: make([]byte, int(s)*200), Addr: to[d]}
		}
		n := gsoRun(dgs, int(maxSeg))
		if len(dgs) == 0 {
			if n != 0 {
				t.Fatalf("gsoRun of nothing = %d", n)
			}
			return
		}
		if n < 1 || n > len(dgs) || n > MaxGSOSegments {
			t.Fatalf("gsoRun = %d of %d", n, len(dgs))
		}
		if n == 1 {
			seg := len(dgs[0].Data)
			limit := MaxGSOBytes6
			if dgs[0].Addr.Addr().Is4() {
				limit = MaxGSOBytes4
			}
			if len(dgs) > 1 && seg > 0 && seg <= int(maxSeg) && dgs[1].Addr == dgs[0].Addr &&
				len(dgs[1].Data) > 0 && len(dgs[1].Data) <= seg && seg+len(dgs[1].Data) <= limit {
				t.Fatalf("gsoRun = 1, yet the second datagram could join: %d then %d bytes (max %d)", seg, len(dgs[1].Data), maxSeg)
			}
			return
		}
		seg, total := len(dgs[0].Data), 0
		if seg == 0 || seg > int(maxSeg) {
			t.Fatalf("coalesced %d datagrams of %d bytes (max segment %d)", n, seg, maxSeg)
		}
		for i, dg := range dgs[:n] {
			size := len(dg.Data)
			total += size
			if dg.Addr != dgs[0].Addr || size == 0 || size > seg || (size < seg && i != n-1) {
				t.Fatalf("datagram %d of a run of %d: %d bytes to %v, segment %d to %v", i, n, size, dg.Addr, seg, dgs[0].Addr)
			}
		}
		limit := MaxGSOBytes6
		if dgs[0].Addr.Addr().Is4() {
			limit = MaxGSOBytes4
		}
		if total > limit {
			t.Fatalf("run of %d bytes, limit %d", total, limit)
		}
		// Maximal: the run ended at a short datagram, at the segment cap,
		// at the end, or because the next one could not join.
		if last := len(dgs[n-1].Data); last == seg && n < MaxGSOSegments && n < len(dgs) {
			next := dgs[n]
			if next.Addr == dgs[0].Addr && len(next.Data) > 0 && len(next.Data) <= seg && total+len(next.Data) <= limit {
				t.Fatalf("run of %d stopped before a datagram that fits (%d bytes)", n, len(next.Data))
			}
		}
	})
}

// TestGROSplit sends coalesced messages to a receiver with GRO and small
// batches: Read must split them into the original datagrams, never return
// more than BatchSize at once, and read the socket only when it has handed
// out everything it holds.
func TestGROSplit(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			const batch = 8
			tx := listen(t, f.addr, Config{})
			rx := listen(t, f.addr, Config{BatchSize: batch, MaxDatagram: 1500})
			requireOffload(t, tx, true, false)
			requireOffload(t, rx, false, true)
			if got := len(rx.rmsgs[0].Buffers[0]); got != GROBufferSize {
				t.Fatalf("receive buffer %d bytes with GRO, want %d", got, GROBufferSize)
			}
			rng := rand.New(rand.NewPCG(25, 26))
			sizes := append(repeat(50, 300), 120) // 50 segments and a short one
			sizes = append(sizes, repeat(20, 1000)...)
			dgs := sized(rng, rx.LocalAddr(), sizes...)
			if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			if err := rx.SetReadDeadline(time.Now().Add(safetyTimeout)); err != nil {
				t.Fatal(err)
			}
			var got []Datagram
			reads := 0
			for len(got) < len(dgs) {
				r, err := rx.Read()
				if err != nil {
					t.Fatalf("Read after %d: %v", len(got), err)
				}
				reads++
				if len(r) > batch {
					t.Fatalf("Read returned %d datagrams, BatchSize is %d", len(r), batch)
				}
				for _, dg := range r {
					got = append(got, Datagram{Data: bytes.Clone(dg.Data), Addr: dg.Addr})
				}
			}
			checkSame(t, got, dataFor(dgs, rx.LocalAddr()), tx.LocalAddr())
			s := rx.Stats()
			if s.GROReads < 2 || s.GRODatagrams != uint64(len(dgs)) || s.DatagramsRead != uint64(len(dgs)) {
				t.Fatalf("stats %+v; want ≥ 2 coalesced reads splitting into all %d datagrams", s, len(dgs))
			}
			if s.ReadSyscalls >= uint64(reads) {
				t.Fatalf("%d receive calls for %d Reads: coalesced reads not handed out across Reads", s.ReadSyscalls, reads)
			}
			t.Logf("%d datagrams in %d Reads, %d receive calls, %d coalesced", len(dgs), reads, s.ReadSyscalls, s.GROReads)
		})
	}
}

// TestGROTruncated: segments longer than MaxDatagram are dropped one by
// one, the others of the same read delivered.
func TestGROTruncated(t *testing.T) {
	tx := listen(t, "127.0.0.1:0", Config{})
	rx := listen(t, "127.0.0.1:0", Config{BatchSize: 8, MaxDatagram: 100})
	requireOffload(t, tx, true, false)
	requireOffload(t, rx, false, true)
	rng := rand.New(rand.NewPCG(27, 28))
	dgs := sized(rng, rx.LocalAddr(), 150, 150, 150, 90) // 3 too long, the short last fits
	if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	checkSame(t, readN(t, rx, 1), [][]byte{dgs[3].Data}, tx.LocalAddr())
	if s := rx.Stats(); s.Truncated != 3 || s.DatagramsRead != 1 || s.GROReads != 1 {
		t.Fatalf("stats %+v; want 3 truncated, 1 read, 1 coalesced read", s)
	}
}

// TestDualStackGSO coalesces from a dual-stack socket to an IPv4 peer and
// back.
func TestDualStackGSO(t *testing.T) {
	ds := listen(t, "[::]:0", Config{BatchSize: 8})
	v4 := listen(t, "127.0.0.1:0", Config{BatchSize: 8})
	requireOffload(t, ds, true, true)
	requireOffload(t, v4, true, true)
	rng := rand.New(rand.NewPCG(29, 30))
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ds.LocalAddr().Port())
	for _, p := range []struct {
		from, to *Conn
		addr     netip.AddrPort
	}{{v4, ds, to}, {ds, v4, v4.LocalAddr()}} {
		dgs := sized(rng, p.addr, 200, 200, 200, 17)
		if n, err := p.from.WriteBatch(dgs); n != len(dgs) || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		want := v4.LocalAddr()
		if p.from == ds {
			want = to
		}
		checkSame(t, readN(t, p.to, len(dgs)), dataFor(dgs, p.addr), want)
		if s := p.from.Stats(); s.GSOMessages == 0 {
			t.Fatalf("no GSO message sent: %+v", s)
		}
	}
}

// TestOffloadDisabled: NoGSO and NoGRO send and receive datagram by
// datagram even where the kernel could do better.
func TestOffloadDisabled(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			tx := listen(t, f.addr, Config{BatchSize: 8, NoGSO: true})
			rx := listen(t, f.addr, Config{BatchSize: 8, MaxDatagram: 512, NoGRO: true})
			gtx := listen(t, f.addr, Config{BatchSize: 8}) // GSO into rx: the kernel splits
			if gso, _ := tx.Offload(); gso {
				t.Fatal("NoGSO: Offload reports GSO on")
			}
			if _, gro := rx.Offload(); gro {
				t.Fatal("NoGRO: Offload reports GRO on")
			}
			if got := len(rx.rmsgs[0].Buffers[0]); got != 513 {
				t.Fatalf("receive buffer %d bytes without GRO, want MaxDatagram+1", got)
			}
			rng := rand.New(rand.NewPCG(31, 32))
			dgs := sized(rng, rx.LocalAddr(), repeat(20, 256)...)
			if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			if s := tx.Stats(); s.GSOMessages != 0 || s.WriteSyscalls != 3 {
				t.Fatalf("NoGSO stats %+v; want 3 sendmmsg calls, no GSO", s)
			}
			checkSame(t, readN(t, rx, len(dgs)), dataFor(dgs, rx.LocalAddr()), tx.LocalAddr())

			if n, err := gtx.WriteBatch(dgs); n != len(dgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			checkSame(t, readN(t, rx, len(dgs)), dataFor(dgs, rx.LocalAddr()), gtx.LocalAddr())
			if s := rx.Stats(); s.GROReads != 0 || s.DatagramsRead != 40 {
				t.Fatalf("NoGRO receiver stats %+v", s)
			}
			if s := gtx.Stats(); s.GSOMessages == 0 && gsoAvailable(gtx) {
				t.Fatalf("default sender did not coalesce: %+v", s)
			}
		})
	}
	t.Run("nobatch", func(t *testing.T) {
		c := listen(t, "127.0.0.1:0", Config{NoBatch: true})
		if gso, gro := c.Offload(); gso || gro {
			t.Fatalf("NoBatch: Offload = %v, %v; want both off", gso, gro)
		}
	})
}

func gsoAvailable(c *Conn) bool { gso, _ := c.Offload(); return gso }

// TestNoKernelSupport plays a kernel without UDP_SEGMENT and UDP_GRO: the
// Conn must come up without them, with small receive buffers, and work.
func TestNoKernelSupport(t *testing.T) {
	probed := 0
	orig := offloadProbe
	offloadProbe = func(_ syscall.RawConn, wantGSO, wantGRO bool) (bool, bool) {
		probed++
		return false, false
	}
	t.Cleanup(func() { offloadProbe = orig })
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			tx := listen(t, f.addr, Config{BatchSize: 8})
			rx := listen(t, f.addr, Config{BatchSize: 8, MaxDatagram: 512})
			for _, c := range []*Conn{tx, rx} {
				if gso, gro := c.Offload(); gso || gro {
					t.Fatalf("Offload = %v, %v on a kernel without support", gso, gro)
				}
			}
			if got := len(rx.rmsgs[0].Buffers[0]); got != 513 {
				t.Fatalf("receive buffer %d bytes without GRO, want 513", got)
			}
			rng := rand.New(rand.NewPCG(33, 34))
			dgs := sized(rng, rx.LocalAddr(), repeat(12, 300)...)
			if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			checkSame(t, readN(t, rx, len(dgs)), dataFor(dgs, rx.LocalAddr()), tx.LocalAddr())
			if s := tx.Stats(); s.GSOMessages != 0 || s.WriteSyscalls != 2 {
				t.Fatalf("stats %+v; want 2 plain sendmmsg calls", s)
			}
		})
	}
	if probed == 0 {
		t.Fatal("the probe hook was never called")
	}
}

// refusingConn wraps a Conn's batch socket and makes the kernel refuse
// UDP_SEGMENT messages whose segment size is at least minSeg, with errno
// (as a device without checksum offload does with EIO, or a route with a
// small MTU with EINVAL). Other messages go through; like sendmmsg, a
// refusal after the first message ends the call early with no error.
type refusingConn struct {
	batchConn
	errno   unix.Errno
	minSeg  int
	refused int
}

func (r *refusingConn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	for i := range ms {
		if seg := parseSegment(ms[i].OOB); seg > 0 && seg >= r.minSeg {
			if i > 0 {
				return r.batchConn.WriteBatch(ms[:i], flags)
			}
			r.refused++
			return -1, &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", r.errno)}
		}
	}
	return r.batchConn.WriteBatch(ms, flags)
}

// parseSegment returns the UDP_SEGMENT size in oob, or 0, through x/sys's
// parser.
func parseSegment(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_SEGMENT && len(m.Data) == 2 {
			return int(binary.NativeEndian.Uint16(m.Data))
		}
	}
	return 0
}

func TestGSORefusedEIO(t *testing.T) {
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			tx := listen(t, f.addr, Config{BatchSize: 8})
			requireOffload(t, tx, true, false)
			rx := listen(t, f.addr, Config{BatchSize: 16, MaxDatagram: 512})
			fake := &refusingConn{batchConn: tx.bc, errno: unix.EIO, minSeg: 1}
			tx.bc = fake
			rng := rand.New(rand.NewPCG(35, 36))
			// A datagram alone first, so that the refusal comes mid-call.
			dgs := sized(rng, rx.LocalAddr(), append([]int{40}, repeat(30, 100)...)...)
			n, err := tx.WriteBatch(dgs)
			if n != len(dgs) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			checkSame(t, readN(t, rx, len(dgs)), dataFor(dgs, rx.LocalAddr()), tx.LocalAddr())
			s := tx.Stats()
			if fake.refused != 1 || s.GSOFallbacks != 1 || s.WriteErrors != 1 || s.GSOMessages != 0 {
				t.Fatalf("refused %d; stats %+v; want 1 refusal, 1 fallback, 1 error, no GSO", fake.refused, s)
			}
			if gso, _ := tx.Offload(); gso {
				t.Fatal("GSO still on after EIO")
			}
			// From now on, no more attempts.
			if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
				t.Fatalf("second WriteBatch = %d, %v", n, err)
			}
			checkSame(t, readN(t, rx, len(dgs)), dataFor(dgs, rx.LocalAddr()), tx.LocalAddr())
			if fake.refused != 1 || tx.Stats().GSOFallbacks != 1 {
				t.Fatalf("GSO tried again after being turned off: %d refusals", fake.refused)
			}
		})
	}
}

// TestGSORefusedEINVAL plays a route whose MTU fits 999-byte segments:
// after one refusal the Conn keeps coalescing smaller datagrams, and after
// maxGSOFallbacks refusals it gives GSO up.
func TestGSORefusedEINVAL(t *testing.T) {
	tx := listen(t, "127.0.0.1:0", Config{BatchSize: 8})
	requireOffload(t, tx, true, false)
	rx := listen(t, "127.0.0.1:0", Config{BatchSize: 64, MaxDatagram: 2048, ReadBufferBytes: 4 << 20})
	fake := &refusingConn{batchConn: tx.bc, errno: unix.EINVAL, minSeg: 1000}
	tx.bc = fake
	rng := rand.New(rand.NewPCG(37, 38))
	send := func(sizes ...int) {
		t.Helper()
		dgs := sized(rng, rx.LocalAddr(), sizes...)
		if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		checkSame(t, readN(t, rx, len(dgs)), dataFor(dgs, rx.LocalAddr()), tx.LocalAddr())
	}
	send(repeat(10, 1200)...)
	send(repeat(10, 1200)...) // not coalesced any more: no second refusal
	if s := tx.Stats(); fake.refused != 1 || s.GSOFallbacks != 1 || s.GSOMessages != 0 {
		t.Fatalf("refused %d; stats %+v", fake.refused, s)
	}
	send(repeat(10, 999)...) // small enough: coalesced
	if s := tx.Stats(); s.GSOMessages != 1 || s.GSODatagrams != 10 || !gsoAvailable(tx) {
		t.Fatalf("after one EINVAL, smaller segments: stats %+v, GSO on %v", s, gsoAvailable(tx))
	}
	// A route that refuses everything: three more refusals, and GSO is off.
	fake.minSeg = 1
	for i, size := range []int{900, 800, 700} {
		send(repeat(5, size)...)
		if want := i < 2; gsoAvailable(tx) != want {
			t.Fatalf("after %d refusals GSO on = %v", i+2, !want)
		}
	}
	if s := tx.Stats(); fake.refused != maxGSOFallbacks || s.GSOFallbacks != maxGSOFallbacks {
		t.Fatalf("refused %d; stats %+v; want %d", fake.refused, s, maxGSOFallbacks)
	}
}

// TestGSOErrorNotGSOs: a coalesced message to port 0 fails with EINVAL, and
// so does the same datagram alone: the error is the caller's, returned as
// usual, and GSO stays on.
func TestGSOErrorNotGSOs(t *testing.T) {
	tx := listen(t, "127.0.0.1:0", Config{BatchSize: 8})
	requireOffload(t, tx, true, false)
	to := netip.MustParseAddrPort("127.0.0.1:0")
	n, err := tx.WriteBatch([]Datagram{{[]byte("ab"), to}, {[]byte("cd"), to}})
	if n != 0 || !errors.Is(err, unix.EINVAL) {
		t.Fatalf("WriteBatch to port 0 = %d, %v; want 0, EINVAL", n, err)
	}
	s := tx.Stats()
	if s.GSOFallbacks != 0 || s.WriteErrors != 2 || !gsoAvailable(tx) {
		t.Fatalf("stats %+v, GSO on %v; want no fallback, 2 failed calls, GSO on", s, gsoAvailable(tx))
	}
}

// ctruncConn cuts the control data of every coalesced read before its
// segment size, as a socket with more control messages enabled than
// oobSize holds might.
type ctruncConn struct{ batchConn }

func (c ctruncConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	n, err := c.batchConn.ReadBatch(ms, flags)
	for i := range ms[:max(n, 0)] {
		if parseOOB(ms[i].OOB[:ms[i].NN]).gsoSize > 0 {
			ms[i].NN, ms[i].Flags = 0, ms[i].Flags|unix.MSG_CTRUNC
		}
	}
	return n, err
}

// TestGROControlTruncated: a read whose segment size was cut off cannot be
// split; it is dropped and counted, never returned as one datagram.
func TestGROControlTruncated(t *testing.T) {
	tx := listen(t, "127.0.0.1:0", Config{})
	rx := listen(t, "127.0.0.1:0", Config{BatchSize: 8, MaxDatagram: 4096})
	requireOffload(t, tx, true, false)
	requireOffload(t, rx, false, true)
	rx.bc, rx.mm = ctruncConn{rx.bc}, nil // the fake reads through x/net's path
	dgs := sized(rand.New(rand.NewPCG(39, 40)), rx.LocalAddr(), 100, 100, 100)
	if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if err := tx.WriteTo([]byte("marker"), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	checkSame(t, readN(t, rx, 1), [][]byte{[]byte("marker")}, tx.LocalAddr())
	if s := rx.Stats(); s.Truncated != 1 || s.DatagramsRead != 1 {
		t.Fatalf("stats %+v; want the coalesced read dropped as 1 truncated", s)
	}
}

// TestGSOAllocs: coalescing, mixed destinations and the fallback after a
// refusal allocate nothing per datagram.
func TestGSOAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			cfg := Config{BatchSize: 16, MaxDatagram: 64, ReadBufferBytes: 1 << 16}
			rxA := listen(t, f.addr, cfg) // never read: the kernel drops what overflows
			rxB := listen(t, f.addr, cfg)
			tx := listen(t, f.addr, cfg)
			requireOffload(t, tx, true, false)
			rng := rand.New(rand.NewPCG(41, 42))
			var dgs []Datagram
			for range 4 {
				dgs = append(dgs, sized(rng, rxA.LocalAddr(), repeat(70, 200)...)...)
				dgs = append(dgs, sized(rng, rxB.LocalAddr(), 200, 200, 10, 0)...)
			}
			write := func() {
				if n, err := tx.WriteBatch(dgs); n != len(dgs) || err != nil {
					t.Fatalf("WriteBatch = %d, %v", n, err)
				}
			}
			write() // warm-up: address cache, x/net's pooled headers
			if a := testing.AllocsPerRun(20, write); a != 0 {
				t.Errorf("WriteBatch of %d datagrams with GSO: %v allocs, want 0", len(dgs), a)
			}
			if tx.Stats().GSOMessages == 0 {
				t.Fatal("nothing was coalesced")
			}
			// And on the path that resends a refused message.
			fake := &refusingConn{batchConn: tx.bc, errno: unix.EINVAL, minSeg: 1 << 20}
			tx.bc = fake
			write()
			if a := testing.AllocsPerRun(20, func() {
				fake.minSeg = 1 // refuse, then fall back (the error value itself allocates in the fake)
				tx.gso, tx.gsoMax = true, MaxGSOBytes6
				write()
			}); a > 3 {
				t.Errorf("WriteBatch through a refusal: %v allocs, want only the fake's error (≤ 3)", a)
			}
		})
	}
}

// TestGROReadAllocs: receiving and splitting a coalesced read allocate
// nothing.
func TestGROReadAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	const perRun = 64
	tx := listen(t, "127.0.0.1:0", Config{})
	rx := listen(t, "127.0.0.1:0", Config{BatchSize: 16, MaxDatagram: 512})
	requireOffload(t, tx, true, false)
	requireOffload(t, rx, false, true)
	dgs := sized(rand.New(rand.NewPCG(43, 44)), rx.LocalAddr(), repeat(perRun, 200)...)
	if err := rx.SetReadDeadline(time.Now().Add(safetyTimeout)); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if n, err := tx.WriteBatch(dgs); n != perRun || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		for got := 0; got < perRun; {
			r, err := rx.Read()
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			got += len(r)
		}
	})
	t.Logf("%.3f allocs per coalesced read of %d datagrams", allocs, perRun)
	if allocs != 0 {
		t.Errorf("%.3f allocs per %d datagrams, want 0", allocs, perRun)
	}
}

// TestParseOOB covers the UDP_GRO segment size beside the drop counter.
func TestParseOOB(t *testing.T) {
	gro := func(v uint32) []byte { return cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(v)) }
	ovfl := cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(5))
	tests := []struct {
		name  string
		oob   []byte
		seg   int
		drops uint32
	}{
		{"gro", gro(1200), 1200, 0},
		{"both", append(append([]byte{}, ovfl...), gro(64)...), 64, 5},
		{"both reversed", append(gro(64), ovfl...), 64, 5},
		{"zero", gro(0), 0, 0},
		{"negative", gro(0xffffffff), 0, 0},
		{"too large", gro(65536), 0, 0},
		{"largest", gro(65535), 65535, 0},
		{"short data", cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{1, 2}), 0, 0},
		{"other level", cmsg(unix.SOL_IP, unix.UDP_GRO, u32(9)), 0, 0},
		{"truncated", gro(7)[:unix.CmsgLen(0)+3], 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := parseOOB(tt.oob)
			if info.gsoSize != tt.seg || info.drops != tt.drops {
				t.Fatalf("parseOOB = %+v; want segment %d, drops %d", info, tt.seg, tt.drops)
			}
			for i := range tt.oob {
				parseOOB(tt.oob[:i]) // every prefix: no panic
			}
		})
	}
	if a := testing.AllocsPerRun(100, func() { parseOOB(tests[1].oob) }); a != 0 {
		t.Fatalf("parseOOB allocates %v", a)
	}
}

// FuzzParseOOB checks parseOOB against x/sys's allocating parser: when that
// accepts the input, both must find the same (last) drop counter and
// segment size.
func FuzzParseOOB(f *testing.F) {
	f.Add(cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(1200)))
	f.Add(append(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, u32(3)), cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(64))...))
	f.Add(append(cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(70000)), cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(5))...))
	f.Add(cmsg(unix.SOL_UDP, unix.UDP_GRO, []byte{1}))
	f.Fuzz(func(t *testing.T, oob []byte) {
		info := parseOOB(oob)
		msgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil {
			return
		}
		var want oobInfo
		for _, m := range msgs {
			switch {
			case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4:
				want.drops, want.dropsOK = binary.NativeEndian.Uint32(m.Data), true
			case m.Header.Level == unix.SOL_UDP && m.Header.Type == unix.UDP_GRO && len(m.Data) >= 4:
				want.gsoSize = 0
				if v := int32(binary.NativeEndian.Uint32(m.Data)); v > 0 && v <= 65535 {
					want.gsoSize = int(v)
				}
			}
		}
		if info != want {
			t.Fatalf("parseOOB = %+v; x/sys finds %+v", info, want)
		}
	})
}

// scriptedRead is a batchConn whose ReadBatch returns one scripted message
// (the payload and control data given) and then os.ErrDeadlineExceeded.
type scriptedRead struct {
	batchConn
	payload, oob []byte
	flags        int
	from         *net.UDPAddr
	done         bool
}

func (s *scriptedRead) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	if s.done {
		return 0, os.ErrDeadlineExceeded
	}
	s.done = true
	m := &ms[0]
	m.N = copy(m.Buffers[0], s.payload)
	m.NN = copy(m.OOB, s.oob)
	m.Flags, m.Addr = s.flags, s.from
	return 1, nil
}

// FuzzReadSplit feeds Read one received message with any length, segment
// size and flags: it must hand out exactly the segments a GRO read holds
// (or the whole message, or nothing when it cannot be split), each within
// MaxDatagram, in order, and count the rest as truncated.
func FuzzReadSplit(f *testing.F) {
	f.Add(uint16(1000), uint32(100), uint16(1500), false, false)
	f.Add(uint16(1000), uint32(300), uint16(200), false, false)
	f.Add(uint16(64), uint32(64), uint16(64), false, false)
	f.Add(uint16(0), uint32(0), uint16(10), true, false)
	f.Add(uint16(5000), uint32(1), uint16(1), false, true)
	f.Add(uint16(65535), uint32(65535), uint16(65535), false, false)
	c, err := Listen("127.0.0.1:0", Config{BatchSize: 4, MaxDatagram: 1})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	if _, gro := c.Offload(); !gro {
		f.Skip("no GRO: Read never splits")
	}
	real := c.bc
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7}
	f.Fuzz(func(t *testing.T, n uint16, seg uint32, maxDatagram uint16, trunc, ctrunc bool) {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i * 7 >> 3)
		}
		script := &scriptedRead{batchConn: real, payload: payload, from: from,
			oob: cmsg(unix.SOL_UDP, unix.UDP_GRO, u32(seg))}
		if trunc {
			script.flags |= unix.MSG_TRUNC
		}
		if ctrunc {
			script.flags |= unix.MSG_CTRUNC
		}
		c.bc, c.mm, c.rn, c.rnext, c.roff = script, nil, 0, 0, 0
		c.maxDatagram = max(1, int(maxDatagram))
		before := c.Stats().Truncated

		// What a correct split hands out.
		var want [][]byte
		var wantTrunc uint64
		keep := func(p []byte) {
			if len(p) > c.maxDatagram {
				wantTrunc++
			} else {
				want = append(want, p)
			}
		}
		validSeg := seg > 0 && seg <= 65535
		switch {
		case trunc, ctrunc && !validSeg: // cannot be split safely: dropped
			wantTrunc = 1
		case seg == 0 || seg > 65535 || int(seg) >= len(payload):
			keep(payload)
		default:
			for off := 0; off < len(payload); off += int(seg) {
				keep(payload[off:min(off+int(seg), len(payload))])
			}
		}

		var got [][]byte
		for {
			dgs, err := c.Read()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if len(dgs) > cap(c.rdgs) {
				t.Fatalf("Read returned %d datagrams, BatchSize %d", len(dgs), cap(c.rdgs))
			}
			for _, dg := range dgs {
				if dg.Addr != netip.MustParseAddrPort("127.0.0.1:7") {
					t.Fatalf("source %v, want %v", dg.Addr, from)
				}
				got = append(got, bytes.Clone(dg.Data))
			}
		}
		if len(got) != len(want) {
			t.Fatalf("%d datagrams, want %d", len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("datagram %d: %d bytes, want %d", i, len(got[i]), len(want[i]))
			}
		}
		if d := c.Stats().Truncated - before; d != wantTrunc {
			t.Fatalf("Truncated grew by %d, want %d", d, wantTrunc)
		}
	})
}

// TestSockaddrAddrPort decodes the kernel's source addresses: IPv4, IPv6
// and IPv4-mapped IPv6 (given as IPv4), ports in network byte order.
func TestSockaddrAddrPort(t *testing.T) {
	var z scopeZone
	var sa unix.RawSockaddrInet6
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
	sa4.Family = unix.AF_INET
	sa4.Addr = [4]byte{192, 0, 2, 7}
	p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
	p[0], p[1] = 0x23, 0x28 // 9000
	if got, want := sockaddrAddrPort(&sa, &z), netip.MustParseAddrPort("192.0.2.7:9000"); got != want {
		t.Fatalf("IPv4: %v, want %v", got, want)
	}
	sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr("2001:db8::1").As16()}
	p = (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = 0xff, 0xfe
	if got, want := sockaddrAddrPort(&sa, &z), netip.MustParseAddrPort("[2001:db8::1]:65534"); got != want {
		t.Fatalf("IPv6: %v, want %v", got, want)
	}
	sa.Addr = netip.MustParseAddr("::ffff:10.1.2.3").As16()
	if got, want := sockaddrAddrPort(&sa, &z), netip.MustParseAddrPort("10.1.2.3:65534"); got != want {
		t.Fatalf("IPv4-mapped: %v, want %v", got, want)
	}
	if got := sockaddrAddrPort(&unix.RawSockaddrInet6{Family: unix.AF_UNIX}, &z); got.IsValid() {
		t.Fatalf("unknown family gave %v", got)
	}
}

// TestSockaddrAddrPortZone: a link-local source keeps its scope id as the
// zone, in decimal (what a reply needs to leave by the interface it came
// in by), and a steady one costs no allocation; a global source gets no
// zone.
func TestSockaddrAddrPortZone(t *testing.T) {
	var z scopeZone
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: netip.MustParseAddr("fe80::74:77ff:fe01:1").As16(), Scope_id: 1234}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = 0x23, 0x28
	if got, want := sockaddrAddrPort(&sa, &z), netip.MustParseAddrPort("[fe80::74:77ff:fe01:1%1234]:9000"); got != want {
		t.Fatalf("link-local: %v, want %v", got, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { sockaddrAddrPort(&sa, &z) }); allocs != 0 {
		t.Errorf("decoding a steady link-local source allocates %v times", allocs)
	}
	sa.Scope_id = 7
	if got, want := sockaddrAddrPort(&sa, &z), netip.MustParseAddrPort("[fe80::74:77ff:fe01:1%7]:9000"); got != want {
		t.Fatalf("another interface: %v, want %v", got, want)
	}
	sa.Scope_id = 0
	sa.Addr = netip.MustParseAddr("fd74:7477:0:cc::1").As16()
	if got, want := sockaddrAddrPort(&sa, &z), netip.MustParseAddrPort("[fd74:7477:0:cc::1]:9000"); got != want {
		t.Fatalf("no scope: %v, want %v", got, want)
	}
}

// TestZoneIndex: a zone in decimal is the index itself, an interface's
// name is looked up, and anything else is 0 (the kernel's "no scope").
func TestZoneIndex(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface: %v", err)
	}
	for zone, want := range map[string]uint32{"7": 7, "lo": uint32(lo.Index), "no-such-if": 0, "4294967296": 0} {
		if got := zoneIndex(zone); got != want {
			t.Errorf("zoneIndex(%q) = %d, want %d", zone, got, want)
		}
	}
}
