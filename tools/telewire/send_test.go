package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/sender"
)

// startSend starts `telewire send` with stdin from a pipe the test holds
// the write end of, and waits until the sender is up (its "sender started"
// log line), so that a signal sent next finds it blocked reading stdin.
func startSend(t *testing.T, args ...string) (*exec.Cmd, *os.File, *lockedBuffer) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(lockedBuffer)
	cmd := exec.Command(telewireBin, append([]string{"send", "--log-level", "info"}, args...)...)
	cmd.Stdin, cmd.Stderr = pr, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close() // the child has its own copy
	t.Cleanup(func() {
		cmd.Process.Kill()
		pw.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "sender started") {
		if time.Now().After(deadline) {
			t.Fatalf("send did not start: %s", stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd, pw, stderr
}

// exitWithin waits for cmd and returns its exit status and how long it
// took, failing the test if it takes longer than limit.
func exitWithin(t *testing.T, cmd *exec.Cmd, stderr fmt.Stringer, limit time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%v: %v", cmd.Args, err)
		}
		return cmd.ProcessState.ExitCode(), time.Since(start)
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within %v\n%s", cmd.Args, limit, stderr)
	}
	return 0, 0
}

// receiverGot matches the send summary's count of DATA packets received.
var receiverGot = regexp.MustCompile(`receiver got (\d+) of (\d+) DATA packets`)

// TestSendSignalWhileBlockedOnStdin: SIGINT and SIGTERM end a send that
// is blocked reading a pipe nobody writes to (`sleep 100 | telewire
// send`): what was read is sent, the summary printed, exit status 0.
func TestSendSignalWhileBlockedOnStdin(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			var out lockedBuffer
			recv, addr, rerr := startRecv(t, &out)
			defer recv.Process.Kill()
			send, pw, serr := startSend(t, "--to", addr)
			if _, err := pw.WriteString("one\ntwo\nthree\n"); err != nil {
				t.Fatal(err)
			}
			// Wait for them to reach the receiver (one pipe write, one read,
			// one batch: the first packet means all three were sent), so
			// that the signal finds send blocked in its next read.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(rerr.String(), "new sender") {
				if time.Now().After(deadline) {
					t.Fatalf("messages did not arrive:\n%s\n%s", serr, rerr)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := send.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code, took := exitWithin(t, send, serr, 10*time.Second)
			if code != 0 || took > 3*time.Second {
				t.Fatalf("exit %d after %v, want 0 within 3s\n%s", code, took, serr)
			}
			for _, want := range []string{"interrupted", "sender: 3 messages", "refused or dropped: nothing"} {
				if !strings.Contains(serr.String(), want) {
					t.Fatalf("stderr lacks %q:\n%s", want, serr)
				}
			}
			// Every DATA packet arrived: 3 or, when the second and third
			// messages were packed together, 2.
			if m := receiverGot.FindStringSubmatch(serr.String()); m == nil || m[1] != m[2] || (m[1] != "2" && m[1] != "3") {
				t.Fatalf("stderr lacks \"receiver got N of N\" with N 2 or 3:\n%s", serr)
			}
			t.Logf("exit 0 %v after the signal", took)
		})
	}
	// Nothing read at all: nothing to linger for, the end is at once.
	send, _, serr := startSend(t, "--to", "127.0.0.1:9")
	send.Process.Signal(os.Interrupt)
	if code, took := exitWithin(t, send, serr, 10*time.Second); code != 0 || took > 3*time.Second || !strings.Contains(serr.String(), "sender: 0 messages") {
		t.Fatalf("with nothing read: exit %d after %v\n%s", code, took, serr)
	}
}

