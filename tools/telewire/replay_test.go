package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/telewire/telewire/tools/capture"
	"github.com/telewire/telewire/tools/netem"
)

const pcapDir = "../../testdata/pcap"

func TestReplayUsage(t *testing.T) {
	dir := t.TempDir()
	capPath := filepath.Join(pcapDir, "gen__sll.pcap")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"replay", "--to", "127.0.0.1:9"}, 2, "a capture FILE is required"},
		{[]string{"replay", capPath}, 2, "--to is required"},
		{[]string{"replay", capPath, capPath, "--to", "127.0.0.1:9"}, 2, "one capture FILE, not 2"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--topspeed", "--speed", "2"}, 2, "are exclusive"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--pps", "10", "--speed", "2"}, 2, "are exclusive"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--speed", "0"}, 2, "--speed must be positive"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--loop", "-1"}, 2, "must not be negative"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--max-flows", "-1"}, 2, "--max-flows must be in"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--session-streams", "0"}, 2, "--session-streams must be in"},
		{[]string{"recv", "--listen", "127.0.0.1:0", "--max-sessions", "0"}, 2, "--max-sessions and --max-streams must be positive"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--filter", "udp port banana"}, 2, "--filter"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--fec", "3"}, 2, "not auto, off or K,M"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--fec-interleave", "2"}, 2, "goes with --fec K,M"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--nack", "perhaps"}, 2, "neither on nor off"},
		{[]string{"replay", capPath, "--to", "127.0.0.1:9", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"replay", filepath.Join(dir, "missing.pcap"), "--to", "127.0.0.1:9"}, 2, "no such file"},
		{[]string{"recv", "--listen", "127.0.0.1:0", "--flows", "f.json"}, 2, "--flows goes with --pcap-out"},
		{[]string{"replay", "--help"}, 0, "udp port 5000 and dst 233.54.12.0/24"},
		{[]string{"replay", "--help"}, 0, "4  incomplete"},
		{[]string{"help", "recv"}, 0, "port = stream id"},
		{[]string{"help"}, 0, "replay "},
	}
	for _, c := range cases {
		cmd := exec.Command(telewireBin, c.args...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("telewire %q: exit %d, want %d; output should contain %q:\n%s", c.args, code, c.code, c.want, out)
		}
	}
}

// flowKey names a flow as the tests compare them.
func flowKey(src, dst netip.AddrPort) string { return src.String() + " -> " + dst.String() }

// goldenFlows reads tshark's view of a capture (testdata/pcap/*.golden,
// made by regen-golden.sh) and returns each flow's payloads in order and
// the flows in order of first appearance.
func goldenFlows(t *testing.T, path string) (map[string][][]byte, []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flows := map[string][][]byte{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) != 7 {
			t.Fatalf("%s: %d fields in %q", path, len(c), sc.Text())
		}
		k := flowKey(addrPort(t, c[2], c[3]), addrPort(t, c[4], c[5]))
		p, err := hex.DecodeString(c[6])
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := flows[k]; !ok {
			order = append(order, k)
		}
		flows[k] = append(flows[k], p)
	}
	return flows, order
}

func addrPort(t *testing.T, addr, port string) netip.AddrPort {
	t.Helper()
	a, err := netip.ParseAddr(addr)
	p, err2 := strconv.ParseUint(port, 10, 16)
	if err != nil || err2 != nil {
		t.Fatalf("address %q port %q", addr, port)
	}
	return netip.AddrPortFrom(a, uint16(p))
}

// pcapFlows reads a capture with the capture package and returns each
// flow's payloads in order.
func pcapFlows(t *testing.T, path string) map[string][][]byte {
	t.Helper()
	r, err := capture.Open(path, capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	flows := map[string][][]byte{}
	for {
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			return flows
		}
		if err != nil {
			t.Fatal(err)
		}
		k := flowKey(d.Src, d.Dst)
		flows[k] = append(flows[k], bytes.Clone(d.Payload))
	}
}

