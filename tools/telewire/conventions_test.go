package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// statsLine is what the tests read from a --stats-interval line.
type statsLine struct {
	Type     string            `json:"type"`
	Final    bool              `json:"final"`
	Time     string            `json:"time"`
	Elapsed  int64             `json:"elapsed_ns"`
	Version  map[string]any    `json:"version"`
	Settings map[string]string `json:"settings"`
	Interval map[string]int64  `json:"interval"`
	Totals   map[string]int64  `json:"totals"`
	Streams  []struct {
		Stream   uint32           `json:"stream"`
		Interval map[string]int64 `json:"interval"`
		Totals   map[string]int64 `json:"totals"`
	} `json:"per_stream"`
}

// checkStatsLines parses JSON Lines statistics and checks them: several
// interval lines, each object parseable with version and settings, times
// and totals never going back, the intervals summing to the totals, and
// one final object, last. It returns the final line.
func checkStatsLines(t *testing.T, what string, data []byte, wantSetting string) statsLine {
	t.Helper()
	var lines []statsLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l statsLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: line %d: %v\n%s", what, len(lines)+1, err, sc.Bytes())
		}
		lines = append(lines, l)
	}
	if len(lines) < 4 {
		t.Fatalf("%s: %d lines, want several:\n%s", what, len(lines), data)
	}
	sum := map[string]int64{}
	var prev statsLine
	for i, l := range lines {
		last := i == len(lines)-1
		if l.Final != last || (l.Type == "final") != last || (!last && l.Type != "interval") {
			t.Fatalf("%s: line %d of %d has type %q final %v", what, i+1, len(lines), l.Type, l.Final)
		}
		if l.Version["module"] != "github.com/telewire/telewire" || l.Settings[wantSetting] == "" {
			t.Fatalf("%s: line %d: version %v, settings %v", what, i+1, l.Version, l.Settings)
		}
		tm, err := time.Parse(time.RFC3339Nano, l.Time)
		if err != nil {
			t.Fatalf("%s: line %d: time %q: %v", what, i+1, l.Time, err)
		}
		if i > 0 {
			ptm, _ := time.Parse(time.RFC3339Nano, prev.Time)
			if tm.Before(ptm) || l.Elapsed < prev.Elapsed {
				t.Fatalf("%s: line %d goes back in time", what, i+1)
			}
		}
		for k, v := range l.Interval {
			sum[k] += v
			if l.Totals[k] != sum[k] {
				t.Fatalf("%s: line %d: %s: intervals sum to %d, total %d", what, i+1, k, sum[k], l.Totals[k])
			}
			// lost and unrecovered are estimates, revised both ways.
			if l.Totals[k] < prev.Totals[k] && k != "lost" && k != "unrecovered" {
				t.Fatalf("%s: line %d: %s total went down", what, i+1, k)
			}
		}
		prev = l
	}
	return prev
}

// TestStatsInterval runs recv and send as processes with --stats-interval
// 100ms for about a second: recv into a file, send to its stdout.
func TestStatsInterval(t *testing.T) {
	const n = 2000
	dir := t.TempDir()
	recvStats := filepath.Join(dir, "recv.jsonl")
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--count", fmt.Sprint(n), "--stats", recvStats, "--stats-interval", "100ms")
	var in bytes.Buffer
	for i := range n {
		fmt.Fprintf(&in, "%d\n", i)
	}
	payloadBytes := int64(in.Len() - n) // without the newlines
	serr := new(lockedBuffer)
	var sout bytes.Buffer
	send := exec.Command(telewireBin, "send", "--to", addr, "--rate", "2000", "--linger", "300ms",
		"--stats", "-", "--stats-interval", "100ms")
	send.Stdin, send.Stdout, send.Stderr = &in, &sout, serr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	wait(t, send, serr, 60*time.Second)
	wait(t, recv, rerr, 60*time.Second)

	sf := checkStatsLines(t, "send --stats -", sout.Bytes(), "rate")
	if sf.Totals["messages"] != n || sf.Totals["bytes"] != payloadBytes || len(sf.Streams) != 1 || sf.Streams[0].Totals["messages"] != n {
		t.Fatalf("send final: totals %v streams %+v", sf.Totals, sf.Streams)
	}
	b, err := os.ReadFile(recvStats)
	if err != nil {
		t.Fatal(err)
	}
	rf := checkStatsLines(t, "recv --stats FILE", b, "listen")
	if rf.Totals["messages"] != n || rf.Totals["bytes"] != payloadBytes || rf.Totals["lost"] != 0 {
		t.Fatalf("recv final: totals %v\n%s", rf.Totals, rerr)
	}
	// The final line still holds the receiver's full statistics.
	var full map[string]any
	json.Unmarshal(b[bytes.LastIndexByte(b[:len(b)-1], '\n')+1:], &full)
	if full["delivered"] != float64(n) {
		t.Fatalf("final line without the receiver statistics: %v", full)
	}
}

