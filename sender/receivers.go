package sender

import (
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/reliability"
)

// A sender keeps one view per receiver it hears from: the set of
// receivers of one stream (a multicast group, or the single receiver of a
// unicast sender: the set of size one, through the same code). A view is
// created by the first feedback that proves its source receives the data
// (a REPORT whose echo, or a NACK whose proof, names a recent DATA's send
// time; with a key, any authentic feedback), so a forged address cannot
// take a place. The set is bounded (Config.MaxReceivers) and a view is
// dropped when its receiver has been silent for Config.ReceiverTimeout.
//
// What the views feed:
//   - RTT: every receiver's samples go into the sender's merged estimate
//     (retransmit suppression, amplification budgets) and into its own.
//   - Pacing follows the path to the group: the pacer counts the progress
//     of the group's most advanced receiver (the largest Received and
//     HighestSeq reported per stream) and takes RTT samples only from the
//     nearest receiver (the lowest minimum RTT). A receiver far away or
//     behind does not slow the others down.
//   - FEC strength follows a high percentile (Config.FECLossPercentile,
//     default 90) of the receivers' reported loss, so that most receivers
//     repair by parity alone; the mean would leave the lossier tail to
//     retransmission.

// Defaults of the receiver set.
const (
	// DefaultMaxReceivers is the default Config.MaxReceivers.
	DefaultMaxReceivers = 256
	// DefaultReceiverTimeout is the default Config.ReceiverTimeout.
	DefaultReceiverTimeout = 5 * time.Second
	// DefaultFECLossPercentile is the default Config.FECLossPercentile.
	DefaultFECLossPercentile = 90
)

// peerStream is one receiver's latest REPORT for one stream.
type peerStream struct {
	id       uint32
	report   packet.Report
	reportAt int64 // sender clock, 0 if never
	// intervalSeen: a REPORT closing an interval (not FlagEarly) arrived,
	// so report.IntervalLossPPM is measured.
	intervalSeen bool
	// resent records the sequences of this stream lately resent to this
	// receiver, for per-destination suppression in a unicast fan-out
	// (handleNACK); nil until the first such repair.
	resent *reliability.ResendLog
}

// lossPPM is the receiver's loss rate for a stream starting at start: its
// last closed report interval's or, until an interval has closed (only
// early REPORTs so far), the loss of the stream so far.
func (ps *peerStream) lossPPM(start uint64) uint64 {
	if ps.intervalSeen {
		return uint64(ps.report.IntervalLossPPM)
	}
	n := packet.SeqDiff(ps.report.HighestSeq, start) + 1
	if n <= 0 {
		return 0
	}
	return min(ps.report.Lost, uint64(n)) * packet.MaxLossPPM / uint64(n)
}

// peer is the sender's view of one receiver.
type peer struct {
	addr    netip.AddrPort
	id      uint64 // 1, 2, ... in the order receivers were first heard
	firstAt int64  // when the view was created
	lastAt  int64  // latest proven feedback
	rtt     reliability.RTT
	lastRTT int64  // the latest RTT sample, capped at maxSuppression
	reports uint64 // proven REPORTs taken
	nacks   uint64 // proven NACKs taken
	// unavailable counts the sequences it asked for (in proven NACKs)
	// that were no longer buffered: lost to it for good.
	unavailable uint64
	streams     []peerStream
}

// stream returns the receiver's state for stream id, creating it. A
// receiver reports only streams the sender has (handleReport checks), so
// this grows at most to Config.MaxStreams.
func (p *peer) stream(id uint32) *peerStream {
	for i := range p.streams {
		if p.streams[i].id == id {
			return &p.streams[i]
		}
	}
	p.streams = append(p.streams, peerStream{id: id})
	return &p.streams[len(p.streams)-1]
}

// findStream returns the receiver's state for stream id, or nil.
func (p *peer) findStream(id uint32) *peerStream {
	for i := range p.streams {
		if p.streams[i].id == id {
			return &p.streams[i]
		}
	}
	return nil
}

