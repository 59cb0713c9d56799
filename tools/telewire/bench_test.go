package main

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/telewire/telewire/tools/bench"
)

// benchRegistered skips the bench tests while main.go's commands() does
// not list "bench" yet.
func benchRegistered(t *testing.T) {
	t.Helper()
	out, _ := exec.Command(telewireBin, "bench", "--help").CombinedOutput()
	if strings.Contains(string(out), `unknown command "bench"`) {
		t.Skip(`telewire bench is not registered: commands() in main.go needs {"bench", …, runBench}`)
	}
}

// TestBenchQuick runs `telewire bench --quick --json` end to end — worker
// processes, relay and all — and checks that the report is sane
// (TestBenchGuard is the throughput guard).
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the quick bench (about 15 s)")
	}
	benchRegistered(t)
	cmd := exec.Command(telewireBin, "bench", "--quick", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("telewire bench --quick: %v\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	cases := map[string]bench.Case{}
	for _, c := range rep.Cases {
		if c.Median == nil {
			t.Errorf("%s failed: %v", c.Key(), c.Errors)
			continue
		}
		cases[c.Key()] = c
	}
	if len(rep.Cases) != 7*2*2+2 {
		t.Errorf("%d cases, want 7 transports × 2 loads × 2 losses + raw-pingpong clean at 2 loads", len(rep.Cases))
	}
	raw := cases["raw-batch/max/clean"].Median
	if raw == nil || raw.MsgsPerSec <= 0 {
		t.Fatalf("no raw batched baseline: %+v", cases["raw-batch/max/clean"])
	}
	for _, tw := range []string{bench.TwNACK, bench.TwFEC, bench.TwAuto, bench.TwSealed} {
		for _, key := range []string{tw + "/10k/clean", tw + "/10k/loss5"} {
			if m := cases[key].Median; m == nil || m.Completeness != 1 {
				t.Errorf("%s: completeness %v, want 100%%", key, m)
			}
		}
	}
}

// guardBound is the least ratio of telewire's clean full-speed throughput,
// in the default configuration (tw-nack: sender GSO off, receiver GRO on),
// to the raw batched baseline of the same run that TestBenchGuard accepts:
// the median of guardRuns per-run ratios. On the project's 2-core machine,
// shared with several builds, the median measured 0.67–0.69× at load
// average 3.5 and 0.82× (single runs 0.63–1.00×) at load 2–9 when it was
// set, with udpio's sockets outside the netpoller; before that change it
// was 0.41–0.62×. 0.35 is about half the lowest median: noise on a busy
// box (the guard shares it with the rest of the suite in CI) does not trip
// it, and a halving of the default path (a per-message lock, copy or
// goroutine hand-off costs that much at full speed) does.
const guardBound = 0.35

// guardRuns is how many runs the guard takes the median of.
const guardRuns = 5

// TestBenchGuard is the CI guard of throughput, robust to a noisy
// machine: it runs the raw batched baseline and telewire in its default
// configuration back to back guardRuns times (`telewire bench --only
// raw-batch,tw-nack,max,clean`), divides each run's telewire figure by the
// same run's baseline, and fails when the median ratio is below
// guardBound. It times nothing itself: every figure is a ratio within one
// run.
func TestBenchGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the bench (about 15 s)")
	}
	benchRegistered(t)
	cmd := exec.Command(telewireBin, "bench", "--only", "raw-batch,tw-nack,max,clean",
		"--runs", strconv.Itoa(guardRuns), "--duration", "300ms", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("telewire bench: %v\n%s", err, stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, out)
	}
	var raw, nack *bench.Case
	for i := range rep.Cases {
		switch rep.Cases[i].Key() {
		case "raw-batch/max/clean":
			raw = &rep.Cases[i]
		case "tw-nack/max/clean":
			nack = &rep.Cases[i]
		}
	}
	if raw == nil || raw.Median == nil || raw.Median.MsgsPerSec <= 0 {
		t.Fatalf("no raw batched baseline: %+v", raw)
	}
	if nack == nil || nack.VsRaw == nil || nack.Median == nil {
		t.Fatalf("tw-nack/max/clean has no ratio to raw-batch: %+v", nack)
	}
	if nack.Median.Completeness != 1 {
		t.Errorf("tw-nack clean full speed: completeness %v, want 100%%", nack.Median.Completeness)
	}
	r := nack.VsRaw.Median.MsgsPerSec
	t.Logf("tw-nack clean full speed: median %.2f× raw-batch (%.2f–%.2f over %d runs; %.0f vs %.0f msgs/s)",
		r, nack.VsRaw.Min.MsgsPerSec, nack.VsRaw.Max.MsgsPerSec, guardRuns, nack.Median.MsgsPerSec, raw.Median.MsgsPerSec)
	if r < guardBound {
		t.Errorf("tw-nack clean full speed: median %.2f× raw batched UDP of the same runs, want >= %.2f×", r, guardBound)
	}
}

func TestBenchUsage(t *testing.T) {
	benchRegistered(t)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "--only", "tw-nak"}, 2, "no such transport"},
		{[]string{"bench", "--runs", "0"}, 2, "--runs must be >= 1"},
		{[]string{"bench", "--help"}, 0, "--worker recv|send|relay"},
		{[]string{"bench", "--worker", "juggler"}, 1, "unknown role"},
	} {
		cmd := exec.Command(telewireBin, c.args...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("telewire %v: exit %d, want %d; output should contain %q:\n%s", c.args, code, c.code, c.want, out)
		}
	}
}

// TestBenchPeersUnavailable: --peers says clearly when the peers module
// cannot be found, and still prints telewire's figures.
func TestBenchPeersUnavailable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a one-case bench")
	}
	benchRegistered(t)
	cmd := exec.Command(telewireBin, "bench", "--peers", "--peers-dir", t.TempDir(), "--only", "raw-batch,1k,clean",
		"--runs", "1", "--duration", "100ms")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	for _, want := range []string{"peer comparison: no peers module at", "raw-batch"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "peer comparison not run") {
		t.Errorf("stderr lacks the warning:\n%s", stderr.String())
	}
}
