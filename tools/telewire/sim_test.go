package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/telewire/telewire/tools/simreport"
)

// simIn runs `telewire sim ARGS` in this process.
func simIn(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = runSim(context.Background(), args, nil, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestSimMarkdown(t *testing.T) {
	out, _, err := simIn(t, "--only", "random-5", "--messages", "1000")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "### random-5\n") || strings.Contains(out, "### clean") {
		t.Fatalf("--only random-5 printed:\n%s", out)
	}
	for _, s := range simreport.DefaultSettings() {
		if !strings.Contains(out, "\n| "+s.Name+" | ") {
			t.Errorf("no row for %s:\n%s", s.Name, out)
		}
	}
	if !strings.Contains(out, "1000 messages") {
		t.Errorf("--messages 1000 not applied:\n%s", out)
	}
}

func TestSimJSONAndSeed(t *testing.T) {
	run := func(args ...string) simreport.Report {
		out, _, err := simIn(t, append([]string{"--json", "--only", "ge-burst", "--messages", "500"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var r simreport.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		return r
	}
	a, b := run(), run("--seed", "0")
	if len(a.Scenarios) != 1 || a.Scenarios[0].Seed != 1 || b.Scenarios[0].Seed != 0 {
		t.Fatalf("seeds %+v / %+v", a.Scenarios, b.Scenarios)
	}
	if a.Scenarios[0].Rows[0].FwdLost == b.Scenarios[0].Rows[0].FwdLost &&
		a.Scenarios[0].Rows[0].LatencyMaxNanos == b.Scenarios[0].Rows[0].LatencyMaxNanos {
		t.Errorf("--seed 0 gave the same run as the file's seed 1")
	}
	if again := run(); !equalJSON(t, a, again) {
		t.Errorf("the same seed gave a different report")
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

func TestSimScenarioFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	if err := os.WriteFile(good, []byte(`{"settings": [{"name": "plain"}],
		"scenarios": [{"name": "mine", "fwd": "delay 2ms loss 3%", "messages": 300}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := simIn(t, "--scenarios", good)
	if err != nil || !strings.Contains(out, "### mine") || !strings.Contains(out, "| plain | ") {
		t.Fatalf("%v:\n%s", err, out)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"scenarios": [{"name": "mine", "rate": 0}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// A scenario file that does not parse, or does not exist, is a bad
	// --scenarios: a usage error, one line naming the file and the field.
	_, stderr, err := simIn(t, "--scenarios", bad)
	if !errors.Is(err, errUsage) || !strings.Contains(stderr, "--scenarios") || !strings.Contains(stderr, "bad.json") || !strings.Contains(stderr, `field "rate"`) {
		t.Fatalf("bad file: %v\n%s", err, stderr)
	}
	if _, stderr, err := simIn(t, "--scenarios", filepath.Join(dir, "missing.json")); !errors.Is(err, errUsage) || !strings.Contains(stderr, "no such file") {
		t.Fatalf("missing file: %v\n%s", err, stderr)
	}
}

func TestSimPrintScenarios(t *testing.T) {
	out, _, err := simIn(t, "--print-scenarios")
	if err != nil {
		t.Fatal(err)
	}
	s, err := simreport.Parse([]byte(out))
	if err != nil || len(s.Scenarios) != len(simreport.Default().Scenarios) {
		t.Fatalf("--print-scenarios does not parse back: %v", err)
	}
}

func TestSimPlots(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plots")
	_, stderr, err := simIn(t, "--only", "clean", "--messages", "200", "--plot", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"latency-clean.svg", "latency-clean.png", "residual.svg", "residual.png", "overhead.svg", "overhead.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(stderr, "wrote 6 plots") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestSimUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--only", "nope"}, `no scenario "nope"`},
		{[]string{"--messages", "-1"}, "between 0 and 1000000"},
		{[]string{"--messages", "1000001"}, "between 0 and 1000000"},
		{[]string{"--messages", "many"}, "invalid value"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		_, stderr, err := simIn(t, c.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: %v, stderr %q", c.args, err, stderr)
		}
	}
	if _, stderr, err := simIn(t, "--help"); !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr, "Usage: telewire sim") {
		t.Errorf("--help: %v %q", err, stderr)
	}
}

// TestSimBinary runs the built command as a user would. It needs the sim
// command registered in main.go's commands().
func TestSimBinary(t *testing.T) {
	if out, _ := exec.Command(telewireBin, "help").CombinedOutput(); !strings.Contains(string(out), "\n  sim ") {
		t.Skip(`"sim" is not registered in commands() in main.go yet`)
	}
	dir := filepath.Join(t.TempDir(), "plots")
	cmd := exec.Command(telewireBin, "sim", "--only", "random-5", "--messages", "1000", "--plot", dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "### random-5") || !strings.Contains(string(out), "| none | ") {
		t.Fatalf("output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "latency-random-5.png")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"sim", "--only", "nope"}, {"sim", "--bogus"}} {
		cmd := exec.Command(telewireBin, args...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 {
			t.Errorf("telewire %v: exit %d, want 2\n%s", args, code, out)
		}
	}
	cmd = exec.Command(telewireBin, "sim", "--scenarios", filepath.Join(dir, "none.json"))
	if out, _ := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "none.json") {
		t.Errorf("missing scenario file: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
}