// TestSendSecondSignalExitsAtOnce: a second signal during a long linger
// ends the process at once with 128 + the signal's number.
func TestSendSecondSignalExitsAtOnce(t *testing.T) {
	for _, c := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(c.sig.String(), func(t *testing.T) {
			var out lockedBuffer
			recv, addr, rerr := startRecv(t, &out)
			defer recv.Process.Kill()
			send, pw, serr := startSend(t, "--to", addr, "--linger", "1h")
			if _, err := pw.WriteString("x\n"); err != nil {
				t.Fatal(err)
			}
			// Once the message is out there is something to linger for.
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(rerr.String(), "new sender") {
				if time.Now().After(deadline) {
					t.Fatalf("the message did not arrive:\n%s\n%s", serr, rerr)
				}
				time.Sleep(5 * time.Millisecond)
			}
			send.Process.Signal(c.sig)
			deadline = time.Now().Add(10 * time.Second)
			for !strings.Contains(serr.String(), "lingering") {
				if time.Now().After(deadline) {
					t.Fatalf("send did not start lingering: %s", serr)
				}
				time.Sleep(5 * time.Millisecond)
			}
			send.Process.Signal(c.sig)
			code, took := exitWithin(t, send, serr, 10*time.Second)
			if code != c.code || took > 3*time.Second || !strings.Contains(serr.String(), "second signal") {
				t.Fatalf("exit %d after %v, want %d at once\n%s", code, took, c.code, serr)
			}
		})
	}
}

// TestSecondSignalHandler: the handler every subcommand runs under.
func TestSecondSignalHandler(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	cancelled := make(chan struct{})
	exited := make(chan int, 1)
	var stderr lockedBuffer
	go onSignals(sigs, func() { close(cancelled) }, &stderr, func(code int) { exited <- code })
	sigs <- syscall.SIGTERM
	<-cancelled
	select {
	case code := <-exited:
		t.Fatalf("exited with %d on the first signal", code)
	case <-time.After(50 * time.Millisecond):
	}
	sigs <- syscall.SIGINT
	if code := <-exited; code != 130 || !strings.Contains(stderr.String(), "second signal") {
		t.Fatalf("second signal: exit %d, stderr %q", code, stderr.String())
	}
}

// deadPort returns a loopback UDP address nothing listens on (bound and
// released: another process could take it in between, which would make
// the test see feedback it does not expect, not pass wrongly).
func deadPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func runSendCmd(t *testing.T, stdin []byte, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(telewireBin, append([]string{"send"}, args...)...)
	stderr := new(lockedBuffer)
	cmd.Stdin, cmd.Stderr = bytes.NewReader(stdin), stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	code, _ := exitWithin(t, cmd, stderr, 60*time.Second)
	return code, stderr.String()
}

func lines(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.Bytes()
}