// receiverSet is the bounded set of receiver views. Not safe for
// concurrent use (the Core's).
type receiverSet struct {
	max     int
	timeout int64 // ns
	pct     float64
	peers   []*peer // in order of creation
	byAddr  map[netip.AddrPort]*peer
	nextID  uint64
	refused uint64   // proven feedback from a new address while the set was full
	expired uint64   // views dropped after ReceiverTimeout of silence
	scratch []uint64 // reused by lossPPM and fecReport: no allocation per REPORT
	// A multicast sender's announcements of the group's size
	// (announceGroup): when the next is due, when the last went, and the
	// size it told.
	announceAt, announcedAt int64
	announced               uint32
}

func newReceiverSet(maxPeers int, timeout time.Duration, pct float64) *receiverSet {
	return &receiverSet{
		max:     maxPeers,
		timeout: int64(timeout),
		pct:     pct,
		byAddr:  make(map[netip.AddrPort]*peer),
	}
}

// observe returns the view of the receiver at addr, creating it if there
// is room, and marks it heard at now. It returns nil (and counts the
// refusal) when the set is full even after expiring silent receivers.
func (rs *receiverSet) observe(addr netip.AddrPort, now int64) *peer {
	if p := rs.byAddr[addr]; p != nil {
		p.lastAt = max(p.lastAt, now)
		return p
	}
	if len(rs.peers) >= rs.max {
		rs.expire(now)
		if len(rs.peers) >= rs.max {
			rs.refused++
			return nil
		}
	}
	rs.nextID++
	p := &peer{addr: addr, id: rs.nextID, firstAt: now, lastAt: now}
	rs.peers = append(rs.peers, p)
	rs.byAddr[addr] = p
	return p
}

// expire drops the views of receivers silent for longer than the timeout.
func (rs *receiverSet) expire(now int64) {
	kept := rs.peers[:0]
	for _, p := range rs.peers {
		if now-p.lastAt > rs.timeout {
			delete(rs.byAddr, p.addr)
			rs.expired++
			continue
		}
		kept = append(kept, p)
	}
	clear(rs.peers[len(kept):])
	rs.peers = kept
}

// nextExpiry returns when the next view expires, if any.
func (rs *receiverSet) nextExpiry() (int64, bool) {
	if len(rs.peers) == 0 {
		return 0, false
	}
	at := int64(math.MaxInt64)
	for _, p := range rs.peers {
		at = min(at, p.lastAt+rs.timeout+1)
	}
	return at, true
}

// nearest returns the receiver with the lowest minimum RTT measured (the
// first heard while none has a sample), or nil for an empty set.
func (rs *receiverSet) nearest() *peer {
	var best *peer
	for _, p := range rs.peers {
		switch {
		case best == nil:
			best = p
		case p.rtt.Samples() > 0 && (best.rtt.Samples() == 0 || p.rtt.Min() < best.rtt.Min()):
			best = p
		}
	}
	return best
}

// percentileIndex returns the index, in a sorted slice of n values, of
// the pct-th percentile by nearest rank: the smallest value that at least
// pct percent of the values are at or below.
func percentileIndex(n int, pct float64) int {
	r := int(math.Ceil(pct / 100 * float64(n)))
	return min(max(r, 1), n) - 1
}

// lossPPM returns the percentile loss rate over the receivers that
// reported stream s (0 when none has): what retransmission redundancy and
// FEC strength follow.
func (rs *receiverSet) lossPPM(s *stream) (uint64, bool) {
	v := rs.scratch[:0]
	for _, p := range rs.peers {
		if ps := p.findStream(s.id); ps != nil && ps.reportAt != 0 {
			v = append(v, ps.lossPPM(s.start))
		}
	}
	rs.scratch = v
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	return v[percentileIndex(len(v), rs.pct)], true
}

// fecReport returns the report adaptive FEC should read for stream s: the
// interval report of the receiver at the loss percentile (its loss rate
// and burst length), with the group's highest sequence so that the
// adaptive rule measures the stream's rate. ok is false while no receiver
// has closed an interval.
func (rs *receiverSet) fecReport(s *stream) (r packet.Report, ok bool) {
	// Each receiver's loss and burst length in one number, loss first,
	// so that one sort orders by loss and then burst.
	v := rs.scratch[:0]
	for _, p := range rs.peers {
		if ps := p.findStream(s.id); ps != nil && ps.intervalSeen {
			v = append(v, uint64(ps.report.IntervalLossPPM)<<32|uint64(ps.report.BurstMeanMilli))
		}
	}
	rs.scratch = v
	if len(v) == 0 {
		return r, false
	}
	slices.Sort(v)
	e := v[percentileIndex(len(v), rs.pct)]
	r.IntervalLossPPM, r.BurstMeanMilli = uint32(e>>32), uint32(e)
	r.HighestSeq = s.group.highest
	return r, true
}