// tsharkFlows reads a capture with tshark and returns each flow's payloads.
func tsharkFlows(t *testing.T, path string) map[string][][]byte {
	t.Helper()
	out, err := exec.Command("tshark", "-r", path, "-n", "-T", "fields", "-E", "separator=/t",
		"-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport",
		"-e", "ip.dst", "-e", "ipv6.dst", "-e", "udp.dstport", "-e", "udp.payload").Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v", path, err)
	}
	flows := map[string][][]byte{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 7 {
			t.Fatalf("tshark line %q", line)
		}
		p, err := hex.DecodeString(c[6])
		if err != nil {
			t.Fatal(err)
		}
		k := flowKey(addrPort(t, c[0]+c[1], c[2]), addrPort(t, c[3]+c[4], c[5]))
		flows[k] = append(flows[k], p)
	}
	return flows
}

// sameFlows fails unless got holds exactly the flows of want named in
// keys, each with the same payloads byte for byte.
func sameFlows(t *testing.T, what string, got, want map[string][][]byte, keys []string) {
	t.Helper()
	if len(got) != len(keys) {
		t.Fatalf("%s: %d flows, want %d", what, len(got), len(keys))
	}
	for _, k := range keys {
		g, w := got[k], want[k]
		if len(g) != len(w) {
			t.Fatalf("%s: flow %s: %d payloads, want %d", what, k, len(g), len(w))
		}
		for i := range w {
			if !bytes.Equal(g[i], w[i]) {
				t.Fatalf("%s: flow %s payload %d differs:\n got  %x\n want %x", what, k, i, g[i], w[i])
			}
		}
	}
}

// replayResult is what replayInto leaves behind.
type replayResult struct {
	pcap, flows, recvStats, replayStats string // files
	recvErr, replayErr                  string // stderr of each command
	replayCode                          int    // replay's exit status
}

// replayInto runs `telewire replay capPath` into a `telewire recv
// --pcap-out --flows` that exits once idle for a second after data (so it
// keeps reporting while the replay lingers for confirmation). via, if set,
// is given the receiver's address and returns the address the replay
// sends to (a relay in front of the receiver). recvArgs and replayArgs are
// added to each command line. The replay's exit status is in the result;
// recv must exit 0.
func replayInto(t *testing.T, capPath string, via func(recvAddr string) string, recvArgs, replayArgs []string) replayResult {
	t.Helper()
	dir := t.TempDir()
	res := replayResult{
		pcap: filepath.Join(dir, "out.pcap"), flows: filepath.Join(dir, "flows.json"),
		recvStats: filepath.Join(dir, "recv.json"), replayStats: filepath.Join(dir, "replay.json"),
	}
	recv, addr, rerr := startRecv(t, new(bytes.Buffer), append([]string{"--idle", "1s",
		"--pcap-out", res.pcap, "--flows", res.flows, "--stats", res.recvStats}, recvArgs...)...)
	to := addr
	if via != nil {
		to = via(addr)
	}
	serr := new(lockedBuffer)
	cmd := exec.Command(telewireBin, append([]string{"replay", capPath, "--to", to,
		"--flows-out", res.flows, "--stats", res.replayStats}, replayArgs...)...)
	cmd.Stderr = serr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	res.replayCode = exitStatus(t, cmd, serr, 120*time.Second)
	wait(t, recv, rerr, 60*time.Second)
	res.recvErr, res.replayErr = rerr.String(), serr.String()
	return res
}

// exitStatus waits for cmd and returns its exit status.
func exitStatus(t *testing.T, cmd *exec.Cmd, stderr fmt.Stringer, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr)
		}
		return cmd.ProcessState.ExitCode()
	case <-time.After(within):
		cmd.Process.Kill()
		t.Fatalf("%v did not finish within %v\n%s", cmd.Args, within, stderr)
	}
	return -1
}

