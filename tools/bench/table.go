package bench

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// LoadName is a rate's short name: "max" for 0, "1k", "10k", "2.5k", "500".
func LoadName(rate float64) string {
	if rate <= 0 {
		return "max"
	}
	for _, u := range []struct {
		div    float64
		suffix string
	}{{1e6, "M"}, {1e3, "k"}} {
		if rate >= u.div {
			return strconv.FormatFloat(rate/u.div, 'g', 4, 64) + u.suffix
		}
	}
	return strconv.FormatFloat(rate, 'g', 4, 64)
}

// LossName is a loss rate's short name: "clean" for 0, "loss5" for 5%.
func LossName(percent float64) string {
	if percent <= 0 {
		return "clean"
	}
	return "loss" + strconv.FormatFloat(percent, 'g', -1, 64)
}

// siCount formats a count per second compactly: 246k, 1.23M, 950.
func siCount(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// fmtNanos formats a duration in nanoseconds with three significant
// figures: 850ns, 12.3µs, 1.20ms, 2.31s.
func fmtNanos(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	d := time.Duration(v)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%.0fns", v)
	case d < time.Millisecond:
		return sig3(v/1e3) + "µs"
	case d < time.Second:
		return sig3(v/1e6) + "ms"
	}
	return sig3(v/1e9) + "s"
}