// ReceiverStats is the sender's view of one receiver: where it is, how
// far away, and what it last reported for each stream.
type ReceiverStats struct {
	Addr            string   `json:"addr"`                 // the address its feedback comes from
	ID              uint64   `json:"id"`                   // 1, 2, ... in the order receivers were first heard (per sender)
	FirstHeardAgo   int64    `json:"first_heard_ago_ns"`   // filled by Sender.Stats; 0 from Core.Stats
	LastFeedbackAgo int64    `json:"last_feedback_ago_ns"` // filled by Sender.Stats; 0 from Core.Stats
	RTT             RTTStats `json:"rtt"`
	Reports         uint64   `json:"reports"` // proven REPORTs taken from it
	NACKs           uint64   `json:"nacks"`   // proven NACKs taken from it
	// Unavailable counts the sequences it asked for that were no longer
	// in the retransmit buffer (a receiver too slow or too far behind):
	// lost to it, though the rest of the group had them.
	Unavailable uint64           `json:"unavailable"`
	Streams     []ReceiverStream `json:"streams"`

	firstAt, lastAt int64
}

// ReceiverStream is one receiver's latest REPORT for one stream.
type ReceiverStream struct {
	Stream uint32       `json:"stream"`
	View   ReceiverView `json:"view"`
}

// GroupStats merges the receivers' views: how many there are, what the
// bounds refused, and the spread of their figures.
type GroupStats struct {
	Receivers int    `json:"receivers"` // views held now
	Refused   uint64 `json:"refused"`   // new receivers not given a view: MaxReceivers reached
	Expired   uint64 `json:"expired"`   // views dropped after ReceiverTimeout of silence
	// Loss over the receivers' last report intervals, every stream
	// pooled: the percentile FEC follows (LossPercentile, e.g. 90), the
	// mean and the worst, as fractions 0..1.
	LossPercentile float64 `json:"loss_percentile"`
	LossAtPct      float64 `json:"loss_at_percentile"`
	LossMean       float64 `json:"loss_mean"`
	LossMax        float64 `json:"loss_max"`
	// The receivers' smoothed RTTs (those measured) and worst jitter and
	// 99th-percentile delay reported.
	RTTMinNanos      int64  `json:"rtt_min_ns"`
	RTTMaxNanos      int64  `json:"rtt_max_ns"`
	JitterMaxNanos   uint64 `json:"jitter_max_ns"`
	DelayP99MaxNanos uint64 `json:"delay_p99_max_ns"`
	UnrecoveredMax   uint64 `json:"unrecovered_max"` // the most sequences any one receiver gave up on, summed over its streams
}

