package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNetemUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"netem"}, 2, "--listen and --to are required"},
		{[]string{"netem", "--listen", "127.0.0.1:0"}, 2, "--listen and --to are required"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--fwd", "loss random 10% bogus"}, 2, `unknown option "bogus"`},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--rev", "delay 5xs"}, 2, `bad value "5xs"`},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--fwd", "loss"}, 2, "missing value"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "--max-clients", "0"}, 2, "must be positive"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:notaport"}, 2, "--to 127.0.0.1:notaport"},
		{[]string{"netem", "--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"netem", "--help"}, 0, "Usage: telewire netem"},
		{[]string{"help", "netem"}, 0, "loss random 10%"},
		{[]string{"help"}, 0, "netem "},
	}
	for _, c := range cases {
		cmd := exec.Command(telewireBin, c.args...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("telewire %q: exit %d, want %d; output should contain %q:\n%s", c.args, code, c.code, c.want, out)
		}
	}
}

// startNetem starts `telewire netem` on a free loopback port in front of
// to and returns it, its address and its stderr.
func startNetem(t *testing.T, to string, args ...string) (*exec.Cmd, string, *lockedBuffer) {
	t.Helper()
	var stderr lockedBuffer
	cmd := exec.Command(telewireBin, append([]string{"netem", "--listen", "127.0.0.1:0", "--to", to}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	re := regexp.MustCompile(`listening on (\S+),`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			return cmd, m[1], &stderr
		}
		if time.Now().After(deadline) {
			t.Fatalf("netem did not start: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dirCounts extracts one direction's counters from netem's exit summary.
func dirCounts(t *testing.T, summary, dir string) map[string]uint64 {
	t.Helper()
	line := regexp.MustCompile(`(?m)^  ` + dir + `: (received .*)$`).FindStringSubmatch(summary)
	if line == nil {
		t.Fatalf("no %s line in netem's summary:\n%s", dir, summary)
	}
	counts := map[string]uint64{}
	for _, m := range regexp.MustCompile(`([a-z ]+) (\d+)`).FindAllStringSubmatch(line[1], -1) {
		n, _ := strconv.ParseUint(m[2], 10, 64)
		counts[strings.TrimSpace(m[1])] = n
	}
	return counts
}

// TestNetemLossyTransfer: two `telewire send` clients → `telewire netem`
// with 10 % random loss forward → `telewire recv`. The receiver loses
// about 10 % of the messages, exactly what the relay dropped of them, and
// the feedback crosses the relay back (the senders measure an RTT).
func TestNetemLossyTransfer(t *testing.T) {
	const perSender, senders = 1000, 2
	const n = perSender * senders
	dir := t.TempDir()
	var out bytes.Buffer
	recv, recvAddr, rerr := startRecv(t, &out, "--idle", "1s", "--stats", filepath.Join(dir, "recv.json"))
	relay, relayAddr, nerr := startNetem(t, recvAddr, "--fwd", "loss random 10%", "--seed", "1")

	sends := make([]*exec.Cmd, senders)
	serrs := make([]*bytes.Buffer, senders)
	for i := range sends {
		serrs[i] = new(bytes.Buffer)
		sends[i] = exec.Command(telewireBin, "send", "--to", relayAddr, "--no-pack", "--gen", "market", // loss counted per datagram
			"--count", fmt.Sprint(perSender), "--rate", "2000", "--seed", fmt.Sprint(i+1),
			"--stats", filepath.Join(dir, fmt.Sprintf("send%d.json", i)))
		sends[i].Stderr = serrs[i]
		if err := sends[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range sends {
		wait(t, s, serrs[i], 60*time.Second)
	}
	wait(t, recv, rerr, 60*time.Second)
	if err := relay.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	wait(t, relay, nerr, 10*time.Second)
	summary := nerr.String()
	t.Logf("netem:\n%s", summary)

	written := uint64(strings.Count(out.String(), "\n"))
	rs := readJSON(t, filepath.Join(dir, "recv.json"))
	streams := rs["streams"].([]any)
	if len(streams) != senders {
		t.Fatalf("receiver saw %d streams, want one per sender (%d): %v", len(streams), senders, streams)
	}
	var lost, repaired, late uint64
	for _, s := range streams {
		st := s.(map[string]any)
		lost += uint64(st["lost"].(float64))
		repaired += uint64(st["recovered_rtx"].(float64) + st["recovered_fec"].(float64))
		late += uint64(st["late"].(float64))
	}
	// 10 % of n with five standard deviations of a binomial either way.
	mean, sd := 0.1*n, math.Sqrt(n*0.1*0.9)
	if float64(lost) < mean-5*sd || float64(lost) > mean+5*sd {
		t.Fatalf("receiver counted %d of %d lost, want about %.0f", lost, n, mean)
	}
	// Every message was written, lost for good, or arrived (first or
	// repaired) after ordered delivery had passed it: on a loaded machine a
	// repair can miss the latency budget.
	if written+lost-repaired+late != n {
		t.Fatalf("wrote %d messages, lost %d, repaired %d, late %d: does not add up to %d sent", written, lost, repaired, late, n)
	}

	fwd, rev := dirCounts(t, summary, "fwd"), dirCounts(t, summary, "rev")
	// The relay dropped every lost message, and beyond those only
	// datagrams that are not first transmissions of DATA (heartbeats,
	// retransmissions).
	if fwd["dropped"] < lost || fwd["dropped"]-lost > fwd["received"]-n {
		t.Fatalf("relay dropped %d of %d datagrams forward; receiver lost %d of %d messages", fwd["dropped"], fwd["received"], lost, n)
	}
	if fwd["forwarded"]+fwd["dropped"] != fwd["received"] || fwd["duplicated"] != 0 || fwd["corrupted"] != 0 {
		t.Fatalf("forward counts inconsistent: %v", fwd)
	}
	for _, key := range []string{"queue full", "kernel drops"} {
		if _, ok := fwd[key]; !ok {
			t.Fatalf("netem summary lacks the relay's %s count:\n%s", key, summary)
		}
	}
	if rev["received"] == 0 || rev["dropped"] != 0 || rev["forwarded"] != rev["received"] {
		t.Fatalf("feedback did not cross the relay untouched: %v", rev)
	}
	if !strings.Contains(summary, "2 clients at the end") {
		t.Fatalf("netem summary should report both clients:\n%s", summary)
	}
	for i := range sends {
		ss := readJSON(t, filepath.Join(dir, fmt.Sprintf("send%d.json", i)))
		if rtt := ss["rtt"].(map[string]any); rtt["smoothed_ns"].(float64) <= 0 {
			t.Fatalf("sender %d measured no RTT through the relay: %v", i, rtt)
		}
	}
}
