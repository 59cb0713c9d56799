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

// The CI guard's bounds: the least median ratio to the raw batched
// baseline of the same runs that TestBenchGuard accepts.
//
// guardDefault is issue #16's bound on the default configuration
// (tw-nack: sender GSO off, packing on; receiver GRO on) and on the
// commands with default flags (cmd-default, 200 000 messages a run): 0.7×.
// With message packing tw-nack measures 5–10× raw-batch on the project's
// 2-core machine and cmd-default 1.7–2.5× at this count (its processes'
// start-up weighs more than at a million, where it is 4–5×); medians of 5
// runs at load 1–4. The bound is far from noise and still trips if packing
// stops working (the per-datagram path is 0.5–0.9×).
//
// guardNoPack bounds the per-datagram path (tw-nopack: one message per
// datagram), where telewire's own cost per datagram shows: it measured
// 0.55–0.9× (single runs down to 0.45×) at load 1–4; 0.3 is well below its
// noise and still catches it losing half its speed (a per-message lock,
// copy or goroutine hand-off costs that much).
const (
	guardDefault = 0.7
	guardNoPack  = 0.3
)

// guardRuns is how many runs the guard takes the median of.
const guardRuns = 5

// guardCount is how many messages the guard's cmd-default case sends per
// run (the bench's default is 1 000 000; the guard keeps CI short).
const guardCount = 200000

// TestBenchGuard is the CI guard of throughput, robust to a noisy
// machine: it runs the raw batched baseline, telewire in its default
// configuration, the per-datagram path and the commands with default
// flags back to back guardRuns times (`telewire bench --only
// raw-batch,tw-nack,tw-nopack,cmd-default,max,clean`), divides each run's
// figure by the same run's baseline, and fails when a median ratio is
// below its bound. It times nothing itself: every figure is a ratio
// within one run.
func TestBenchGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the bench (about 20 s)")
	}
	benchRegistered(t)
	cmd := exec.Command(telewireBin, "bench", "--only", "raw-batch,tw-nack,tw-nopack,cmd-default,max,clean",
		"--runs", strconv.Itoa(guardRuns), "--duration", "300ms", "--count", strconv.Itoa(guardCount), "--json")
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
	cases := map[string]*bench.Case{}
	for i := range rep.Cases {
		cases[rep.Cases[i].Key()] = &rep.Cases[i]
	}
	raw := cases["raw-batch/max/clean"]
	if raw == nil || raw.Median == nil || raw.Median.MsgsPerSec <= 0 {
		t.Fatalf("no raw batched baseline: %+v", raw)
	}
	for _, g := range []struct {
		key   string
		bound float64
	}{
		{"tw-nack/max/clean", guardDefault},
		{"cmd-default/max/clean", guardDefault},
		{"tw-nopack/max/clean", guardNoPack},
	} {
		c := cases[g.key]
		if c == nil || c.VsRaw == nil || c.Median == nil {
			t.Errorf("%s has no ratio to raw-batch: %+v", g.key, c)
			continue
		}
		if c.Median.Completeness != 1 {
			t.Errorf("%s: completeness %v, want 100%%", g.key, c.Median.Completeness)
		}
		r := c.VsRaw.Median.MsgsPerSec
		t.Logf("%s: median %.2f× raw-batch (%.2f–%.2f over %d runs; %.0f vs %.0f msgs/s)", g.key,
			r, c.VsRaw.Min.MsgsPerSec, c.VsRaw.Max.MsgsPerSec, guardRuns, c.Median.MsgsPerSec, raw.Median.MsgsPerSec)
		if r < g.bound {
			t.Errorf("%s: median %.2f× raw batched UDP of the same runs, want >= %.2f×", g.key, r, g.bound)
		}
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
