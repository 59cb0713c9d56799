package netns

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/telewire/telewire/tools/netem"
)

func TestRuleset(t *testing.T) {
	r := ruleset(10)
	for _, want := range []string{
		"table inet telewire_loss {",
		"counter dropped {",
		"type filter hook input priority filter; policy accept;",
		"flush chain inet telewire_loss input\n",
		`add rule inet telewire_loss input meta l4proto udp numgen random mod 10000 < 1000 counter name "dropped" drop`,
	} {
		if !strings.Contains(r, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, r)
		}
	}
	for pct, want := range map[float64]string{0: "", 0.004: "", 0.25: "numgen random mod 10000 < 25 counter", 100: "udp counter name"} {
		r := lossRule(pct)
		if got := strings.Count(r, "add rule"); (want == "") != (got == 0) || !strings.Contains(r, want) {
			t.Errorf("lossRule(%v) = %q, want a rule with %q", pct, r, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{LossPercent: -1}, {LossPercent: 100.5}, {RevLossPercent: math.NaN()},
		{Netem: "delay 5xs"}, {RevNetem: "bogus 1"},
	} {
		err := o.validate()
		if !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: err = %v, want ErrOptions", o, err)
		}
		if _, e := New(o); !errors.Is(e, ErrOptions) {
			t.Errorf("New(%+v) = %v, want ErrOptions before anything is created", o, e)
		}
	}
	var se *netem.SpecError
	if err := (Options{Netem: "delay 5xs"}).validate(); !errors.As(err, &se) || se.Token != "5xs" {
		t.Errorf("a bad netem spec should carry its *netem.SpecError: %v", err)
	}
	if err := (Options{LossPercent: 100, RevLossPercent: 0, Netem: "delay 5ms loss 1%"}).validate(); err != nil {
		t.Errorf("valid options rejected: %v", err)
	}
}

// nftCounters is what "nft -j list counters table inet telewire_loss"
// prints (nftables 1.0.6).
const nftCounters = `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, ` +
	`{"counter": {"family": "inet", "name": "dropped", "table": "telewire_loss", "handle": 3, "packets": %d, "bytes": 41}}]}`

func TestParseCounter(t *testing.T) {
	for _, want := range []uint64{0, 17, math.MaxUint64} {
		if got, err := parseCounter(fmt.Appendf(nil, nftCounters, want)); err != nil || got != want {
			t.Fatalf("parseCounter = %d, %v; want %d", got, err, want)
		}
	}
	for _, bad := range []string{
		"", "{", "null", `{"nftables": []}`,
		`{"nftables": [{"counter": {"name": "other", "table": "telewire_loss", "packets": 1}}]}`,
		`{"nftables": [{"counter": {"name": "dropped", "table": "other", "packets": 1}}]}`,
		`{"nftables": [{"counter": {"name": "dropped", "table": "telewire_loss", "packets": -1}}]}`,
	} {
		if _, err := parseCounter([]byte(bad)); err == nil {
			t.Errorf("parseCounter(%q) succeeded", bad)
		}
	}
}

func FuzzParseCounter(f *testing.F) {
	f.Add(fmt.Sprintf(nftCounters, 0))
	f.Add(fmt.Sprintf(nftCounters, 123))
	f.Add(`{"nftables": [{"counter": null}, {"counter": {"name": "dropped", "table": "telewire_loss", "packets": 2}}]}`)
	f.Add(`{"nftables": [{"counter": {"name": "dropped", "table": "telewire_loss", "packets": 1e3}}]}`)
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseCounter([]byte(s))
		if err != nil {
			return
		}
		// What parsed must come back from the canonical form.
		if m, err := parseCounter(fmt.Appendf(nil, nftCounters, n)); err != nil || m != n {
			t.Fatalf("round trip of %d: %d, %v", n, m, err)
		}
	})
}

func TestSideString(t *testing.T) {
	if A.String() != "A" || B.String() != "B" || Side(5).String() != "Side(5)" {
		t.Fatal(A, B, Side(5))
	}
}

func TestCmdError(t *testing.T) {
	err := ip("no-such-ip-object")
	var ce *CmdError
	if err == nil || !errors.As(err, &ce) || ce.Output == "" || ce.Args[0] != "ip" {
		t.Skipf("ip not usable here: %v", err) // no ip binary: nothing to check
	}
	if !strings.Contains(err.Error(), "no-such-ip-object") {
		t.Fatalf("error does not name the command: %v", err)
	}
}
