package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	in := []float64{5, 1, 3}
	if m := Median(in); m != 3 {
		t.Errorf("Median %v = %v", in, m)
	}
	if in[0] != 5 {
		t.Error("Median sorted its input")
	}
	if m := Median([]float64{4, 1, 3, 2}); m != 2.5 {
		t.Errorf("even median %v", m)
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func testFigures(msgs, cpu, p99 float64) *Figures {
	return &Figures{Sent: 100, Delivered: 100, Completeness: 1, MsgsPerSec: msgs, CPUNanos: cpu, P99Nanos: p99}
}

// TestFinish checks medians, ranges and run-by-run ratios on made-up runs.
func TestFinish(t *testing.T) {
	rep := &Report{
		Runs:       3,
		Transports: []Transport{{Name: RawBatch, Baseline: true}, {Name: TwNACK}},
		Cases: []Case{
			{Transport: RawBatch, Runs: []*Figures{testFigures(100, 10, 5), testFigures(200, 10, 5), testFigures(400, 0, 5)}},
			{Transport: TwNACK, Runs: []*Figures{testFigures(90, 20, 10), nil, testFigures(100, 30, 20)}},
			{Transport: TwNACK, Rate: 1000, Runs: []*Figures{testFigures(1, 1, 1)}}, // no baseline at 1k
		},
	}
	rep.finish()
	raw, tw := rep.Cases[0], rep.Cases[1]
	if raw.Median.MsgsPerSec != 200 || raw.Min.MsgsPerSec != 100 || raw.Max.MsgsPerSec != 400 {
		t.Errorf("raw msgs/s median %v min %v max %v", raw.Median.MsgsPerSec, raw.Min.MsgsPerSec, raw.Max.MsgsPerSec)
	}
	if raw.VsRaw != nil {
		t.Error("the baseline has ratios to itself")
	}
	if tw.Median.MsgsPerSec != 95 || tw.Median.P99Nanos != 15 {
		t.Errorf("tw medians over the two good runs: %+v", tw.Median)
	}
	// Ratios pair run 0 with run 0 and run 2 with run 2: 0.9 and 0.25.
	if tw.VsRaw == nil || tw.VsRaw.Runs[1] != nil {
		t.Fatalf("ratios %+v", tw.VsRaw)
	}
	if got := tw.VsRaw.Median.MsgsPerSec; math.Abs(got-0.575) > 1e-12 {
		t.Errorf("median msgs/s ratio %v, want 0.575", got)
	}
	// Run 2's CPU ratio divides by a zero baseline: left out of the median,
	// and written as 0 in the run's own row.
	if tw.VsRaw.Median.CPUNanos != 2 || tw.VsRaw.Runs[2].CPUNanos != 0 {
		t.Errorf("CPU ratio median %v, run 2 %v", tw.VsRaw.Median.CPUNanos, tw.VsRaw.Runs[2].CPUNanos)
	}
	if rep.Cases[2].VsRaw != nil {
		t.Error("ratio computed without a baseline case")
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"== clean", "raw-batch", "200 (100–400)", "0.57×", "2.00×"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestFiguresFrom(t *testing.T) {
	s := &SendResult{Sent: 1000, StartNanos: 1e9, EndNanos: 2e9, CPUNanos: 1e6, WireBytes: 230000}
	r := &RecvResult{Delivered: 500, LastNanos: 3e9, CPUNanos: 2e6, Latency: LatencySummary{P50Nanos: 7, P99Nanos: 8, P999Nanos: 9, MaxNanos: 10}}
	f := figuresFrom(s, r, &RelayResult{})
	want := Figures{Sent: 1000, Delivered: 500, Completeness: 0.5, MsgsPerSec: 250, Mbps: 250 * MessageSize * 8 / 1e6,
		OfferedPerSec: 1000, WirePerMsg: 230, SendCPUNanos: 1000, RecvCPUNanos: 4000, CPUNanos: 6000,
		P50Nanos: 7, P99Nanos: 8, P999Nanos: 9, MaxNanos: 10}
	got, w := f.columns(), want.columns()
	for i := range got {
		if *got[i] != *w[i] {
			t.Errorf("column %d = %v, want %v", i, *got[i], *w[i])
		}
	}
}

func TestParseOnly(t *testing.T) {
	all := Builtin()
	sel, err := ParseOnly("tw-nack, 1k,max,loss5,clean,kcp", all)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tr := range sel.Transports {
		names = append(names, tr.Name)
	}
	if strings.Join(names, ",") != "raw-batch,tw-nack" {
		t.Errorf("transports %v: want the baseline added, kcp accepted and skipped", names)
	}
	if len(sel.Rates) != 2 || sel.Rates[0] != 1000 || sel.Rates[1] != 0 || len(sel.Losses) != 2 || sel.Losses[0] != 5 {
		t.Errorf("rates %v losses %v", sel.Rates, sel.Losses)
	}
	for _, bad := range []string{"tw-nak", "loss100", "lossy", "0", "-5k", "1e9"} {
		if _, err := ParseOnly(bad, all); !errors.Is(err, ErrOptions) {
			t.Errorf("ParseOnly(%q): %v, want ErrOptions", bad, err)
		}
	}
}

func TestNames(t *testing.T) {
	for rate, want := range map[float64]string{0: "max", 1000: "1k", 1e5: "100k", 2500: "2.5k", 500: "500", 2e6: "2M"} {
		if got := LoadName(rate); got != want {
			t.Errorf("LoadName(%v) = %q, want %q", rate, got, want)
		}
		if back, err := ParseRate(want); err != nil || back != rate {
			t.Errorf("ParseRate(%q) = %v, %v", want, back, err)
		}
	}
	if LossName(0) != "clean" || LossName(2.5) != "loss2.5" || LossSpec(1) != "loss random 1%" {
		t.Error("loss names")
	}
	if fmtNanos(850) != "850ns" || fmtNanos(12345) != "12.3µs" || fmtNanos(1.2e6) != "1.20ms" || siCount(246000) != "246k" {
		t.Errorf("formatting: %s %s %s %s", fmtNanos(850), fmtNanos(12345), fmtNanos(1.2e6), siCount(246000))
	}
}

func TestCLIOptions(t *testing.T) {
	var c CLI
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Register(fs)
	if err := fs.Parse([]string{"--quick", "--runs", "2", "--only", "tw-fec"}); err != nil {
		t.Fatal(err)
	}
	o, err := c.Options(fs, Builtin())
	if err != nil {
		t.Fatal(err)
	}
	if o.Runs != 2 || o.Duration != quickDuration || len(o.Rates) != 2 || len(o.Transports) != 2 {
		t.Errorf("quick with --runs 2: %+v", o)
	}
	want := []string{"--runs", "2", "--duration", time.Second.String(), "--seed", "1", "--quick", "--only", "tw-fec"}
	if got := c.Args(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Args %v, want %v", got, want)
	}
}
