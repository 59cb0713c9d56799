package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// recvBin is the binary whose recv the output tests run: the one built
// for this package, or $TELEWIRE_TEST_RECV_BIN, so that the same harness
// measures another build (e.g. main's, for a before/after comparison:
// TELEWIRE_TEST_RECV_BIN=/tmp/telewire-main go test -v -run TestRecvPipeLatency).
func recvBin() string {
	if b := os.Getenv("TELEWIRE_TEST_RECV_BIN"); b != "" {
		return b
	}
	return telewireBin
}

// startRecvOut starts recv on a loopback port the kernel picks, its
// stdout going to out (a pipe or file, handed to the child as is), and
// returns its address from the line it prints at start.
func startRecvOut(tb testing.TB, out *os.File, args ...string) (*exec.Cmd, string, *lockedBuffer) {
	tb.Helper()
	stderr := new(lockedBuffer)
	// --log-level info: an older build says where it listens only in its log.
	cmd := exec.Command(recvBin(), append([]string{"recv", "--listen", "127.0.0.1:0", "--log-level", "info"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	re := regexp.MustCompile(`telewire recv: listening on (\S+)|"listen":"([^"]+)".*"receiver listening"`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return cmd, m[1] + m[2], stderr
		}
		if time.Now().After(deadline) {
			tb.Fatalf("recv did not start: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pipe returns a pipe whose ends the test closes at cleanup.
func pipe(tb testing.TB) (r, w *os.File) {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// TestRecvListensOnPrintedAddress: recv says where it listens in one line,
// without --log-level, so --listen 127.0.0.1:0 is usable from a script.
func TestRecvListensOnPrintedAddress(t *testing.T) {
	stderr := new(lockedBuffer)
	cmd := exec.Command(telewireBin, "recv", "--listen", "127.0.0.1:0", "--count", "1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	re := regexp.MustCompile(`(?m)^telewire recv: listening on (127\.0\.0\.1:\d+)$`)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == ""; time.Sleep(5 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no address line: %q", stderr.String())
		}
	}
	send := exec.Command(telewireBin, "send", "--to", addr, "--linger", "0s")
	send.Stdin = strings.NewReader("hello\n")
	if b, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send: %v\n%s", err, b)
	}
	wait(t, cmd, stderr, 30*time.Second)
	if out.String() != "hello\n" {
		t.Fatalf("output %q", out.String())
	}
}

// pipeTimes are the latencies of one run of messages through
// `send | recv | reader`.
type pipeTimes struct {
	// endToEnd: from the test's write into send's stdin to the test's read
	// of the line from recv's stdout, what a `recv | consumer` pipeline
	// sees (sender, pacing, network, receiver and output).
	endToEnd []time.Duration
	// output (json framing only): from the receiver's read of the datagram
	// (its recv_ns, wall clock) to the test's read of the line: the part
	// recv's output path owns.
	output []time.Duration
}

// pipeLatencies sends n messages at rate messages/s into `telewire send`,
// through recv into a pipe the test reads, and times each one.
func pipeLatencies(t *testing.T, n int, rate float64, link string, framingArgs ...string) pipeTimes {
	t.Helper()
	rd, wr := pipe(t)
	recv, addr, rerr := startRecvOut(t, wr, append([]string{"--count", fmt.Sprint(n + 1)}, framingArgs...)...)
	wr.Close() // the child holds its own copy
	if link != "" {
		_, addr, _ = startNetem(t, addr, "--fwd", link, "--seed", "7")
	}
	sin, sinW := pipe(t)
	serr := new(lockedBuffer)
	send := exec.Command(telewireBin, "send", "--to", addr, "--linger", "200ms")
	send.Stdin, send.Stderr = sin, serr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	sin.Close()
	t.Cleanup(func() { send.Process.Kill(); send.Wait() })

	// When each line went into send's stdin, in ns since base. Atomic: the
	// reader's read comes after the write only through the children, which
	// the race detector cannot see.
	base := time.Now()
	sent := make([]atomic.Int64, n)
	res := pipeTimes{endToEnd: make([]time.Duration, n)}
	done := make(chan error, 1)
	warm := make(chan struct{}) // closed when the warm-up line is read
	go func() {
		br := bufio.NewReader(rd)
		for i := range n + 1 {
			line, err := br.ReadSlice('\n')
			if err != nil {
				done <- fmt.Errorf("after %d lines: %v", i, err)
				return
			}
			at := time.Now()
			since := at.Sub(base)
			if bytes.IndexByte(line, '{') == 0 {
				var m struct {
					Payload      string `json:"payload"`
					ReceiveNanos int64  `json:"recv_ns"`
				}
				if err := json.Unmarshal(line, &m); err != nil {
					done <- fmt.Errorf("line %q: %v", line, err)
					return
				}
				res.output = append(res.output, at.Sub(time.Unix(0, m.ReceiveNanos)))
				line = []byte(m.Payload)
			}
			if bytes.HasPrefix(line, []byte("warmup")) {
				close(warm)
				continue
			}
			var k int
			if _, err := fmt.Sscanf(string(line), "m%d", &k); err != nil || k < 0 || k >= n {
				done <- fmt.Errorf("line %q: %v", line, err)
				return
			}
			res.endToEnd[k] = since - time.Duration(sent[k].Load())
		}
		done <- nil
	}()
	// A first line, not timed, so that the processes' start-up is not
	// counted. A recv that holds its output does not pass it on; then the
	// timed lines start after a while all the same.
	if _, err := io.WriteString(sinW, "warmup\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-warm:
	case <-time.After(5 * time.Second):
		t.Log("the warm-up line did not come through within 5 s")
	}
	start := time.Now()
	gap := time.Duration(float64(time.Second) / rate)
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * gap)); d > 0 {
			time.Sleep(d)
		}
		sent[i].Store(int64(time.Since(base)))
		if _, err := fmt.Fprintf(sinW, "m%d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	sinW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reader: %v\nrecv: %s\nsend: %s", err, rerr, serr)
		}
	case <-time.After(time.Minute):
		t.Fatalf("reader got fewer than %d lines within a minute\nrecv: %s\nsend: %s", n, rerr, serr)
	}
	wait(t, recv, rerr, 30*time.Second)
	return res
}