// TestStatsUnwritableRefusedAtStart: --stats into a directory that does
// not exist fails at once with exit 2, before anything is sent.
func TestStatsUnwritableRefusedAtStart(t *testing.T) {
	for _, args := range [][]string{
		{"send", "--to", "127.0.0.1:9", "--stats", "/nonexistent/dir/s.json"},
		{"send", "--to", "127.0.0.1:9", "--stats", "/nonexistent/dir/s.jsonl", "--stats-interval", "100ms"},
		{"recv", "--listen", "127.0.0.1:0", "--stats", "/nonexistent/dir/r.json"},
	} {
		cmd := exec.Command(telewireBin, args...)
		cmd.Stdin = strings.NewReader("one\ntwo\n")
		start := time.Now()
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "--stats") ||
			strings.Count(string(out), "\n") != 1 || strings.Contains(string(out), "sender:") || time.Since(start) > 10*time.Second {
			t.Errorf("telewire %q: exit %d after %v:\n%s", args, code, time.Since(start), out)
		}
	}
}

// TestVersion: `telewire version` and `telewire --version` print the
// module and a version; so does `go run`, which stamps no revision.
func TestVersion(t *testing.T) {
	want := regexp.MustCompile(`^telewire github\.com/telewire/telewire (\(devel\)|v\S+) rev (\S+).* go1\.\S+\n$`)
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, err := exec.Command(telewireBin, args...).Output()
		if err != nil || !want.Match(out) {
			t.Errorf("telewire %s: %v: %q", args[0], err, out)
		}
	}
	out, err := exec.Command(telewireBin, "version", "--json").Output()
	var v map[string]any
	if err != nil || json.Unmarshal(out, &v) != nil || v["module"] != "github.com/telewire/telewire" || v["version"] == "" {
		t.Errorf("version --json: %v %s", err, out)
	}
	if testing.Short() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err = exec.CommandContext(ctx, "go", "run", ".", "version").Output()
	if err != nil || !want.Match(out) {
		t.Errorf("go run . version: %v: %q", err, out)
	}
}

// TestVersionStampedBuild builds the command with VCS stamping in a fresh
// git clone of this checkout, when git is available and this is a
// checkout, and expects the commit in `telewire version`.
func TestVersionStampedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command again")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skip("not a git checkout")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skip("not a git checkout")
	}
	dir := t.TempDir()
	clone := filepath.Join(dir, "clone")
	if out, err := exec.Command("git", "clone", "-q", "--no-hardlinks", strings.TrimSpace(string(top)), clone).CombinedOutput(); err != nil {
		t.Skipf("git clone: %v %s", err, out)
	}
	bin := filepath.Join(dir, "telewire")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, "./tools/telewire")
	build.Dir = clone
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(out), " rev "+strings.TrimSpace(string(rev))) {
		t.Fatalf("telewire version from a stamped build: %v %q, want rev %s", err, out, rev)
	}
}