// TestReplayCaptures is the round trip of the issue, for every capture in
// testdata/pcap: `telewire replay` into `telewire recv --pcap-out`, and
// the pcap recv writes holds, per original flow and with the original
// addresses, exactly the payloads tshark sees in the source capture (its
// golden file): fragmented datagrams reassembled, truncated ones absent.
// Every flow is replayed (one with 95 flows from two sender sessions), and
// replay exits 0: the receiver confirmed every datagram. When tshark is
// installed, it reads the written pcap and sees the same.
func TestReplayCaptures(t *testing.T) {
	goldens, err := filepath.Glob(filepath.Join(pcapDir, "*.golden"))
	if err != nil || len(goldens) < 10 {
		t.Fatalf("found %d golden files in %s: %v", len(goldens), pcapDir, err)
	}
	_, tsharkErr := exec.LookPath("tshark")
	if tsharkErr != nil {
		t.Logf("tshark not installed (%v): the written pcaps are checked with the capture reader only", tsharkErr)
	}
	// What the summary must say about particular captures.
	summaryHas := map[string][]string{
		"gen__fragments.pcap":                           {"(4 reassembled from fragments)", "1 duplicate fragments"},
		"dnscollector__dnsdump_ip4_fragmented+udp.pcap": {"(1 reassembled from fragments)"},
		"dnscollector__dnsdump_ip6_fragmented+udp.pcap": {"(1 reassembled from fragments)"},
		"gen__truncated.pcap":                           {"truncated (captured shorter than sent)"},
		"tcpdumpgit__dns_udp_2.pcap":                    {"1 truncated"},
		"ndpi42__steam.pcap":                            {"in 95 flows", "from 2 sender sessions of up to 64 streams", "sender 0 stream 63: ", "and 31 more flows"},
		"wireshark__many_interfaces.1.pcapng":           {"backward time steps"},
		"ndpigit__syslog.pcap":                          {"gaps capped"},
	}
	for _, g := range goldens {
		capPath := strings.TrimSuffix(g, ".golden")
		name := filepath.Base(capPath)
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each waits most of its time for recv's --idle
			want, keys := goldenFlows(t, g)
			res := replayInto(t, capPath, nil, nil, []string{"--max-gap", "2ms"})
			if res.replayCode != 0 {
				t.Errorf("replay exit status %d, want 0", res.replayCode)
			}
			for _, s := range append(summaryHas[name], "every flow whole") {
				if !strings.Contains(res.replayErr, s) {
					t.Errorf("replay summary lacks %q:\n%s", s, res.replayErr)
				}
			}
			sameFlows(t, "capture reader on out.pcap", pcapFlows(t, res.pcap), want, keys)
			if tsharkErr == nil {
				sameFlows(t, "tshark on out.pcap", tsharkFlows(t, res.pcap), want, keys)
			}
			if t.Failed() {
				t.Logf("replay:\n%s\nrecv:\n%s", res.replayErr, res.recvErr)
			}
		})
	}
}

// writeGenCapture writes n datagrams over flows flows (IPv4 and IPv6),
// gap apart, with seeded payloads of 1 to maxLen bytes, and returns the
// file's path.
func writeGenCapture(t testing.TB, dir string, n, flows, maxLen int, gap time.Duration, ends func(i int) (src, dst netip.AddrPort)) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("gen-%d.pcap", n))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w, err := capture.NewWriter(bw, capture.WriterOptions{Nanosecond: true})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(n), uint64(flows)))
	t0 := time.Date(2026, 1, 2, 9, 30, 0, 0, time.UTC)
	payload := make([]byte, maxLen)
	for i := range n {
		src, dst := ends(i % flows)
		p := payload[:1+rng.IntN(maxLen)]
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if err := w.WriteDatagram(capture.Datagram{Time: t0.Add(time.Duration(i) * gap), Src: src, Dst: dst, Payload: p}); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// mixedEnds gives flow i an IPv4 or IPv6 pair of documentation addresses.
func mixedEnds(i int) (netip.AddrPort, netip.AddrPort) {
	if i%2 == 1 {
		return netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(40000+i)), netip.MustParseAddrPort("[ff15::1]:5000")
	}
	return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(40000+i)), netip.MustParseAddrPort("233.54.12.1:5000")
}

