package app

import (
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// NetemCounters are one direction's counts of `telewire netem`, as totals
// and as differences over an interval (see netem.DirStats).
type NetemCounters struct {
	Received     uint64 `json:"received"`      // datagrams read
	Forwarded    uint64 `json:"forwarded"`     // datagrams written out after impairment (duplicates included)
	Dropped      uint64 `json:"dropped"`       // lost by the loss model or a full queue
	LimitDropped uint64 `json:"limit_dropped"` // of Dropped, by a full queue
	Delayed      uint64 `json:"delayed"`
	Reordered    uint64 `json:"reordered"`
	Duplicated   uint64 `json:"duplicated"`
	Corrupted    uint64 `json:"corrupted"`
	WriteErrors  uint64 `json:"write_errors"`
	KernelDrops  uint64 `json:"kernel_drops"` // the relay's own socket overflowing: not the emulated link
}

func netemCounters(d netem.DirStats) NetemCounters {
	return NetemCounters{Received: d.Received, Forwarded: d.Forwarded, Dropped: d.Dropped, LimitDropped: d.LimitDropped,
		Delayed: d.Delayed, Reordered: d.Reordered, Duplicated: d.Duplicated, Corrupted: d.Corrupted,
		WriteErrors: d.WriteErrs, KernelDrops: d.KernelDrops}
}

// since is StreamCounters.since for a netem direction.
func (c NetemCounters) since(p NetemCounters) NetemCounters {
	return NetemCounters{
		Received: diff(c.Received, p.Received), Forwarded: diff(c.Forwarded, p.Forwarded),
		Dropped: diff(c.Dropped, p.Dropped), LimitDropped: diff(c.LimitDropped, p.LimitDropped),
		Delayed: diff(c.Delayed, p.Delayed), Reordered: diff(c.Reordered, p.Reordered),
		Duplicated: diff(c.Duplicated, p.Duplicated), Corrupted: diff(c.Corrupted, p.Corrupted),
		WriteErrors: diff(c.WriteErrors, p.WriteErrors), KernelDrops: diff(c.KernelDrops, p.KernelDrops),
	}
}

// plus returns the counter-by-counter sum.
func (c NetemCounters) plus(o NetemCounters) NetemCounters {
	return NetemCounters{
		Received: c.Received + o.Received, Forwarded: c.Forwarded + o.Forwarded,
		Dropped: c.Dropped + o.Dropped, LimitDropped: c.LimitDropped + o.LimitDropped,
		Delayed: c.Delayed + o.Delayed, Reordered: c.Reordered + o.Reordered,
		Duplicated: c.Duplicated + o.Duplicated, Corrupted: c.Corrupted + o.Corrupted,
		WriteErrors: c.WriteErrors + o.WriteErrors, KernelDrops: c.KernelDrops + o.KernelDrops,
	}
}

// NetemDirs are the counts of both directions.
type NetemDirs struct {
	Fwd NetemCounters `json:"fwd"` // client → server
	Rev NetemCounters `json:"rev"` // server → client
}

// NetemRecord is one object of `telewire netem --stats`.
type NetemRecord struct {
	StatsHead
	// Interval is what happened since the previous record; Totals the sum
	// of every Interval so far.
	Interval NetemDirs `json:"interval"`
	Totals   NetemDirs `json:"totals"`
	Clients  int       `json:"clients"`  // served now
	Rejected uint64    `json:"rejected"` // datagrams refused (client limit), in all
	Stray    uint64    `json:"stray"`    // datagrams from other addresses on upstream sockets, in all
}

// netemDeltas turns successive relay statistics into records.
type netemDeltas struct {
	prev, totals NetemDirs
}

func (d *netemDeltas) next(rec *NetemRecord, st netem.RelayStats) {
	cur := NetemDirs{Fwd: netemCounters(st.Fwd), Rev: netemCounters(st.Rev)}
	iv := NetemDirs{Fwd: cur.Fwd.since(d.prev.Fwd), Rev: cur.Rev.since(d.prev.Rev)}
	d.prev = cur
	d.totals = NetemDirs{Fwd: d.totals.Fwd.plus(iv.Fwd), Rev: d.totals.Rev.plus(iv.Rev)}
	rec.Interval, rec.Totals = iv, d.totals
	rec.Clients, rec.Rejected, rec.Stray = st.Clients, st.Rejected, st.Stray
}

// NetemStatsRun writes the statistics records of a netem relay. A nil
// *NetemStatsRun does nothing.
type NetemStatsRun struct {
	run *StatsRun
	d   *netemDeltas
}

// StartNetemStats begins the records of a relay on out (nil: none); snap
// returns the relay's statistics and must be safe to call from another
// goroutine (netem.Relay.Stats is).
func StartNetemStats(out *StatsOutput, snap func() netem.RelayStats) *NetemStatsRun {
	if out == nil {
		return nil
	}
	d := new(netemDeltas)
	run := out.Begin(func(h StatsHead) any {
		rec := &NetemRecord{StatsHead: h}
		d.next(rec, snap())
		return rec
	})
	return &NetemStatsRun{run: run, d: d}
}

// Finish writes the final record from the relay's last statistics.
func (n *NetemStatsRun) Finish(st netem.RelayStats) error {
	if n == nil {
		return nil
	}
	return n.run.Finish(func(h StatsHead) any {
		rec := &NetemRecord{StatsHead: h}
		n.d.next(rec, st)
		return rec
	}, nil)
}

// DemoRecord is one object of `telewire demo --stats`: the sender's and
// the receiver's figures, each as in send's and recv's records.
type DemoRecord struct {
	StatsHead
	Sender   EndpointStats `json:"sender"`
	Receiver EndpointStats `json:"receiver"` // its bytes count is 0: the demo discards the payloads
}

// DemoStatsRun writes the statistics records of `telewire demo`. A nil
// *DemoStatsRun does nothing.
type DemoStatsRun struct {
	run      *StatsRun
	snd, rcv *deltas
}

// StartDemoStats begins the records of a demo on out (nil: none); snd and
// rcv return the two ends' statistics and must be safe to call from
// another goroutine.
func StartDemoStats(out *StatsOutput, snd func() sender.Stats, rcv func() receiver.Stats) *DemoStatsRun {
	if out == nil {
		return nil
	}
	ds, dr := new(deltas), new(deltas)
	run := out.Begin(func(h StatsHead) any {
		rec := &DemoRecord{StatsHead: h}
		ds.next(&rec.Sender, sendSample(snd()))
		dr.next(&rec.Receiver, recvSample(rcv(), 0))
		return rec
	})
	return &DemoStatsRun{run: run, snd: ds, rcv: dr}
}

// Stop ends the interval records without a final one (a failed run).
func (d *DemoStatsRun) Stop() {
	if d != nil {
		d.run.Stop()
	}
}

// Finish writes the final record from the two ends' last statistics.
func (d *DemoStatsRun) Finish(snd sender.Stats, rcv receiver.Stats) error {
	if d == nil {
		return nil
	}
	return d.run.Finish(func(h StatsHead) any {
		rec := &DemoRecord{StatsHead: h}
		d.snd.next(&rec.Sender, sendSample(snd))
		d.rcv.next(&rec.Receiver, recvSample(rcv, 0))
		return rec
	}, nil)
}
