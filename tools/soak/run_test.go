package soak

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/receiver"
)

// jsonLine is one line of the JSON output: a sample or the summary.
type jsonLine struct {
	Type string `json:"type"`
	Sample
	Reconciliation *Reconciliation `json:"reconciliation"`
	Memory         *Verdict        `json:"memory"`
}

func parseLines(t *testing.T, out []byte) (samples []Sample, last jsonLine) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l jsonLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%v in line %s", err, sc.Bytes())
		}
		switch l.Type {
		case "sample":
			samples = append(samples, l.Sample)
		case "summary":
			last = l
		default:
			t.Fatalf("line of type %q", l.Type)
		}
	}
	return samples, last
}

// A short soak through a lossy link reconciles exactly and reports its
// samples.
func TestShortSoakReconciles(t *testing.T) {
	testutil.NoLeaks(t)
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{
		Duration: 2 * time.Second, Rate: 2000, Size: 100, Interval: 250 * time.Millisecond,
		Fwd: "loss random 5%", Rev: "loss random 5%", JSON: true,
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	r := sum.Reconciliation
	if !r.OK || r.Difference != 0 {
		t.Fatalf("did not reconcile: %+v", r)
	}
	if r.Load == 0 || r.Delivered == 0 || r.Load < 3000 {
		t.Fatalf("too little sent or delivered: %+v", r)
	}
	if sum.Relay.Fwd.Dropped == 0 || sum.Relay.Rev.Dropped == 0 {
		t.Fatalf("the link lost nothing: %+v", sum.Relay)
	}
	if sum.Sender.Retransmits == 0 {
		t.Fatalf("nothing retransmitted through 5%% loss: %+v", sum.Sender)
	}

	samples, last := parseLines(t, out.Bytes())
	if len(samples) < 8 || len(samples) != len(sum.Samples) {
		t.Fatalf("%d samples printed, %d in the summary", len(samples), len(sum.Samples))
	}
	for i, s := range samples {
		if i > 0 && (s.ElapsedNanos < samples[i-1].ElapsedNanos || s.Sent < samples[i-1].Sent || s.GCCycles < samples[i-1].GCCycles) {
			t.Fatalf("sample %d goes backwards: %+v after %+v", i, s, samples[i-1])
		}
		if s.HeapInuseBytes == 0 || s.HeapObjects == 0 || s.Goroutines == 0 || s.RSSBytes == 0 {
			t.Fatalf("sample %d lacks memory figures: %+v", i, s.Mem)
		}
	}
	final := samples[len(samples)-1]
	if final.Load || final.Sent != r.Load || final.Delivered != r.Delivered || final.Skipped != r.Skipped {
		t.Fatalf("final sample %+v does not match the reconciliation %+v", final, r)
	}
	if last.Type != "summary" || last.Reconciliation == nil || !last.Reconciliation.OK || last.Memory == nil || last.Memory.Judged == 0 {
		t.Fatalf("summary line %+v", last)
	}
	if sum.GoroutinesAfter > sum.GoroutinesBefore {
		t.Errorf("%d goroutines after the run, %d before", sum.GoroutinesAfter, sum.GoroutinesBefore)
	}
}

// cancelOnSample cancels a context when the n-th sample row is written.
type cancelOnSample struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (w *cancelOnSample) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte(`"type":"sample"`)) {
		if w.n--; w.n == 0 {
			w.cancel()
		}
	}
	return w.buf.Write(p)
}

// Cancelling stops the load early; the tail is still drained, reconciled
// and summarised, and nothing is left running.
func TestCancelledSoakSummarises(t *testing.T) {
	testutil.NoLeaks(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOnSample{n: 2, cancel: cancel}
	sum, err := Run(ctx, Options{
		Duration: time.Hour, Rate: 2000, Interval: 100 * time.Millisecond, JSON: true,
	}, w)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Interrupted || time.Duration(sum.LoadNanos) > time.Minute {
		t.Fatalf("not interrupted: %+v", sum)
	}
	if !sum.Reconciliation.OK {
		t.Fatalf("did not reconcile: %+v", sum.Reconciliation)
	}
	samples, last := parseLines(t, w.buf.Bytes())
	if len(samples) != 3 || last.Reconciliation == nil {
		t.Fatalf("%d samples (want 2 under load and the drained one), summary %+v", len(samples), last)
	}
	if sum.Memory.Status != VerdictInconclusive || !errors.Is(sum.Check(), ErrInconclusive) {
		t.Fatalf("two samples judged %q, check %v", sum.Memory.Status, sum.Check())
	}
}

// The table output has a header, rows and the summary.
func TestTableOutput(t *testing.T) {
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{
		Duration: 500 * time.Millisecond, Rate: 1000, Interval: 100 * time.Millisecond, Warmup: -1,
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"telewire soak: 1000 messages/s of 200 B", "delivered", "drained", "reconcile: OK",
		"StreamStats.Skipped", "memory: ", "heap in use", "RSS", "goroutines"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if rows := strings.Count(text, "\n") - strings.Count(sum.Text(), "\n"); rows < 6 {
		t.Errorf("%d lines before the summary:\n%s", rows, text)
	}
}

func TestOptionsErrors(t *testing.T) {
	cases := []Options{
		{Rate: -1},
		{Size: HeaderLen - 1},
		{Size: 1 << 20},
		{Duration: -time.Second},
		{Fwd: "loss banana"},
		{Rev: "delay"},
		{Receiver: receiver.Config{Mode: receiver.ModeLatest}},
	}
	for _, o := range cases {
		if _, err := Run(context.Background(), o, &bytes.Buffer{}); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: err %v, want ErrOptions", o, err)
		}
	}
}