// TestReplayLossyLink: the replay crosses an in-process netem relay that
// loses 5 % of the datagrams towards the receiver and 2 % of the feedback,
// with NACK and FEC (4,2) on: the receiver repairs every loss, and the
// pcap it writes holds every flow's payloads byte for byte.
func TestReplayLossyLink(t *testing.T) {
	const n, flows = 2000, 4
	capPath := writeGenCapture(t, t.TempDir(), n, flows, 1200, time.Millisecond, mixedEnds)
	fwd, err := netem.ParseSpec("loss random 5%")
	if err != nil {
		t.Fatal(err)
	}
	rev, err := netem.ParseSpec("loss random 2%")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var relay *netem.Relay
	done := make(chan error, 1)
	via := func(recvAddr string) string {
		relay, err = netem.NewRelay(netem.RelayConfig{Listen: "127.0.0.1:0", To: recvAddr, Fwd: fwd, Rev: rev, Seed: 7})
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- relay.Run(ctx) }()
		return relay.Addr().String()
	}
	res := replayInto(t, capPath, via, []string{"--latency", "1s"}, []string{"--nack", "on", "--fec", "4,2", "--linger", "5s"})
	cancel()
	if res.replayCode != 0 {
		t.Errorf("replay exit status %d, want 0 (every loss repaired)", res.replayCode)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	rs := relay.Stats()
	t.Logf("relay fwd %+v rev %+v\nreplay:\n%s\nrecv:\n%s", rs.Fwd, rs.Rev, res.replayErr, res.recvErr)
	if rs.Fwd.Dropped == 0 {
		t.Fatal("the relay dropped nothing: the test tests no repair")
	}
	src := pcapFlows(t, capPath)
	var keys []string
	for k := range src {
		keys = append(keys, k)
	}
	sameFlows(t, "out.pcap after the lossy link", pcapFlows(t, res.pcap), src, keys)
	var lost, repaired, unrecovered float64
	for _, s := range readJSON(t, res.recvStats)["streams"].([]any) {
		st := s.(map[string]any)
		lost += st["lost"].(float64)
		repaired += st["recovered_rtx"].(float64) + st["recovered_fec"].(float64)
		unrecovered += st["unrecovered"].(float64)
	}
	if lost == 0 || repaired < lost || unrecovered != 0 {
		t.Fatalf("receiver: lost %v, repaired %v, unrecovered %v", lost, repaired, unrecovered)
	}
}

// BenchmarkReplay measures the closing figures on one generated
// capture of 20 000 datagrams spanning 5 s (4 flows, 200-byte payloads,
// loopback addresses): the timing accuracy of `telewire replay --speed 1`
// (median and p99 |scheduled − actual|, target median <= 100 µs), the
// packets per second of `telewire replay --topspeed`, and, when tcpreplay
// is installed and may open lo, the packets per second of `tcpreplay
// --topspeed -i lo` on the same file. Run with -benchtime=1x.
func BenchmarkReplay(b *testing.B) {
	dir := b.TempDir()
	capPath := writeGenCapture(b, dir, 20_000, 4, 200, 250*time.Microsecond, func(i int) (netip.AddrPort, netip.AddrPort) {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 2}), uint16(40000+i)), netip.MustParseAddrPort("127.0.0.3:9")
	})
	replayOnce := func(b *testing.B, args ...string) map[string]any {
		b.Helper()
		stats := filepath.Join(dir, "replay.json")
		var out bytes.Buffer
		recv, addr, rerr := startRecv(b, &out, "--idle", "1s")
		cmd := exec.Command(telewireBin, append([]string{"replay", capPath, "--to", addr, "--stats", stats, "--linger", "100ms"}, args...)...)
		serr := new(lockedBuffer)
		cmd.Stderr = serr
		if err := cmd.Run(); err != nil {
			b.Fatalf("replay: %v\n%s", err, serr)
		}
		recv.Process.Signal(os.Interrupt)
		recv.Wait()
		b.Logf("replay %v:\n%s\nrecv:\n%s", args, serr, rerr)
		v, err := readJSONFile(stats)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	b.Run("speed1", func(b *testing.B) {
		for range b.N {
			v := replayOnce(b, "--speed", "1")
			acc := v["accuracy"].(map[string]any)
			b.ReportMetric(acc["p50_ns"].(float64)/1e3, "p50-µs")
			b.ReportMetric(acc["p99_ns"].(float64)/1e3, "p99-µs")
			b.ReportMetric(v["packets"].(float64), "packets")
		}
	})
	b.Run("topspeed", func(b *testing.B) {
		for range b.N {
			v := replayOnce(b, "--topspeed")
			b.ReportMetric(v["packets_per_second"].(float64), "packets/s")
		}
	})
	b.Run("tcpreplay-topspeed", func(b *testing.B) {
		if _, err := exec.LookPath("tcpreplay"); err != nil {
			b.Skipf("tcpreplay not installed (%v): apt-get install tcpreplay", err)
		}
		rated := regexp.MustCompile(`Rated: .*?([0-9.]+) pps`)
		for range b.N {
			out, err := exec.Command("tcpreplay", "-i", "lo", "--topspeed", capPath).CombinedOutput()
			if err != nil {
				b.Skipf("tcpreplay -i lo failed (it needs CAP_NET_RAW): %v\n%s", err, out)
			}
			m := rated.FindSubmatch(out)
			if m == nil {
				b.Fatalf("no rate in tcpreplay's output:\n%s", out)
			}
			pps, _ := strconv.ParseFloat(string(m[1]), 64)
			b.ReportMetric(pps, "packets/s")
			b.Logf("tcpreplay:\n%s", out)
		}
	})
}

