package soak

import (
	"errors"
	"strings"
	"testing"
)

// exact is a consistent set of counters: 1000 load messages, 990
// delivered, 10 skipped, then 3 fences of which the first was skipped.
func exact() Counts {
	return Counts{
		Load: 1000, Fences: 3, SenderSent: 1003,
		Consumer: VerifierCounts{
			Received: 992, Loads: 990, Fences: 2, Top: 1003, FenceTop: 1003, FenceBottom: 1002,
		},
		Skipped: 11, ReceiverDelivered: 992,
	}
}

func TestReconcileExact(t *testing.T) {
	r := Reconcile(exact())
	if !r.OK || r.Err() != nil || len(r.Problems) != 0 {
		t.Fatalf("consistent counters failed: %+v", r)
	}
	if r.Missing != 10 || r.FenceGaps != 1 || r.Accounted != 10 || r.Difference != 0 {
		t.Fatalf("figures %+v", r)
	}
	// Queue overflow counts as given up, like a skip.
	c := exact()
	c.Skipped, c.QueueOverflow = 6, 5
	if r := Reconcile(c); !r.OK {
		t.Fatalf("overflow not accounted: %v", r.Problems)
	}
}

func TestReconcileDetects(t *testing.T) {
	cases := []struct {
		name   string
		change func(c *Counts)
		want   string
		diff   int64
	}{
		{"a message neither delivered nor skipped", func(c *Counts) { c.Consumer.Loads--; c.Consumer.Received--; c.ReceiverDelivered-- },
			"neither delivered nor counted", 1},
		{"a skip counted twice", func(c *Counts) { c.Skipped++ }, "more given-up messages", -1},
		{"a message delivered twice", func(c *Counts) { c.Consumer.Duplicates++; c.Consumer.Received++; c.ReceiverDelivered++ },
			"delivered twice", 0},
		{"out of order", func(c *Counts) { c.Consumer.Misordered++ }, "out of order", 0},
		{"corrupt", func(c *Counts) { c.Consumer.Corrupt++; c.Consumer.Received++; c.ReceiverDelivered++ }, "corrupt", 0},
		{"consumer missed some", func(c *Counts) { c.ReceiverDelivered += 2 }, "receiver queued", 0},
		{"sender count off", func(c *Counts) { c.SenderSent++ }, "sender counted", 0},
		{"more distinct than sent", func(c *Counts) { c.Consumer.Loads = 1001 }, "only 1000 were sent", -10},
		{"tail unsettled", func(c *Counts) {
			c.Fences, c.SenderSent = 0, 1000
			c.Consumer = VerifierCounts{Received: 990, Loads: 990, Top: 995}
			c.Skipped, c.ReceiverDelivered = 5, 990
		}, "unsettled", 5},
		{"resync", func(c *Counts) { c.Resyncs = 1 }, "resync", 0},
		{"fence indices", func(c *Counts) { c.Consumer.FenceTop = 999 }, "fence indices", -1},
	}
	for _, tc := range cases {
		c := exact()
		tc.change(&c)
		r := Reconcile(c)
		if r.OK || !errors.Is(r.Err(), ErrNotReconciled) {
			t.Errorf("%s: passed: %+v", tc.name, r)
			continue
		}
		if !strings.Contains(strings.Join(r.Problems, "\n"), tc.want) {
			t.Errorf("%s: problems %q, want one with %q", tc.name, r.Problems, tc.want)
		}
		if r.Difference != tc.diff {
			t.Errorf("%s: difference %d, want %d", tc.name, r.Difference, tc.diff)
		}
	}
}

func TestSummaryCheck(t *testing.T) {
	good := Summary{Reconciliation: Reconcile(exact()), Memory: Verdict{Status: VerdictFlat}}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
	bad := exact()
	bad.Skipped = 0
	s := Summary{Reconciliation: Reconcile(bad), Memory: Verdict{Status: VerdictGrowing}}
	err := s.Check()
	if !errors.Is(err, ErrNotReconciled) || !errors.Is(err, ErrMemoryGrew) || errors.Is(err, ErrInconclusive) {
		t.Fatalf("Check() = %v", err)
	}
	s = Summary{Reconciliation: Reconcile(exact()), Memory: Verdict{Status: VerdictInconclusive}}
	if err := s.Check(); !errors.Is(err, ErrInconclusive) || errors.Is(err, ErrNotReconciled) {
		t.Fatalf("Check() = %v", err)
	}
}
