package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingRelay forwards UDP between a sender and a receiver and records
// every datagram the sender sends, as a capture on the path would.
type recordingRelay struct {
	conn *net.UDPConn
	to   netip.AddrPort // the receiver

	mu       sync.Mutex
	sender   netip.AddrPort
	recorded [][]byte
	done     chan struct{}
}

func newRecordingRelay(t *testing.T, to string) *recordingRelay {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &recordingRelay{conn: conn, to: netip.MustParseAddrPort(to), done: make(chan struct{})}
	go r.run()
	t.Cleanup(func() { conn.Close(); <-r.done })
	return r
}

func (r *recordingRelay) addr() string { return r.conn.LocalAddr().String() }

func (r *recordingRelay) run() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		r.mu.Lock()
		if from == r.to {
			if r.sender.IsValid() {
				_, _ = r.conn.WriteToUDPAddrPort(buf[:n], r.sender)
			}
			r.mu.Unlock()
			continue
		}
		r.sender = from
		r.recorded = append(r.recorded, bytes.Clone(buf[:n]))
		r.mu.Unlock()
		_, _ = r.conn.WriteToUDPAddrPort(buf[:n], r.to)
	}
}

func (r *recordingRelay) recording() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.recorded...)
}

// resendInto sends every recorded datagram to addr from a new socket,
// paced so that the receiver's socket buffer does not drop them.
func resendInto(t *testing.T, recorded [][]byte, addr string) {
	t.Helper()
	c, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, d := range recorded {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond)
		}
	}
}