// readJSONFile decodes a JSON object from path.
func readJSONFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// frame is one record of a capture written with gopacket's pcapgo: an
// Ethernet frame and its capture time.
type frame struct {
	at   time.Time
	data []byte
}

// ethernetFrame serializes payload as an Ethernet frame carrying IPv4 or
// IPv6 (by the addresses' family) and UDP, or TCP when tcp is set, with
// gopacket's layers: an encoder independent of the capture package the
// replay reads with.
func ethernetFrame(t testing.TB, src, dst netip.AddrPort, payload []byte, tcp bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	proto := layers.IPProtocolUDP
	if tcp {
		proto = layers.IPProtocolTCP
	}
	if src.Addr().Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ipl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		ip, ipl = v6, v6
	}
	var l4 interface {
		gopacket.SerializableLayer
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}
	if tcp {
		l4 = &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: 1, ACK: true, Window: 512}
	} else {
		l4 = &layers.UDP{SrcPort: layers.UDPPort(src.Port()), DstPort: layers.UDPPort(dst.Port())}
	}
	if err := l4.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ipl, l4, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(buf.Bytes())
}

// writePcapgo writes frames, in order, into a new pcap file at path with
// gopacket's pcapgo writer; a frame cut to capLen bytes (when capLen > 0
// for it) is recorded with its original length.
func writePcapgo(t testing.TB, path string, frames []frame, capLen map[int]int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriterNanos(bw)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, fr := range frames {
		data := fr.data
		if n, ok := capLen[i]; ok {
			data = data[:n]
		}
		ci := gopacket.CaptureInfo{Timestamp: fr.at, CaptureLength: len(data), Length: len(fr.data)}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// manyFlows returns the UDP frames of flows flows of 1 to 5 datagrams
// each (every fourth flow IPv6), with seeded payloads of 0 to 1400 bytes,
// spread at random over span and sorted by time, and each flow's payloads
// in order, keyed as flowKey names them.
func manyFlows(t testing.TB, seed uint64, flows int, span time.Duration) ([]frame, map[string][][]byte, [][2]netip.AddrPort) {
	rng := rand.New(rand.NewPCG(seed, 99))
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	type dg struct {
		at       time.Duration
		src, dst netip.AddrPort
		payload  []byte
	}
	var dgs []dg
	ends := make([][2]netip.AddrPort, flows)
	for i := range flows {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(20000+i))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(i % 7)}), uint16(5000+i%11))
		if i%4 == 3 {
			src = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0, 15: 1}), uint16(30000+i))
			dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfd, 0, 14: byte(i >> 8), 15: byte(i)}), 6000)
		}
		ends[i] = [2]netip.AddrPort{src, dst}
		for range 1 + rng.IntN(5) {
			p := make([]byte, rng.IntN(1401))
			for j := range p {
				p[j] = byte(rng.Uint32())
			}
			dgs = append(dgs, dg{time.Duration(rng.Int64N(int64(span))), src, dst, p})
		}
	}
	slices.SortStableFunc(dgs, func(a, b dg) int { return cmp.Compare(a.at, b.at) })
	frames := make([]frame, 0, len(dgs))
	want := map[string][][]byte{}
	for _, d := range dgs {
		frames = append(frames, frame{at: t0.Add(d.at), data: ethernetFrame(t, d.src, d.dst, d.payload, false)})
		k := flowKey(d.src, d.dst)
		want[k] = append(want[k], d.payload)
	}
	return frames, want, ends
}

