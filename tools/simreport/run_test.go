package simreport

import (
	"bytes"
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// testMessages keeps the default suite quick under -race while leaving
// enough messages for loss rates to be meaningful (5 % of 2000 is 100
// ± 10).
const testMessages = 2000

var defaultReport = sync.OnceValues(func() (Report, error) {
	return Run(context.Background(), Default(), Options{Messages: testMessages})
})

func findRow(t *testing.T, r Report, scenario, setting string) Row {
	t.Helper()
	for _, sc := range r.Scenarios {
		if sc.Name != scenario {
			continue
		}
		for _, row := range sc.Rows {
			if row.Setting == setting {
				return row
			}
		}
	}
	t.Fatalf("no row %s/%s", scenario, setting)
	return Row{}
}

func TestDefaultSuiteIsSane(t *testing.T) {
	rep, err := defaultReport()
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if len(rep.Scenarios) != len(def.Scenarios) {
		t.Fatalf("%d scenarios reported", len(rep.Scenarios))
	}
	for _, sc := range rep.Scenarios {
		if len(sc.Rows) != len(def.Settings) || len(sc.NotRun) != 0 {
			t.Errorf("%s: %d rows, not run %v", sc.Name, len(sc.Rows), sc.NotRun)
		}
		if sc.Messages != testMessages {
			t.Errorf("%s: %d messages, the override was %d", sc.Name, sc.Messages, testMessages)
		}
		for _, row := range sc.Rows {
			if row.Sent != testMessages || row.Corrupt != 0 || row.Delivered > row.Sent {
				t.Errorf("%s/%s: %+v", sc.Name, row.Setting, row)
			}
			if row.LatencyP50Nanos > row.LatencyP99Nanos || row.LatencyP99Nanos > row.LatencyP999Nanos ||
				row.LatencyP999Nanos > row.LatencyMaxNanos {
				t.Errorf("%s/%s: latency quantiles out of order: %+v", sc.Name, row.Setting, row)
			}
			if !noRepair(row.Setting) {
				continue
			}
			// Without repair nothing is recovered, asked for or resent,
			// and the residual loss is the raw loss (the forward link
			// carries only DATA then, and heartbeats at the end).
			if row.RecoveredFEC+row.RecoveredRTX+row.NACKs+row.Retransmits+row.Parity != 0 {
				t.Errorf("%s/%s repaired something: %+v", sc.Name, row.Setting, row)
			}
		}
	}

	for _, row := range rep.Scenarios[0].Rows { // clean
		if row.RawLoss != 0 || row.Residual != 0 || row.Delivered != testMessages ||
			row.LatencyP50Nanos != int64(10*time.Millisecond) || row.LatencyMaxNanos != int64(10*time.Millisecond) {
			t.Errorf("clean/%s: %+v", row.Setting, row)
		}
	}

	none := findRow(t, rep, "random-5", "none")
	if math.Abs(none.Residual-0.05) > 0.015 || math.Abs(none.Residual-none.RawLoss) > 0.002 {
		t.Errorf("random-5 without repair: residual %.4f raw %.4f, want both ≈ 0.05", none.Residual, none.RawLoss)
	}
	// A 40-byte header and a 5-byte message map (count, length) on each
	// 200-byte message sent alone.
	const perMessage = 200 + 40 + 5
	if want := float64(perMessage) / 200; math.Abs(none.Overhead-(want-1)) > 0.01 {
		t.Errorf("overhead without repair %.4f: a 45-byte header and map on 200 bytes is %.3f", none.Overhead, want-1)
	}
	nack := findRow(t, rep, "random-5", "nack")
	// Repair by retransmission costs a round trip in the tail, compared
	// with the same setting on a clean link. (Compared with no repair at
	// all it may be faster: ordered delivery without repair holds the
	// messages behind each loss until their deadline.)
	cleanNACK := findRow(t, rep, "clean", "nack")
	if nack.Residual > none.Residual/10 || nack.RecoveredRTX == 0 || nack.NACKs == 0 || nack.Retransmits == 0 ||
		nack.Overhead <= none.Overhead || nack.LatencyP99Nanos <= cleanNACK.LatencyP99Nanos {
		t.Errorf("random-5 with NACK: %+v", nack)
	}
	fec := findRow(t, rep, "random-5", "fec-10+3")
	if fec.Residual > none.Residual/5 || fec.RecoveredFEC == 0 || fec.RecoveredRTX != 0 || fec.Parity == 0 {
		t.Errorf("random-5 with FEC 10+3: %+v", fec)
	}
	// FEC 10+3 sends 3 parity per 10 data whatever the loss.
	if clean := findRow(t, rep, "clean", "fec-10+3"); math.Abs(clean.Overhead-(perMessage/200.0*1.3-1)) > 0.03 {
		t.Errorf("clean FEC 10+3 overhead %.3f, want about %.3f", clean.Overhead, perMessage/200.0*1.3-1)
	}
	// The outage covers messages 1000..1999 of 2000 (sent 1 s to 2 s).
	if out := findRow(t, rep, "outage-2s", "none"); math.Abs(out.Residual-0.5) > 0.001 {
		t.Errorf("outage without repair: residual %.4f, want 0.5", out.Residual)
	}
	if r20, r1 := findRow(t, rep, "random-20", "none"), findRow(t, rep, "random-1", "none"); !(r20.Residual > 0.15 && r1.Residual < 0.02) {
		t.Errorf("random-20 residual %.3f, random-1 %.3f", r20.Residual, r1.Residual)
	}
	if dup := findRow(t, rep, "duplicate", "none"); dup.Residual != 0 || dup.Duplicates != 0 {
		t.Errorf("duplication must be filtered by the receiver: %+v", dup)
	}
	if rl := findRow(t, rep, "rate-limit", "none"); rl.RawLoss == 0 || rl.LatencyP99Nanos < int64(50*time.Millisecond) {
		t.Errorf("a link slower than the offered load must queue and drop: %+v", rl)
	}

	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, sc := range def.Scenarios {
		if !strings.Contains(md.String(), "### "+sc.Name+"\n") {
			t.Errorf("markdown lacks the %s section", sc.Name)
		}
	}
	if n := strings.Count(md.String(), "| setting | raw loss | residual |"); n != len(def.Scenarios) {
		t.Errorf("%d table headers", n)
	}
}

// noRepair reports whether a setting of the default matrix has no repair.
func noRepair(setting string) bool { return setting == "none" || setting == "latest" }

func TestRunIsDeterministic(t *testing.T) {
	run := func(o Options) (Report, string) {
		o.Only, o.Messages = "ge-burst", 1000
		r, err := Run(context.Background(), Default(), o)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := r.WriteMarkdown(&b); err != nil {
			t.Fatal(err)
		}
		return r, b.String()
	}
	r1, md1 := run(Options{})
	r2, md2 := run(Options{})
	if !reflect.DeepEqual(r1, r2) || md1 != md2 {
		t.Fatalf("two runs differ:\n%s\n%s", md1, md2)
	}
	r3, md3 := run(Options{Seed: 2, SetSeed: true})
	if r3.Scenarios[0].Seed != 2 || md3 == md1 {
		t.Fatalf("seed 2 gave the same table as seed 1:\n%s", md3)
	}
}

func TestRunOptions(t *testing.T) {
	_, err := Run(context.Background(), Default(), Options{Only: "nope"})
	if !errors.Is(err, ErrNoScenario) || !strings.Contains(err.Error(), "random-5") {
		t.Fatalf("%v: want ErrNoScenario listing the scenarios", err)
	}

	s := Default()
	s.Scenarios = s.Scenarios[:1]
	s.Scenarios[0].Settings = []string{"nack", "none"}
	r, err := Run(context.Background(), s, Options{Messages: 50})
	if err != nil {
		t.Fatal(err)
	}
	rows := r.Scenarios[0].Rows
	if len(rows) != 2 || rows[0].Setting != "nack" || rows[1].Setting != "none" || rows[0].Sent != 50 {
		t.Fatalf("%+v", rows)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Default(), Options{Messages: 50}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}

// TestUnsupportedIsReportedNotRun: a scenario the simulator cannot express
// is listed as not run with the reason, or fails the run with Strict.
func TestUnsupportedIsReportedNotRun(t *testing.T) {
	s, err := Parse([]byte(`{"settings": [{"name": "none"}], "scenarios": [
		{"name": "both-ways", "messages": 50, "outages": [{"from": "10ms", "to": "20ms", "dir": "both"}]},
		{"name": "fine", "messages": 50}]}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	bw := r.Scenarios[0]
	if len(bw.Rows) != 0 || len(bw.NotRun) != 1 || bw.NotRun[0].Setting != "*" ||
		!strings.Contains(bw.NotRun[0].Reason, `scenario "both-ways"`) || len(r.Scenarios[1].Rows) != 1 {
		t.Fatalf("%+v", r)
	}
	var md bytes.Buffer
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "- not run: scenario \"both-ways\"") {
		t.Fatalf("markdown does not say what was not run:\n%s", md.String())
	}
	if _, err := Run(context.Background(), s, Options{Strict: true}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("strict: %v", err)
	}
}

func TestWriteMarkdown(t *testing.T) {
	r := Report{Scenarios: []ScenarioReport{{
		Name: "x", Fwd: "delay 5ms loss random 2%", Rev: "", Messages: 100, Rate: 250, Size: 64, Seed: 3,
		Outages: []string{"1s-2s fwd"},
		Rows: []Row{{Setting: "nack", RawLoss: 0.02, Residual: 0.001, RecoveredFEC: 1, RecoveredRTX: 2, Overhead: 0.625,
			LatencyP50Nanos: 5_000_000, LatencyP99Nanos: 12_345_678, LatencyP999Nanos: 20_000_000, LatencyMaxNanos: 21_000_000,
			NACKs: 4, Retransmits: 5, Corrupt: 1}},
		NotRun: []NotRun{{Setting: "fec", Reason: `setting "fec": why`}},
	}}}
	var b bytes.Buffer
	if err := r.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	want := "### x\n\n" +
		"fwd `delay 5ms loss random 2%`, rev `(perfect link)`, outage 1s-2s fwd; 100 messages of 64 B at 250/s, seed 3\n\n" +
		"| setting | raw loss | residual | FEC rec. | RTX rec. | overhead | p50 | p99 | p99.9 | max | NACKs | retx |\n" +
		"|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n" +
		"| nack | 2.00% | 0.10% | 1 | 2 | 62.50% | 5.00 ms | 12.35 ms | 20.00 ms | 21.00 ms | 4 | 5 |\n\n" +
		"- not run: setting \"fec\": why\n" +
		"- **nack: 1 corrupt deliveries**\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestLatencyQuantiles(t *testing.T) {
	r := Row{Delivered: 5000, LatencyP50Nanos: 1, LatencyP99Nanos: 2, LatencyP999Nanos: 3, LatencyMaxNanos: 4}
	want := []Quantile{{2500.5 / 5000, 1}, {4950.5 / 5000, 2}, {4995.5 / 5000, 3}, {4999.5 / 5000, 4}}
	if got := r.LatencyQuantiles(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	// With 10 deliveries p99, p99.9 and the maximum are the same element.
	r.Delivered = 10
	want = []Quantile{{5.5 / 10, 1}, {9.5 / 10, 2}}
	if got := r.LatencyQuantiles(); !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
	if got := (Row{}).LatencyQuantiles(); got != nil {
		t.Fatalf("%v for no deliveries", got)
	}
}
