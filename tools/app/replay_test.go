package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/capture"
	"github.com/telewire/telewire/tools/replay"
)

// base is the capture time of the first generated datagram.
var base = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

var testEnds = [][2]string{
	{"10.0.0.1:40000", "10.0.0.2:5000"},
	{"[fd00::1]:40001", "[fd00::2]:5001"},
	{"192.168.1.7:5004", "233.54.12.1:5000"},
	{"10.0.0.2:5000", "10.0.0.1:40000"}, // the reverse of the first: its own flow
}

// genDatagrams returns n datagrams cycling over testEnds, gap apart, with
// seeded payloads of 0 to maxLen bytes.
func genDatagrams(seed uint64, n, maxLen int, gap time.Duration) []capture.Datagram {
	rng := rand.New(rand.NewPCG(seed, 2))
	out := make([]capture.Datagram, n)
	for i := range out {
		e := testEnds[i%len(testEnds)]
		p := make([]byte, rng.IntN(maxLen+1))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		out[i] = capture.Datagram{
			Time: base.Add(time.Duration(i) * gap),
			Src:  netip.MustParseAddrPort(e[0]), Dst: netip.MustParseAddrPort(e[1]),
			Payload: p,
		}
	}
	return out
}

// writePcap writes datagrams to a new capture file in dir.
func writePcap(t testing.TB, dir string, opts capture.WriterOptions, dgs []capture.Datagram) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := capture.NewWriter(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dgs {
		if err := w.WriteDatagram(d); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, fmt.Sprintf("c%d.pcap", len(dgs)))
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// flowPayloads reads a capture and returns each flow's payloads in order,
// keyed "src -> dst".
func flowPayloads(t testing.TB, path string) map[string][][]byte {
	t.Helper()
	r, err := capture.Open(path, capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string][][]byte{}
	for {
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		k := d.Src.String() + " -> " + d.Dst.String()
		out[k] = append(out[k], bytes.Clone(d.Payload))
	}
}

func TestFlowTable(t *testing.T) {
	ft := newFlowTable(2)
	dgs := genDatagrams(1, 8, 10, time.Millisecond)
	var got []int
	for i := range dgs {
		id, ok := ft.add(&dgs[i])
		if !ok {
			id = 99
		}
		got = append(got, int(id))
	}
	if want := []int{0, 1, 99, 99, 0, 1, 99, 99}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("streams %v, want %v", got, want)
	}
	if len(ft.flows) != 2 || ft.skipped != 2 || ft.unsent != 0 {
		t.Fatalf("%d flows, %d skipped, %d unsent; want 2, 2 and 0", len(ft.flows), ft.skipped, ft.unsent)
	}
	f := ft.flows[1]
	if f.Src != dgs[1].Src || f.Dst != dgs[1].Dst || f.Packets != 2 || f.Bytes != uint64(len(dgs[1].Payload)+len(dgs[5].Payload)) {
		t.Fatalf("flow 1 = %+v", f)
	}
	if id, ok := ft.lookup(dgs[3].Src, dgs[3].Dst); ok {
		t.Fatalf("unmapped flow looked up as stream %d", id)
	}
	if id, ok := ft.lookup(dgs[1].Src, dgs[1].Dst); !ok || id != 1 {
		t.Fatalf("lookup of flow 1 = %d, %v", id, ok)
	}
	if _, ok := ft.lookup(dgs[1].Dst, dgs[1].Src); ok {
		t.Fatal("the reverse direction of a flow is another flow")
	}
}

// TestFlowTableBound: the table remembers at most maxTrackedFlows flows;
// datagrams of further ones are refused without growing it.
func TestFlowTableBound(t *testing.T) {
	ft := newFlowTable(3)
	d := capture.Datagram{Dst: netip.MustParseAddrPort("10.9.9.9:9")}
	for i := range maxTrackedFlows + 10 {
		d.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 1)
		ft.add(&d)
	}
	if len(ft.ids) != maxTrackedFlows || ft.skipped != maxTrackedFlows-3 || len(ft.flows) != 3 || !ft.untraced {
		t.Fatalf("tracked %d, skipped %d, mapped %d, untraced %v", len(ft.ids), ft.skipped, len(ft.flows), ft.untraced)
	}
}