// TestReplayManyFlows is the whole-replay check: a capture of 1 200
// UDP flows (IPv4 and IPv6, 1 to 5 datagrams each, random sizes), written
// with gopacket's pcapgo, replays with default flags through real
// processes into a default `telewire recv --pcap-out --flows`: replay
// exits 0 having spread the flows over 19 sender sessions of 64 streams,
// the receiver refused nothing, and the pcap it wrote holds every
// datagram of every flow, byte for byte, with the original addresses.
func TestReplayManyFlows(t *testing.T) {
	const flows = 1200
	frames, want, _ := manyFlows(t, 1, flows, time.Second)
	capPath := filepath.Join(t.TempDir(), "many.pcap")
	writePcapgo(t, capPath, frames, nil)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sameFlows(t, "the capture reader on the pcapgo capture", pcapFlows(t, capPath), want, keys)

	start := time.Now()
	res := replayInto(t, capPath, nil, nil, nil)
	t.Logf("%d datagrams in %d flows replayed in %v; replay said:\n%s", len(frames), flows, time.Since(start).Round(time.Millisecond), lastLines(res.replayErr, 8))
	if res.replayCode != 0 {
		t.Fatalf("replay exit status %d, want 0\nreplay:\n%s\nrecv:\n%s", res.replayCode, res.replayErr, lastLines(res.recvErr, 5))
	}
	for _, s := range []string{fmt.Sprintf("%d datagrams in %d flows", len(frames), flows), "from 19 sender sessions of up to 64 streams",
		fmt.Sprintf("the receiver confirmed %d of %d datagrams, every flow whole", len(frames), len(frames)), "skipped: none"} {
		if !strings.Contains(res.replayErr, s) {
			t.Errorf("replay summary lacks %q:\n%s", s, res.replayErr)
		}
	}
	sameFlows(t, "out.pcap", pcapFlows(t, res.pcap), want, keys)
	rs := readJSON(t, res.replayStats)
	if rs["sessions"].(float64) != 19 || len(rs["senders"].([]any)) != 19 || len(rs["flows"].([]any)) != flows {
		t.Errorf("replay stats: %v sessions, %d senders, %d flows", rs["sessions"], len(rs["senders"].([]any)), len(rs["flows"].([]any)))
	}
	recv := readJSON(t, res.recvStats)
	if recv["sessions_refused"].(float64) != 0 || recv["streams_refused"].(float64) != 0 || len(recv["streams"].([]any)) != flows {
		t.Errorf("receiver: %v sessions refused, %v streams refused, %d streams", recv["sessions_refused"], recv["streams_refused"], len(recv["streams"].([]any)))
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// TestReplaySkipsListed: datagrams left out by choice or by the capture —
// a TCP segment, a UDP datagram captured shorter than it was sent, and a
// flow --filter excludes — are listed by reason in the summary, and the
// replay of everything else is whole: exit 0, and out.pcap holds exactly
// the other flows.
func TestReplaySkipsListed(t *testing.T) {
	frames, want, ends := manyFlows(t, 2, 12, 200*time.Millisecond)
	// A TCP segment and a cut UDP datagram, in the middle of the capture.
	i := len(frames) / 2
	tcp := frame{at: frames[i].at, data: ethernetFrame(t, ends[0][0], ends[0][1], []byte("not a datagram"), true)}
	cut := frame{at: frames[i].at, data: ethernetFrame(t, ends[1][0], ends[1][1], make([]byte, 300), false)}
	frames = slices.Insert(frames, i, tcp, cut)
	capPath := filepath.Join(t.TempDir(), "skips.pcap")
	writePcapgo(t, capPath, frames, map[int]int{i + 1: 100}) // cut inside the payload
	// Leave out flow 5 by its source port.
	filtered := flowKey(ends[5][0], ends[5][1])
	var keys []string
	for k := range want {
		if k != filtered {
			keys = append(keys, k)
		}
	}
	res := replayInto(t, capPath, nil, nil, []string{"--filter", fmt.Sprintf("not src port %d", ends[5][0].Port())})
	if res.replayCode != 0 {
		t.Fatalf("replay exit status %d, want 0:\n%s", res.replayCode, res.replayErr)
	}
	skipped := fmt.Sprintf("skipped: %d filtered out by --filter, 1 not UDP, 1 truncated (captured shorter than sent)", len(want[filtered]))
	for _, s := range []string{skipped, "every flow whole"} {
		if !strings.Contains(res.replayErr, s) {
			t.Errorf("replay summary lacks %q:\n%s", s, res.replayErr)
		}
	}
	sameFlows(t, "out.pcap", pcapFlows(t, res.pcap), want, keys)
	t.Logf("replay said:\n%s", lastLines(res.replayErr, 8))
}

// TestReplayIncomplete: whatever keeps datagrams from the receiver makes
// replay exit non-zero, and its summary says what: loss nothing repairs
// (a netem relay losing 20 % with NACK and FEC off: exit 4), sessions a
// receiver's bound on senders refuses (exit 4), no receiver at all (exit
// 3).
func TestReplayIncomplete(t *testing.T) {
	frames, _, _ := manyFlows(t, 3, 5, 300*time.Millisecond)
	for len(frames) < 40 { // enough datagrams that 20 % loss loses some
		more, _, _ := manyFlows(t, uint64(len(frames)), 5, 300*time.Millisecond)
		frames = append(frames, more...)
	}
	slices.SortStableFunc(frames, func(a, b frame) int { return a.at.Compare(b.at) })
	capPath := filepath.Join(t.TempDir(), "five.pcap")
	writePcapgo(t, capPath, frames, nil)

	t.Run("unrepaired-loss", func(t *testing.T) {
		fwd, err := netem.ParseSpec("loss random 20%")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var relay *netem.Relay
		via := func(recvAddr string) string {
			relay, err = netem.NewRelay(netem.RelayConfig{Listen: "127.0.0.1:0", To: recvAddr, Fwd: fwd, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			go func() { done <- relay.Run(ctx) }()
			return relay.Addr().String()
		}
		res := replayInto(t, capPath, via, []string{"--nack", "off"}, []string{"--nack", "off", "--fec", "off", "--linger", "2s"})
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if relay.Stats().Fwd.Dropped == 0 {
			t.Fatal("the relay dropped nothing: the test tests nothing")
		}
		d := readJSON(t, res.replayStats)["delivery"].(map[string]any)
		if res.replayCode != 4 || d["lost"].(float64) == 0 || !strings.Contains(res.replayErr, "lost (missing after repair, or too late for delivery)") ||
			!strings.Contains(res.replayErr, "replay incomplete:") {
			t.Fatalf("exit status %d (want 4), delivery %v:\n%s", res.replayCode, d, res.replayErr)
		}
		t.Logf("relay dropped %d; replay said:\n%s", relay.Stats().Fwd.Dropped, lastLines(res.replayErr, 12))
	})
	t.Run("sessions-refused", func(t *testing.T) {
		res := replayInto(t, capPath, nil, []string{"--max-sessions", "2"}, []string{"--session-streams", "1", "--linger", "1s"})
		if res.replayCode != 4 || !strings.Contains(res.replayErr, "the receiver never reported on 3 of 5 sender sessions") {
			t.Fatalf("exit status %d (want 4):\n%s", res.replayCode, res.replayErr)
		}
		t.Logf("replay said:\n%s", lastLines(res.replayErr, 12))
	})
	t.Run("no-receiver", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		pc.Close()
		serr := new(lockedBuffer)
		cmd := exec.Command(telewireBin, "replay", capPath, "--to", addr, "--linger", "300ms")
		cmd.Stderr = serr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if code := exitStatus(t, cmd, serr, time.Minute); code != 3 || !strings.Contains(serr.String(), "no report from the receiver") {
			t.Fatalf("exit status %d (want 3):\n%s", code, serr)
		}
		t.Logf("replay said:\n%s", lastLines(serr.String(), 4))
	})
}

// TestReplayInterrupted: SIGINT stops a replay mid-capture; it still
// lingers until the receiver confirms what was sent, says it was
// interrupted, and exits 0 because everything it sent arrived.
func TestReplayInterrupted(t *testing.T) {
	frames, _, _ := manyFlows(t, 4, 3, 20*time.Second) // one pass takes 1 s per gap capped: several seconds
	capPath := filepath.Join(t.TempDir(), "slow.pcap")
	writePcapgo(t, capPath, frames, nil)
	recv, addr, rerr := startRecv(t, io.Discard, "--idle", "2s")
	stats := filepath.Join(t.TempDir(), "replay.json")
	serr := new(lockedBuffer)
	cmd := exec.Command(telewireBin, "replay", capPath, "--to", addr, "--stats", stats)
	cmd.Stderr = serr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(rerr.String(), "new sender") { // the first datagram has arrived
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("nothing arrived:\n%s\n%s", serr, rerr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(os.Interrupt)
	start := time.Now()
	code := exitStatus(t, cmd, serr, 30*time.Second)
	t.Logf("exit %d %v after SIGINT; replay said:\n%s", code, time.Since(start).Round(time.Millisecond), lastLines(serr.String(), 8))
	if code != 0 || !strings.Contains(serr.String(), "interrupted before the end") || !strings.Contains(serr.String(), "every datagram sent arrived") {
		t.Fatalf("exit status %d, want 0, with the interruption and the delivery in the summary:\n%s", code, serr)
	}
	st := readJSON(t, stats)
	if st["interrupted"] != true || st["packets"].(float64) >= float64(len(frames)) {
		t.Fatalf("stats: interrupted %v, %v packets of %d", st["interrupted"], st["packets"], len(frames))
	}
	recv.Process.Signal(os.Interrupt)
	wait(t, recv, rerr, 30*time.Second)
}

// TestReplaySparseFlows: a capture of many flows of one tiny datagram
// each, spread over seconds (DNS-like), replays whole into a receiver
// without a key: the receiver reports a stream when it has news, so its
// amplification budget (3 bytes of feedback per byte received) is not
// spent re-reporting idle streams, and the report confirming the last
// flows goes out.
func TestReplaySparseFlows(t *testing.T) {
	const flows = 80
	var frames []frame
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dst := netip.MustParseAddrPort("10.9.9.9:53")
	want := map[string][][]byte{}
	var keys []string
	for i := range flows {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1000)
		p := []byte{byte(i)}
		frames = append(frames, frame{at: t0.Add(time.Duration(i) * 50 * time.Millisecond), data: ethernetFrame(t, src, dst, p, false)})
		k := flowKey(src, dst)
		want[k], keys = [][]byte{p}, append(keys, k)
	}
	capPath := filepath.Join(t.TempDir(), "sparse.pcap")
	writePcapgo(t, capPath, frames, nil)
	res := replayInto(t, capPath, nil, nil, nil)
	if res.replayCode != 0 {
		t.Fatalf("replay exit status %d, want 0:\n%s\nreceiver feedback blocked: %v", res.replayCode, lastLines(res.replayErr, 12), readJSON(t, res.recvStats)["feedback_blocked"])
	}
	sameFlows(t, "out.pcap", pcapFlows(t, res.pcap), want, keys)
}
