package simreport

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/tools/netem"
)

func mustSpec(t *testing.T, s string) netem.Spec {
	t.Helper()
	sp, err := netem.ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

func TestDefaultSuiteCoversTheScenarios(t *testing.T) {
	s := Default()
	want := map[string]string{
		"clean":          "delay 10ms",
		"random-1":       "delay 10ms loss random 1%",
		"random-5":       "delay 10ms loss random 5%",
		"random-20":      "delay 10ms loss random 20%",
		"ge-burst":       "delay 10ms loss gemodel 1% 10% 100% 0%",
		"jitter-reorder": "delay 20ms 5ms distribution normal reorder 2% gap 5",
		"duplicate":      "delay 10ms duplicate 5%",
		"outage-2s":      "delay 10ms",
		"rate-limit":     "delay 10ms rate 1800kbit limit 100",
	}
	if len(s.Scenarios) != len(want) {
		t.Fatalf("%d scenarios, want %d", len(s.Scenarios), len(want))
	}
	for _, sc := range s.Scenarios {
		spec, ok := want[sc.Name]
		if !ok {
			t.Errorf("unexpected scenario %q", sc.Name)
			continue
		}
		if sc.Fwd != mustSpec(t, spec) || sc.Rev != mustSpec(t, "delay 10ms") {
			t.Errorf("%s: fwd %q rev %q", sc.Name, sc.Fwd, sc.Rev)
		}
		if sc.Messages != 5000 || sc.Rate != 1000 || sc.Size != 200 || sc.Seed != 1 || sc.Settings != nil {
			t.Errorf("%s: %+v", sc.Name, sc)
		}
	}
	out := s.Scenarios[7]
	if want := []Outage{{From: time.Second, To: 3 * time.Second, Dir: DirFwd}}; !reflect.DeepEqual(out.Outages, want) {
		t.Errorf("outage-2s outages %+v", out.Outages)
	}
	wantSettings := []Setting{
		{Name: "none"},
		{Name: "nack", NACK: true},
		{Name: "fec-10+3", FEC: FECFixed, FECData: 10, FECParity: 3},
		{Name: "fec-auto", FEC: FECAuto},
		{Name: "nack+fec-auto", NACK: true, FEC: FECAuto},
		{Name: "nack+ordered-50ms", NACK: true, Delivery: DeliveryOrdered, LatencyBudget: 50 * time.Millisecond},
		{Name: "nack+unordered", NACK: true, Delivery: DeliveryUnordered},
		{Name: "latest", Delivery: DeliveryLatest},
	}
	if !reflect.DeepEqual(s.Settings, wantSettings) {
		t.Errorf("settings\n%+v\nwant\n%+v", s.Settings, wantSettings)
	}
	// Default hands out copies.
	s.Scenarios[7].Outages[0].To = time.Hour
	s.Settings[0].Name = "changed"
	if d := Default(); d.Scenarios[7].Outages[0].To != 3*time.Second || d.Settings[0].Name != "none" {
		t.Fatal("Default shares memory between calls")
	}
}

func TestParseAppliesDefaults(t *testing.T) {
	s, err := Parse([]byte(`{
		"defaults": {"messages": 300, "rate": 250.5, "rev": "delay 3ms", "seed": -4},
		"scenarios": [
			{"name": "a", "fwd": "loss 1%"},
			{"name": "b", "fwd": "delay 1ms", "size": 64, "seed": 9, "settings": ["nack", "none"],
			 "outages": [{"from": "100ms", "to": "0.5s", "dir": "fwd"}, {"from": "500ms", "to": "1s"}]},
			{"name": "c", "messages": null}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Settings, DefaultSettings()) {
		t.Errorf("settings %+v, want the default matrix", s.Settings)
	}
	want := []Scenario{
		{Name: "a", Fwd: mustSpec(t, "loss 1%"), Rev: mustSpec(t, "delay 3ms"), Messages: 300, Rate: 250.5, Size: 200, Seed: -4},
		{Name: "b", Fwd: mustSpec(t, "delay 1ms"), Rev: mustSpec(t, "delay 3ms"), Messages: 300, Rate: 250.5, Size: 64, Seed: 9,
			Outages:  []Outage{{From: 100 * time.Millisecond, To: 500 * time.Millisecond}, {From: 500 * time.Millisecond, To: time.Second}},
			Settings: []string{"nack", "none"}},
		{Name: "c", Rev: mustSpec(t, "delay 3ms"), Messages: 300, Rate: 250.5, Size: 200, Seed: -4},
	}
	if !reflect.DeepEqual(s.Scenarios, want) {
		t.Errorf("scenarios\n%+v\nwant\n%+v", s.Scenarios, want)
	}
}

func TestParseSettings(t *testing.T) {
	s, err := Parse([]byte(`{"settings": [
		{"name": "x", "fec": "fixed", "fec_data": 20, "fec_parity": 4, "fec_interleave": 3},
		{"name": "y", "fec": "off", "delivery": "ordered", "latency_budget": "1.5s", "nack": true}
	], "scenarios": [{"name": "s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Setting{
		{Name: "x", FEC: FECFixed, FECData: 20, FECParity: 4, FECInterleave: 3},
		{Name: "y", FEC: FECOff, Delivery: DeliveryOrdered, LatencyBudget: 1500 * time.Millisecond, NACK: true},
	}
	if !reflect.DeepEqual(s.Settings, want) {
		t.Errorf("%+v", s.Settings)
	}
}

func TestParseErrorsNameTheProblem(t *testing.T) {
	const sc = `"scenarios": [{"name": "s"}]`
	cases := []struct {
		name, in string
		err      error
		want     []string // substrings of the message
	}{
		{"syntax", "{\n  \"scenarios\": [\n    {\"name\": \"s\",}\n  ]\n}", ErrSyntax, []string{"line 3 col"}},
		{"truncated", `{"scenarios": [`, ErrSyntax, []string{"line 1 col 16"}},
		{"not an object", `[1, 2]`, ErrBadValue, []string{"want a JSON object"}},
		{"trailing data", `{"scenarios": []} {}`, ErrSyntax, nil},
		{"unknown top-level field", `{"scenario": []}`, ErrUnknownField, []string{`"scenario"`, "known fields are defaults, scenarios, settings"}},
		{"no scenarios", `{}`, ErrMissing, []string{`"scenarios"`}},
		{"empty scenarios", `{"scenarios": []}`, ErrMissing, []string{"got 0"}},
		{"scenario not an object", `{"scenarios": [5]}`, ErrBadValue, []string{"scenarios[0]", "want a JSON object"}},
		{"unknown scenario field", `{"scenarios": [{"name": "s", "loss": 5}]}`, ErrUnknownField, []string{`scenarios[0]`, `"loss"`, "fwd"}},
		{"missing name", `{"scenarios": [{"fwd": "delay 1ms"}]}`, ErrMissing, []string{"scenarios[0]", `"name"`}},
		{"bad name", `{"scenarios": [{"name": "a b"}]}`, ErrBadValue, []string{`"a b"`, "letters, digits"}},
		{"dot name", `{"scenarios": [{"name": ".."}]}`, ErrBadValue, []string{`".."`}},
		{"long name", `{"scenarios": [{"name": "` + strings.Repeat("n", 65) + `"}]}`, ErrBadValue, []string{"name"}},
		{"duplicate scenario", `{"scenarios": [{"name": "s"}, {"name": "s"}]}`, ErrDuplicate, []string{"scenarios[1]", `"s" is already a scenario`}},
		{"bad fwd", `{"scenarios": [{"name": "s", "fwd": "delay 10ms loss 120%"}]}`, ErrBadValue, []string{`scenarios[0] "s"`, `field "fwd"`, "120%"}},
		{"fwd not a string", `{"scenarios": [{"name": "s", "fwd": 10}]}`, ErrBadValue, []string{`field "fwd"`, "want a string, got 10"}},
		{"bad rev in defaults", `{"defaults": {"rev": "jitter 5ms"}, ` + sc + `}`, ErrBadValue, []string{"defaults", `field "rev"`, "jitter"}},
		{"name in defaults", `{"defaults": {"name": "x"}, ` + sc + `}`, ErrUnknownField, []string{"defaults", `"name"`}},
		{"zero messages", `{"scenarios": [{"name": "s", "messages": 0}]}`, ErrBadValue, []string{`field "messages"`, "0 is not in 1..1000000"}},
		{"fractional messages", `{"scenarios": [{"name": "s", "messages": 1.5}]}`, ErrBadValue, []string{"want an integer"}},
		{"negative rate", `{"scenarios": [{"name": "s", "rate": -1}]}`, ErrBadValue, []string{`field "rate"`}},
		{"rate as string", `{"scenarios": [{"name": "s", "rate": "fast"}]}`, ErrBadValue, []string{`field "rate"`, "want a number"}},
		{"small size", `{"scenarios": [{"name": "s", "size": 4}]}`, ErrBadValue, []string{`field "size"`, "4 is not in 8.."}},
		{"huge size", `{"scenarios": [{"name": "s", "size": 100000}]}`, ErrBadValue, []string{`field "size"`}},
		{"seed as string", `{"scenarios": [{"name": "s", "seed": "1"}]}`, ErrBadValue, []string{`field "seed"`}},
		{"outage without to", `{"scenarios": [{"name": "s", "outages": [{"from": "1s"}]}]}`, ErrMissing, []string{"outages[0]", `"to"`}},
		{"outage backwards", `{"scenarios": [{"name": "s", "outages": [{"from": "2s", "to": "1s"}]}]}`, ErrBadValue, []string{"outages[0]", "not after from"}},
		{"outage negative", `{"scenarios": [{"name": "s", "outages": [{"from": "-1s", "to": "1s"}]}]}`, ErrBadValue, []string{`field "from"`}},
		{"outage bad duration", `{"scenarios": [{"name": "s", "outages": [{"from": "1 sec", "to": "2s"}]}]}`, ErrBadValue, []string{`field "from"`, "duration string"}},
		{"outages overlap", `{"scenarios": [{"name": "s", "outages": [{"from": "1s", "to": "3s"}, {"from": "2s", "to": "4s"}]}]}`, ErrBadValue, []string{"outages[1]", "before the end of the previous"}},
		{"outage bad dir", `{"scenarios": [{"name": "s", "outages": [{"from": "1s", "to": "3s", "dir": "up"}]}]}`, ErrBadValue, []string{`field "dir"`, `"up"`}},
		{"unknown setting", `{"scenarios": [{"name": "s", "settings": ["nack", "magic"]}]}`, ErrUnknownSetting, []string{`"magic"`, `"fec-auto"`}},
		{"setting twice", `{"scenarios": [{"name": "s", "settings": ["nack", "nack"]}]}`, ErrDuplicate, []string{"listed twice"}},
		{"empty settings list", `{"scenarios": [{"name": "s", "settings": []}]}`, ErrBadValue, []string{`field "settings"`}},
		{"no settings", `{"settings": [], ` + sc + `}`, ErrBadValue, []string{"got 0"}},
		{"setting without name", `{"settings": [{"nack": true}], ` + sc + `}`, ErrMissing, []string{"settings[0]", `"name"`}},
		{"duplicate setting", `{"settings": [{"name": "a"}, {"name": "a"}], ` + sc + `}`, ErrDuplicate, []string{"settings[1]"}},
		{"unknown setting field", `{"settings": [{"name": "a", "fec_k": 3}], ` + sc + `}`, ErrUnknownField, []string{`"fec_k"`, "fec_data"}},
		{"nack not a bool", `{"settings": [{"name": "a", "nack": "yes"}], ` + sc + `}`, ErrBadValue, []string{`field "nack"`, "true or false"}},
		{"bad delivery", `{"settings": [{"name": "a", "delivery": "sorted"}], ` + sc + `}`, ErrBadValue, []string{`settings[0] "a"`, `"sorted"`}},
		{"budget without ordered", `{"settings": [{"name": "a", "delivery": "latest", "latency_budget": "50ms"}], ` + sc + `}`, ErrBadValue, []string{`field "latency_budget"`, "ordered"}},
		{"zero budget", `{"settings": [{"name": "a", "delivery": "ordered", "latency_budget": "0s"}], ` + sc + `}`, ErrBadValue, []string{"not positive"}},
		{"bad fec", `{"settings": [{"name": "a", "fec": "rs"}], ` + sc + `}`, ErrBadValue, []string{`field "fec"`, `"rs"`}},
		{"fixed without parity", `{"settings": [{"name": "a", "fec": "fixed", "fec_data": 10}], ` + sc + `}`, ErrMissing, []string{`field "fec_parity"`}},
		{"fixed too many shards", `{"settings": [{"name": "a", "fec": "fixed", "fec_data": 200, "fec_parity": 100}], ` + sc + `}`, ErrBadValue, []string{"exceeds 256"}},
		{"fixed zero data", `{"settings": [{"name": "a", "fec": "fixed", "fec_data": 0, "fec_parity": 1}], ` + sc + `}`, ErrBadValue, []string{`field "fec_data"`}},
		{"parity without fixed", `{"settings": [{"name": "a", "fec": "auto", "fec_parity": 2}], ` + sc + `}`, ErrBadValue, []string{`field "fec_parity"`, "fixed"}},
		{"interleave without fixed", `{"settings": [{"name": "a", "fec_interleave": 2}], ` + sc + `}`, ErrBadValue, []string{`field "fec_interleave"`}},
		{"too large", `{"scenarios": [{"name": "s", "fwd": "` + strings.Repeat(" ", maxFileBytes) + `"}]}`, ErrBadValue, []string{"larger than"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in))
			if !errors.Is(err, c.err) {
				t.Fatalf("error %v, want %v", err, c.err)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%T is not a *ParseError", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseErrorCarriesTheSpecError(t *testing.T) {
	_, err := Parse([]byte(`{"scenarios": [{"name": "s", "fwd": "delay 10ms bogus"}]}`))
	var se *netem.SpecError
	if !errors.As(err, &se) || !errors.Is(err, netem.ErrUnknownOption) || se.Token != "bogus" {
		t.Fatalf("%v: want a netem.SpecError for token bogus", err)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Where != `scenarios[0] "s"` || pe.Field != "fwd" {
		t.Fatalf("%+v", pe)
	}
}

func TestMarshalRoundTrips(t *testing.T) {
	suites := []Suite{Default()}
	s, err := Parse([]byte(`{"settings": [{"name": "k", "fec": "fixed", "fec_data": 4, "fec_parity": 2, "fec_interleave": 2},
		{"name": "o", "delivery": "ordered", "latency_budget": "75ms"}],
		"scenarios": [{"name": "x", "rate": 0.1, "seed": -9, "fwd": "", "rev": "seed 7 loss state 1% 2%",
		"outages": [{"from": "0s", "to": "1ns", "dir": "both"}, {"from": "1h", "to": "2h", "dir": "rev"}], "settings": ["o"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	suites = append(suites, s)
	for _, s := range suites {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip changed the suite:\n%+v\n%+v", s, back)
		}
	}
}
