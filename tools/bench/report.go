package bench

import (
	"math"
	"slices"
)

// Report is the outcome of one bench: every case of the matrix with its
// figures from each run, their medians and ranges, and the ratios of each
// figure to the raw batched baseline of the same run. It is what --json
// prints.
type Report struct {
	Tool          string      `json:"tool"`
	Date          string      `json:"date"` // RFC 3339, start of the run
	Host          HostInfo    `json:"host"`
	MessageSize   int         `json:"message_size"`
	Runs          int         `json:"runs"`
	DurationNanos int64       `json:"duration_ns"` // sending time per case and run
	Processes     string      `json:"processes"`   // how the ends are placed
	Transports    []Transport `json:"transports"`
	Cases         []Case      `json:"cases"`
	// Peers holds the peer comparison (tools/bench/peers), when it ran.
	Peers *Report `json:"peers,omitempty"`
	// PeersError says why the peer comparison is missing, when asked for.
	PeersError string `json:"peers_error,omitempty"`
	// CommandCount is the messages each cmd-* case sent per run.
	CommandCount int `json:"command_count,omitempty"`
	// CrossCheck compares the baseline with the minimal loop and the
	// external tool of the same runs, when they ran.
	CrossCheck *CrossCheck `json:"cross_check,omitempty"`
}

// CrossCheck holds the baseline's full-speed clean throughput divided by
// the references' of the same run: the minimal loop (ref-loop) and
// iperf3's sending and receiving rates (ref-iperf3). Nil fields did not
// run.
type CrossCheck struct {
	VsLoop         *Spread `json:"vs_loop,omitempty"`
	VsIperf3Sent   *Spread `json:"vs_iperf3_sent,omitempty"`
	VsIperf3Recv   *Spread `json:"vs_iperf3_recv,omitempty"`
	LoopVsIperf3   *Spread `json:"loop_vs_iperf3_sent,omitempty"`
	SingleVsIperf3 *Spread `json:"single_vs_iperf3_sent,omitempty"`
}

