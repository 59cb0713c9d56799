package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/telewire/telewire/internal/testutil"
)

// soakIn runs `telewire ARGS` in this process and returns the exit status.
func soakIn(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, nil, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestSoakUsage(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"soak", "--rate", "0"}, 2, "must be positive"},
		{[]string{"soak", "--duration", "-1s"}, 2, "must be positive"},
		{[]string{"soak", "--interval", "0s"}, 2, "must be positive"},
		{[]string{"soak", "--seed", "0"}, 2, "--seed must not be 0"},
		{[]string{"soak", "--size", "10"}, 2, "--size 10: outside 20.."},
		{[]string{"soak", "--fwd", "loss banana"}, 2, "--fwd \"loss banana\""},
		{[]string{"soak", "--rev", "delay"}, 2, "--rev \"delay\""},
		{[]string{"soak", "--log-level", "loud"}, 2, "--log-level"},
		{[]string{"soak", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"soak", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"soak", "--help"}, 0, "Usage: telewire soak"},
		{[]string{"help", "soak"}, 0, "--check"},
	}
	for _, c := range cases {
		code, out, errOut := soakIn(t, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("telewire %v: exit %d, want %d; output should contain %q:\n%s%s", c.args, code, c.code, c.want, out, errOut)
		}
	}
	if _, out, _ := soakIn(t, "help"); !strings.Contains(out, "soak") {
		t.Errorf("soak missing from the command list:\n%s", out)
	}
}

// A short run with --check and --json exits 0 and prints JSON lines that
// end with a reconciled summary.
func TestSoakCheckJSON(t *testing.T) {
	testutil.NoLeaks(t)
	code, out, errOut := soakIn(t, "soak", "--duration", "1s", "--rate", "1000", "--interval", "100ms",
		"--fwd", "loss random 3%", "--json", "--check", "--gc")
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out, errOut)
	}
	var samples int
	var last struct {
		Type           string `json:"type"`
		Reconciliation struct {
			OK   bool   `json:"ok"`
			Load uint64 `json:"load"`
		} `json:"reconciliation"`
		Memory struct {
			Status string `json:"status"`
		} `json:"memory"`
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		if last.Type == "sample" {
			samples++
		}
	}
	if samples < 5 || last.Type != "summary" || !last.Reconciliation.OK || last.Reconciliation.Load == 0 || last.Memory.Status != "flat" {
		t.Fatalf("%d samples, last line %+v:\n%s", samples, last, out)
	}
}

// --check turns an inconclusive memory verdict (too few samples) into
// exit status 1.
func TestSoakCheckFails(t *testing.T) {
	code, out, errOut := soakIn(t, "soak", "--duration", "300ms", "--rate", "500", "--interval", "1s", "--check", "--gc")
	if code != 1 || !strings.Contains(errOut, "inconclusive") || !strings.Contains(out, "reconcile: OK") {
		t.Fatalf("exit %d:\n%s\n%s", code, out, errOut)
	}
}
