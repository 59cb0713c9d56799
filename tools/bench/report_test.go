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

	"github.com/telewire/telewire/tools/netem"
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
	s := &SendResult{Sent: 1000, StartNanos: 1e9, EndNanos: 2e9, CPUNanos: 1e6, WireBytes: 230000,
		Mem: MemSummary{Samples: 3, StartRSSBytes: 90, MidRSSBytes: 100, EndRSSBytes: 120, MaxRSSBytes: 130,
			StartHeapBytes: 10, MidHeapBytes: 9, EndHeapBytes: 11, MaxHeapBytes: 12, EndLiveHeapBytes: 8, GCCycles: 4}}
	r := &RecvResult{Delivered: 500, LastNanos: 3e9, CPUNanos: 2e6, Latency: LatencySummary{P50Nanos: 7, P99Nanos: 8, P999Nanos: 9, MaxNanos: 10}}
	relay := &RelayResult{
		Fwd: netem.DirStats{Dropped: 30, LimitDropped: 1, KernelDrops: 2},
		Rev: netem.DirStats{Dropped: 9, LimitDropped: 4},
	}
	f := figuresFrom(s, r, relay, MessageSize)
	nan := math.NaN()
	want := Figures{Sent: 1000, Delivered: 500, Completeness: 0.5, MsgsPerSec: 250, Mbps: 250 * MessageSize * 8 / 1e6,
		OfferedPerSec: 1000, WirePerMsg: 230, SendCPUNanos: 1000, RecvCPUNanos: 4000, CPUNanos: 6000,
		P50Nanos: 7, P99Nanos: 8, P999Nanos: 9, MaxNanos: 10, ForwardP50Nanos: 7,
		RelayDropped: 30, RelayOverload: 7, // the relay's own drops, both ways
		SendRSSStartBytes: 90, SendRSSMidBytes: 100, SendRSSEndBytes: 120, SendRSSMaxBytes: 130,
		SendHeapStartBytes: 10, SendHeapMidBytes: 9, SendHeapEndBytes: 11, SendHeapMaxBytes: 12, SendRSSGrowth: 1.2,
		SendLiveHeapBytes: 8, SendGCCycles: 4,
		// The receiver sampled nothing: left out of medians.
		RecvRSSStartBytes: nan, RecvRSSMidBytes: nan, RecvRSSEndBytes: nan, RecvRSSMaxBytes: nan,
		RecvHeapStartBytes: nan, RecvHeapMidBytes: nan, RecvHeapEndBytes: nan, RecvHeapMaxBytes: nan, RecvRSSGrowth: nan,
		RecvLiveHeapBytes: nan, RecvGCCycles: nan}
	checkColumns(t, f, &want)

	// A RoundTripper's half round trip is the case's latency; the
	// receiver's stamped one-way stays beside it.
	s.HalfRTT = &LatencySummary{P50Nanos: 3, P99Nanos: 4, P999Nanos: 5, MaxNanos: 6}
	f = figuresFrom(s, r, nil, MessageSize)
	want.P50Nanos, want.P99Nanos, want.P999Nanos, want.MaxNanos = 3, 4, 5, 6
	want.RelayDropped, want.RelayOverload = 0, 0 // no relay
	checkColumns(t, f, &want)
}

// TestRelayOverloadIsNamed: a lossy case whose relay fell behind is named
// under its section, with the count; one whose relay kept up is not.
func TestRelayOverloadIsNamed(t *testing.T) {
	fig := func(overload float64) *Figures {
		f := testFigures(100, 1, 1)
		f.RelayOverload = overload
		return f
	}
	rep := &Report{
		Runs:       2,
		Transports: []Transport{{Name: RawBatch, Baseline: true}, {Name: TwNACK}},
		Cases: []Case{
			{Transport: RawBatch, LossPercent: 5, Runs: []*Figures{fig(0), fig(0)}},
			{Transport: TwNACK, LossPercent: 5, Runs: []*Figures{fig(10), fig(30)}},
		},
	}
	rep.finish()
	var buf bytes.Buffer
	if err := WriteTable(&buf, rep); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.Contains(out, "relay overloaded") || !strings.Contains(out, rep.Cases[1].Key()+": 20 (max 30)") {
		t.Errorf("overloaded case not named:\n%s", out)
	}
	if strings.Contains(out, rep.Cases[0].Key()+":") {
		t.Errorf("a case whose relay kept up is named:\n%s", out)
	}
}

