package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests drive the real binary, as a newcomer's shell would.
var telewireBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "telewire-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	telewireBin = filepath.Join(dir, "telewire")
	if out, err := exec.Command("go", "build", "-o", telewireBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building telewire: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "Commands:"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"send"}, 2, "--to (or --listen) is required"},
		{[]string{"send", "--to", "127.0.0.1:1", "--framing", "xml"}, 2, "unknown framing"},
		{[]string{"send", "--to", "127.0.0.1:1", "--count", "5"}, 2, "--count and --size go with --gen"},
		{[]string{"recv"}, 2, "--listen (or --subscribe) is required"},
		{[]string{"recv", "--listen", "127.0.0.1:0", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"recv", "--listen", "127.0.0.1:0", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"demo", "--rate", "-1"}, 2, "must be positive"},
		{[]string{"send", "--to", "127.0.0.1:1", "--fec", "10"}, 2, "not auto, off or K,M"},
		{[]string{"send", "--to", "127.0.0.1:1", "--fec", "200,100"}, 2, "K+M <= 256"},
		{[]string{"send", "--to", "127.0.0.1:1", "--fec-interleave", "4"}, 2, "goes with --fec K,M"},
		{[]string{"recv", "--listen", "127.0.0.1:0", "--mode", "random"}, 2, "unknown delivery mode"},
		{[]string{"recv", "--listen", "127.0.0.1:0", "--nack", "maybe"}, 2, "neither on nor off"},
		{[]string{"send", "--help"}, 0, "Usage: telewire send"},
		{[]string{"help", "recv"}, 0, "Usage: telewire recv"},
		{[]string{"help"}, 0, "Quick start"},
	}
	for _, c := range cases {
		cmd := exec.Command(telewireBin, c.args...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("telewire %v: exit %d, want %d; output should contain %q:\n%s", c.args, code, c.code, c.want, out)
		}
	}
}

// startRecv starts `telewire recv` on a loopback port the kernel picks
// and returns its command, its address (from its "receiver listening" log
// line, which it is waited for) and its stderr. Binding port 0 in the
// receiver itself leaves no moment in which another process could take
// the port, as probing for a free port and then binding it would.
func startRecv(tb testing.TB, stdout io.Writer, args ...string) (*exec.Cmd, string, *lockedBuffer) {
	tb.Helper()
	stderr := new(lockedBuffer)
	cmd := exec.Command(telewireBin, append([]string{"recv", "--listen", "127.0.0.1:0", "--log-level", "info"}, args...)...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill() })
	// Poll for the log line instead of sleeping a fixed time.
	re := regexp.MustCompile(`"listen":"([^"]+)".*"receiver listening"`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return cmd, m[1], stderr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("recv did not start: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while a command writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func wait(t *testing.T, cmd *exec.Cmd, stderr fmt.Stringer, within time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr)
		}
	case <-time.After(within):
		cmd.Process.Kill()
		t.Fatalf("%v did not finish within %v\n%s", cmd.Args, within, stderr)
	}
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// TestSeqPipeline is the acceptance check: 200 000 lines from `seq`
// through send and recv on loopback arrive byte-identical, and both stats
// files hold sane figures.
func TestSeqPipeline(t *testing.T) {
	n := 200_000
	if testing.Short() {
		n = 20_000
	}
	var in bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&in, "%d\n", i)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--count", fmt.Sprint(n), "--stats", filepath.Join(dir, "recv.json"))
	serr := new(lockedBuffer)
	// --no-pack: the receiver's counts below are of datagrams.
	send := exec.Command(telewireBin, "send", "--to", addr, "--rate", "100000", "--no-pack", "--stats", filepath.Join(dir, "send.json"))
	send.Stdin, send.Stderr = bytes.NewReader(in.Bytes()), serr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	wait(t, recv, rerr, 60*time.Second)
	wait(t, send, serr, 60*time.Second)
	if !bytes.Equal(out.Bytes(), in.Bytes()) {
		t.Fatalf("output differs from input: %d bytes vs %d\nrecv: %s\nsend: %s", out.Len(), in.Len(), rerr, serr)
	}
	rs := readJSON(t, filepath.Join(dir, "recv.json"))
	stream := rs["streams"].([]any)[0].(map[string]any)
	if stream["received"].(float64) != float64(n) || stream["lost"].(float64) != 0 || stream["jitter_ns"].(float64) < 0 {
		t.Fatalf("receiver stats: %v", stream)
	}
	delay := stream["delay"].(map[string]any)
	if delay["p50_ns"].(float64) > delay["p99_ns"].(float64) || delay["p99_ns"].(float64) > delay["max_ns"].(float64) {
		t.Fatalf("delay percentiles out of order: %v", delay)
	}
	ss := readJSON(t, filepath.Join(dir, "send.json"))
	rtt := ss["rtt"].(map[string]any)
	if ss["packets"].(float64) != float64(n) || rtt["smoothed_ns"].(float64) <= 0 || rtt["samples"].(float64) < 1 {
		t.Fatalf("sender stats: packets %v rtt %v", ss["packets"], rtt)
	}
	recvView := ss["streams"].([]any)[0].(map[string]any)["receiver"].(map[string]any)
	if recvView["reported"] != true || recvView["jitter_ns"].(float64) < 0 {
		t.Fatalf("sender's view of the receiver: %v", recvView)
	}
}

