package app

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/replay"
)

// Exit statuses of `telewire replay` besides 0 (whole), 1 (error) and 2
// (usage): IncompleteError.ExitCode returns one of them.
const (
	// ExitNoFeedback: datagrams were sent but no REPORT came back from the
	// receiver, so nothing confirms that any arrived.
	ExitNoFeedback = 3
	// ExitIncomplete: the receiver's reports show datagrams lost (missing
	// after repair, or too late for delivery) or leave some unconfirmed,
	// or a limit kept datagrams from being sent.
	ExitIncomplete = 4
)

// ErrIncomplete is wrapped by every IncompleteError.
var ErrIncomplete = errors.New("replay incomplete")

// IncompleteError is Replay's error when the replay was not whole: see
// ReplayStats.Delivery and the NOT sent counts of the summary.
type IncompleteError struct {
	Lost, Unconfirmed, NotSent uint64
	// NoFeedback: the receiver never reported (every sent datagram is
	// Unconfirmed).
	NoFeedback bool
}

func (e *IncompleteError) Error() string {
	if e.NoFeedback {
		return fmt.Sprintf("%v: no report from the receiver: nothing confirms that any of %d datagrams arrived", ErrIncomplete, e.Unconfirmed)
	}
	return fmt.Sprintf("%v: %d datagrams lost, %d unconfirmed, %d not sent", ErrIncomplete, e.Lost, e.Unconfirmed, e.NotSent)
}

// Unwrap returns ErrIncomplete.
func (e *IncompleteError) Unwrap() error { return ErrIncomplete }

// ExitCode is the command's exit status: ExitNoFeedback or ExitIncomplete.
func (e *IncompleteError) ExitCode() int {
	if e.NoFeedback {
		return ExitNoFeedback
	}
	return ExitIncomplete
}

// Delivery is what the receiver's reports (sender.StreamStats.Receiver)
// say about the datagrams a replay sent, when its linger ended. A datagram
// is confirmed when the receiver reports it received in time for delivery;
// what the receiving application then does with it (a queue overflow in a
// reader that falls behind) is in the receiver's own statistics.
type Delivery struct {
	Sent      uint64 `json:"sent"`      // messages sent (first transmissions), all sessions
	Confirmed uint64 `json:"confirmed"` // reported received in time for delivery
	// Lost: reported missing after repair, or received after its delivery
	// deadline.
	Lost uint64 `json:"lost"`
	// Unconfirmed: covered by no report when the linger ended (the last
	// report predates them, or the receiver never reported on the stream).
	Unconfirmed     uint64 `json:"unconfirmed"`
	FlowsIncomplete int    `json:"flows_incomplete"` // flows with a datagram lost or unconfirmed
	// SessionsUnreported counts sessions the receiver never reported on
	// (no receiver, or its bound on senders refused them);
	// StreamsUnreported the streams never reported on in sessions it did
	// report on (its bound on streams per sender).
	SessionsUnreported int    `json:"sessions_unreported"`
	StreamsUnreported  int    `json:"streams_unreported"`
	Reports            uint64 `json:"reports"` // REPORTs received, all sessions
}

// confirmed returns how many of sent datagrams the receiver's view v
// confirms, and how many it shows lost.
func confirmed(v sender.ReceiverView, sent uint64) (ok, lost uint64) {
	if !v.Reported {
		return 0, 0
	}
	got := v.Received - min(v.Late, v.Received)
	if got >= sent {
		return sent, 0
	}
	return got, min(sent-got, v.Unrecovered+v.Late)
}

// judge computes the Delivery of a replay from its senders' statistics
// (senders[k] carries flows[k*per:(k+1)*per], flow i on stream i%per) and
// records each flow's Lost and Unconfirmed.
func judge(flows []Flow, senders []sender.Stats, per int) Delivery {
	var d Delivery
	for k := range senders {
		s := &senders[k]
		d.Reports += s.Reports
		reported := false
		for _, x := range s.Streams {
			reported = reported || x.Receiver.Reported
		}
		if !reported {
			d.SessionsUnreported++
		}
		for _, x := range s.Streams {
			d.Sent += x.Sent
			ok, lost := confirmed(x.Receiver, x.Sent)
			d.Confirmed += ok
			d.Lost += lost
			unconf := x.Sent - ok - lost
			d.Unconfirmed += unconf
			if reported && !x.Receiver.Reported {
				d.StreamsUnreported++
			}
			i := k*per + int(x.Stream)
			if int(x.Stream) >= per || i >= len(flows) {
				continue // not a replay stream: cannot happen
			}
			flows[i].Lost, flows[i].Unconfirmed = lost, unconf
			if lost+unconf > 0 {
				d.FlowsIncomplete++
			}
		}
	}
	return d
}

