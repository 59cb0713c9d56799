package web

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// Snapshot is what /stats returns and /ws pushes: the figures of every
// stream the process handles at one instant, cumulative since start. The
// page turns successive snapshots into rates. Durations are nanoseconds,
// rates bytes per second.
type Snapshot struct {
	TimeMillis int64    `json:"time_ms"` // Unix milliseconds of the snapshot
	Role       string   `json:"role"`    // the subcommand: send, recv, netem, replay, demo
	Streams    []Stream `json:"streams"` // at most Config.MaxStreams, then one "other"
	// Omitted counts the streams summed into the last entry (Key "other")
	// because there were more than Config.MaxStreams.
	Omitted int    `json:"omitted"`
	Relay   *Relay `json:"relay,omitempty"`
	// DelayBoundsNanos are the upper bounds of Stream.DelayBuckets.
	DelayBoundsNanos []uint64 `json:"delay_bounds_ns"`
}

// Stream is one stream's figures. The receive-side figures are the local
// receiver's where the process has one, else the latest REPORT the sender
// got; the send-side ones (HasSender) come from a local sender.
type Stream struct {
	Key    string `json:"key"` // unique and stable: "PEER/STREAM", or "other"
	Stream uint32 `json:"stream"`
	Peer   string `json:"peer"`

	HasReceiver  bool   `json:"has_receiver"` // receive figures are present
	Received     uint64 `json:"received"`     // distinct sequences received (first copy or retransmission)
	RecoveredRTX uint64 `json:"recovered_rtx"`
	RecoveredFEC uint64 `json:"recovered_fec"`
	Lost         uint64 `json:"lost"`        // before repair
	Unrecovered  uint64 `json:"unrecovered"` // after repair
	JitterNanos  uint64 `json:"jitter_ns"`
	DelayP50     uint64 `json:"delay_p50_ns"`
	DelayP90     uint64 `json:"delay_p90_ns"`
	DelayP99     uint64 `json:"delay_p99_ns"`
	DelayMax     uint64 `json:"delay_max_ns"`
	RepairRTT    int64  `json:"repair_rtt_ns"` // receiver: smoothed NACK-to-retransmission time
	// DelayBuckets are the local receiver's cumulative delay counts at
	// Snapshot.DelayBoundsNanos (empty without a local receiver): the page
	// takes differences to show recent percentiles, not only since start.
	DelayBuckets []uint64 `json:"delay_buckets,omitempty"`

	HasSender     bool    `json:"has_sender"` // send figures are present
	Sent          uint64  `json:"sent"`
	RTTNanos      int64   `json:"rtt_ns"`
	FECK          int     `json:"fec_k"`
	FECM          int     `json:"fec_m"`
	FECInterleave int     `json:"fec_interleave"`
	PacingRate    float64 `json:"pacing_bytes_per_sec"`
}

// Relay is a netem relay's counters, both directions.
type Relay struct {
	Fwd     netem.DirStats `json:"fwd"`
	Rev     netem.DirStats `json:"rev"`
	Clients int            `json:"clients"`
}

// sources are the live objects a server reports on.
type sources struct {
	senders   []senderSource
	receivers []interface{ Stats() receiver.Stats }
	relays    []interface{ Stats() netem.RelayStats }
}

type senderSource struct {
	src  interface{ Stats() sender.Stats }
	peer string
}

