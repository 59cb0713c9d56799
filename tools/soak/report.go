package soak

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// reporter writes samples and the summary as a table or as JSON lines.
type reporter struct {
	w    io.Writer
	json bool
	enc  *json.Encoder
}

func newReporter(w io.Writer, asJSON bool) *reporter {
	return &reporter{w: w, json: asJSON, enc: json.NewEncoder(w)}
}

const rowFormat = "%7s %10s %10s %7s %7s %5s %8s %8s %13s %8s %9s %9s %9s %4s %5s %6s %5s %6s %8s\n"

func (p *reporter) start(o Options) error {
	if p.json {
		return nil
	}
	sealed := ""
	if o.Sender.KeyFile != "" || o.Sender.Key != nil {
		sealed = "; every packet sealed (AES-256-GCM)"
	}
	_, err := fmt.Fprintf(p.w, "telewire soak: %.0f messages/s of %d B for %s through an in-process netem relay on loopback\n"+
		"link: fwd %q, rev %q; FEC and NACK at their defaults%s; a sample every %s, warm-up %s\n\n"+rowFormat,
		o.Rate, o.Size, o.Duration, o.Fwd, o.Rev, sealed, o.Interval, o.Warmup,
		"time", "sent", "delivered", "skipped", "unrec", "dup", "rtx", "fec", "drop fwd/rev", "unread",
		"heap", "objects", "rss", "gor", "gc", "qfull", "ovfl", "held", "rate/s")
	return err
}

func (p *reporter) sample(s Sample) error {
	if p.json {
		return p.enc.Encode(struct {
			Type string `json:"type"`
			Sample
		}{"sample", s})
	}
	elapsed := time.Duration(s.ElapsedNanos).Round(100 * time.Millisecond).String()
	if !s.Load {
		elapsed = "drained"
	}
	_, err := fmt.Fprintf(p.w, rowFormat, elapsed,
		u(s.Sent), u(s.Delivered), u(s.Skipped), u(s.Unrecovered), u(s.Duplicates), u(s.Retransmits), u(s.RecoveredFEC),
		u(s.RelayFwdDropped)+"/"+u(s.RelayRevDropped), u(s.RelayUnread),
		mib(s.HeapInuseBytes), u(s.HeapObjects), rss(s.RSSBytes), u(s.Goroutines), u(s.GCCycles),
		u(s.QueueFull), u(s.QueueOverflow), u(s.Held), fmt.Sprintf("%.0f", s.RatePerSec))
	return err
}

func (p *reporter) summary(s *Summary) error {
	if p.json {
		return p.enc.Encode(struct {
			Type string `json:"type"`
			*Summary
		}{"summary", s})
	}
	_, err := io.WriteString(p.w, s.Text())
	return err
}

func u(v uint64) string { return fmt.Sprint(v) }

// rss formats a resident set size, "n/a" when unknown.
func rss(b int64) string {
	if b < 0 {
		return "n/a"
	}
	return mib(uint64(b))
}

// Text is the human-readable summary the table ends with.
func (s *Summary) Text() string {
	var b strings.Builder
	f := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	r := s.Reconciliation
	how := "ran its full duration"
	if s.Interrupted {
		how = "interrupted"
	}
	f("\nsummary: load %s (%s), %.0f messages/s achieved of %.0f offered; tail drained in %s with %d fences\n",
		time.Duration(s.LoadNanos).Round(time.Millisecond), how, s.AchievedRate, s.Rate,
		time.Duration(s.DrainNanos).Round(time.Millisecond), r.Fences)

	verdict := "OK"
	if !r.OK {
		verdict = "FAILED"
	}
	f("reconcile: %s\n", verdict)
	f("  load sent %d = delivered exactly once %d + given up %d (receiver StreamStats.Skipped %d + Stats.QueueOverflow %d - fence gaps %d); difference %d\n",
		r.Load, r.Delivered, r.Accounted, r.Skipped, r.QueueOverflow, r.FenceGaps, r.Difference)
	f("  consumer read %d, receiver Stats.Delivered %d; corrupt %d, duplicates %d, misordered %d; tail unsettled %d\n",
		r.Consumer.Received, r.ReceiverDelivered, r.Consumer.Corrupt, r.Consumer.Duplicates, r.Consumer.Misordered, r.Unsettled)
	f("  sender StreamStats.Sent %d = %d load + %d fences\n", r.SenderSent, r.Load, r.Fences)
	for _, p := range r.Problems {
		f("  problem: %s\n", p)
	}
	if n := len(s.Samples); n > 0 {
		last := s.Samples[n-1]
		f("  receiver: lost before repair %d, recovered by FEC %d, by retransmission %d, unrecovered %d, late %d, duplicates dropped %d\n",
			last.Lost, last.RecoveredFEC, last.RecoveredRTX, r.Unrecovered, r.Late, last.RecvDuplicates)
	}

	m := s.Memory
	f("memory: %s: %s\n", m.Status, m.Reason)
	if load := loadSamples(s.Samples); len(load) > 0 {
		a, mid, z := load[0], load[len(load)/2], load[len(load)-1]
		at := func(x Sample) string { return time.Duration(x.ElapsedNanos).Round(time.Second).String() }
		f("  heap in use  %s at %s, %s at %s, %s at %s\n", mib(a.HeapInuseBytes), at(a), mib(mid.HeapInuseBytes), at(mid), mib(z.HeapInuseBytes), at(z))
		f("  heap objects %d, %d, %d\n", a.HeapObjects, mid.HeapObjects, z.HeapObjects)
		f("  RSS          %s, %s, %s\n", rss(a.RSSBytes), rss(mid.RSSBytes), rss(z.RSSBytes))
		lo, hi := a.Goroutines, a.Goroutines
		for _, x := range load {
			lo, hi = min(lo, x.Goroutines), max(hi, x.Goroutines)
		}
		f("  goroutines   %d before the run, %d..%d under load, %d after shutdown; %d GC cycles between the first and last sample\n",
			s.GoroutinesBefore, lo, hi, s.GoroutinesAfter, z.GCCycles-a.GCCycles)
	}
	f("link: netem dropped fwd %d of %d, rev %d of %d; sender datagrams the relay never read (kernel drops at its socket) %d\n",
		s.Relay.Fwd.Dropped, s.Relay.Fwd.Received, s.Relay.Rev.Dropped, s.Relay.Rev.Received, unread(s))
	x := s.Sender
	f("sender: %d datagrams, %d parity, %d retransmits, %d unavailable, queue full %d, parity dropped %d, feedback dropped %d, write errors %d\n",
		x.DatagramsSent, x.Parity, x.Retransmits, x.Unavailable, x.QueueFull, x.ParityDropped, x.FeedbackDropped, x.WriteErrors)
	y := s.Receiver
	f("receiver: %d datagrams, %d NACKs, queue overflow %d, kernel drops %d, feedback dropped %d, malformed %d\n",
		y.Datagrams, y.NACKs, y.QueueOverflow, y.KernelDrops, y.FeedbackDropped, y.Malformed)
	return b.String()
}

// loadSamples returns the samples taken under load.
func loadSamples(all []Sample) []Sample {
	for i, s := range all {
		if !s.Load {
			return all[:i]
		}
	}
	return all
}

// unread is the final RelayUnread.
func unread(s *Summary) uint64 {
	if n := len(s.Samples); n > 0 {
		return s.Samples[n-1].RelayUnread
	}
	return 0
}