// TestSealedRecordingDoesNotReplay is the attack of issue #19: a sealed
// transfer is recorded on the path (through a relay), then resent into a
// NEW `telewire recv` process with the same key file, and into the live
// receiver. Neither delivers anything from it: the new receiver holds no
// traffic keys for the recorded session (the recorded HELLO gets a new
// answer whose keys the attacker cannot use), and the live one has seen
// every counter.
func TestSealedRecordingDoesNotReplay(t *testing.T) {
	const n = 2000
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	var o bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &o, &o); code != 0 {
		t.Fatalf("keygen: %s", o.String())
	}
	var in bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&in, "reading-%d\n", i)
	}

	var out1 lockedBuffer
	recv1, addr1, rerr1 := startRecv(t, &out1, "--key-file", key, "--stats", filepath.Join(dir, "recv1.json"))
	relay := newRecordingRelay(t, addr1)
	serr := new(lockedBuffer)
	// --no-pack: one message per datagram, so that the recording's DATA
	// count is the message count the checks below compare.
	send := exec.Command(telewireBin, "send", "--to", relay.addr(), "--rate", "20000", "--key-file", key, "--linger", "300ms", "--no-pack")
	send.Stdin, send.Stderr = bytes.NewReader(in.Bytes()), serr
	if err := send.Run(); err != nil {
		t.Fatalf("send: %v\n%s", err, serr)
	}
	// recv writes its output when it exits; the sender's summary says
	// what the receiver reported having.
	if !strings.Contains(serr.String(), fmt.Sprintf("receiver got %d of %d", n, n)) {
		t.Fatalf("transfer through the relay incomplete:\n%s", serr)
	}
	recorded := relay.recording()
	if len(recorded) < n {
		t.Fatalf("recorded %d datagrams for %d messages", len(recorded), n)
	}

	// Into the live receiver, from a new address.
	resendInto(t, recorded, addr1)
	// Into a new receiver process with the same key.
	var out2 lockedBuffer
	recv2, addr2, rerr2 := startRecv(t, &out2, "--key-file", key, "--stats", filepath.Join(dir, "recv2.json"))
	resendInto(t, recorded, addr2)

	time.Sleep(200 * time.Millisecond) // let both read what was sent; nothing is expected to come out
	for _, r := range []*exec.Cmd{recv1, recv2} {
		_ = r.Process.Signal(os.Interrupt)
	}
	wait(t, recv1, rerr1, 30*time.Second)
	wait(t, recv2, rerr2, 30*time.Second)

	s1, s2 := readJSON(t, filepath.Join(dir, "recv1.json")), readJSON(t, filepath.Join(dir, "recv2.json"))
	t.Logf("recorded %d datagrams; live receiver: delivered %v (of %d sent), replayed %v, no_keys %v; new receiver: delivered %v, no_keys %v, welcomes %v, handshakes %v, retries %v",
		len(recorded), s1["delivered"], n, s1["replayed"], s1["no_keys"], s2["delivered"], s2["no_keys"], s2["welcomes"], s2["handshakes"], s2["retries"])
	if out1.String() != in.String() || s1["delivered"].(float64) != n {
		t.Fatalf("the live receiver delivered replayed data: %d bytes out, delivered %v", len(out1.String()), s1["delivered"])
	}
	if len(out2.String()) != 0 || s2["delivered"].(float64) != 0 || s2["sessions"].(float64) != 0 || s2["handshakes"].(float64) != 0 {
		t.Fatalf("the new receiver delivered %q (delivered %v, sessions %v, handshakes %v)", truncate(out2.String()), s2["delivered"], s2["sessions"], s2["handshakes"])
	}
	// Every sealed datagram of the recording is counted by the new
	// receiver as under keys it does not hold; the HELLO is answered
	// (a key agreement no one can use).
	if got := s2["no_keys"].(float64); got < float64(len(recorded)-2) || s2["welcomes"].(float64) != 1 {
		t.Fatalf("new receiver: no_keys %v of %d recorded, welcomes %v", got, len(recorded), s2["welcomes"])
	}
	// The live receiver counts the replayed datagrams as replays.
	if got := s1["replayed"].(float64); got < float64(len(recorded)-2) {
		t.Fatalf("live receiver: replayed %v of %d recorded", got, len(recorded))
	}
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestSealedReceiverRestartProcess: a sealed `telewire send` streams into
// `telewire recv`, which is stopped and replaced by a new recv process on
// the same address with the same key. The sender's next packets draw a
// RETRY from the new process, the sender handshakes again, resends what
// the new receiver could not open, and the stream goes on: between them
// the two receivers deliver everything except what was sent while no
// process was listening.
func TestSealedReceiverRestartProcess(t *testing.T) {
	const n, rate = 5000, 1000
	dir := t.TempDir()
	key := filepath.Join(dir, "k")
	var o bytes.Buffer
	if code := run(t.Context(), []string{"keygen", key}, nil, &o, &o); code != 0 {
		t.Fatalf("keygen: %s", o.String())
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()

	var out1, out2 lockedBuffer
	recv1, _, rerr1 := startRecv(t, &out1, "--listen", addr, "--key-file", key, "--stats", filepath.Join(dir, "recv1.json"))
	serr := new(lockedBuffer)
	send := exec.Command(telewireBin, "send", "--to", addr, "--gen", "market", "--count", fmt.Sprint(n), "--rate", fmt.Sprint(rate),
		"--key-file", key, "--linger", "500ms", "--stats", filepath.Join(dir, "send.json"))
	send.Stderr = serr
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	_ = recv1.Process.Signal(os.Interrupt)
	stopped := time.Now()
	wait(t, recv1, rerr1, 30*time.Second)
	recv2, _, rerr2 := startRecv(t, &out2, "--listen", addr, "--key-file", key, "--stats", filepath.Join(dir, "recv2.json"))
	gap := time.Since(stopped)
	wait(t, send, serr, 60*time.Second)
	time.Sleep(200 * time.Millisecond)
	_ = recv2.Process.Signal(os.Interrupt)
	wait(t, recv2, rerr2, 30*time.Second)

	s1, s2 := readJSON(t, filepath.Join(dir, "recv1.json")), readJSON(t, filepath.Join(dir, "recv2.json"))
	ss := readJSON(t, filepath.Join(dir, "send.json"))
	d1, d2 := s1["delivered"].(float64), s2["delivered"].(float64)
	t.Logf("no receiver for %v; first receiver delivered %v, second %v (handshakes %v, no_keys %v, retries %v); sender: rehandshakes %v, resent %v, handshakes %v",
		gap.Round(time.Millisecond), d1, d2, s2["handshakes"], s2["no_keys"], s2["retries"], ss["rehandshakes"], ss["resent"], ss["handshakes"])
	if ss["rehandshakes"].(float64) != 1 || s2["handshakes"].(float64) != 1 || s2["sessions"].(float64) != 1 {
		t.Fatalf("no re-handshake with the new receiver: sender rehandshakes %v, new receiver handshakes %v sessions %v\nsend: %s\nrecv2: %s",
			ss["rehandshakes"], s2["handshakes"], s2["sessions"], serr, rerr2)
	}
	// Messages sent while no process was bound are gone (the kernel drops
	// them); allow for the gap at the sending rate, and a margin for the
	// time the first receiver took to stop reading.
	if lost := n - d1 - d2; lost > rate*(gap.Seconds()+0.1) {
		t.Fatalf("lost %v of %d messages across a %v restart", lost, n, gap)
	}
	if d2 == 0 || float64(strings.Count(out2.String(), "\n")) != d2 {
		t.Fatalf("second receiver delivered %v, wrote %d lines", d2, strings.Count(out2.String(), "\n"))
	}
}