// TestReplayStdin replays a bundled capture read from stdin ("-") into a
// receiver: every datagram arrives, byte-identical; --flows-out - prints
// the stream mapping on stdout.
func TestReplayStdin(t *testing.T) {
	capPath := filepath.Join("..", "..", "testdata", "pcap", "ndpigit__syslog.pcap")
	golden, err := os.ReadFile(capPath + ".golden")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(strings.TrimSpace(string(golden)), "\n") {
		f := strings.Fields(line)
		p, err := hex.DecodeString(f[len(f)-1])
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(p))
	}
	var out bytes.Buffer
	// --idle, not --count: replay waits for the receiver's report of the
	// last datagram, which a recv that exits at its count may never send.
	recv, addr, rerr := startRecv(t, &out, "--idle", "1s", "--framing", "len32")
	capFile, err := os.Open(capPath)
	if err != nil {
		t.Fatal(err)
	}
	defer capFile.Close()
	serr := new(lockedBuffer)
	var flows bytes.Buffer
	replay := exec.Command(telewireBin, "replay", "-", "--to", addr, "--topspeed", "--linger", "200ms", "--flows-out", "-")
	replay.Stdin, replay.Stdout, replay.Stderr = capFile, &flows, serr
	if err := replay.Start(); err != nil {
		t.Fatal(err)
	}
	wait(t, replay, serr, 60*time.Second)
	wait(t, recv, rerr, 60*time.Second)
	var got []string
	for b := out.Bytes(); len(b) >= 4; {
		n := binary.BigEndian.Uint32(b)
		got, b = append(got, string(b[4:4+n])), b[4+n:]
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("replay - delivered %d payloads, want the capture's %d\n%s", len(got), len(want), serr)
	}
	if !strings.Contains(serr.String(), fmt.Sprintf("sent %d messages", len(want))) {
		t.Fatalf("replay summary:\n%s", serr)
	}
	var doc struct {
		Version map[string]any `json:"version"`
		Flows   []struct {
			Stream  uint32 `json:"stream"`
			Packets int    `json:"packets"`
		} `json:"flows"`
	}
	if err := json.Unmarshal(flows.Bytes(), &doc); err != nil || doc.Version["module"] == nil || len(doc.Flows) == 0 {
		t.Fatalf("--flows-out - printed %v:\n%s", err, flows.String())
	}
	var packets int
	for _, f := range doc.Flows {
		packets += f.Packets
	}
	if packets != len(want) {
		t.Fatalf("--flows-out - counts %d datagrams, want %d", packets, len(want))
	}
}

// TestPerfectLinkSpellings: in every subcommand that takes netem specs,
// "" and "none" are the same perfect link.
func TestPerfectLinkSpellings(t *testing.T) {
	t.Run("netem", func(t *testing.T) {
		for _, args := range [][]string{{"--fwd", "", "--rev", "none"}, {"--fwd", "NONE", "--rev", ""}} {
			cmd, _, stderr := startNetem(t, "127.0.0.1:9", args...)
			cmd.Process.Kill()
			cmd.Wait()
			if s := stderr.String(); !strings.Contains(s, "fwd: perfect link") || !strings.Contains(s, "rev: perfect link") {
				t.Errorf("netem %q:\n%s", args, s)
			}
		}
	})
	t.Run("demo", func(t *testing.T) {
		// The default link drops about 2%: 600 messages would lose some.
		for _, args := range [][]string{{"--fwd", "", "--rev", "none"}, {"--fwd", "none", "--rev", ""}} {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"demo", "--duration", "300ms"}, args...), nil, &stdout, &stderr)
			if code != 0 || !regexp.MustCompile(`link: forward dropped 0 of [1-9]\d*, reverse dropped 0 of`).Match(stdout.Bytes()) {
				t.Errorf("demo %q: exit %d\n%s\n%s", args, code, stdout.String(), stderr.String())
			}
		}
	})
	t.Run("soak", func(t *testing.T) {
		for _, args := range [][]string{{"--fwd", "", "--rev", "none"}, {"--fwd", "none", "--rev", ""}} {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"soak", "--json", "--duration", "300ms", "--rate", "2000"}, args...), nil, &stdout, &stderr)
			if code != 0 || !strings.Contains(stdout.String(), `"fwd":"none","rev":"none"`) ||
				strings.Count(stdout.String(), `{"version":{"module":"github.com/telewire/telewire"`) != strings.Count(stdout.String(), "\n") {
				t.Errorf("soak %q: exit %d\n%s\n%s", args, code, stdout.String(), stderr.String())
			}
		}
	})
	t.Run("sim", func(t *testing.T) {
		// The same suite with the two spellings gives the same report
		// (the simulation is deterministic); read from stdin ("-").
		suite := func(spec string) string {
			return fmt.Sprintf(`{"settings": [{"name": "nack", "nack": true}],
 "defaults": {"messages": 500, "rate": 1000, "size": 100, "seed": 3, "fwd": %q, "rev": %q},
 "scenarios": [{"name": "perfect"}]}`, spec, spec)
		}
		var reports []string
		for _, spec := range []string{"", "none", "delay 1ms"} {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"sim", "--json", "--scenarios", "-"}, strings.NewReader(suite(spec)), &stdout, &stderr)
			if code != 0 {
				t.Fatalf("sim with %q: exit %d\n%s", spec, code, stderr.String())
			}
			// The report echoes each link spec; drop those lines.
			reports = append(reports, regexp.MustCompile(`"(fwd|rev)": .*\n`).ReplaceAllString(stdout.String(), ""))
		}
		if reports[0] != reports[1] {
			t.Errorf(`sim: "" and "none" differ:\n%s\n---\n%s`, reports[0], reports[1])
		}
		if reports[0] == reports[2] {
			t.Error(`sim: "delay 1ms" gives the same report as the perfect link: the comparison shows nothing`)
		}
	})
}