// TestSendNoReceiverWarnsAndExits3: nothing listening at --to: the
// warning names the causes, the summary says the receiver never
// reported, exit status 3.
func TestSendNoReceiverWarnsAndExits3(t *testing.T) {
	code, stderr := runSendCmd(t, lines(100), "--to", deadPort(t), "--linger", "2s")
	if code != 3 {
		t.Fatalf("exit %d, want 3\n%s", code, stderr)
	}
	for _, want := range []string{"warning: no feedback from the receiver", "listening", "--key-file", "firewall", "the receiver never reported", "sender: 100 messages"} {
		if !strings.Contains(stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if n := strings.Count(stderr, "warning: no feedback"); n != 1 {
		t.Fatalf("warned %d times:\n%s", n, stderr)
	}
	// With --linger 0 send still gives a receiver a second to report
	// before it concludes none will: the status does not depend on it.
	if code, stderr := runSendCmd(t, lines(10), "--to", deadPort(t), "--linger", "0s"); code != 3 {
		t.Fatalf("--linger 0s: exit %d, want 3\n%s", code, stderr)
	}
}

// TestSendKeyMismatchWarnsAndExits3: different keys, or a key on one end
// only: the receiver refuses the data, so it never reports; the warning
// names keys among the causes, and send exits 3.
func TestSendKeyMismatchWarnsAndExits3(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := filepath.Join(dir, "k1"), filepath.Join(dir, "k2")
	for _, k := range []string{k1, k2} {
		if b, err := exec.Command(telewireBin, "keygen", k).CombinedOutput(); err != nil {
			t.Fatalf("keygen: %v\n%s", err, b)
		}
	}
	cases := []struct {
		name       string
		recv, send []string
	}{
		{"different keys", []string{"--key-file", k1}, []string{"--key-file", k2}},
		{"key on the receiver only", []string{"--key-file", k1}, nil},
		{"key on the sender only", nil, []string{"--key-file", k1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out lockedBuffer
			recv, addr, rerr := startRecv(t, &out, c.recv...)
			defer recv.Process.Kill()
			code, stderr := runSendCmd(t, lines(50), append([]string{"--to", addr, "--linger", "2s"}, c.send...)...)
			if code != 3 {
				t.Fatalf("exit %d, want 3\nsend: %s\nrecv: %s", code, stderr, rerr)
			}
			for _, want := range []string{"warning: no feedback", "--key-file on one end only, or different keys", "the receiver never reported"} {
				if !strings.Contains(stderr, want) {
					t.Fatalf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			if out.String() != "" {
				t.Fatalf("the receiver delivered %q", out.String())
			}
		})
	}
}

// TestSendInvalidDestinations: each exits 2 with one line naming --to,
// before reading any input.
func TestSendInvalidDestinations(t *testing.T) {
	for _, to := range []string{"127.0.0.1:0", "0.0.0.0:9000", "[::]:9000", "255.255.255.255:9000"} {
		code, stderr := runSendCmd(t, lines(3), "--to", to)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--to "+to) {
			t.Errorf("--to %s: exit %d, want 2 with one line naming --to:\n%s", to, code, stderr)
		}
	}
	// A multicast group is a destination, but not with a key (sealed
	// multicast is not supported yet).
	key := filepath.Join(t.TempDir(), "k")
	var kout bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &kout, &kout); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, kout.String())
	}
	for _, to := range []string{"239.1.2.3:9000", "[ff02::1]:9000"} {
		code, stderr := runSendCmd(t, lines(3), "--to", to, "--key-file", key)
		if code != 2 || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--to "+to) || !strings.Contains(stderr, "sealed multicast") {
			t.Errorf("--to %s --key-file: exit %d, want 2 with one line naming --to:\n%s", to, code, stderr)
		}
	}
	// --broadcast lifts the broadcast check (the directed broadcast of
	// loopback's 127.0.0.0/8, so nothing leaves this host).
	if code, stderr := runSendCmd(t, lines(3), "--to", "127.255.255.255:9", "--broadcast", "--linger", "0s"); code == 2 {
		t.Errorf("--broadcast: exit 2:\n%s", stderr)
	}
}

// TestSendTooLongInput: a line or a len32 frame over the limit is an
// error naming the limit; the summary of what was sent before it is
// printed; exit status 1.
func TestSendTooLongInput(t *testing.T) {
	limit := sender.Config{}.MaxPayload()
	long := bytes.Repeat([]byte("x"), limit+1)
	var frames bytes.Buffer
	for _, m := range [][]byte{[]byte("ok"), []byte("fine"), long} {
		var hdr [4]byte
		hdr[0], hdr[1], hdr[2], hdr[3] = byte(len(m)>>24), byte(len(m)>>16), byte(len(m)>>8), byte(len(m))
		frames.Write(hdr[:])
		frames.Write(m)
	}
	cases := []struct {
		framing string
		in      []byte
		sent    int
		what    string
	}{
		{"line", append([]byte("ok\n"), append(long, '\n')...), 1, "line 2 of the input"},
		{"len32", frames.Bytes(), 2, "frame 3 of the input"},
	}
	for _, c := range cases {
		t.Run(c.framing, func(t *testing.T) {
			var out lockedBuffer
			recv, addr, _ := startRecv(t, &out, "--framing", c.framing)
			defer recv.Process.Kill()
			code, stderr := runSendCmd(t, c.in, "--to", addr, "--framing", c.framing, "--linger", "300ms")
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, stderr)
			}
			for _, want := range []string{c.what, "longer than the largest message, " + strconv.Itoa(limit) + " bytes", fmt.Sprintf("sender: %d messages", c.sent)} {
				if !strings.Contains(stderr, want) {
					t.Fatalf("stderr lacks %q:\n%s", want, stderr)
				}
			}
		})
	}
	help, _ := exec.Command(telewireBin, "send", "--help").CombinedOutput()
	for _, want := range []string{strconv.Itoa(limit) + " bytes", "Exit status", "130", " 3 "} {
		if !bytes.Contains(help, []byte(want)) {
			t.Fatalf("send --help lacks %q:\n%s", want, help)
		}
	}
}