func sig3(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func fmtRatio(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

// WriteTable prints the report as the terminal table: one section per
// loss rate, one row per load and transport, medians with the min–max
// range of throughput and p99, and the ratios to raw batched UDP of the
// same run. Peer transports (rep.Peers) appear in the same sections, their
// ratios taken to the raw baseline of their own run.
func WriteTable(w io.Writer, rep *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d-byte messages over loopback, %s.\n", rep.Tool, rep.MessageSize, rep.Processes)
	fmt.Fprintf(&b, "%s, %d CPUs (%s), %s, load average %.2f at start, %.2f at end.\n",
		rep.Date, rep.Host.CPUs, orDash(rep.Host.CPUModel), rep.Host.GoVersion, rep.Host.LoadBefore[0], rep.Host.LoadAfter[0])
	fmt.Fprintf(&b, "Median of %d runs of %v per case, (min–max) over the runs. Latency is one-way, send call to delivery.\n",
		rep.Runs, time.Duration(rep.DurationNanos))
	fmt.Fprintf(&b, "×raw: ratio to %s at the same load and loss in the same run (median of the per-run ratios).\n", baselineName(rep))
	if rep.CommandCount > 0 {
		fmt.Fprintf(&b, "cmd-*: %d messages per run through the telewire commands, from starting send to recv's exit; ref-*: references, not the baseline.\n", rep.CommandCount)
	}
	fmt.Fprintf(&b, "RSS s/r: resident set of the sending/receiving process at the end of the case, MiB; * = not flat (end > %.2f× the size half-way).\n", FlatRSSRatio)
	io.WriteString(w, b.String())

	peers := peerCases(rep)
	losses, rates := axes(rep)
	for _, loss := range losses {
		title := "clean: direct loopback"
		if loss > 0 {
			title = fmt.Sprintf("%s%% random loss each way (%s, userspace netem relay in its own process)", strconv.FormatFloat(loss, 'g', -1, 64), LossSpec(loss))
		}
		fmt.Fprintf(w, "\n== %s\n", title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "load\ttransport\tmsgs/s (min–max)\tMbit/s\tcomplete\tCPU/msg\tp50\tp99 (min–max)\tp99.9\tmax\t×raw msgs/s\t×raw CPU\t×raw p99\tRSS s/r\t")
		for _, rate := range rates {
			for _, c := range append(casesAt(rep.Cases, rate, loss), casesAt(peers, rate, loss)...) {
				writeRow(tw, c)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, rate := range rates {
			writePingPong(w, casesAt(rep.Cases, rate, loss))
		}
		writeRelayOverload(w, append(rep.Cases, peers...), loss)
		writeFanout(w, rep.Cases, loss)
		writeMemory(w, rep.Cases, loss)
	}
	writeCrossCheck(w, rep)
	if rep.PeersError != "" {
		fmt.Fprintf(w, "\npeer comparison: %s\n", rep.PeersError)
	}
	var failed []string
	for _, c := range append(rep.Cases, peers...) {
		for run, e := range c.Errors {
			failed = append(failed, fmt.Sprintf("  %s run %d: %s", c.Key(), run+1, e))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\nfailed runs:\n%s\n", strings.Join(failed, "\n"))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func baselineName(rep *Report) string {
	for _, t := range rep.Transports {
		if t.Baseline {
			return t.Name
		}
	}
	return "the baseline"
}

// peerCases are the peer report's cases other than its own baseline.
func peerCases(rep *Report) []Case {
	if rep.Peers == nil {
		return nil
	}
	base := baselineName(rep.Peers)
	var out []Case
	for _, c := range rep.Peers.Cases {
		if c.Transport != base {
			out = append(out, c)
		}
	}
	return out
}

// axes returns the loss rates and loads of the report, in first-seen order.
func axes(rep *Report) (losses, rates []float64) {
	seen := map[[2]float64]bool{}
	for _, c := range rep.Cases {
		if !seen[[2]float64{0, c.LossPercent}] {
			seen[[2]float64{0, c.LossPercent}] = true
			losses = append(losses, c.LossPercent)
		}
		if !seen[[2]float64{1, c.Rate}] {
			seen[[2]float64{1, c.Rate}] = true
			rates = append(rates, c.Rate)
		}
	}
	return losses, rates
}

func casesAt(cs []Case, rate, loss float64) []Case {
	var out []Case
	for _, c := range cs {
		if c.Rate == rate && c.LossPercent == loss {
			out = append(out, c)
		}
	}
	return out
}

func writeRow(w io.Writer, c Case) {
	m := c.Median
	if m == nil {
		fmt.Fprintf(w, "%s\t%s\tfailed\t\t\t\t\t\t\t\t\t\t\t\t\n", LoadName(c.Rate), c.Transport)
		return
	}
	rng := func(med, lo, hi float64, f func(float64) string) string {
		if lo == hi {
			return f(med)
		}
		return fmt.Sprintf("%s (%s–%s)", f(med), f(lo), f(hi))
	}
	vs := [3]string{"", "", ""}
	if c.VsRaw != nil {
		r := c.VsRaw.Median
		vs = [3]string{fmtRatio(r.MsgsPerSec), fmtRatio(r.CPUNanos), fmtRatio(r.P99Nanos)}
	}
	lat := [4]string{fmtNanos(m.P50Nanos), rng(m.P99Nanos, c.Min.P99Nanos, c.Max.P99Nanos, fmtNanos), fmtNanos(m.P999Nanos), fmtNanos(m.MaxNanos)}
	if c.Max.MaxNanos == 0 { // a case without latency figures (ref-loop, ref-iperf3, cmd-*)
		lat = [4]string{"-", "-", "-", "-"}
		vs[2] = ""
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
		LoadName(c.Rate), c.Transport,
		rng(m.MsgsPerSec, c.Min.MsgsPerSec, c.Max.MsgsPerSec, siCount), m.Mbps,
		strconv.FormatFloat(100*m.Completeness, 'f', 2, 64)+"%", fmtNanos(m.CPUNanos),
		lat[0], lat[1], lat[2], lat[3], vs[0], vs[1], vs[2], rssCell(c))
}

// mib formats bytes as MiB with one decimal, "-" for nothing sampled.
func mib(v float64) string {
	if v <= 0 || math.IsNaN(v) {
		return "-"
	}
	return strconv.FormatFloat(v/(1<<20), 'f', 1, 64)
}

// notFlat marks a growth ratio beyond FlatRSSRatio.
func notFlat(growth float64) string {
	if growth > FlatRSSRatio {
		return "*"
	}
	return ""
}

// rssCell is the RSS column: each side's median end RSS, marked when its
// median growth is not flat.
func rssCell(c Case) string {
	m := c.Median
	return mib(m.SendRSSEndBytes) + notFlat(m.SendRSSGrowth) + "/" + mib(m.RecvRSSEndBytes) + notFlat(m.RecvRSSGrowth)
}

// writePingPong prints, for the cases of one load and loss, what each
// adds to the raw ping-pong's half round trip at the p50, and the
// ping-pong's own half round trip beside its stamped one-way, which
// shows the two are measured alike.
func writePingPong(w io.Writer, cs []Case) {
	var pp *Case
	var added []string
	for i := range cs {
		c := &cs[i]
		if c.Transport == RawPingPong {
			pp = c
		} else if c.VsPingPong != nil {
			d := c.VsPingPong
			s := fmt.Sprintf("%s %s", c.Transport, signedNanos(d.MedianNanos))
			if len(d.AddedP50Nanos) > 1 {
				s += fmt.Sprintf(" (%s…%s)", signedNanos(d.MinNanos), signedNanos(d.MaxNanos))
			}
			added = append(added, s)
		}
	}
	if pp == nil || pp.Median == nil {
		return
	}
	fmt.Fprintf(w, "%s: raw ping-pong p50 half-RTT %s (its one-way p50 stamped like the others: %s)\n",
		LoadName(pp.Rate), fmtNanos(pp.Median.P50Nanos), fmtNanos(pp.Median.ForwardP50Nanos))
	if len(added) > 0 {
		fmt.Fprintf(w, "%s: added p50 vs raw ping-pong (per-run differences, median (min…max)): %s\n",
			LoadName(pp.Rate), strings.Join(added, ", "))
	}
}

// signedNanos formats a difference in nanoseconds with its sign: +3.2µs.
func signedNanos(v float64) string {
	if v < 0 {
		return "-" + fmtNanos(-v)
	}
	return "+" + fmtNanos(v)
}

// writeMemory prints the memory of each case of one loss section: each
// side's RSS and Go heap, after warm-up → end (max), and whether the RSS
// stayed flat. Medians over the runs.
// writeRelayOverload names the cases at loss whose relay fell behind, so
// that their figures are not read as the transport's alone.
func writeRelayOverload(w io.Writer, cases []Case, loss float64) {
	var lines []string
	for _, c := range cases {
		if c.LossPercent == loss && c.Median != nil && c.Median.RelayOverload > 0 {
			lines = append(lines, fmt.Sprintf("  %s: %.0f (max %.0f)", c.Key(), c.Median.RelayOverload, c.Max.RelayOverload))
		}
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "relay overloaded (datagrams it dropped with its queue or socket buffer full, both ways, median of the runs):\n%s\n", strings.Join(lines, "\n"))
	}
}

func writeMemory(w io.Writer, cases []Case, loss float64) {
	var lines []string
	for _, c := range cases {
		if c.LossPercent != loss || c.Median == nil || (c.Median.SendRSSEndBytes == 0 && c.Median.RecvRSSEndBytes == 0) {
			continue
		}
		m := c.Median
		side := func(rs, rmid, re, rm, hs, hmid, he, hm, g, live, gcs float64) string {
			if re == 0 {
				return "-"
			}
			flat := "flat"
			if g > FlatRSSRatio {
				flat = "NOT flat"
			}
			return fmt.Sprintf("RSS %s→%s→%s MiB (max %s; ×%.2f in the 2nd half: %s), heap %s→%s→%s MiB (max %s; live %s at the last of %.0f GCs)",
				mib(rs), mib(rmid), mib(re), mib(rm), g, flat, mib(hs), mib(hmid), mib(he), mib(hm), mib(live), gcs)
		}
		lines = append(lines, fmt.Sprintf("  %s\n    send %s\n    recv %s", c.Key(),
			side(m.SendRSSStartBytes, m.SendRSSMidBytes, m.SendRSSEndBytes, m.SendRSSMaxBytes,
				m.SendHeapStartBytes, m.SendHeapMidBytes, m.SendHeapEndBytes, m.SendHeapMaxBytes, m.SendRSSGrowth, m.SendLiveHeapBytes, m.SendGCCycles),
			side(m.RecvRSSStartBytes, m.RecvRSSMidBytes, m.RecvRSSEndBytes, m.RecvRSSMaxBytes,
				m.RecvHeapStartBytes, m.RecvHeapMidBytes, m.RecvHeapEndBytes, m.RecvHeapMaxBytes, m.RecvRSSGrowth, m.RecvLiveHeapBytes, m.RecvGCCycles)))
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "memory, after warm-up→half-way→end (medians; flat = end ≤ %.2f× half-way):\n%s\n", FlatRSSRatio, strings.Join(lines, "\n"))
	}
}

// spreadText formats a Spread as "0.97× (0.91–1.02, 5 runs)".
func spreadText(sp *Spread) string {
	return fmt.Sprintf("%.2f× (%.2f–%.2f, %d runs)", sp.Median, sp.Min, sp.Max, len(sp.Runs))
}

// writeCrossCheck prints how the baseline compares with the minimal loop
// and the external tool measured in the same runs.
func writeCrossCheck(w io.Writer, rep *Report) {
	cc := rep.CrossCheck
	if cc == nil {
		return
	}
	base := baselineName(rep)
	fmt.Fprintf(w, "\ncross-check at full speed, clean (per-run ratios, median (min–max)):\n")
	if cc.VsLoop != nil {
		fmt.Fprintf(w, "  %s / %s (the minimal loop, same processes): %s\n", base, RefLoop, spreadText(cc.VsLoop))
	}
	if cc.VsIperf3Sent != nil {
		fmt.Fprintf(w, "  %s / iperf3's sending rate (-u -b 0, one datagram per sendto): %s\n", base, spreadText(cc.VsIperf3Sent))
		fmt.Fprintf(w, "  %s / iperf3's receiving rate (one datagram per recv; it loses what it cannot read): %s\n", base, spreadText(cc.VsIperf3Recv))
	}
	if cc.LoopVsIperf3 != nil {
		fmt.Fprintf(w, "  %s / iperf3's sending rate: %s\n", RefLoop, spreadText(cc.LoopVsIperf3))
	}
	if cc.SingleVsIperf3 != nil {
		fmt.Fprintf(w, "  %s / iperf3's sending rate: %s\n", RawSingle, spreadText(cc.SingleVsIperf3))
	}
}

// writeFanout prints, for the fan-out cases of one loss section, the
// median receiver's delivery and the sender's CPU per message as ratios
// to the same family's one-receiver case of the same runs.
func writeFanout(w io.Writer, cases []Case, loss float64) {
	var lines []string
	for _, c := range cases {
		if c.LossPercent != loss || c.VsOne == nil || c.Median == nil {
			continue
		}
		r := c.VsOne
		lines = append(lines, fmt.Sprintf("  %s, %d receivers: per receiver %s msgs/s = %.2f× (%.2f–%.2f) one receiver's, %.2f%% complete (median receiver); sender CPU %s/msg = %.2f× (%.2f–%.2f)",
			c.Key(), c.Receivers, siCount(c.Median.MsgsPerSec), r.Median.MsgsPerSec, r.Min.MsgsPerSec, r.Max.MsgsPerSec,
			100*c.Median.Completeness, fmtNanos(c.Median.SendCPUNanos), r.Median.SendCPUNanos, r.Min.SendCPUNanos, r.Max.SendCPUNanos))
	}
	if len(lines) > 0 {
		fmt.Fprintf(w, "fan-out, as ratios to one receiver in the same runs:\n%s\n", strings.Join(lines, "\n"))
	}
}