// TestLen32Binary sends binary payloads of 0 to 1400 bytes, newlines and
// all, with len32 framing both ways.
func TestLen32Binary(t *testing.T) {
	const n = 20_000
	rng := rand.New(rand.NewPCG(5, 6))
	var in bytes.Buffer
	for range n {
		m := make([]byte, rng.IntN(1401))
		for i := range m {
			m[i] = byte(rng.UintN(256))
		}
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(len(m)))
		in.Write(hdr[:])
		in.Write(m)
	}
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--count", fmt.Sprint(n), "--framing", "len32")
	serr := new(lockedBuffer)
	send := exec.Command(telewireBin, "send", "--to", addr, "--framing", "len32", "--rate", "50000", "--linger", "100ms")
	send.Stdin, send.Stderr = bytes.NewReader(in.Bytes()), serr
	if err := send.Run(); err != nil {
		t.Fatalf("send: %v\n%s", err, serr)
	}
	wait(t, recv, rerr, 60*time.Second)
	if !bytes.Equal(out.Bytes(), in.Bytes()) {
		t.Fatalf("len32 output differs: %d bytes vs %d\n%s", out.Len(), in.Len(), rerr)
	}
}

// TestRecvIdleExit: recv exits 0 on its own once data stops for --idle.
func TestRecvIdleExit(t *testing.T) {
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--idle", "300ms")
	send := exec.Command(telewireBin, "send", "--to", addr, "--gen", "game", "--count", "50", "--linger", "0s")
	if b, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send: %v\n%s", err, b)
	}
	wait(t, recv, rerr, 20*time.Second)
	lines := 0
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "G ") {
			t.Fatalf("unexpected line %q", sc.Text())
		}
		lines++
	}
	if lines != 50 {
		t.Fatalf("got %d lines, want 50", lines)
	}
}

// TestRecvExitsOnSignal: SIGTERM is a normal end with exit status 0 and
// the stats file written.
func TestRecvExitsOnSignal(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	recv, _, rerr := startRecv(t, &out, "--stats", filepath.Join(dir, "r.json"))
	if err := recv.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	wait(t, recv, rerr, 10*time.Second)
	if v := readJSON(t, filepath.Join(dir, "r.json")); v["delivered"].(float64) != 0 {
		t.Fatalf("stats %v", v)
	}
}

// TestDemo runs the demo exactly as the README says: no flags.
func TestDemo(t *testing.T) {
	args := []string{"demo"}
	if testing.Short() {
		args = append(args, "--duration", "2s")
	}
	cmd := exec.Command(telewireBin, args...)
	var stdout bytes.Buffer
	stderr := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wait(t, cmd, stderr, 60*time.Second)
	out := stdout.String()
	for _, want := range []string{"delivered", "delay p99", "rtt", "summary after", "lost on the link", "repaired by FEC", "by retransmission"} {
		if !strings.Contains(out, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, out)
		}
	}
	if rows := strings.Count(out, "\n "); rows < 2 {
		t.Fatalf("demo printed no table rows:\n%s", out)
	}
	t.Logf("demo output:\n%s", out)
}