// verdict returns the IncompleteError the replay earned, or nil when it
// was whole.
func verdict(st *ReplayStats) error {
	d := st.Delivery
	notSent := st.SkippedFlowLimit + st.SkippedTooLarge
	if d.Lost+d.Unconfirmed+notSent == 0 {
		return nil
	}
	return &IncompleteError{Lost: d.Lost, Unconfirmed: d.Unconfirmed, NotSent: notSent, NoFeedback: d.Sent > 0 && d.Reports == 0}
}

// maxIncompleteLines bounds the incomplete flows the summary lists.
const maxIncompleteLines = 10

// deliveryText is the summary's delivery line, with the incomplete flows.
func deliveryText(st *ReplayStats) string {
	d := st.Delivery
	if d.Sent > 0 && d.Reports == 0 {
		return fmt.Sprintf("no report from the receiver: nothing confirms that any of the %d datagrams arrived "+
			"(no receiver at %s? a key on one end only, or different keys? a firewall? or a receiver that stopped before its first report, like recv --count)", d.Sent, st.To)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the receiver confirmed %d of %d datagrams", d.Confirmed, d.Sent)
	if d.Lost+d.Unconfirmed == 0 {
		if st.Interrupted {
			b.WriteString(", every datagram sent arrived")
		} else {
			b.WriteString(", every flow whole")
		}
		return b.String()
	}
	fmt.Fprintf(&b, "; %d lost (missing after repair, or too late for delivery), %d unconfirmed (no report covered them when the linger ended: the receiver stopped or refused them, or its reports were lost); %d flows incomplete",
		d.Lost, d.Unconfirmed, d.FlowsIncomplete)
	if d.SessionsUnreported > 0 {
		fmt.Fprintf(&b, "\n  the receiver never reported on %d of %d sender sessions: it bounds the senders it takes (recv --max-sessions)",
			d.SessionsUnreported, len(st.Senders))
	}
	if d.StreamsUnreported > 0 {
		fmt.Fprintf(&b, "\n  the receiver never reported on %d streams of sessions it did report on: it bounds the streams per sender (recv --max-streams, replay --session-streams)",
			d.StreamsUnreported)
	}
	n := 0
	for _, f := range st.Flows {
		if f.Lost+f.Unconfirmed == 0 {
			continue
		}
		if n == maxIncompleteLines {
			fmt.Fprintf(&b, "\n    ... %d more incomplete flows (all in --stats)", d.FlowsIncomplete-n)
			break
		}
		fmt.Fprintf(&b, "\n    sender %d stream %d %s -> %s: %d lost, %d unconfirmed", f.Sender, f.Stream, f.Src, f.Dst, f.Lost, f.Unconfirmed)
		n++
	}
	return b.String()
}

// sendersSummary is the summary line of the senders' statistics, summed
// over the sessions.
func sendersSummary(ss []sender.Stats, elapsed time.Duration) string {
	var t sender.Stats
	var rtt, minRTT int64
	for _, s := range ss {
		t.Packets += s.Packets
		t.PayloadBytes += s.PayloadBytes
		t.DatagramsSent += s.DatagramsSent
		t.BytesSent += s.BytesSent
		t.Reports += s.Reports
		t.NACKs += s.NACKs
		t.Retransmits += s.Retransmits
		t.Parity += s.Parity
		t.Unavailable += s.Unavailable
		t.QueueFull += s.QueueFull
		t.WriteErrors += s.WriteErrors
		t.RTT.Samples += s.RTT.Samples
		rtt = max(rtt, s.RTT.SmoothedNanos)
		if s.RTT.Samples > 0 && (minRTT == 0 || s.RTT.MinNanos < minRTT) {
			minRTT = s.RTT.MinNanos
		}
	}
	what := "sender"
	if len(ss) > 1 {
		what = fmt.Sprintf("%d senders", len(ss))
	}
	return fmt.Sprintf("%s: %d messages, %d payload bytes, %d datagrams, %d wire bytes in %s; rtt %s (min %s, %d samples); %d reports, %d nacks, %d retransmits, %d parity, %d unavailable, %d write errors",
		what, t.Packets, t.PayloadBytes, t.DatagramsSent, t.BytesSent, elapsed.Round(time.Millisecond),
		ms(uint64(rtt)), ms(uint64(minRTT)), t.RTT.Samples, t.Reports, t.NACKs, t.Retransmits, t.Parity, t.Unavailable, t.WriteErrors)
}

// sessions are a replay's sender sessions: flow i goes out on stream i%per
// of session i/per.
type sessions struct {
	per     int
	senders []*sender.Sender
	clock   nanoClock
}

// startSessions starts the senders that carry flows, per to a session,
// and records each one's session id in its flows. passNanos is how long
// one pass over the capture takes, 0 if unknown (top speed).
func startSessions(ctx context.Context, o ReplayOptions, flows []Flow, clk wallClock, passNanos int64) (*sessions, error) {
	per := sessionStreams(o)
	ss := &sessions{per: per, clock: clk}
	if o.Sender.Clock != nil {
		ss.clock = o.Sender.Clock
	}
	passes := retainedPasses(o, passNanos)
	share := min(maxStreamRetransmit, max(minStreamRetransmit, retransmitBudget/len(flows)))
	for first := 0; first < len(flows); first += per {
		group := flows[first:min(first+per, len(flows))]
		cfg := sessionConfig(o, group, passes, share)
		cfg.Clock = ss.clock
		s, err := sender.New(ctx, cfg)
		if err != nil {
			ss.close()
			return nil, err
		}
		ss.senders = append(ss.senders, s)
		if o.OnSender != nil {
			o.OnSender(s)
		}
		id := fmt.Sprintf("%016x", s.Session())
		for i := range group {
			group[i].Session = id
		}
	}
	return ss, nil
}

// retainedPasses is how many passes of a flow's traffic its retransmit
// buffer may have to hold: every pass asked for, but no more than the
// traffic of twice RetransmitMaxAge (1 s by default) when a pass takes
// passNanos (0: unknown, top speed); older packets are not kept anyway.
func retainedPasses(o ReplayOptions, passNanos int64) uint64 {
	passes := uint64(max(o.Timing.Loops, 1))
	if o.Timing.Loops == replay.Forever {
		passes = math.MaxUint32
	}
	if passNanos > 0 {
		window := int64(o.Sender.RetransmitMaxAge)
		if window <= 0 {
			window = int64(time.Second)
		}
		passes = min(passes, 1+uint64(2*window/passNanos))
	}
	return passes
}

// sessionConfig is the sender configuration of the session carrying group:
// the retransmit memory and queue left at their defaults are sized to what
// the flows send (over every pass), within share bytes a stream.
func sessionConfig(o ReplayOptions, group []Flow, passes uint64, share int) sender.Config {
	cfg := o.Sender
	cfg.To, cfg.Logger, cfg.MaxStreams = o.To, o.Logger, len(group)
	// One captured datagram, one telewire datagram: the delivery verdict
	// counts datagrams the receiver reports, and a replay keeps the
	// capture's datagram boundaries and timing rather than coalescing.
	cfg.DisablePacking = true
	const perPacket = packet.HeaderLen + packet.DataHeaderLen + 32 // headers, and sealing's overhead
	var maxBytes, maxPackets, total uint64
	for _, f := range group {
		wire := satMul(f.Bytes+f.Packets*perPacket, passes)
		maxBytes = max(maxBytes, wire)
		maxPackets = max(maxPackets, satMul(f.Packets, passes))
		total = satAdd(total, wire)
	}
	if cfg.RetransmitBytes == 0 {
		cfg.RetransmitBytes = max(minRetransmitFloor, int(min(uint64(share), maxBytes)))
	}
	if cfg.RetransmitPackets == 0 {
		cfg.RetransmitPackets = int(min(defaultRetransmitPackets, max(minRetransmitPackets, maxPackets)))
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = int(min(defaultQueueBytes, max(minQueueBytes, total)))
	}
	return cfg
}

// Bounds of the sizes sessionConfig chooses: the sender's defaults are the
// upper ones.
const (
	defaultRetransmitPackets = 16384
	minRetransmitPackets     = 64
	defaultQueueBytes        = 4 << 20
	minQueueBytes            = 256 << 10
)

func satMul(a, b uint64) uint64 {
	if a != 0 && b > math.MaxUint64/a {
		return math.MaxUint64
	}
	return a * b
}

func satAdd(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// send sends payload on flow's stream. It does not allocate.
func (ss *sessions) send(flow uint32, payload []byte) error {
	i := int(flow)
	return ss.senders[i/ss.per].SendStream(uint32(i%ss.per), payload)
}

// lingerPoll is how often linger looks at the receiver's reports.
const lingerPoll = 20 * time.Millisecond

// linger keeps the senders answering feedback until the receiver's reports
// confirm every datagram sent, or for d at most.
func (ss *sessions) linger(d time.Duration) {
	end := time.Now().Add(d)
	for !ss.allConfirmed() {
		left := time.Until(end)
		if left <= 0 {
			return
		}
		time.Sleep(min(left, lingerPoll))
	}
}

// allConfirmed reports whether the receiver's reports confirm every
// datagram sent on every stream.
func (ss *sessions) allConfirmed() bool {
	for _, s := range ss.senders {
		for _, x := range s.Stats().Streams {
			if ok, _ := confirmed(x.Receiver, x.Sent); ok < x.Sent {
				return false
			}
		}
	}
	return true
}

// close flushes and closes every sender, returning the first error.
func (ss *sessions) close() error {
	var first error
	for _, s := range ss.senders {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// stats returns each sender's statistics.
func (ss *sessions) stats() []sender.Stats {
	out := make([]sender.Stats, len(ss.senders))
	for i, s := range ss.senders {
		out[i] = s.Stats()
	}
	return out
}
