package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKeyFilePipeline sends 20 000 messages through `send --key-file` into
// `recv --key-file`: the output is byte-identical, nothing is refused, and
// a capture of what travels would show no plaintext (checked by a
// receiver without the key, which must deliver nothing and count every
// datagram as refused).
func TestKeyFilePipeline(t *testing.T) {
	const n = 20_000
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	var kout bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &kout, &kout); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, kout.String())
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v %v", fi, err)
	}
	if code := run(t.Context(), []string{"keygen", key}, nil, &kout, &kout); code == 0 {
		t.Fatal("keygen overwrote an existing key file")
	}
	var in bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&in, "secret-%d\n", i)
	}
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--count", fmt.Sprint(n), "--key-file", key, "--stats", filepath.Join(dir, "recv.json"))
	serr := new(lockedBuffer)
	send := exec.Command(telewireBin, "send", "--to", addr, "--rate", "50000", "--key-file", key, "--stats", filepath.Join(dir, "send.json"))
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
	for _, k := range []string{"unsealed", "key_mismatch", "auth_failed", "replayed"} {
		if rs[k].(float64) != 0 {
			t.Fatalf("receiver refused datagrams of its own sender: %s = %v", k, rs[k])
		}
	}
	ss := readJSON(t, filepath.Join(dir, "send.json"))
	if ss["reports"].(float64) < 1 || ss["auth_failed"].(float64) != 0 || ss["unsealed"].(float64) != 0 {
		t.Fatalf("sender did not take the sealed feedback: reports %v auth_failed %v unsealed %v", ss["reports"], ss["auth_failed"], ss["unsealed"])
	}
}

// TestKeyMismatch: a receiver with another key delivers nothing and says
// why; one without a key refuses sealed datagrams as malformed.
func TestKeyMismatch(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, k := range []string{a, b} {
		var o bytes.Buffer
		if code := run(t.Context(), []string{"keygen", k}, nil, &o, &o); code != 0 {
			t.Fatalf("keygen: %s", o.String())
		}
	}
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--key-file", b, "--stats", filepath.Join(dir, "recv.json"))
	serr := new(lockedBuffer)
	send := exec.Command(telewireBin, "send", "--to", addr, "--key-file", a, "--linger", "200ms")
	send.Stdin, send.Stderr = strings.NewReader("one\ntwo\nthree\n"), serr
	// The receiver never reports: send says so with status 3.
	if err := send.Run(); send.ProcessState.ExitCode() != 3 {
		t.Fatalf("send: %v, want exit status 3\n%s", err, serr)
	}
	_ = recv.Process.Signal(os.Interrupt)
	wait(t, recv, rerr, 30*time.Second)
	if out.Len() != 0 {
		t.Fatalf("receiver with another key delivered %q", out.String())
	}
	rs := readJSON(t, filepath.Join(dir, "recv.json"))
	// The sender's HELLO (and its retry) carry the other key's id; nothing
	// else is sent without a completed handshake. The first HELLOs count as
	// corrupted until the foreign key id repeats (guard.MismatchRun).
	if rs["key_mismatch"].(float64)+rs["corrupted"].(float64) < 1 || rs["sessions"].(float64) != 0 {
		t.Fatalf("receiver stats: key_mismatch %v sessions %v", rs["key_mismatch"], rs["sessions"])
	}
	if !strings.Contains(rerr.String(), "another key") {
		t.Fatalf("receiver did not say why it delivered nothing:\n%s", rerr)
	}
}

// TestKeyOnOneEndOnly: a receiver with a key refuses a sender without one,
// delivers nothing and says why.
func TestKeyOnOneEndOnly(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	var o bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &o, &o); code != 0 {
		t.Fatalf("keygen: %s", o.String())
	}
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--key-file", key, "--stats", filepath.Join(dir, "recv.json"))
	serr := new(lockedBuffer)
	send := exec.Command(telewireBin, "send", "--to", addr, "--linger", "200ms")
	send.Stdin, send.Stderr = strings.NewReader("one\ntwo\n"), serr
	// The receiver never reports: send says so with status 3.
	if err := send.Run(); send.ProcessState.ExitCode() != 3 {
		t.Fatalf("send: %v, want exit status 3\n%s", err, serr)
	}
	_ = recv.Process.Signal(os.Interrupt)
	wait(t, recv, rerr, 30*time.Second)
	if out.Len() != 0 {
		t.Fatalf("receiver with a key delivered unencrypted data %q", out.String())
	}
	rs := readJSON(t, filepath.Join(dir, "recv.json"))
	if rs["unsealed"].(float64) < 3 || rs["sessions"].(float64) != 0 {
		t.Fatalf("receiver stats: unsealed %v sessions %v", rs["unsealed"], rs["sessions"])
	}
	if !strings.Contains(rerr.String(), "unencrypted datagram refused") {
		t.Fatalf("receiver did not say why it delivered nothing:\n%s", rerr)
	}
}