// Spread is a per-run figure with its median and range.
type Spread struct {
	Runs   []float64 `json:"runs"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

// spreadOf takes f(a, b) over the runs where both a and b succeeded; nil
// when there are none.
func spreadOf(a, b []*Figures, f func(a, b *Figures) float64) *Spread {
	sp := &Spread{}
	for i := range a {
		if i < len(b) && a[i] != nil && b[i] != nil {
			if v := f(a[i], b[i]); v > 0 && !math.IsInf(v, 0) {
				sp.Runs = append(sp.Runs, v)
			}
		}
	}
	if len(sp.Runs) == 0 {
		return nil
	}
	sp.Median, sp.Min, sp.Max = Median(sp.Runs), slices.Min(sp.Runs), slices.Max(sp.Runs)
	return sp
}

// HostInfo describes the machine, including how busy it was.
type HostInfo struct {
	OS         string     `json:"os"`
	Arch       string     `json:"arch"`
	CPUs       int        `json:"cpus"`
	CPUModel   string     `json:"cpu_model,omitempty"`
	Kernel     string     `json:"kernel,omitempty"`
	GoVersion  string     `json:"go_version"`
	LoadBefore [3]float64 `json:"load_before"` // 1, 5, 15-minute load averages at the start
	LoadAfter  [3]float64 `json:"load_after"`
}

// Case is one cell of the matrix: a transport at an offered load through
// a link with a loss rate.
type Case struct {
	Transport   string  `json:"transport"`
	Rate        float64 `json:"rate"`         // offered messages/s; 0 = as fast as possible
	LossPercent float64 `json:"loss_percent"` // random loss each way in the relay; 0 = direct
	// Runs holds each run's figures (nil for a run that failed).
	Runs []*Figures `json:"runs"`
	// Errors holds each failed run's error, by run index.
	Errors map[int]string `json:"errors,omitempty"`
	// Median, Min and Max are taken per figure over the runs that
	// succeeded (a median of each column, not one run's row).
	Median *Figures `json:"median,omitempty"`
	Min    *Figures `json:"min,omitempty"`
	Max    *Figures `json:"max,omitempty"`
	// VsRaw divides this case's figures by the raw batched baseline's at
	// the same load and loss, run by run, then takes median and range.
	// Nil for the baseline itself.
	VsRaw *RatioStats `json:"vs_raw,omitempty"`
	// VsPingPong is the latency this case adds to the raw UDP ping-pong
	// (raw-pingpong, one-way = half the round trip) at the same load and
	// loss: this case's p50 minus the ping-pong's, run by run. Nil when
	// the ping-pong did not run beside it, and for the ping-pong itself.
	VsPingPong *DeltaStats `json:"vs_pingpong,omitempty"`
	// VsOne divides a fan-out case's figures (the median receiver's
	// delivery, the sender's CPU per message) by those of its family's
	// one-receiver case at the same load and loss, run by run
	// (Transport.Family); nil for other cases and the one-receiver case.
	VsOne *RatioStats `json:"vs_one,omitempty"`
	// Receivers is the case's fan-out (Transport.Receivers), 0 for one.
	Receivers int `json:"receivers,omitempty"`
}

// DeltaStats are per-run differences of a figure to a reference case of
// the same run, in nanoseconds, with their median and range.
type DeltaStats struct {
	// AddedP50Nanos holds each run's p50 minus the reference's p50, for
	// the runs where both succeeded.
	AddedP50Nanos []float64 `json:"added_p50_ns"`
	MedianNanos   float64   `json:"median_ns"`
	MinNanos      float64   `json:"min_ns"`
	MaxNanos      float64   `json:"max_ns"`
}

// Key names a case: "tw-nack/10k/loss5".
func (c *Case) Key() string {
	return c.Transport + "/" + LoadName(c.Rate) + "/" + LossName(c.LossPercent)
}

// Figures are one run's measurements of one case. Rates are per second of
// the span from the first message stamped to the last delivered.
type Figures struct {
	Sent          float64 `json:"sent"`
	Delivered     float64 `json:"delivered"`
	Completeness  float64 `json:"completeness"`    // delivered/sent, 0..1
	MsgsPerSec    float64 `json:"msgs_per_sec"`    // delivered messages per second (goodput)
	Mbps          float64 `json:"mbps"`            // delivered payload, Mbit/s
	OfferedPerSec float64 `json:"offered_per_sec"` // messages handed to the transport per second of sending
	WirePerMsg    float64 `json:"wire_bytes_per_msg"`
	// CPU time per message: the sending process per message sent, the
	// receiving process per message delivered, and both per delivered.
	SendCPUNanos float64 `json:"send_cpu_ns_per_msg"`
	RecvCPUNanos float64 `json:"recv_cpu_ns_per_msg"`
	CPUNanos     float64 `json:"cpu_ns_per_msg"`
	// One-way delivery latency.
	P50Nanos  float64 `json:"p50_ns"`
	P99Nanos  float64 `json:"p99_ns"`
	P999Nanos float64 `json:"p999_ns"`
	MaxNanos  float64 `json:"max_ns"`
	// What the relay dropped (its loss model, or its own overload) going
	// forward; 0 without a relay.
	RelayDropped float64 `json:"relay_dropped"`
	// RelayOverload is what the relay dropped, both ways, because it fell
	// behind rather than by its loss model: its queue full
	// (netem.DirStats.LimitDropped) or its socket buffer overrun
	// (KernelDrops). Above 0 the case measured the relay as well as the
	// transport.
	RelayOverload float64 `json:"relay_overload"`
	// ForwardP50Nanos is the one-way p50 the receiving worker measured,
	// from the sender's stamp to its own clock reading after Next. It is
	// P50Nanos for every transport but raw-pingpong, whose P50Nanos is half
	// the round trip; there the two side by side show the half round trip
	// and the stamped one-way agree.
	ForwardP50Nanos float64 `json:"forward_p50_ns"`

	// Memory of the sending and receiving processes (see MemSummary), in
	// bytes: the first sample after the warm-up, the one half-way, the
	// last, the largest; and the RSS growth over the second half, end over
	// mid (flat: at most FlatRSSRatio); the live heap at the end and the
	// collections during the case.
	SendRSSStartBytes  float64 `json:"send_rss_start_bytes"`
	SendRSSMidBytes    float64 `json:"send_rss_mid_bytes"`
	SendRSSEndBytes    float64 `json:"send_rss_end_bytes"`
	SendRSSMaxBytes    float64 `json:"send_rss_max_bytes"`
	SendHeapStartBytes float64 `json:"send_heap_start_bytes"`
	SendHeapMidBytes   float64 `json:"send_heap_mid_bytes"`
	SendHeapEndBytes   float64 `json:"send_heap_end_bytes"`
	SendHeapMaxBytes   float64 `json:"send_heap_max_bytes"`
	SendRSSGrowth      float64 `json:"send_rss_growth"`
	SendLiveHeapBytes  float64 `json:"send_live_heap_end_bytes"`
	SendGCCycles       float64 `json:"send_gc_cycles"`
	RecvRSSStartBytes  float64 `json:"recv_rss_start_bytes"`
	RecvRSSMidBytes    float64 `json:"recv_rss_mid_bytes"`
	RecvRSSEndBytes    float64 `json:"recv_rss_end_bytes"`
	RecvRSSMaxBytes    float64 `json:"recv_rss_max_bytes"`
	RecvHeapStartBytes float64 `json:"recv_heap_start_bytes"`
	RecvHeapMidBytes   float64 `json:"recv_heap_mid_bytes"`
	RecvHeapEndBytes   float64 `json:"recv_heap_end_bytes"`
	RecvHeapMaxBytes   float64 `json:"recv_heap_max_bytes"`
	RecvRSSGrowth      float64 `json:"recv_rss_growth"`
	RecvLiveHeapBytes  float64 `json:"recv_live_heap_end_bytes"`
	RecvGCCycles       float64 `json:"recv_gc_cycles"`

	// Raw results behind the figures (not aggregated).
	SendResult  *SendResult  `json:"send_result,omitempty"`
	RecvResult  *RecvResult  `json:"recv_result,omitempty"`
	RelayResult *RelayResult `json:"relay_result,omitempty"`
}

// columns lists the aggregated figures, in a fixed order.
func (f *Figures) columns() []*float64 {
	return []*float64{&f.Sent, &f.Delivered, &f.Completeness, &f.MsgsPerSec, &f.Mbps, &f.OfferedPerSec,
		&f.WirePerMsg, &f.SendCPUNanos, &f.RecvCPUNanos, &f.CPUNanos,
		&f.P50Nanos, &f.P99Nanos, &f.P999Nanos, &f.MaxNanos, &f.RelayDropped, &f.RelayOverload, &f.ForwardP50Nanos,
		&f.SendRSSStartBytes, &f.SendRSSMidBytes, &f.SendRSSEndBytes, &f.SendRSSMaxBytes,
		&f.SendHeapStartBytes, &f.SendHeapMidBytes, &f.SendHeapEndBytes, &f.SendHeapMaxBytes, &f.SendRSSGrowth,
		&f.SendLiveHeapBytes, &f.SendGCCycles,
		&f.RecvRSSStartBytes, &f.RecvRSSMidBytes, &f.RecvRSSEndBytes, &f.RecvRSSMaxBytes,
		&f.RecvHeapStartBytes, &f.RecvHeapMidBytes, &f.RecvHeapEndBytes, &f.RecvHeapMaxBytes, &f.RecvRSSGrowth,
		&f.RecvLiveHeapBytes, &f.RecvGCCycles}
}

// memColumns sets the memory figures of one side from its summary, in
// the order start, mid, end, max of RSS then of heap, the growth, the
// live heap at the end and the collections; NaN (left out of the
// medians) where nothing was sampled.
func memColumns(m MemSummary, cols ...*float64) {
	vals := []float64{float64(m.StartRSSBytes), float64(m.MidRSSBytes), float64(m.EndRSSBytes), float64(m.MaxRSSBytes),
		float64(m.StartHeapBytes), float64(m.MidHeapBytes), float64(m.EndHeapBytes), float64(m.MaxHeapBytes), m.RSSGrowth(),
		float64(m.EndLiveHeapBytes), float64(m.GCCycles)}
	for i, c := range cols {
		*c = vals[i]
		if m.Samples == 0 {
			*c = math.NaN()
		}
	}
}

// figuresFrom computes a run's figures from what the workers measured.
func figuresFrom(s *SendResult, r *RecvResult, relay *RelayResult, size int) *Figures {
	f := &Figures{Sent: float64(s.Sent), Delivered: float64(r.Delivered), SendResult: s, RecvResult: r, RelayResult: relay}
	if s.Sent > 0 {
		f.Completeness = float64(r.Delivered) / float64(s.Sent)
		f.SendCPUNanos = float64(s.CPUNanos) / float64(s.Sent)
		f.WirePerMsg = float64(s.WireBytes) / float64(s.Sent)
	}
	if d := s.EndNanos - s.StartNanos; d > 0 {
		f.OfferedPerSec = float64(s.Sent) / (float64(d) / 1e9)
	}
	if r.Delivered > 0 {
		if span := r.LastNanos - s.StartNanos; span > 0 {
			f.MsgsPerSec = float64(r.Delivered) / (float64(span) / 1e9)
			f.Mbps = f.MsgsPerSec * float64(size) * 8 / 1e6
		}
		f.RecvCPUNanos = float64(r.CPUNanos) / float64(r.Delivered)
		f.CPUNanos = float64(s.CPUNanos+r.CPUNanos) / float64(r.Delivered)
		lat := r.Latency
		if s.HalfRTT != nil {
			lat = *s.HalfRTT
		}
		f.P50Nanos = float64(lat.P50Nanos)
		f.P99Nanos = float64(lat.P99Nanos)
		f.P999Nanos = float64(lat.P999Nanos)
		f.MaxNanos = float64(lat.MaxNanos)
		f.ForwardP50Nanos = float64(r.Latency.P50Nanos)
	}
	memColumns(s.Mem, &f.SendRSSStartBytes, &f.SendRSSMidBytes, &f.SendRSSEndBytes, &f.SendRSSMaxBytes,
		&f.SendHeapStartBytes, &f.SendHeapMidBytes, &f.SendHeapEndBytes, &f.SendHeapMaxBytes, &f.SendRSSGrowth,
		&f.SendLiveHeapBytes, &f.SendGCCycles)
	memColumns(r.Mem, &f.RecvRSSStartBytes, &f.RecvRSSMidBytes, &f.RecvRSSEndBytes, &f.RecvRSSMaxBytes,
		&f.RecvHeapStartBytes, &f.RecvHeapMidBytes, &f.RecvHeapEndBytes, &f.RecvHeapMaxBytes, &f.RecvRSSGrowth,
		&f.RecvLiveHeapBytes, &f.RecvGCCycles)
	if relay != nil {
		f.RelayDropped = float64(relay.Fwd.Dropped)
		f.RelayOverload = float64(relay.Fwd.LimitDropped + relay.Fwd.KernelDrops + relay.Rev.LimitDropped + relay.Rev.KernelDrops)
	}
	return f
}

// Ratios are a case's figures divided by the baseline's: throughput above
// 1 is faster than raw batched UDP, CPU and latency above 1 cost more.
type Ratios struct {
	MsgsPerSec   float64 `json:"msgs_per_sec"`
	Mbps         float64 `json:"mbps"`
	Completeness float64 `json:"completeness"`
	CPUNanos     float64 `json:"cpu_ns_per_msg"`
	SendCPUNanos float64 `json:"send_cpu_ns_per_msg"`
	P50Nanos     float64 `json:"p50_ns"`
	P99Nanos     float64 `json:"p99_ns"`
	P999Nanos    float64 `json:"p999_ns"`
	MaxNanos     float64 `json:"max_ns"`
}

func (r *Ratios) columns() []*float64 {
	return []*float64{&r.MsgsPerSec, &r.Mbps, &r.Completeness, &r.CPUNanos, &r.SendCPUNanos, &r.P50Nanos, &r.P99Nanos, &r.P999Nanos, &r.MaxNanos}
}

// RatioStats are the per-run ratios of a case to its baseline, and their
// median and range.
type RatioStats struct {
	Runs   []*Ratios `json:"runs"` // nil where either run failed
	Median Ratios    `json:"median"`
	Min    Ratios    `json:"min"`
	Max    Ratios    `json:"max"`
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func ratiosOf(f, base *Figures) *Ratios {
	return &Ratios{
		MsgsPerSec: ratio(f.MsgsPerSec, base.MsgsPerSec), Mbps: ratio(f.Mbps, base.Mbps),
		Completeness: ratio(f.Completeness, base.Completeness), CPUNanos: ratio(f.CPUNanos, base.CPUNanos),
		SendCPUNanos: ratio(f.SendCPUNanos, base.SendCPUNanos),
		P50Nanos:     ratio(f.P50Nanos, base.P50Nanos), P99Nanos: ratio(f.P99Nanos, base.P99Nanos),
		P999Nanos: ratio(f.P999Nanos, base.P999Nanos), MaxNanos: ratio(f.MaxNanos, base.MaxNanos),
	}
}

// aggregate sets the medians and ranges of every column over the non-nil
// rows; NaN values (a ratio to zero) are left out of a column. With no
// rows it reports false.
func aggregate[T any](rows []*T, cols func(*T) []*float64, med, lo, hi *T) bool {
	var ok []*T
	for _, r := range rows {
		if r != nil {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return false
	}
	mc, lc, hc := cols(med), cols(lo), cols(hi)
	vals := make([]float64, 0, len(ok))
	for i := range mc {
		vals = vals[:0]
		for _, r := range ok {
			if v := *cols(r)[i]; !math.IsNaN(v) {
				vals = append(vals, v)
			}
		}
		*mc[i], *lc[i], *hc[i] = Median(vals), math.NaN(), math.NaN()
		if len(vals) > 0 {
			*lc[i], *hc[i] = slices.Min(vals), slices.Max(vals)
		}
	}
	return true
}

// Median returns the median of vs (the mean of the middle two for an even
// count), NaN for none. It does not modify vs.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// finish computes every case's medians and ranges and its ratios to the
// baseline transport's case at the same load and loss.
func (rep *Report) finish() {
	base := ""
	for _, t := range rep.Transports {
		if t.Baseline {
			base = t.Name
		}
	}
	byKey := map[string]*Case{}
	for i := range rep.Cases {
		c := &rep.Cases[i]
		byKey[c.Key()] = c
		c.Median, c.Min, c.Max = new(Figures), new(Figures), new(Figures)
		if !aggregate(c.Runs, (*Figures).columns, c.Median, c.Min, c.Max) {
			c.Median, c.Min, c.Max = nil, nil, nil
		}
	}
	for i := range rep.Cases {
		c := &rep.Cases[i]
		if c.Transport == base || base == "" {
			continue
		}
		b := byKey[(&Case{Transport: base, Rate: c.Rate, LossPercent: c.LossPercent}).Key()]
		if b == nil {
			continue
		}
		c.VsRaw = ratioStats(c.Runs, b.Runs)
	}
	noLatency := map[string]bool{}
	for _, t := range rep.Transports {
		noLatency[t.Name] = t.NoLatency
	}
	for i := range rep.Cases {
		c := &rep.Cases[i]
		if c.Transport == RawPingPong || noLatency[c.Transport] {
			continue
		}
		if pp := byKey[(&Case{Transport: RawPingPong, Rate: c.Rate, LossPercent: c.LossPercent}).Key()]; pp != nil {
			c.VsPingPong = deltaP50(c.Runs, pp.Runs)
		}
	}
	rep.fanout(byKey)
	rep.crossCheck(byKey, base)
	for i := range rep.Cases {
		for _, f := range append(rep.Cases[i].Runs, rep.Cases[i].Median, rep.Cases[i].Min, rep.Cases[i].Max) {
			if f != nil {
				zeroNaN(f.columns())
			}
		}
	}
}

// ratioStats divides runs by base run by run; nil when no run pairs up.
func ratioStats(runs, base []*Figures) *RatioStats {
	rs := &RatioStats{Runs: make([]*Ratios, len(runs))}
	for run, f := range runs {
		if f != nil && run < len(base) && base[run] != nil {
			rs.Runs[run] = ratiosOf(f, base[run])
		}
	}
	if !aggregate(rs.Runs, (*Ratios).columns, &rs.Median, &rs.Min, &rs.Max) {
		return nil
	}
	for _, r := range append(rs.Runs, &rs.Median, &rs.Min, &rs.Max) {
		if r != nil {
			zeroNaN(r.columns())
		}
	}
	return rs
}

// fanout sets Receivers and VsOne of the fan-out cases: each divided by
// the one-receiver case of its family at the same load and loss.
func (rep *Report) fanout(byKey map[string]*Case) {
	one := map[string]string{} // family → its one-receiver transport
	info := map[string]Transport{}
	for _, t := range rep.Transports {
		info[t.Name] = t
		if t.Family != "" && t.Receivers <= 1 {
			one[t.Family] = t.Name
		}
	}
	for i := range rep.Cases {
		c := &rep.Cases[i]
		t := info[c.Transport]
		if t.Receivers > 1 {
			c.Receivers = t.Receivers
		}
		ref, ok := one[t.Family]
		if t.Family == "" || !ok || ref == c.Transport {
			continue
		}
		if b := byKey[(&Case{Transport: ref, Rate: c.Rate, LossPercent: c.LossPercent}).Key()]; b != nil {
			c.VsOne = ratioStats(c.Runs, b.Runs)
		}
	}
}

// crossCheck fills rep.CrossCheck from the full-speed clean cases of the
// baseline, ref-loop, ref-iperf3 and raw-single, when they ran.
func (rep *Report) crossCheck(byKey map[string]*Case, base string) {
	at := func(name string) []*Figures {
		if c := byKey[(&Case{Transport: name}).Key()]; c != nil {
			return c.Runs
		}
		return nil
	}
	raw, loop, ip, single := at(base), at(RefLoop), at(RefIperf3), at(RawSingle)
	delivered := func(a, b *Figures) float64 { return a.MsgsPerSec / b.MsgsPerSec }
	vsSent := func(a, b *Figures) float64 { return a.MsgsPerSec / b.OfferedPerSec }
	cc := &CrossCheck{
		VsLoop:         spreadOf(raw, loop, delivered),
		VsIperf3Sent:   spreadOf(raw, ip, vsSent),
		VsIperf3Recv:   spreadOf(raw, ip, delivered),
		LoopVsIperf3:   spreadOf(loop, ip, vsSent),
		SingleVsIperf3: spreadOf(single, ip, vsSent),
	}
	if cc.VsLoop != nil || cc.VsIperf3Sent != nil {
		rep.CrossCheck = cc
	}
}

// deltaP50 is the p50 of runs minus the p50 of ref, run by run, over the
// runs where both succeeded; nil when there are none.
func deltaP50(runs, ref []*Figures) *DeltaStats {
	d := &DeltaStats{}
	for i, f := range runs {
		if f == nil || i >= len(ref) || ref[i] == nil || f.Delivered == 0 || ref[i].Delivered == 0 {
			continue
		}
		d.AddedP50Nanos = append(d.AddedP50Nanos, f.P50Nanos-ref[i].P50Nanos)
	}
	if len(d.AddedP50Nanos) == 0 {
		return nil
	}
	d.MedianNanos = Median(d.AddedP50Nanos)
	d.MinNanos, d.MaxNanos = slices.Min(d.AddedP50Nanos), slices.Max(d.AddedP50Nanos)
	return d
}

// zeroNaN replaces undefined figures (a ratio to a zero baseline, a
// column without values) by 0, which JSON can carry.
func zeroNaN(cols []*float64) {
	for _, c := range cols {
		if math.IsNaN(*c) {
			*c = 0
		}
	}
}
