package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
)

// TestSendToList: `send --to a,b,c` delivers every message to each of
// three recv processes, byte-identical and in order, and its summary
// counts three destinations.
func TestSendToList(t *testing.T) { sendToList(t, nil) }

// TestSealedSendToList: `send --to a,b,c --key-file k` to three `recv
// --key-file k` processes: a handshake with each, every message
// byte-identical and in order at each.
func TestSealedSendToList(t *testing.T) {
	key := filepath.Join(t.TempDir(), "k")
	var kout bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &kout, &kout); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, kout.String())
	}
	sendToList(t, []string{"--key-file", key})
}

func sendToList(t *testing.T, extra []string) {
	const n = 2000
	var outs [3]lockedBuffer
	var addrs []string
	var procs []*recvProc
	for i := range outs {
		cmd, addr, stderr := startRecv(t, &outs[i], append([]string{"--count", fmt.Sprint(n)}, extra...)...)
		procs = append(procs, &recvProc{cmd: cmd, stderr: stderr})
		addrs = append(addrs, addr)
	}
	code, stderr := runSendCmd(t, lines(n), append([]string{"--to", strings.Join(addrs, ","), "--linger", "2s"}, extra...)...)
	if code != 0 {
		t.Fatalf("send exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "destinations: 3 now (0 subscribed)") {
		t.Fatalf("send summary lacks the destinations:\n%s", stderr)
	}
	for i, p := range procs {
		if code, _ := exitWithin(t, p.cmd, p.stderr, 30*time.Second); code != 0 {
			t.Fatalf("recv %d exit %d\n%s", i, code, p.stderr)
		}
		if !bytes.Equal([]byte(outs[i].String()), lines(n)) {
			t.Fatalf("recv %d got %d bytes, want the %d lines", i, len(outs[i].String()), n)
		}
	}
}

type recvProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
}

// TestSendListenSubscribe: `send --listen` streams to two `recv
// --subscribe` processes from the moment each is admitted; when send's
// input ends and it closes, its goodbye ends both receivers with status 0
// and each says so.
func TestSendListenSubscribe(t *testing.T) { listenSubscribe(t, nil) }

// TestSealedSendListenSubscribe is TestSendListenSubscribe with a key
// file on every end: each subscriber authenticates, gets a handshake of
// its own and the stream sealed under its keys; the closing goodbye is
// sealed too and ends both.
func TestSealedSendListenSubscribe(t *testing.T) {
	key := filepath.Join(t.TempDir(), "k")
	var kout bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &kout, &kout); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, kout.String())
	}
	listenSubscribe(t, []string{"--key-file", key})
}

func listenSubscribe(t *testing.T, extra []string) {
	cmd, stdin, serr := startSend(t, append([]string{"--listen", "127.0.0.1:0", "--linger", "500ms"}, extra...)...)
	re := regexp.MustCompile(`taking subscribers on (\S+)`)
	var at string
	for deadline := time.Now().Add(10 * time.Second); at == ""; {
		if m := re.FindStringSubmatch(serr.String()); m != nil {
			at = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("send does not say where it takes subscribers:\n%s", serr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var outs [2]lockedBuffer
	var rs []*recvProc
	for i := range outs {
		c, _, stderr := startRecv(t, &outs[i], append([]string{"--subscribe", at}, extra...)...)
		rs = append(rs, &recvProc{cmd: c, stderr: stderr})
	}
	// Warm-up lines until both receivers are getting the stream.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(outs[0].String(), "warm") || !strings.Contains(outs[1].String(), "warm"); {
		if time.Now().After(deadline) {
			t.Fatalf("subscribers got nothing\nsend: %s\nrecv: %s\nrecv: %s", serr, rs[0].stderr, rs[1].stderr)
		}
		if _, err := io.WriteString(stdin, "warm\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	const n = 1000
	if _, err := stdin.Write(lines(n)); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if code, _ := exitWithin(t, cmd, serr, 30*time.Second); code != 0 {
		t.Fatalf("send exit %d\n%s", code, serr)
	}
	if !strings.Contains(serr.String(), "subscribers joined 2, left 0") {
		t.Fatalf("send summary:\n%s", serr)
	}
	for i, r := range rs {
		code, _ := exitWithin(t, r.cmd, r.stderr, 20*time.Second)
		if code != 0 || !strings.Contains(r.stderr.String(), "the sender closed") {
			t.Fatalf("recv %d exit %d\n%s", i, code, r.stderr)
		}
		got := strings.ReplaceAll(outs[i].String(), "warm\n", "")
		if got != string(lines(n)) {
			t.Fatalf("recv %d: after the warm-up got %d bytes, want the %d lines", i, len(got), n)
		}
	}
}

// TestFanoutUsageErrors: an address listed twice, a multicast group in
// a list or with a key, exit 2 with one line.
func TestFanoutUsageErrors(t *testing.T) {
	code, stderr := runSendCmd(t, lines(1), "--to", "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9001")
	if code != 2 || !strings.Contains(stderr, "127.0.0.1:9001 is listed twice") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("duplicate: exit %d\n%s", code, stderr)
	}
	key := filepath.Join(t.TempDir(), "k")
	var kout bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &kout, &kout); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, kout.String())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--to", "239.1.2.3:9001", "--key-file", key}, "sealed multicast is not supported yet"},
		{[]string{"--to", "127.0.0.1:9001,239.1.2.3:9001", "--key-file", key}, "sealed multicast is not supported yet"},
	} {
		code, stderr := runSendCmd(t, lines(1), c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d\n%s", c.args, code, stderr)
		}
	}
	if code, stderr := runSendCmd(t, lines(1), "--to", "127.0.0.1:9001", "--slow-receiver", "wait"); code != 2 || !strings.Contains(stderr, "--slow-receiver") {
		t.Errorf("bad --slow-receiver: exit %d\n%s", code, stderr)
	}
}

// TestRecvExitStatusWhenDropped: a subscription the sender ended as too
// slow (or for want of room) is exit status 4, with the reason in one
// line; the sender closing is a normal end (app.Recv returns nil for it).
func TestRecvExitStatusWhenDropped(t *testing.T) {
	for _, r := range []uint8{packet.ReasonSlow, packet.ReasonFull} {
		err := recvExit(&receiver.SubscriptionEndedError{Reason: r})
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 4 || !strings.Contains(err.Error(), receiver.ReasonText(r)) {
			t.Errorf("reason %d: %v", r, err)
		}
	}
	if err := recvExit(nil); err != nil {
		t.Fatal(err)
	}
}

// TestSendListenNobodySubscribed: a `send --listen` nobody subscribes to
// says its messages reached no one and exits 0 (a publisher with no
// subscribers is not a failure; status 3 is for messages sent to
// receivers that never confirmed them).
func TestSendListenNobodySubscribed(t *testing.T) {
	code, stderr := runSendCmd(t, lines(100), "--listen", "127.0.0.1:0", "--linger", "100ms")
	if code != 0 || !strings.Contains(stderr, "nobody subscribed: the 100 messages reached no one") || strings.Contains(stderr, "never reported") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
}