func checkColumns(t *testing.T, got, want *Figures) {
	t.Helper()
	g, w := got.columns(), want.columns()
	for i := range g {
		if *g[i] != *w[i] && !(math.IsNaN(*g[i]) && math.IsNaN(*w[i])) {
			t.Errorf("column %d = %v, want %v", i, *g[i], *w[i])
		}
	}
}

// TestPingPongDelta checks the added p50 against raw-pingpong, run by
// run, and the lines the table prints for it and for memory.
func TestPingPongDelta(t *testing.T) {
	fig := func(p50, fwd float64, growth float64) *Figures {
		return &Figures{Sent: 10, Delivered: 10, P50Nanos: p50, ForwardP50Nanos: fwd,
			SendRSSStartBytes: 8 << 20, SendRSSMidBytes: 10 << 20, SendRSSEndBytes: 10 << 20 * growth, SendRSSGrowth: growth,
			RecvRSSStartBytes: 20 << 20, RecvRSSEndBytes: 20 << 20, RecvRSSGrowth: 1}
	}
	rep := &Report{
		Runs:       3,
		Transports: []Transport{{Name: RawBatch, Baseline: true}, {Name: TwNACK}, {Name: RawPingPong}},
		Cases: []Case{
			{Transport: RawPingPong, Rate: 1000, Runs: []*Figures{fig(20e3, 21e3, 1), fig(30e3, 31e3, 1), fig(25e3, 26e3, 1)}},
			{Transport: TwNACK, Rate: 1000, Runs: []*Figures{fig(26e3, 26e3, 1), nil, fig(40e3, 40e3, 1.5)}},
			{Transport: TwNACK, Rate: 1000, LossPercent: 5, Runs: []*Figures{fig(1, 1, 1)}}, // no ping-pong there
		},
	}
	rep.finish()
	pp, tw := rep.Cases[0], rep.Cases[1]
	if pp.VsPingPong != nil || rep.Cases[2].VsPingPong != nil {
		t.Error("delta computed for the ping-pong itself or without one")
	}
	d := tw.VsPingPong
	if d == nil || len(d.AddedP50Nanos) != 2 || d.AddedP50Nanos[0] != 6e3 || d.AddedP50Nanos[1] != 15e3 ||
		d.MedianNanos != 10.5e3 || d.MinNanos != 6e3 || d.MaxNanos != 15e3 {
		t.Fatalf("added p50 %+v, want runs 0 and 2: +6µs and +15µs", d)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, rep); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"1k: raw ping-pong p50 half-RTT 25.0µs (its one-way p50 stamped like the others: 26.0µs)",
		"added p50 vs raw ping-pong (per-run differences, median (min…max)): tw-nack +10.5µs (+6.00µs…+15.0µs)",
		"tw-nack/1k/clean\n    send RSS 8.0→10.0→12.5 MiB (max -; ×1.25 in the 2nd half: NOT flat), heap -→-→- MiB (max -; live - at the last of 0 GCs)",
		"12.5*/20.0",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
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
	// Optional transports run only when named.
	c.Only = ""
	if o, err = c.Options(fs, Builtin()); err != nil {
		t.Fatal(err)
	}
	for _, tr := range o.Transports {
		if tr.Optional {
			t.Errorf("default matrix includes optional %s", tr.Name)
		}
	}
	c.Only = TwSpin
	if o, err = c.Options(fs, Builtin()); err != nil || len(o.Transports) != 2 || o.Transports[1].Name != TwSpin {
		t.Errorf("--only tw-spin: %v, %v", o.Transports, err)
	}
	c.Only = "tw-fec"
	want := []string{"--runs", "2", "--duration", time.Second.String(), "--seed", "1", "--quick", "--only", "tw-fec"}
	if got := c.Args(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Args %v, want %v", got, want)
	}
}