// TestNetemStatsInterval: netem's --stats-interval lines count every
// datagram once, their intervals summing to the totals, final line last.
func TestNetemStatsInterval(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "netem.jsonl")
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	cmd, addr, stderr := startNetem(t, sink.LocalAddr().String(), "--fwd", "loss 30%", "--stats", path, "--stats-interval", "100ms")
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 300
	for i := range n {
		c.Write([]byte(fmt.Sprint(i)))
		if i%50 == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	wait(t, cmd, stderr, 20*time.Second)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []struct {
		Type        string                       `json:"type"`
		Version     any                          `json:"version"`
		RawInterval map[string]map[string]uint64 `json:"interval"`
		RawTotals   map[string]map[string]uint64 `json:"totals"`
	}
	if err := json.Unmarshal([]byte("["+strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ",")+"]"), &lines); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	if len(lines) < 4 || lines[len(lines)-1].Type != "final" {
		t.Fatalf("%d lines:\n%s", len(lines), b)
	}
	sum := map[string]uint64{}
	for i, l := range lines {
		if l.Version == nil || (i < len(lines)-1 && l.Type != "interval") {
			t.Fatalf("line %d: %+v", i+1, l)
		}
		for k, v := range l.RawInterval["fwd"] {
			sum[k] += v
			if sum[k] != l.RawTotals["fwd"][k] {
				t.Fatalf("line %d: fwd %s: intervals sum to %d, total %d", i+1, k, sum[k], l.RawTotals["fwd"][k])
			}
		}
	}
	if sum["received"] != n || sum["forwarded"]+sum["dropped"] != n || sum["dropped"] == 0 {
		t.Fatalf("fwd totals %v, want %d received, some dropped\n%s", sum, n, stderr)
	}
}

// TestDemoStatsInterval: demo's records carry the sender's and the
// receiver's counts, the intervals of each summing to its totals.
func TestDemoStatsInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "demo.jsonl")
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"demo", "--duration", "1s", "--stats", path, "--stats-interval", "200ms"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type side struct {
		Interval, Totals map[string]int64
	}
	var lines []struct {
		Type     string            `json:"type"`
		Settings map[string]string `json:"settings"`
		Sender   side              `json:"sender"`
		Receiver side              `json:"receiver"`
	}
	if err := json.Unmarshal([]byte("["+strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", ",")+"]"), &lines); err != nil {
		t.Fatalf("%v:\n%s", err, b)
	}
	if len(lines) < 4 || lines[len(lines)-1].Type != "final" || lines[0].Settings["duration"] != "1s" {
		t.Fatalf("%d lines:\n%s", len(lines), b)
	}
	var sent, got int64
	for _, l := range lines {
		sent += l.Sender.Interval["messages"]
		got += l.Receiver.Interval["messages"]
		if sent != l.Sender.Totals["messages"] || got != l.Receiver.Totals["messages"] {
			t.Fatalf("intervals sum to %d / %d, totals %v / %v", sent, got, l.Sender.Totals, l.Receiver.Totals)
		}
	}
	if sent < 1000 || got < sent*9/10 || !strings.Contains(stdout.String(), fmt.Sprintf("%d", sent)) {
		t.Fatalf("sent %d, received %d\n%s", sent, got, stdout.String())
	}
}