// summarize returns p50, p99 and max.
func summarize(d []time.Duration) (p50, p99, mx time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1]
}

// over describes the latencies above bound, "" if none is.
func over(d []time.Duration, bound time.Duration) string {
	late, first, last := 0, -1, -1
	for i, x := range d {
		if x > bound {
			late++
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if late == 0 {
		return ""
	}
	_, _, mx := summarize(d)
	return fmt.Sprintf("%d of %d messages over %v (max %v; messages %d to %d)", late, len(d), bound, mx, first, last)
}

// TestRecvPipeLatency: a message reaches the consumer of `recv |` at once,
// at 1 msg/s and at 2 000 msgs/s, in line and json framing; -v logs the
// distributions (the goal: 5 ms on loopback).
//
// Two bounds, so that a loaded 2-core box does not fail the test while a
// recv that holds messages always does. End to end (sender, its pacing
// and the scheduling of three processes included) every message within
// 1 s: recv with a buffer flushed at exit holds the first message for the
// whole run, 3 s here. recv's own part, from its read of the datagram to
// the consumer's read of the line (json's recv_ns), every message within
// 50 ms, in one of three attempts: a structural delay repeats, a load
// spike does not.
func TestRecvPipeLatency(t *testing.T) {
	const endToEndBound, outputBound = time.Second, 50 * time.Millisecond
	// Short or not, the runs must outlast the end-to-end bound.
	const slowN, fastN = 4, 6000
	cases := []struct {
		name string
		n    int
		rate float64
		link string // netem spec of a relay in between, "" for none
		args []string
	}{
		{"1perSec-line", slowN, 1, "", nil},
		{"2000perSec-line", fastN, 2000, "", nil},
		{"1perSec-json", slowN, 1, "", []string{"--framing", "json"}},
		{"2000perSec-json", fastN, 2000, "", []string{"--framing", "json"}},
		// Through 2% loss: repairs and the ordered-delivery wait for them
		// (at most --latency, 200 ms) are the transport's and stay within
		// the end-to-end bound; recv's own part stays as small.
		{"2000perSec-lossy-line", fastN, 2000, "loss random 2%", nil},
		{"2000perSec-lossy-json", fastN, 2000, "loss random 2%", []string{"--framing", "json"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for attempt := 1; ; attempt++ {
				res := pipeLatencies(t, c.n, c.rate, c.link, c.args...)
				p50, p99, mx := summarize(res.endToEnd)
				t.Logf("%s, attempt %d: %d messages, end to end p50 %v p99 %v max %v", c.name, attempt, c.n, p50, p99, mx)
				if s := over(res.endToEnd, endToEndBound); s != "" {
					t.Fatalf("end to end: %s", s)
				}
				if res.output == nil {
					return
				}
				p50, p99, mx = summarize(res.output)
				t.Logf("%s, attempt %d: recv's part (datagram read to line read) p50 %v p99 %v max %v", c.name, attempt, p50, p99, mx)
				if c.link != "" {
					// Behind a loss, a message rightly waits in ordered
					// delivery for the repair: not recv's output path.
					return
				}
				s := over(res.output, outputBound)
				if s == "" {
					return
				}
				if attempt == 3 {
					t.Fatalf("recv's part: %s", s)
				}
				t.Logf("recv's part: %s; again", s)
			}
		})
	}
}

// waitLines polls path until it holds at least n lines.
func waitLines(t *testing.T, path string, n int, within time.Duration, stderr fmt.Stringer) []byte {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, _ := os.ReadFile(path)
		if bytes.Count(b, []byte{'\n'}) >= n {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d lines after %v, want %d\nrecv: %s", path, bytes.Count(b, []byte{'\n'}), within, n, stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkJSONPrefix checks that b is whole JSON lines, messages with
// sequences 0, 1, 2, … and payloads "m<seq>", and returns how many. A
// last line without its newline is left out: a write the kill cut short
// (the kernel may take part of a write when a fatal signal comes) is what
// it had accepted.
func checkJSONPrefix(t *testing.T, b []byte) int {
	t.Helper()
	if i := bytes.LastIndexByte(b, '\n'); i+1 < len(b) {
		t.Logf("a last line cut by the kill left out: %q", b[i+1:])
		b = b[:i+1]
	}
	n := 0
	for line := range bytes.Lines(b) {
		var m struct {
			Type    string `json:"type"`
			Seq     uint64 `json:"seq"`
			Payload string `json:"payload"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %d %q: %v", n, line, err)
		}
		// Messages queued together may share a datagram (and its seq):
		// the payloads say which message each line is.
		if m.Type != "message" || m.Payload != fmt.Sprintf("m%d", n) {
			t.Fatalf("line %d: %+v", n, m)
		}
		n++
	}
	return n
}

// TestRecvKill9KeepsDelivered: once recv has written N messages, a
// kill -9 loses none of them, to a file or to a pipe; and messages sent
// right before the kill are either whole in the output or absent.
func TestRecvKill9KeepsDelivered(t *testing.T) {
	const n = 300
	input := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "m%d\n", i)
		}
		return b.String()
	}
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "out.json")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recv, addr, rerr := startRecvOut(t, f, "--framing", "json")
		sin, sinW := pipe(t)
		send := exec.Command(telewireBin, "send", "--to", addr, "--rate", "20000")
		send.Stdin = sin
		if err := send.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { send.Process.Kill(); send.Wait() })
		io.WriteString(sinW, input(0, n))
		waitLines(t, path, n, 20*time.Second, rerr)
		// More in flight while recv dies: whatever of it made the file must
		// be whole.
		io.WriteString(sinW, input(n, n+2000))
		time.Sleep(2 * time.Millisecond)
		if err := recv.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		recv.Wait()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := checkJSONPrefix(t, b); got < n {
			t.Fatalf("%d messages in the file after kill -9, %d were there before", got, n)
		} else {
			t.Logf("%d messages in the file after kill -9 (%d before the last burst)", got, n)
		}
	})
	t.Run("pipe", func(t *testing.T) {
		rd, wr := pipe(t)
		recv, addr, rerr := startRecvOut(t, wr, "--framing", "json")
		wr.Close()
		lines := make(chan []byte, 4*n)
		go func() {
			defer close(lines)
			br := bufio.NewReader(rd)
			for {
				line, err := br.ReadBytes('\n')
				if len(line) > 0 {
					lines <- line
				}
				if err != nil {
					return
				}
			}
		}()
		send := exec.Command(telewireBin, "send", "--to", addr, "--rate", "20000")
		send.Stdin = strings.NewReader(input(0, n))
		if err := send.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { send.Process.Kill(); send.Wait() })
		var all []byte
		timeout := time.After(20 * time.Second)
		for got := 0; got < n; got++ {
			select {
			case l := <-lines:
				all = append(all, l...)
			case <-timeout:
				t.Fatalf("%d of %d lines through the pipe while recv runs\nrecv: %s", got, n, rerr)
			}
		}
		// Everything was read while recv was alive; kill it, and the pipe
		// ends cleanly with nothing half written.
		if err := recv.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		recv.Wait()
		for l := range lines {
			all = append(all, l...)
		}
		if got := checkJSONPrefix(t, all); got != n {
			t.Fatalf("%d messages, want %d", got, n)
		}
	})
}

// TestRecvJSONGapsThroughLossyLink: through `telewire netem` with 10%
// loss and no NACK or FEC, ordered json output covers every sequence from
// the first delivered to the last exactly once, as a message or inside a
// gap object; each message's payload, text or binary, is the one sent.
func TestRecvJSONGapsThroughLossyLink(t *testing.T) {
	const n = 2000
	rd, wr := pipe(t)
	recv, raddr, rerr := startRecvOut(t, wr, "--framing", "json", "--nack", "off", "--mode", "ordered", "--latency", "30ms", "--idle", "1s")
	wr.Close()
	var out bytes.Buffer
	copied := make(chan error, 1)
	go func() { _, err := io.Copy(&out, rd); copied <- err }()

	_, naddr, _ := startNetem(t, raddr, "--fwd", "loss random 10%", "--seed", "7")

	payload := func(i int) []byte {
		if i%5 == 3 { // binary, not UTF-8
			return []byte{0xff, byte(i), byte(i >> 8), '\n', 0x80}
		}
		return fmt.Appendf(nil, "m%d \"quoted\"\ttab", i)
	}
	var in bytes.Buffer
	for i := range n {
		p := payload(i)
		in.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		in.Write(p)
	}
	serr := new(lockedBuffer)
	// --no-pack: gap records name datagram sequences, and this test maps
	// each sequence to the one message it carries.
	send := exec.Command(telewireBin, "send", "--to", naddr, "--framing", "len32", "--fec", "off", "--nack", "off", "--rate", "4000", "--linger", "100ms", "--no-pack")
	send.Stdin, send.Stderr = &in, serr
	if err := send.Run(); err != nil {
		t.Fatalf("send: %v\n%s", err, serr)
	}
	wait(t, recv, rerr, 30*time.Second)
	if err := <-copied; err != nil {
		t.Fatal(err)
	}

	type record struct {
		Type          string  `json:"type"`
		Source        string  `json:"source"`
		Session       string  `json:"session"`
		Stream        uint32  `json:"stream"`
		Seq           uint64  `json:"seq"`
		SentNanos     int64   `json:"sent_ns"`
		ReceiveNanos  int64   `json:"recv_ns"`
		Origin        string  `json:"origin"`
		Payload       *string `json:"payload"`
		PayloadBase64 *string `json:"payload_base64"`
		First         uint64  `json:"first"`
		Last          uint64  `json:"last"`
		Count         uint64  `json:"count"`
		Reason        string  `json:"reason"`
	}
	next, started := uint64(0), false
	var msgs, gapSeqs, gaps, binaries int
	for line := range bytes.Lines(out.Bytes()) {
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if r.Source == "" || len(r.Session) != 16 || r.ReceiveNanos < time.Now().Add(-time.Hour).UnixNano() {
			t.Fatalf("record without its origin or a wall-clock receive time: %q", line)
		}
		first, last := r.Seq, r.Seq
		switch r.Type {
		case "message":
			want := payload(int(r.Seq))
			var got []byte
			switch {
			case r.Payload != nil && r.PayloadBase64 == nil:
				got = []byte(*r.Payload)
			case r.Payload == nil && r.PayloadBase64 != nil:
				b, err := base64.StdEncoding.DecodeString(*r.PayloadBase64)
				if err != nil {
					t.Fatal(err)
				}
				got = b
				binaries++
			default:
				t.Fatalf("want one payload field: %q", line)
			}
			if !bytes.Equal(got, want) || r.Origin != "first" {
				t.Fatalf("seq %d: payload %q origin %s, want %q first", r.Seq, got, r.Origin, want)
			}
			msgs++
		case "gap":
			first, last = r.First, r.Last
			if r.Count != last-first+1 || (r.Reason != "deadline" && r.Reason != "start") {
				t.Fatalf("gap %q", line)
			}
			gaps++
			gapSeqs += int(r.Count)
			if r.Reason == "start" {
				// Sent before the first message delivered, arrived after it
				// (reordering): outside the run of sequences checked here.
				continue
			}
		default:
			t.Fatalf("type %q", r.Type)
		}
		if started && first != next {
			t.Fatalf("record %q starts at %d, want %d (a sequence missed or repeated)", line, first, next)
		}
		started, next = true, last+1
	}
	rs := rerr.String()
	t.Logf("%d messages (%d binary), %d gaps covering %d sequences; recv said:\n%s", msgs, binaries, gaps, gapSeqs, rs)
	if gaps == 0 || msgs < n/2 || binaries == 0 || int(next) > n {
		t.Fatalf("%d messages, %d gaps, %d binary, up to seq %d of %d", msgs, gaps, binaries, next, n)
	}
	// The human summary tells the same story.
	if !strings.Contains(rs, strconv.Itoa(gapSeqs)+" sequences skipped by ordered delivery") ||
		!strings.Contains(rs, fmt.Sprintf("%d gap records written (%d sequences)", gaps, gapSeqs)) {
		t.Fatalf("summary does not report the %d gaps / %d sequences skipped:\n%s", gaps, gapSeqs, rs)
	}
}

// TestRecvLineRefusesNewline: a payload with a newline is not written in
// line framing (it would read as two messages); recv says so once and
// counts it in its summary.
func TestRecvLineRefusesNewline(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recv, addr, rerr := startRecvOut(t, f, "--count", "4")
	var in bytes.Buffer
	for _, p := range []string{"one", "two\nlines", "three", "x\ny\n"} {
		in.Write(binary.BigEndian.AppendUint32(nil, uint32(len(p))))
		in.WriteString(p)
	}
	send := exec.Command(telewireBin, "send", "--to", addr, "--framing", "len32", "--linger", "100ms")
	send.Stdin = &in
	if b, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send: %v\n%s", err, b)
	}
	wait(t, recv, rerr, 30*time.Second)
	b, _ := os.ReadFile(f.Name())
	s := rerr.String()
	if string(b) != "one\nthree\n" || strings.Count(s, "refusing payloads that contain a newline") != 1 ||
		!strings.Contains(s, "2 messages refused by line framing") || !strings.Contains(s, "receiver: 2 messages written") {
		t.Fatalf("output %q; stderr:\n%s", b, s)
	}
}

// TestRecvPcapToStdout: --pcap-out - puts the capture on stdout when the
// messages go to --output, flushed as they come; both on stdout is a
// usage error.
func TestRecvPcapToStdout(t *testing.T) {
	cmd := exec.Command(telewireBin, "recv", "--listen", "127.0.0.1:0", "--pcap-out", "-")
	b, _ := cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(b), "cannot both go to stdout") {
		t.Fatalf("exit %d: %s", cmd.ProcessState.ExitCode(), b)
	}

	msgs := filepath.Join(t.TempDir(), "msgs")
	rd, wr := pipe(t)
	recv, addr, rerr := startRecvOut(t, wr, "--pcap-out", "-", "--output", msgs)
	wr.Close()
	send := exec.Command(telewireBin, "send", "--to", addr, "--linger", "0s")
	send.Stdin = strings.NewReader("hello pcap\n")
	if b, err := send.CombinedOutput(); err != nil {
		t.Fatalf("send: %v\n%s", err, b)
	}
	// The datagram is readable while recv still runs.
	got := make(chan error, 1)
	go func() {
		var buf []byte
		b := make([]byte, 4096)
		for !bytes.HasSuffix(buf, []byte("hello pcap")) {
			n, err := rd.Read(b)
			if err != nil {
				got <- fmt.Errorf("after % x: %v", buf, err)
				return
			}
			buf = append(buf, b[:n]...)
		}
		if len(buf) < 24 || binary.LittleEndian.Uint32(buf) != 0xa1b23c4d { // nanosecond pcap
			got <- fmt.Errorf("not a nanosecond pcap: % x", buf)
			return
		}
		got <- nil
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the pcap record did not come through the pipe while recv runs\n%s", rerr)
	}
	recv.Process.Signal(os.Interrupt)
	wait(t, recv, rerr, 30*time.Second)
	if b, _ := os.ReadFile(msgs); string(b) != "hello pcap\n" {
		t.Fatalf("--output holds %q", b)
	}
}