// TestSendSignalAtRate: with --rate, what was read ahead is not sent in a
// burst after the signal; send says how much it left.
func TestSendSignalAtRate(t *testing.T) {
	var out lockedBuffer
	recv, addr, _ := startRecv(t, &out)
	defer recv.Process.Kill()
	send, pw, serr := startSend(t, "--to", addr, "--rate", "20")
	if _, err := pw.Write(lines(1000)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	send.Process.Signal(os.Interrupt)
	code, took := exitWithin(t, send, serr, 10*time.Second)
	if code != 0 || took > 3*time.Second {
		t.Fatalf("exit %d after %v\n%s", code, took, serr)
	}
	var sent, unsent int
	if _, err := fmt.Sscanf(serr.String()[strings.Index(serr.String(), "input closed after"):], "input closed after %d messages (%d more read ahead", &sent, &unsent); err != nil {
		t.Fatalf("%v\n%s", err, serr)
	}
	if sent < 1 || sent > 100 || sent+unsent != 1000 || !strings.Contains(serr.String(), fmt.Sprintf("sender: %d messages", sent)) {
		t.Fatalf("sent %d, unsent %d\n%s", sent, unsent, serr)
	}
}

// TestSendWarnsOfUnauthenticFeedback: a sender with a key that gets
// feedback it cannot authenticate (here an unencrypted REPORT for its
// session, as a receiver without the key would send) says so on stderr,
// once, and counts it in the summary.
func TestSendWarnsOfUnauthenticFeedback(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	if b, err := exec.Command(telewireBin, "keygen", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, b)
	}
	// A bound socket that never answers: the only feedback is forged.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	send, pw, serr := startSend(t, "--to", pc.LocalAddr().String(), "--key-file", key, "--linger", "1h")
	m := regexp.MustCompile(`"local":"[^"]*:(\d+)","session":"([0-9a-f]{16})"`).FindStringSubmatch(serr.String())
	if m == nil {
		t.Fatalf("no local address and session in the log:\n%s", serr)
	}
	session, _ := strconv.ParseUint(m[2], 16, 64)
	if _, err := pw.WriteString("x\n"); err != nil {
		t.Fatal(err)
	}
	rep := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: session}, Report: packet.Report{Received: 1}}
	b, err := rep.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	to, err := net.ResolveUDPAddr("udp", "127.0.0.1:"+m[1])
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(serr.String(), "fails authentication") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning:\n%s", serr)
		}
		pc.WriteTo(b, to)
		time.Sleep(20 * time.Millisecond)
	}
	send.Process.Signal(os.Interrupt)
	for !strings.Contains(serr.String(), "lingering") {
		if time.Now().After(deadline) {
			t.Fatalf("send did not start lingering: %s", serr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	send.Process.Signal(os.Interrupt) // no need to wait out the linger
	exitWithin(t, send, serr, 10*time.Second)
	if n := strings.Count(serr.String(), "fails authentication"); n != 1 || !strings.Contains(serr.String(), "not encrypted") {
		t.Fatalf("warned %d times:\n%s", n, serr)
	}
}