// stats fills st.Receivers and st.Group.
func (rs *receiverSet) stats(st *Stats, streams []*stream) {
	st.Group = GroupStats{Receivers: len(rs.peers), Refused: rs.refused, Expired: rs.expired, LossPercentile: rs.pct}
	st.Receivers = make([]ReceiverStats, 0, len(rs.peers))
	var losses []float64
	first := true
	for _, p := range rs.peers {
		x := ReceiverStats{
			Addr: p.addr.String(), ID: p.id, Reports: p.reports, NACKs: p.nacks, Unavailable: p.unavailable,
			RTT:     RTTStats{SmoothedNanos: p.rtt.Smoothed(), VarianceNanos: p.rtt.Variance(), MinNanos: p.rtt.Min(), Samples: p.rtt.Samples()},
			firstAt: p.firstAt, lastAt: p.lastAt,
		}
		if p.rtt.Samples() > 0 {
			if first || p.rtt.Smoothed() < st.Group.RTTMinNanos {
				st.Group.RTTMinNanos = p.rtt.Smoothed()
			}
			st.Group.RTTMaxNanos = max(st.Group.RTTMaxNanos, p.rtt.Smoothed())
			first = false
		}
		var unrec uint64
		for i := range p.streams {
			ps := &p.streams[i]
			x.Streams = append(x.Streams, ReceiverStream{Stream: ps.id, View: receiverView(&ps.report, ps.reportAt != 0)})
			if ps.reportAt == 0 {
				continue
			}
			unrec += ps.report.Unrecovered
			st.Group.JitterMaxNanos = max(st.Group.JitterMaxNanos, ps.report.JitterNanos)
			st.Group.DelayP99MaxNanos = max(st.Group.DelayP99MaxNanos, ps.report.DelayP99Nanos)
			for _, s := range streams {
				if s.id == ps.id {
					losses = append(losses, float64(ps.lossPPM(s.start))/packet.MaxLossPPM)
				}
			}
		}
		st.Group.UnrecoveredMax = max(st.Group.UnrecoveredMax, unrec)
		st.Receivers = append(st.Receivers, x)
	}
	if len(losses) > 0 {
		slices.Sort(losses)
		sum := 0.0
		for _, l := range losses {
			sum += l
		}
		st.Group.LossMean = sum / float64(len(losses))
		st.Group.LossMax = losses[len(losses)-1]
		st.Group.LossAtPct = losses[percentileIndex(len(losses), rs.pct)]
	}
}

// ages fills the receivers' FirstHeardAgo and LastFeedbackAgo at now.
func (st *Stats) ages(now int64) {
	for i := range st.Receivers {
		r := &st.Receivers[i]
		r.FirstHeardAgo = max(now-r.firstAt, 0)
		r.LastFeedbackAgo = max(now-r.lastAt, 0)
	}
}

// streamGroup is a stream's figures merged over its receivers.
type streamGroup struct {
	reported bool   // some receiver has reported the stream
	highest  uint64 // the highest sequence any receiver reported
	lossPPM  uint64 // the percentile loss rate (receiverSet.lossPPM)
	fecAt    int64  // when adaptive FEC was last given a report
	fecLoss  uint32 // the loss rate it was given then

	// The pacer's baseline: the latest REPORT of the receiver that feeds
	// it (feedPacer).
	paced    bool
	pacer    netip.AddrPort
	received uint64 // its Received
	pacedSeq uint64 // its HighestSeq
}

// recordReport stores a proven REPORT in its receiver's view (none when
// the set was full) and updates the stream's merged figures.
func (c *Core) recordReport(s *stream, view *peer, r *packet.Report, interval bool, now int64) {
	if g := &s.group; !g.reported || packet.SeqLess(g.highest, r.HighestSeq) {
		g.reported, g.highest = true, r.HighestSeq
	}
	if view != nil {
		view.reports++
		ps := view.stream(s.id)
		if ps.reportAt != 0 && r.Unrecovered > ps.report.Unrecovered {
			c.unrepairable(view.addr, now) // it gave up on more sequences
		}
		ps.report, ps.reportAt = *r, now
		if interval {
			ps.intervalSeen = true
		}
	}
	if loss, ok := c.rcv.lossPPM(s); ok {
		s.group.lossPPM = loss
	}
}

// fecFeedInterval spaces the reports adaptive FEC is given when more than
// one receiver reports (each every 100 ms by default): its estimates decay
// per report, and N receivers must not make them decay N times faster.
// A report showing more loss than the last one given goes at once; a
// single receiver's every interval report goes, as it always has.
const fecFeedInterval = int64(50 * time.Millisecond)

// feedFEC gives adaptive FEC the report at the group's loss percentile.
func (c *Core) feedFEC(s *stream, now int64) {
	r, ok := c.rcv.fecReport(s)
	if !ok {
		return // every receiver that closed an interval was refused a view
	}
	if len(c.rcv.peers) > 1 && s.group.fecAt != 0 && now-s.group.fecAt < fecFeedInterval && r.IntervalLossPPM <= s.group.fecLoss {
		return
	}
	s.group.fecAt, s.group.fecLoss = now, r.IntervalLossPPM
	s.adaptive.Update(r, now)
	k, m, d := s.adaptive.Params()
	setFEC(s.encoder, k, m, d)
}

