package demo

import (
	"fmt"
	"io"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// table prints the demo's live statistics, one row per interval.
type table struct{ w io.Writer }

func newTable(w io.Writer) *table { return &table{w: w} }

const rowFormat = "%6s %8s %9s %6s %6s %6s %6s %7s %8s %9s %9s %8s\n"

func (t *table) header() {
	fmt.Fprintf(t.w, rowFormat, "time", "sent", "delivered", "lost", "by fec", "by rtx", "unrec", "fec k,m", "jitter", "delay p50", "delay p99", "rtt")
}

func (t *table) row(elapsed time.Duration, sent, delivered uint64, s sender.Stats, r receiver.StreamStats) {
	fmt.Fprintf(t.w, rowFormat,
		fmt.Sprintf("%.0fs", elapsed.Seconds()),
		fmt.Sprint(sent), fmt.Sprint(delivered), fmt.Sprint(r.Lost), fmt.Sprint(r.RecoveredFEC), fmt.Sprint(r.RecoveredRTX),
		fmt.Sprint(r.Unrecovered), fecParams(s),
		msec(int64(r.JitterNanos)), msec(int64(r.Delay.P50)), msec(int64(r.Delay.P99)),
		msec(s.RTT.SmoothedNanos))
}

func (t *table) summary(s Summary, elapsed time.Duration) {
	r := s.Receiver
	pct := func(n, d uint64) float64 {
		if d == 0 {
			return 0
		}
		return 100 * float64(n) / float64(d)
	}
	fmt.Fprintf(t.w, "\nsummary after %s:\n", elapsed.Round(time.Millisecond))
	fmt.Fprintf(t.w, "  sent %d, delivered %d (%.2f%%) in order; lost on the link %d (%.2f%%)\n",
		s.Sent, s.Delivered, pct(s.Delivered, s.Sent), r.Lost, pct(r.Lost, s.Sent))
	fmt.Fprintf(t.w, "  repaired by FEC %d, by retransmission %d; unrecovered %d, skipped at the deadline %d, late %d\n",
		r.RecoveredFEC, r.RecoveredRTX, r.Unrecovered, r.Skipped, r.Late)
	var parityBytes uint64
	for _, x := range s.Sender.Streams {
		parityBytes += x.FECOverheadBytes
	}
	fmt.Fprintf(t.w, "  FEC: %d parity packets, %.2f%% of bytes sent, now %s (auto: chosen from the reported loss)\n",
		s.Sender.Parity, pct(parityBytes, s.Sender.BytesSent), fecParams(s.Sender))
	fmt.Fprintf(t.w, "  NACKs sent %d, retransmissions %d (%.2f%% of bytes sent), suppressed %d, unavailable %d\n",
		r.NACKs, s.Sender.Retransmits, pct(s.Sender.RetransmitBytes, s.Sender.BytesSent), s.Sender.Suppressed, s.Sender.Unavailable)
	fmt.Fprintf(t.w, "  duplicates %d, reordered on the link %d\n", r.Duplicates, r.Reordered)
	fmt.Fprintf(t.w, "  one-way delay above the minimum: p50 %s p90 %s p99 %s max %s; jitter (RFC 3550) %s\n",
		msec(int64(r.Delay.P50)), msec(int64(r.Delay.P90)), msec(int64(r.Delay.P99)), msec(int64(r.Delay.Max)), msec(int64(r.JitterNanos)))
	fmt.Fprintf(t.w, "  round trip: smoothed %s, min %s (%d samples)\n",
		msec(s.Sender.RTT.SmoothedNanos), msec(s.Sender.RTT.MinNanos), s.Sender.RTT.Samples)
	if p := s.Sender.Pacing; p.Enabled {
		fmt.Fprintf(t.w, "  congestion control: pacing at %.1f Mbit/s, %d congestion events, Send waited %d times\n",
			p.RateBytesPerSec*8/1e6, p.CongestionEvents, p.Waits)
	}
	fmt.Fprintf(t.w, "  link: forward dropped %d of %d, reverse dropped %d of %d\n",
		s.Link.Fwd.Dropped, s.Link.Fwd.Received, s.Link.Rev.Dropped, s.Link.Rev.Received)
	if s.Encrypted {
		fmt.Fprintf(t.w, "  encryption: X25519 handshake, every packet sealed (AES-256-GCM); refused unopened: receiver %d, sender %d\n",
			s.Rejected, s.Sender.Unsealed+s.Sender.KeyMismatch+s.Sender.Corrupted+s.Sender.AuthFailed+s.Sender.Replayed+s.Sender.NoKeys)
	}
}

func msec(nanos int64) string { return fmt.Sprintf("%.2fms", float64(nanos)/1e6) }

// fecParams shows the sender's current FEC setting as "K,M" ("off" when it
// sends no parity).
func fecParams(s sender.Stats) string {
	if len(s.Streams) == 0 || s.Streams[0].FECM == 0 {
		return "off"
	}
	x := s.Streams[0]
	if x.FECInterleave > 1 {
		return fmt.Sprintf("%d,%dx%d", x.FECK, x.FECM, x.FECInterleave)
	}
	return fmt.Sprintf("%d,%d", x.FECK, x.FECM)
}

const groupRowFormat = "%6s %4s %8s %9s %6s %6s %6s %6s %6s %8s %9s %9s %8s\n"

func (t *table) groupHeader() {
	fmt.Fprintf(t.w, groupRowFormat, "time", "rcv", "sent", "delivered", "lost", "by fec", "by rtx", "unrec", "nacks", "jitter", "delay p50", "delay p99", "rtt")
}

// groupRow is receiver i's row: its own loss and repair, the sender's
// figures beside them (sent, and its RTT to that receiver: the view of
// the address its feedback comes from, view).
func (t *table) groupRow(elapsed time.Duration, i int, sent, delivered uint64, s sender.Stats, view string, r receiver.StreamStats) {
	rtt := "-"
	for _, v := range s.Receivers {
		if v.Addr == view {
			rtt = msec(v.RTT.SmoothedNanos)
		}
	}
	fmt.Fprintf(t.w, groupRowFormat,
		fmt.Sprintf("%.0fs", elapsed.Seconds()), fmt.Sprintf("r%d", i+1),
		fmt.Sprint(sent), fmt.Sprint(delivered), fmt.Sprint(r.Lost), fmt.Sprint(r.RecoveredFEC), fmt.Sprint(r.RecoveredRTX),
		fmt.Sprint(r.Unrecovered), fmt.Sprint(r.NACKs),
		msec(int64(r.JitterNanos)), msec(int64(r.Delay.P50)), msec(int64(r.Delay.P99)), rtt)
}

func (t *table) groupSummary(s GroupSummary, elapsed time.Duration) {
	pct := func(n, d uint64) float64 {
		if d == 0 {
			return 0
		}
		return 100 * float64(n) / float64(d)
	}
	fmt.Fprintf(t.w, "\nsummary after %s, %d receivers of %s:\n", elapsed.Round(time.Millisecond), len(s.Receivers), s.Group)
	var lostSum, nacks uint64
	for i, r := range s.Receivers {
		fmt.Fprintf(t.w, "  r%d: delivered %d of %d (%.2f%%) in order; its link lost %d (%.2f%%): repaired by FEC %d, by retransmission %d, unrecovered %d; NACKs sent %d\n",
			i+1, s.Delivered[i], s.Sent, pct(s.Delivered[i], s.Sent), r.Lost, pct(r.Lost, s.Sent), r.RecoveredFEC, r.RecoveredRTX, r.Unrecovered, r.NACKs)
		lostSum += r.Lost
		nacks += r.NACKs
	}
	fmt.Fprintf(t.w, "  sender: each datagram sent once to the group; %d receiver views; FEC now %s; %d NACKs received, %d retransmissions (one reaches every receiver; the receivers lost %d in all), %d suppressed\n",
		s.Sender.Group.Receivers, fecParams(s.Sender), s.Sender.NACKs, s.Sender.Retransmits, lostSum, s.Sender.Suppressed)
}