// fakeRun builds a replayRun over a fake clock that sends into a slice;
// every send happens lateNanos after its scheduled time.
type sent struct {
	stream  uint32
	at      int64
	payload []byte
}

func fakeRun(t *testing.T, o ReplayOptions, lateNanos int64) (*replayRun, *[]sent, *clock.Fake) {
	t.Helper()
	sc, err := scanCapture(o)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(1_000_000)
	var out []sent
	r, err := newReplayRun(o, sc, clk, func(stream uint32, p []byte) error {
		out = append(out, sent{stream, clk.Now(), bytes.Clone(p)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.wait = func(_ context.Context, at int64) error {
		clk.Set(at + lateNanos)
		return nil
	}
	return r, &out, clk
}

// TestReplayTiming: on a fake clock, each datagram goes out on its flow's
// stream at the capture's gaps (capped at MaxGap, scaled by Speed), over
// two passes, and the accuracy histogram sees the injected lateness.
func TestReplayTiming(t *testing.T) {
	dgs := genDatagrams(3, 12, 50, 3*time.Millisecond)
	for i := 6; i < len(dgs); i++ { // a 5 s gap before datagram 6, capped to 1 s
		dgs[i].Time = dgs[i].Time.Add(5 * time.Second)
	}
	path := writePcap(t, t.TempDir(), capture.WriterOptions{}, dgs)
	for _, speed := range []float64{1, 2} {
		o := ReplayOptions{File: path, MaxFlows: 64, Timing: replay.Config{Speed: speed, Loops: 2}}
		r, out, _ := fakeRun(t, o, 7000)
		if err := r.replayAll(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(*out) != 2*len(dgs) {
			t.Fatalf("speed %v: sent %d, want %d", speed, len(*out), 2*len(dgs))
		}
		var elapsed int64 // capture time since the first datagram, capped
		for i, s := range *out {
			d := dgs[i%len(dgs)]
			if i%len(dgs) > 0 {
				gap := int64(d.Time.Sub(dgs[i%len(dgs)-1].Time))
				elapsed += min(gap, int64(time.Second))
			}
			want := r.start + int64(float64(elapsed)/speed) + 7000
			if s.stream != uint32(i%len(testEnds)) || !bytes.Equal(s.payload, d.Payload) || s.at != want {
				t.Fatalf("speed %v send %d: stream %d at %d, want stream %d at %d (payload equal %v)",
					speed, i, s.stream, s.at, i%len(testEnds), want, bytes.Equal(s.payload, d.Payload))
			}
		}
		var st ReplayStats
		r.fill(&st)
		if st.Packets != uint64(2*len(dgs)) || st.Passes != 2 || st.Schedule.CappedGaps != 2 ||
			st.Accuracy.Count != st.Packets || st.Accuracy.P50Nanos != 7000 || st.Accuracy.Late != st.Packets {
			t.Fatalf("speed %v: stats %+v", speed, st)
		}
		wantElapsed := (*out)[len(*out)-1].at - (*out)[0].at
		if st.ElapsedNanos != wantElapsed || st.PacketsPerSecond <= 0 {
			t.Fatalf("elapsed %d, want %d; pps %v", st.ElapsedNanos, wantElapsed, st.PacketsPerSecond)
		}
	}
}

// TestReplaySkips: flows beyond MaxFlows and payloads over the largest
// telewire payload are counted, not sent; the scan agrees.
func TestReplaySkips(t *testing.T) {
	dgs := genDatagrams(4, 8, 20, time.Millisecond)
	dgs[4].Payload = make([]byte, 1001) // flow 0, too large for the sender's MaxMessage
	path := writePcap(t, t.TempDir(), capture.WriterOptions{}, dgs)
	o := ReplayOptions{File: path, MaxFlows: 2, Timing: replay.Config{TopSpeed: true}, Sender: sender.Config{MaxMessage: 1000}}
	r, out, _ := fakeRun(t, o, 0)
	if r.sc.sendable != 3 {
		t.Fatalf("scan counts %d sendable datagrams, want 3", r.sc.sendable)
	}
	if err := r.replayAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var st ReplayStats
	r.fill(&st)
	if len(*out) != 3 || st.SkippedMaxFlows != 4 || st.SkippedFlowLimit != 0 || st.SkippedTooLarge != 1 || st.Accuracy.Count != 0 {
		t.Fatalf("sent %d, skipped %d (--max-flows) %d (flow limit) %d (large), accuracy %+v", len(*out), st.SkippedMaxFlows, st.SkippedFlowLimit, st.SkippedTooLarge, st.Accuracy)
	}
	st.Capture = r.sc.capture
	if txt := skippedText(&st); !strings.Contains(txt, "4 of flows beyond --max-flows") || strings.Contains(txt, "largest") {
		t.Fatalf("skipped text %q", txt)
	}
	if txt := notSentText(&st); txt != "1 over the largest telewire payload" {
		t.Fatalf("not-sent text %q", txt)
	}
	if err := verdict(&st); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("a datagram too large to send: verdict %v", err)
	}
}

// TestReplayCancel: a cancelled context ends the replay without error,
// mid-wait.
func TestReplayCancel(t *testing.T) {
	dgs := genDatagrams(5, 4, 20, time.Hour) // capped to 1 s gaps
	path := writePcap(t, t.TempDir(), capture.WriterOptions{}, dgs)
	sc, err := scanCapture(ReplayOptions{File: path, MaxFlows: 8})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	r, err := newReplayRun(ReplayOptions{File: path, MaxFlows: 8}, sc, newWallClock(), func(uint32, []byte) error {
		n++
		cancel() // the real sleep then notices within maxSleepNanos
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := r.replayAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n != 1 || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("sent %d in %v; want 1, promptly", n, time.Since(start))
	}
}

// TestSleepUntil: the real pacer returns at or after the due time.
func TestSleepUntil(t *testing.T) {
	r := &replayRun{clk: newWallClock()}
	for _, d := range []int64{0, 50_000, 300_000, 3_000_000} {
		at := r.clk.Now() + d
		if err := r.sleepUntil(context.Background(), at); err != nil {
			t.Fatal(err)
		}
		if now := r.clk.Now(); now < at {
			t.Fatalf("returned %d ns early", at-now)
		}
	}
}

// TestStepAllocs: sending one datagram allocates nothing.
func TestStepAllocs(t *testing.T) {
	dgs := genDatagrams(6, 4, 100, time.Microsecond)
	path := writePcap(t, t.TempDir(), capture.WriterOptions{}, dgs)
	o := ReplayOptions{File: path, MaxFlows: 8, Timing: replay.Config{PPS: 1e9}}
	sc, err := scanCapture(o)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(0)
	r, err := newReplayRun(o, sc, clk, func(uint32, []byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	r.wait = func(_ context.Context, at int64) error { clk.Set(at); return nil }
	ctx := context.Background()
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		if err := r.step(ctx, &dgs[i%len(dgs)]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("step allocates %v times", allocs)
	}
}

func TestScanErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := scanCapture(ReplayOptions{File: filepath.Join(dir, "missing.pcap")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	junk := filepath.Join(dir, "junk.pcap")
	os.WriteFile(junk, []byte("this is not a capture file"), 0o644)
	if _, err := scanCapture(ReplayOptions{File: junk}); !errors.Is(err, capture.ErrUnknownFormat) {
		t.Fatalf("junk file: %v", err)
	}
	// A file cut mid-record is replayed up to the cut.
	dgs := genDatagrams(7, 6, 40, time.Millisecond)
	whole, err := os.ReadFile(writePcap(t, dir, capture.WriterOptions{}, dgs))
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.pcap")
	os.WriteFile(cut, whole[:len(whole)-5], 0o644)
	sc, err := scanCapture(ReplayOptions{File: cut, MaxFlows: 8})
	if err != nil || !errors.Is(sc.fileErr, capture.ErrFileTruncated) || sc.sendable != 5 {
		t.Fatalf("cut file: %v, file error %v, %d sendable", err, sc.fileErr, sc.sendable)
	}
	// A damaged record length is an error before anything is sent.
	bad := bytes.Clone(whole)
	copy(bad[24+8:], []byte{0xff, 0xff, 0xff, 0x7f}) // first record's captured length
	damaged := filepath.Join(dir, "damaged.pcap")
	os.WriteFile(damaged, bad, 0o644)
	if _, err := scanCapture(ReplayOptions{File: damaged, MaxFlows: 8}); !errors.Is(err, capture.ErrMalformedFile) {
		t.Fatalf("damaged file: %v", err)
	}
}

func TestReplayOptionErrors(t *testing.T) {
	path := writePcap(t, t.TempDir(), capture.WriterOptions{}, genDatagrams(8, 2, 10, time.Millisecond))
	cases := []ReplayOptions{
		{To: "127.0.0.1:9"},
		{File: path},
		{File: path, To: "127.0.0.1:9", MaxFlows: MaxFlowsLimit + 1},
		{File: path, To: "127.0.0.1:9", Linger: -1},
		{File: path, To: "127.0.0.1:9", Timing: replay.Config{Speed: -1}},
	}
	for _, o := range cases {
		if _, err := Replay(context.Background(), o, io.Discard); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	_, err := Replay(context.Background(), ReplayOptions{File: path, To: "127.0.0.1:9", Timing: replay.Config{PPS: 5, TopSpeed: true}}, io.Discard)
	if !errors.Is(err, replay.ErrConfig) {
		t.Errorf("top speed with pps: %v", err)
	}
}

// TestProgressLine: the bar, count, rate and ETA from the schedule.
func TestProgressLine(t *testing.T) {
	dgs := genDatagrams(9, 11, 10, 100*time.Millisecond) // one pass: 1 s
	path := writePcap(t, t.TempDir(), capture.WriterOptions{}, dgs)
	r, _, clk := fakeRun(t, ReplayOptions{File: path, MaxFlows: 8, Timing: replay.Config{Loops: 2}}, 0)
	for i := range 5 {
		if err := r.step(context.Background(), &dgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	clk.Set(r.start + int64(500*time.Millisecond))
	line := r.progressLine()
	for _, want := range []string{"[=====", " 23% 5/22 packets", "10/s", "ETA 2s"} {
		if !strings.Contains(line, want) {
			t.Fatalf("progress %q lacks %q", line, want)
		}
	}
	r.o.Timing = replay.Config{Loops: replay.Forever}
	if line := r.progressLine(); !strings.Contains(line, "replay: 5 packets") || strings.Contains(line, "ETA") {
		t.Fatalf("endless progress %q", line)
	}
	r.o.Timing = replay.Config{TopSpeed: true}
	if eta := r.eta(5, 10, 5, clk.Now()); eta != "1s" {
		t.Fatalf("top speed ETA %q, want 1s", eta)
	}
	if eta := r.eta(5, 10, 0, clk.Now()); eta != "?" {
		t.Fatalf("ETA without a rate %q", eta)
	}
	r.o.Timing = replay.Config{PPS: 10}
	if eta := r.eta(5, 21, 10, clk.Now()); eta != "2s" { // last one due at 2 s, now 0.5 s
		t.Fatalf("pps ETA %q, want 2s", eta)
	}
}

func TestModeName(t *testing.T) {
	for _, c := range []struct {
		cfg  replay.Config
		want string
	}{
		{replay.Config{}, "speed 1"},
		{replay.Config{Speed: 2.5}, "speed 2.5"},
		{replay.Config{TopSpeed: true}, "topspeed"},
		{replay.Config{PPS: 1000}, "pps 1000"},
	} {
		if got := modeName(c.cfg); got != c.want {
			t.Errorf("%+v: %q, want %q", c.cfg, got, c.want)
		}
	}
}

func TestParseFlows(t *testing.T) {
	good := `{"file":"x.pcap","flows":[{"stream":0,"src":"10.0.0.1:1","dst":"10.0.0.2:2"},{"stream":7,"src":"[fd00::1]:3","dst":"[ff15::1]:4","packets":3}]}`
	flows, err := parseFlows([]byte(good))
	if err != nil || len(flows) != 2 || flows[1].Stream != 7 || flows[1].Dst != netip.MustParseAddrPort("[ff15::1]:4") {
		t.Fatalf("%v %+v", err, flows)
	}
	for _, bad := range []string{
		``,
		`[]`,
		`{}`,
		`{"flows":null}`,
		`{"flows":[{"stream":0,"src":"10.0.0.1:1"}]}`,
		`{"flows":[{"stream":0,"src":"10.0.0.1:1","dst":"[fd00::2]:2"}]}`,
		`{"flows":[{"stream":0,"src":"10.0.0.1","dst":"10.0.0.2:2"}]}`,
		`{"flows":[{"stream":1,"src":"10.0.0.1:1","dst":"10.0.0.2:2"},{"stream":1,"src":"10.0.0.3:1","dst":"10.0.0.2:2"}]}`,
		`{"flows":[{"stream":-1,"src":"10.0.0.1:1","dst":"10.0.0.2:2"}]}`,
		`{"flows":[{"session":"xyz","stream":1,"src":"10.0.0.1:1","dst":"10.0.0.2:2"}]}`,
		`{"flows":[{"session":"-1","stream":1,"src":"10.0.0.1:1","dst":"10.0.0.2:2"}]}`,
		`{"flows":[{"session":"00000000000000000a","stream":1,"src":"10.0.0.1:1","dst":"10.0.0.2:2"}]}`,
		`{"flows":[{"session":"0a","stream":1,"src":"10.0.0.1:1","dst":"10.0.0.2:2"},{"session":"0a","stream":1,"src":"10.0.0.3:1","dst":"10.0.0.2:2"}]}`,
	} {
		if _, err := parseFlows([]byte(bad)); !errors.Is(err, ErrFlowsFile) {
			t.Errorf("%q: %v, want ErrFlowsFile", bad, err)
		}
	}
	// The same stream in two sessions is two flows; a session is up to 16
	// hex digits.
	two := `{"flows":[{"sender":0,"session":"0123456789abcdef","stream":1,"src":"10.0.0.1:1","dst":"10.0.0.2:2"},` +
		`{"sender":1,"session":"a","stream":1,"src":"10.0.0.3:1","dst":"10.0.0.2:2"}]}`
	if flows, err := parseFlows([]byte(two)); err != nil || len(flows) != 2 || flows[1].Sender != 1 || flows[0].Session != "0123456789abcdef" {
		t.Fatalf("two sessions: %v %+v", err, flows)
	}
	dir := t.TempDir()
	if _, err := LoadFlows(filepath.Join(dir, "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	path := filepath.Join(dir, "flows.json")
	os.WriteFile(path, []byte(good), 0o644)
	if flows, err := LoadFlows(path); err != nil || len(flows) != 2 {
		t.Fatalf("LoadFlows: %v %+v", err, flows)
	}
}

// FuzzParseFlows: any input either fails with ErrFlowsFile or yields a
// mapping that survives a JSON round trip unchanged.
func FuzzParseFlows(f *testing.F) {
	f.Add([]byte(`{"flows":[{"stream":0,"src":"10.0.0.1:1","dst":"10.0.0.2:2","packets":1,"bytes":5}]}`))
	f.Add([]byte(`{"flows":[{"stream":4294967295,"src":"[::1]:0","dst":"[::]:65535"}]}`))
	f.Add([]byte(`{"flows":[]}`))
	f.Add([]byte(`{"flows":[{"sender":3,"session":"00000000deadbeef","stream":2,"src":"10.0.0.1:1","dst":"10.0.0.2:2"},{"session":"1","stream":2,"src":"10.0.0.1:1","dst":"10.0.0.2:2"}]}`))
	f.Add([]byte(`{"flows":[{"stream":1,"src":"1.2.3.4:5","dst":"[::ffff:1.2.3.4]:6"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		flows, err := parseFlows(b)
		if err != nil {
			if !errors.Is(err, ErrFlowsFile) {
				t.Fatalf("error %v does not wrap ErrFlowsFile", err)
			}
			return
		}
		again, err := json.Marshal(flowsDoc{Flows: flows})
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseFlows(again)
		if err != nil || fmt.Sprint(back) != fmt.Sprint(flows) {
			t.Fatalf("round trip: %v\n%v\n%v", err, flows, back)
		}
	})
}

func TestFallbackAddrs(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		from   string
		stream uint32
		local  string
		src    string
		dst    string
	}{
		{"127.0.0.1:40000", 3, "127.0.0.1:9000", "127.0.0.1:3", "127.0.0.1:9000"},
		{"[::1]:40000", 70000, "[::1]:9000", "[::1]:4464", "[::1]:9000"},
		{"[::ffff:10.0.0.1]:1", 1, "[::]:9000", "10.0.0.1:1", "0.0.0.0:9000"},
		{"[fd00::1]:1", 2, "0.0.0.0:9000", "[fd00::1]:2", "[::]:9000"},
		{"10.0.0.1:1", 2, "[::ffff:127.0.0.1]:9000", "10.0.0.1:2", "127.0.0.1:9000"},
	}
	for _, c := range cases {
		src, dst := fallbackAddrs(ap(c.from), c.stream, ap(c.local))
		if src != ap(c.src) || dst != ap(c.dst) {
			t.Errorf("%s stream %d to %s: %s -> %s, want %s -> %s", c.from, c.stream, c.local, src, dst, c.src, c.dst)
		}
	}
}

// TestPcapSink: messages of mapped streams keep their original addresses,
// others get the fallback; timestamps are the receive times; the mapping
// file is picked up once it appears, at most every flowsRetryNanos.
func TestPcapSink(t *testing.T) {
	dir := t.TempDir()
	out, flowsPath := filepath.Join(dir, "out.pcap"), filepath.Join(dir, "flows.json")
	epoch := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	local := netip.MustParseAddrPort("127.0.0.1:9000")
	sink, err := openPcapSink(out, flowsPath, local, func(n int64) time.Time { return epoch.Add(time.Duration(n)) })
	if err != nil {
		t.Fatal(err)
	}
	from := netip.MustParseAddrPort("127.0.0.1:45000")
	msg := func(stream uint32, recv int64, p string) *receiver.Message {
		return &receiver.Message{Source: from, Stream: stream, ReceiveNanos: recv, Payload: []byte(p)}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sink.write(msg(0, 0, "before the mapping")))
	doc, _ := json.Marshal(flowsDoc{Flows: []Flow{{Stream: 0, Src: netip.MustParseAddrPort("[fd00::1]:5"), Dst: netip.MustParseAddrPort("[ff15::9]:6")}}})
	must(os.WriteFile(flowsPath, doc, 0o644))
	must(sink.write(msg(0, flowsRetryNanos-1, "too soon to look again")))
	must(sink.write(msg(0, flowsRetryNanos, "mapped")))
	must(sink.write(msg(1, flowsRetryNanos+1, "not in the mapping")))
	must(sink.write(msg(0, flowsRetryNanos+2, "")))
	if sink.written != 5 || sink.mapped != 2 {
		t.Fatalf("written %d, mapped %d", sink.written, sink.mapped)
	}
	must(sink.close())
	if s := sink.summary(); !strings.Contains(s, "5 datagrams") || !strings.Contains(s, "2 of them") || strings.Contains(s, "never appeared") {
		t.Fatalf("summary %q", s)
	}

	r, err := capture.Open(out, capture.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := []struct {
		src, dst, payload string
		recv              int64
	}{
		{"127.0.0.1:0", "127.0.0.1:9000", "before the mapping", 0},
		{"127.0.0.1:0", "127.0.0.1:9000", "too soon to look again", flowsRetryNanos - 1},
		{"[fd00::1]:5", "[ff15::9]:6", "mapped", flowsRetryNanos},
		{"127.0.0.1:1", "127.0.0.1:9000", "not in the mapping", flowsRetryNanos + 1},
		{"[fd00::1]:5", "[ff15::9]:6", "", flowsRetryNanos + 2},
	}
	for i, w := range want {
		d, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if d.Src.String() != w.src || d.Dst.String() != w.dst || string(d.Payload) != w.payload || !d.Time.Equal(epoch.Add(time.Duration(w.recv))) {
			t.Fatalf("record %d: %s -> %s %q at %v; want %+v", i, d.Src, d.Dst, d.Payload, d.Time, w)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("extra record: %v", err)
	}
}

// TestPcapSinkBadFlows: a mapping file that exists but is not one fails
// the write (recv reports it) instead of being ignored.
func TestPcapSinkBadFlows(t *testing.T) {
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.json")
	os.WriteFile(flowsPath, []byte(`{"nope":1}`), 0o644)
	sink, err := openPcapSink(filepath.Join(dir, "out.pcap"), flowsPath, netip.MustParseAddrPort("127.0.0.1:1"), func(n int64) time.Time { return time.Unix(0, n) })
	if err != nil {
		t.Fatal(err)
	}
	defer sink.close()
	if err := sink.write(&receiver.Message{Source: netip.MustParseAddrPort("127.0.0.1:2")}); !errors.Is(err, ErrFlowsFile) {
		t.Fatalf("write with a bad mapping: %v", err)
	}
	if _, err := openPcapSink(filepath.Join(dir, "no", "such", "dir.pcap"), "", netip.AddrPort{}, nil); err == nil {
		t.Fatal("pcap in a missing directory opened")
	}
}

// TestPcapSinkAllocs: writing a delivered message allocates nothing.
func TestPcapSinkAllocs(t *testing.T) {
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.json")
	doc, _ := json.Marshal(flowsDoc{Flows: []Flow{{Stream: 0, Src: netip.MustParseAddrPort("10.0.0.1:5"), Dst: netip.MustParseAddrPort("10.0.0.2:6")}}})
	os.WriteFile(flowsPath, doc, 0o644)
	epoch := time.Now()
	sink, err := openPcapSink(filepath.Join(dir, "out.pcap"), flowsPath, netip.MustParseAddrPort("127.0.0.1:1"), func(n int64) time.Time { return epoch.Add(time.Duration(n)) })
	if err != nil {
		t.Fatal(err)
	}
	defer sink.close()
	m := receiver.Message{Source: netip.MustParseAddrPort("127.0.0.1:2"), Payload: make([]byte, 1200)}
	if err := sink.write(&m); err != nil { // loads the mapping, grows buffers
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		m.Stream ^= 1 // mapped and fallback in turn
		m.ReceiveNanos++
		if err := sink.write(&m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("write allocates %v times", allocs)
	}
}

// TestReplayLoopback runs Replay into Recv in this process over loopback
// (so the race detector sees both): every flow of a capture with IPv4,
// IPv6, a reversed flow, empty payloads and fragmented datagrams arrives
// on its own stream, and the pcap recv writes holds, per original flow,
// the same payloads byte for byte, twice (two passes), with the original
// addresses. It runs with one sender session, and with two into a
// receiver that takes 3 streams per sender; the receiver's reports
// confirm every datagram, so Replay returns no error.
func TestReplayLoopback(t *testing.T) {
	for _, per := range []int{0, 3} {
		t.Run(fmt.Sprintf("session-streams-%d", per), func(t *testing.T) { testReplayLoopback(t, per) })
	}
}

func testReplayLoopback(t *testing.T, per int) {
	testutil.NoLeaks(t)
	dir := t.TempDir()
	dgs := genDatagrams(10, 400, 3000, 50*time.Microsecond)
	src := writePcap(t, dir, capture.WriterOptions{MTU: 1500}, dgs)
	out, flows, stats := filepath.Join(dir, "out.pcap"), filepath.Join(dir, "flows.json"), filepath.Join(dir, "replay.json")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	ready := make(chan string, 1)
	recvDone := make(chan error, 1)
	var recvErr bytes.Buffer
	go func() {
		recvDone <- Recv(ctx, RecvOptions{
			Listen: "127.0.0.1:0", Idle: 300 * time.Millisecond, PcapOut: out, FlowsFile: flows,
			Receiver: receiver.Config{MaxStreams: max(per, 4)},
			Logger:   zerolog.Nop(), Ready: func(a string) { ready <- a },
		}, io.Discard, &recvErr)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-recvDone:
		t.Fatalf("recv: %v", err)
	}
	var replayErr bytes.Buffer
	st, err := Replay(ctx, ReplayOptions{
		File: src, To: addr, Timing: replay.Config{PPS: 20000, Loops: 2}, SessionStreams: per,
		FlowsFile: flows, StatsFile: stats, Linger: 10 * time.Second, Logger: zerolog.Nop(),
	}, &replayErr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, replayErr.String())
	}
	if err := <-recvDone; err != nil {
		t.Fatalf("recv: %v\n%s", err, recvErr.String())
	}
	t.Logf("replay:\n%s\nrecv:\n%s", replayErr.String(), recvErr.String())
	sessions := 1
	if per == 3 {
		sessions = 2
	}
	if st.Packets != uint64(2*len(dgs)) || len(st.Flows) != len(testEnds) || st.Capture.Reassembled == 0 || st.Accuracy.Count != st.Packets ||
		st.Sessions != sessions || len(st.Senders) != sessions || st.Delivery.Confirmed != st.Packets || st.Delivery.Sent != st.Packets {
		t.Fatalf("replay stats: %+v", st)
	}
	if st.Senders[0].Session == st.Senders[sessions-1].Session && sessions > 1 {
		t.Fatalf("two senders share session %x", st.Senders[0].Session)
	}
	stream3 := "  stream 3: 10.0.0.2:5000 -> 10.0.0.1:40000"
	if sessions > 1 {
		stream3 = "sender 1 stream 0: 10.0.0.2:5000 -> 10.0.0.1:40000"
	}
	for _, want := range []string{stream3, "timing: |scheduled - actual| p50", "the receiver confirmed 800 of 800 datagrams, every flow whole"} {
		if !strings.Contains(replayErr.String(), want) {
			t.Fatalf("replay output lacks %q", want)
		}
	}
	var doc ReplayStats
	b, _ := os.ReadFile(stats)
	if err := json.Unmarshal(b, &doc); err != nil || doc.Packets != st.Packets || len(doc.Flows) != len(testEnds) || len(doc.Senders) != sessions || doc.Delivery != st.Delivery {
		t.Fatalf("stats file: %v %+v", err, doc)
	}
	want := flowPayloads(t, src)
	for k, v := range want {
		want[k] = append(v, v...)
	}
	got := flowPayloads(t, out)
	if len(got) != len(want) {
		t.Fatalf("out.pcap has flows %v, want %d flows", keys(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			t.Fatalf("flow %s: %d payloads, want %d", k, len(g), len(w))
		}
		for i := range w {
			if !bytes.Equal(g[i], w[i]) {
				t.Fatalf("flow %s payload %d differs", k, i)
			}
		}
	}
}

func keys(m map[string][][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// BenchmarkReplayTopSpeed replays a generated capture as fast as possible
// into a receiver in this process over loopback and reports the replay's
// packets per second (the sender's and the receiver's goroutines share
// the machine with it).
func BenchmarkReplayTopSpeed(b *testing.B) {
	dgs := genDatagrams(11, 20000, 200, 250*time.Microsecond)
	path := writePcap(b, b.TempDir(), capture.WriterOptions{}, dgs)
	b.ReportAllocs()
	var pps float64
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		ready, done := make(chan string, 1), make(chan error, 1)
		go func() {
			done <- Recv(ctx, RecvOptions{Listen: "127.0.0.1:0", Logger: zerolog.Nop(), Ready: func(a string) { ready <- a }}, io.Discard, io.Discard)
		}()
		st, err := Replay(ctx, ReplayOptions{File: path, To: <-ready, Timing: replay.Config{TopSpeed: true}, Logger: zerolog.Nop()}, io.Discard)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		pps += st.PacketsPerSecond
	}
	b.ReportMetric(pps/float64(b.N), "packets/s")
}