// repairTo returns where a retransmission asked for by from goes: to a
// multicast group it goes to the group, so one answers every receiver
// that lost the sequence; otherwise, and for a late joiner's request for
// history (packet.FlagHistory), which no other receiver wants, back to
// the receiver that asked.
func (c *Core) repairTo(from netip.AddrPort, history bool) netip.AddrPort {
	if c.remote.Addr().IsMulticast() && !history {
		return c.remote
	}
	return from
}

// repairCopies returns how many copies of the repair of seq to send:
// copies, except that a multicast sender sends a repeated repair twice.
// A repeat means the first repair was lost on the way to some receiver;
// a second loss would cost that receiver another round trip of its
// latency budget (in tools/sim's groups, the messages that missed it
// were those repaired three times or more), and one repair to the group
// costs no more for many receivers than for one. A first repair goes
// once: most reach everyone.
func (c *Core) repairCopies(s *stream, seq uint64, copies int) int {
	if c.remote.Addr().IsMulticast() && s.retained.Resends(seq) > 1 {
		return 2
	}
	return copies
}

// historyAllowed reports whether the NACK p may be answered: one flagged
// packet.FlagHistory names at most packet.MaxJoinHistory sequences (a
// joiner asks once for what it wants; the amplification limit and the
// per-round-trip budget bound the rest, as for any NACK). It counts the
// history requests it lets through.
func (c *Core) historyAllowed(p *packet.Packet) bool {
	if p.Flags&packet.FlagHistory == 0 {
		return true
	}
	n := 0
	for _, r := range p.Ranges {
		n += int(r.Len)
	}
	if n > packet.MaxJoinHistory {
		return false
	}
	c.stats.HistoryNACKs++
	return true
}

// groupAnnounceInterval is how often a multicast sender that is sending
// tells its receivers how many they are (a HEARTBEAT flagged
// packet.FlagGroup on each stream that has sent); its idle HEARTBEATs
// carry the size too. Each receiver scales its NACK back-off to it. When
// the size changes it tells at once, but not more often than every
// groupAnnounceMinGap: at startup the receivers are heard one by one,
// and a group told it is one receiver does not back off at all.
const (
	groupAnnounceInterval = int64(500 * time.Millisecond)
	groupAnnounceMinGap   = int64(20 * time.Millisecond)
)

// groupSize returns the size a multicast sender's HEARTBEATs carry: the
// receivers it holds a view of (proven feedback, at most MaxReceivers),
// or 0 when it sends to a unicast address or has heard no receiver yet.
func (c *Core) groupSize() uint32 {
	if !c.remote.Addr().IsMulticast() || len(c.rcv.peers) == 0 {
		return 0
	}
	return uint32(min(len(c.rcv.peers), packet.MaxGroupReceivers))
}

// flagGroup adds the group's size to the HEARTBEAT p, queued at now, if
// there is one to tell, and notes it told.
func (c *Core) flagGroup(p *packet.Packet, now int64) {
	if n := c.groupSize(); n > 0 {
		p.Flags |= packet.FlagGroup
		p.Heartbeat.Receivers = n
		c.rcv.announcedAt, c.rcv.announced = now, n
	}
}

// announceGroup queues, every groupAnnounceInterval, a HEARTBEAT carrying
// the group's size on every stream that has sent something: a sender that
// never falls idle sends no idle HEARTBEAT.
func (c *Core) announceGroup(now int64) {
	at, ok := c.announceTimer()
	if !ok || now < at {
		return
	}
	for _, s := range c.streams {
		if s.next != s.start && !c.queueHeartbeat(s, now) {
			return // queue full: data is flowing, again at the next tick
		}
	}
	c.rcv.announceAt = now + groupAnnounceInterval
}

// announceTimer returns when announceGroup is next due, if it has
// anything to announce: at the interval, or soon after the size changed.
func (c *Core) announceTimer() (int64, bool) {
	n := c.groupSize()
	if n == 0 {
		return 0, false
	}
	if n != c.rcv.announced {
		return min(c.rcv.announceAt, c.rcv.announcedAt+groupAnnounceMinGap), true
	}
	return c.rcv.announceAt, true
}