// snapshot builds a Snapshot of srcs at nowMillis, keeping at most
// maxStreams streams (sorted by key) and summing the rest into "other".
func snapshot(srcs *sources, role string, nowMillis int64, maxStreams int) Snapshot {
	snap := Snapshot{TimeMillis: nowMillis, Role: role, Streams: []Stream{}, DelayBoundsNanos: receiver.DelayBucketNanos[:]}
	var all []Stream
	byID := map[uint32][]int{} // receiver streams by stream id, to merge a local sender's into
	for _, r := range srcs.receivers {
		for _, x := range r.Stats().Streams {
			byID[x.Stream] = append(byID[x.Stream], len(all))
			all = append(all, Stream{
				Key: x.Source + "/" + strconv.FormatUint(uint64(x.Stream), 10), Stream: x.Stream, Peer: x.Source,
				HasReceiver: true, Received: x.Received, RecoveredRTX: x.RecoveredRTX, RecoveredFEC: x.RecoveredFEC,
				Lost: x.Lost, Unrecovered: x.Unrecovered, JitterNanos: x.JitterNanos,
				DelayP50: x.Delay.P50, DelayP90: x.Delay.P90, DelayP99: x.Delay.P99, DelayMax: x.Delay.Max,
				RepairRTT: x.NACKRTTNanos, DelayBuckets: x.DelayBuckets[:],
			})
		}
	}
	for _, s := range srcs.senders {
		st := s.src.Stats()
		for _, x := range st.Streams {
			send := func(v *Stream) {
				v.HasSender, v.Sent, v.RTTNanos = true, x.Sent, st.RTT.SmoothedNanos
				v.FECK, v.FECM, v.FECInterleave = x.FECK, x.FECM, x.FECInterleave
				v.PacingRate = st.Pacing.RateBytesPerSec
			}
			// In one process with both ends (demo), the stream the sender
			// sends is the one the receiver receives: one card, not two.
			if idx := byID[x.Stream]; len(idx) == 1 && len(srcs.senders) == 1 {
				send(&all[idx[0]])
				continue
			}
			v := Stream{Key: s.peer + "/" + strconv.FormatUint(uint64(x.Stream), 10), Stream: x.Stream, Peer: s.peer}
			if r := x.Receiver; r.Reported {
				v.HasReceiver = true
				v.Received, v.RecoveredRTX, v.RecoveredFEC = r.Received, r.RecoveredRTX, r.RecoveredFEC
				v.Lost, v.Unrecovered, v.JitterNanos = r.Lost, r.Unrecovered, r.JitterNanos
				v.DelayP50, v.DelayP90, v.DelayP99, v.DelayMax = r.DelayP50Nanos, r.DelayP90Nanos, r.DelayP99Nanos, r.DelayMaxNanos
			}
			send(&v)
			all = append(all, v)
		}
	}
	slices.SortStableFunc(all, func(a, b Stream) int {
		return cmp.Or(cmp.Compare(a.Peer, b.Peer), cmp.Compare(a.Stream, b.Stream))
	})
	if len(all) > maxStreams {
		other := Stream{Key: "other", Peer: "other"}
		for _, v := range all[maxStreams:] {
			addStream(&other, &v)
		}
		snap.Omitted = len(all) - maxStreams
		all = append(all[:maxStreams], other)
	}
	snap.Streams = append(snap.Streams, all...)
	for _, r := range srcs.relays {
		st := r.Stats()
		if snap.Relay == nil {
			snap.Relay = &Relay{}
		}
		addDir(&snap.Relay.Fwd, &st.Fwd)
		addDir(&snap.Relay.Rev, &st.Rev)
		snap.Relay.Clients += st.Clients
	}
	return snap
}

// addStream sums counts and keeps the largest of the other figures.
func addStream(dst, v *Stream) {
	dst.HasReceiver = dst.HasReceiver || v.HasReceiver
	dst.HasSender = dst.HasSender || v.HasSender
	dst.Received += v.Received
	dst.RecoveredRTX += v.RecoveredRTX
	dst.RecoveredFEC += v.RecoveredFEC
	dst.Lost += v.Lost
	dst.Unrecovered += v.Unrecovered
	dst.Sent += v.Sent
	dst.JitterNanos = max(dst.JitterNanos, v.JitterNanos)
	dst.DelayP50, dst.DelayP90 = max(dst.DelayP50, v.DelayP50), max(dst.DelayP90, v.DelayP90)
	dst.DelayP99, dst.DelayMax = max(dst.DelayP99, v.DelayP99), max(dst.DelayMax, v.DelayMax)
	dst.RepairRTT, dst.RTTNanos = max(dst.RepairRTT, v.RepairRTT), max(dst.RTTNanos, v.RTTNanos)
	dst.FECK, dst.FECM, dst.FECInterleave = max(dst.FECK, v.FECK), max(dst.FECM, v.FECM), max(dst.FECInterleave, v.FECInterleave)
	dst.PacingRate = max(dst.PacingRate, v.PacingRate)
	if len(v.DelayBuckets) > 0 {
		if dst.DelayBuckets == nil {
			dst.DelayBuckets = make([]uint64, len(v.DelayBuckets))
		}
		for i, n := range v.DelayBuckets {
			dst.DelayBuckets[i] += n
		}
	}
}

func addDir(dst, s *netem.DirStats) {
	dst.Received += s.Received
	dst.Forwarded += s.Forwarded
	dst.Dropped += s.Dropped
	dst.Delayed += s.Delayed
	dst.Reordered += s.Reordered
	dst.Duplicated += s.Duplicated
	dst.Corrupted += s.Corrupted
	dst.WriteErrs += s.WriteErrs
	dst.LimitDropped += s.LimitDropped
	dst.KernelDrops += s.KernelDrops
}
