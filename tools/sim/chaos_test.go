package sim

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// The chaos matrix of issue #8: ordered delivery with NACK and FEC at their
// defaults, over burst loss, corruption, duplication, reordering and a
// blackhole, each cell from a seed on a fake clock. Every cell checks the
// same invariants (see checkChaos); the figures are logged as a table with
// -v:
//
//	go test ./tools/sim -run TestChaosMatrix -v
//
// Each cell's impairment starts chaosWarmup into the run, after a clean
// start: the matrix is about the steady state, and reordering at the very
// start of a stream loses messages uncounted (TestStreamStartReordered).

// geLoss returns the netem Gilbert-Elliott option for a stationary loss
// rate (fraction) with bursts of meanBurst packets on average: r = 1/burst
// leaves the bad state, p = r·loss/(1-loss) enters it.
func geLoss(loss, meanBurst float64) string {
	if loss == 0 {
		return ""
	}
	r := 1 / meanBurst
	p := r * loss / (1 - loss)
	return fmt.Sprintf(" loss gemodel %.4f%% %.4f%%", 100*p, 100*r)
}

// chaosCell is one scenario of the matrix: the same impairment both ways,
// and optionally a blackhole of both directions in the middle of the run.
type chaosCell struct {
	name      string
	link      string        // netem spec of each direction
	blackhole time.Duration // both directions lose everything for this long, mid-run
	// maxResidual is the largest share of messages the cell may leave
	// undelivered. The cells are seeded, so these are the measured
	// figures with a margin, not statistical bounds.
	maxResidual float64
}

const (
	chaosBurst  = 3                      // mean loss burst, packets
	chaosWarmup = 500 * time.Millisecond // clean start before the impairment
)

func chaosCells() []chaosCell {
	const base = "delay 20ms"
	return []chaosCell{
		{name: "loss 0%", link: base},
		{name: "loss 2% GE", link: base + geLoss(0.02, chaosBurst)},
		{name: "loss 10% GE", link: base + geLoss(0.10, chaosBurst), maxResidual: 0.001},
		{name: "loss 20% GE", link: base + geLoss(0.20, chaosBurst), maxResidual: 0.01},
		{name: "loss 30% GE", link: base + geLoss(0.30, chaosBurst), maxResidual: 0.05},
		{name: "corrupt 5%", link: base + " corrupt 5%"},
		{name: "corrupt 20%", link: base + " corrupt 20%", maxResidual: 0.001},
		{name: "duplicate 10%", link: base + " duplicate 10%"},
		{name: "reorder 25%", link: base + " reorder 25% 50%"},
		{name: "jitter 20±10ms", link: base + " 10ms distribution normal"},
		{name: "mixed", link: base + " 5ms" + geLoss(0.05, chaosBurst) + " duplicate 5% corrupt 5% reorder 10%", maxResidual: 0.001},
		{name: "blackhole 5s", link: base + geLoss(0.02, chaosBurst), blackhole: 5 * time.Second},
	}
}

// chaosRow is one line of the logged table.
type chaosRow struct {
	cell   chaosCell
	r      Result
	linkPL float64 // loss the forward link applied
}

func TestChaosMatrix(t *testing.T) { runChaosMatrix(t, nil) }

// TestChaosMatrixSealed is the matrix with a pre-shared key on both ends:
// the handshake runs first (messages wait for it), every packet is
// sealed, and each cell must deliver what it does without a key.
func TestChaosMatrixSealed(t *testing.T) { runChaosMatrix(t, chaosKey) }

var chaosKey = []byte("0123456789abcdef0123456789abcdef")

func runChaosMatrix(t *testing.T, key []byte) {
	const rate = 1000
	var rows []chaosRow
	for i, cell := range chaosCells() {
		t.Run(strings.ReplaceAll(cell.name, " ", "_"), func(t *testing.T) {
			// 20 simulated seconds a cell (a few under -race); -short
			// keeps the blackhole and 2 s either side of it.
			seconds := 20
			if testing.Short() {
				seconds = 5 + int(2*cell.blackhole/time.Second)
			}
			clean, impaired := spec(t, "delay 20ms"), spec(t, cell.link)
			cfg := Config{
				Messages: rate * seconds, Rate: rate, Size: 200, Seed: int64(100 + i),
				Fwd: clean, Rev: clean,
				FwdChanges: []Change{{At: chaosWarmup, Spec: impaired}},
				RevChanges: []Change{{At: chaosWarmup, Spec: impaired}},
				Sender:     sender.Config{Key: key},
				Receiver:   receiver.Config{Key: key},
			}
			var dark [2]int // indexes of the messages sent into the blackhole
			if cell.blackhole > 0 {
				mid := time.Duration(seconds) * time.Second / 2
				on, off := mid-cell.blackhole/2, mid+cell.blackhole/2
				black := spec(t, "delay 20ms loss 100%")
				cfg.FwdChanges = append(cfg.FwdChanges, Change{At: on, Spec: black}, Change{At: off, Spec: impaired})
				cfg.RevChanges = append(cfg.RevChanges, Change{At: on, Spec: black}, Change{At: off, Spec: impaired})
				// Messages sent within the latency budget (200 ms) before
				// the blackhole had no time to be repaired either.
				dark = [2]int{int((on - 200*time.Millisecond).Seconds() * rate), int(off.Seconds() * rate)}
			}
			r, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkChaos(t, cell, r, dark)
			rows = append(rows, chaosRow{cell: cell, r: r,
				linkPL: float64(r.FwdLink.Dropped) / float64(max(r.FwdLink.Enqueued, 1))})
		})
	}
	t.Log("\n" + chaosTable(rows))
}

// checkChaos holds a cell to the invariants of ordered delivery:
//   - byte-exact: every delivered payload is the one sent with its index
//     (Result.Corrupt counts the others);
//   - in order and once: Result.OutOfOrder and Result.Duplicates are 0;
//   - exact accounting: Result.Sent = receiver Stats.Delivered (messages
//     handed to the application) + StreamStats.Skipped (sequences ordered
//     delivery passed over at their deadline), and the harness agrees
//     with the receiver on both: Unique = Delivered, len(Missed) = Skipped;
//   - nothing left waiting: Held = 0 once the run has drained;
//   - corruption never reaches a decoder's output: every copy the links
//     corrupted is counted Malformed by the receiver (forward) or the
//     sender (reverse), because the CRC-32C rejects a flipped bit (copies
//     still on a link at the end are not counted yet);
//   - residual loss within the cell's bound, not counting the messages
//     sent into a blackhole or just before it (indexes dark[0] to
//     dark[1]), which no repair can deliver within the latency budget.
func checkChaos(t *testing.T, cell chaosCell, r Result, dark [2]int) {
	t.Helper()
	if len(r.Receiver.Streams) != 1 {
		t.Fatalf("receiver has %d streams, want 1", len(r.Receiver.Streams))
	}
	st := r.Receiver.Streams[0]
	if r.Corrupt != 0 || r.OutOfOrder != 0 || r.Duplicates != 0 {
		t.Errorf("delivery broke: corrupt %d, out of order %d, duplicates %d", r.Corrupt, r.OutOfOrder, r.Duplicates)
	}
	if r.Receiver.Delivered != r.Unique {
		t.Errorf("receiver says it delivered %d, the application got %d", r.Receiver.Delivered, r.Unique)
	}
	if r.Sent != r.Receiver.Delivered+st.Skipped {
		t.Errorf("sent %d != delivered %d + skipped %d (missed %d, late %d, held %d, unrecovered %d)",
			r.Sent, r.Receiver.Delivered, st.Skipped, len(r.Missed), st.Late, st.Held, st.Unrecovered)
	}
	if uint64(len(r.Missed)) != st.Skipped {
		t.Errorf("%d messages never delivered, receiver skipped %d", len(r.Missed), st.Skipped)
	}
	if st.Held != 0 || r.Receiver.QueueOverflow != 0 {
		t.Errorf("held %d, queue overflow %d after the drain", st.Held, r.Receiver.QueueOverflow)
	}
	if r.Sender.Packets != r.Sent {
		t.Errorf("sender counted %d packets, %d sent", r.Sender.Packets, r.Sent)
	}
	unseen := func(corrupted, malformed uint64, queued int) bool {
		return malformed > corrupted || corrupted-malformed > uint64(queued)
	}
	rm, sm := r.Receiver.Malformed, r.Sender.Malformed
	if sealed := r.Sender.Handshakes > 0; sealed {
		// Sealed, a corrupted copy fails where the flipped bit lands:
		// the tag (auth_failed), the key tag or session (no_keys, or a
		// foreign session at the sender), the header (malformed,
		// unexpected, or unsealed when the envelope byte became 0). A copy whose key tag or session was hit also
		// draws a RETRY, which the sender counts as well, so only the
		// lower bound holds: none went uncounted.
		rm += r.Receiver.AuthFailed + r.Receiver.NoKeys + r.Receiver.Unexpected + r.Receiver.KeyMismatch + r.Receiver.Unsealed
		sm += r.Sender.AuthFailed + r.Sender.NoKeys + r.Sender.Unexpected + r.Sender.KeyMismatch + r.Sender.ForeignSession + r.Sender.Unsealed
		unseen = func(corrupted, rejected uint64, queued int) bool {
			return rejected+uint64(queued) < corrupted
		}
		if r.Sender.Handshakes != 1 || r.Sender.Rehandshakes != 0 || r.Receiver.Handshakes != 1 {
			t.Errorf("handshakes: sender %d (%d forced again), receiver %d; want 1", r.Sender.Handshakes, r.Sender.Rehandshakes, r.Receiver.Handshakes)
		}
	}
	if unseen(r.FwdLink.Corrupted, rm, r.FwdQueued) || unseen(r.RevLink.Corrupted, sm, r.RevQueued) {
		t.Errorf("corrupted copies forward %d (%d still queued), reverse %d (%d still queued); rejected at receiver %d, at sender %d",
			r.FwdLink.Corrupted, r.FwdQueued, r.RevLink.Corrupted, r.RevQueued, rm, sm)
	}
	if cell.link == "delay 20ms" && st.Lost != 0 {
		t.Errorf("clean link: receiver counted %d lost", st.Lost)
	}
	outside := 0
	for _, i := range r.Missed {
		if i < dark[0] || i >= dark[1] {
			outside++
		}
	}
	if res := float64(outside) / float64(r.Sent); res > cell.maxResidual {
		t.Errorf("residual loss %.4f%% (outside any blackhole), the cell allows %.4f%%", 100*res, 100*cell.maxResidual)
	}
	// The latency budget (200 ms) plus the path (20 ms, and up to 30 ms
	// more of jitter) bounds every delivery's latency. After a blackhole
	// it does not: see the report of the matrix.
	if dark[1] == dark[0] && r.LatencyMax > int64(250*time.Millisecond) {
		t.Errorf("a message was delivered %.1fms after it was sent, beyond the latency budget", float64(r.LatencyMax)/1e6)
	}
	if dark[1] > dark[0] {
		// Both ends resume: the session survived (no restart, no expiry)
		// and the sender heard the receiver again about the whole stream.
		if r.Receiver.SessionRestarts != 0 || r.Receiver.SessionsExpired != 0 || r.Receiver.Sessions != 1 {
			t.Errorf("session did not survive the blackhole: %d sessions, %d restarts, %d expired",
				r.Receiver.Sessions, r.Receiver.SessionRestarts, r.Receiver.SessionsExpired)
		}
		if v := r.Sender.Streams[0].Receiver; v.HighestSeq != r.Sent-1 {
			t.Errorf("sender's view of the receiver did not resume: highest %d of %d", v.HighestSeq, r.Sent-1)
		}
	}
}

// chaosTable formats the matrix figures: residual is the share of messages
// never delivered, latency is from Send to delivery (ordered, so holding
// behind a gap counts), overhead is wire bytes over payload bytes minus
// one (headers, parity, retransmissions, heartbeats).
func chaosTable(rows []chaosRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-15s %7s %8s %7s %8s %8s %8s %8s %6s %7s %7s %7s %7s\n",
		"cell", "linkPL", "residual", "skipped", "p50 ms", "p99 ms", "max ms", "overhead", "fecM", "lost", "rtx", "fec", "malf")
	for _, x := range rows {
		st := x.r.Receiver.Streams[0]
		fmt.Fprintf(&b, "%-15s %6.2f%% %7.4f%% %7d %8.1f %8.1f %8.1f %7.1f%% %6d %7d %7d %7d %7d\n",
			x.cell.name, 100*x.linkPL, 100*x.r.Residual(), st.Skipped,
			float64(x.r.LatencyP50)/1e6, float64(x.r.LatencyP99)/1e6, float64(x.r.LatencyMax)/1e6,
			100*x.r.Overhead(), x.r.Sender.Streams[0].FECM, st.Lost, st.RecoveredRTX, st.RecoveredFEC, x.r.Receiver.Malformed+x.r.Sender.Malformed)
	}
	return b.String()
}

// TestStreamStartReordered: a stream whose first messages are overtaken
// (netem sends 25% of packets at once, ahead of the 20 ms delay) on an
// otherwise perfect link. Nothing is lost, so everything should be
// delivered; at the least, what is not must be counted.
func TestStreamStartReordered(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		r, err := Run(Config{Messages: 2000, Rate: 1000, Seed: seed,
			Fwd: spec(t, "delay 20ms reorder 25%"), Rev: spec(t, "delay 20ms")})
		if err != nil {
			t.Fatal(err)
		}
		st := r.Receiver.Streams[0]
		if r.Unique != r.Sent || r.Sent != r.Receiver.Delivered+st.Skipped {
			t.Fatalf("seed %d: sent %d, delivered %d, skipped %d, late %d, missed %v",
				seed, r.Sent, r.Receiver.Delivered, st.Skipped, st.Late, r.Missed)
		}
	}
}

// TestReorderingIsNotLoss: reordering without loss must not be reported
// to the sender as loss, or adaptive FEC pays parity for nothing.
func TestReorderingIsNotLoss(t *testing.T) {
	var maxLoss float64
	r, err := Run(Config{Messages: 10_000, Rate: 1000, Seed: 4,
		Fwd: spec(t, "delay 20ms reorder 25% 50%"), Rev: spec(t, "delay 20ms"),
		ObserveEvery: 10 * time.Millisecond,
		Observe: func(_ time.Duration, snd *sender.Core, _ *receiver.Core) {
			if st := snd.Stats().Streams; len(st) > 0 {
				maxLoss = max(maxLoss, st[0].Receiver.IntervalLoss)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Receiver.Streams[0]; st.Lost != 0 || r.Unique != r.Sent {
		t.Fatalf("the link lost nothing, the receiver counted %d lost and delivered %d of %d", st.Lost, r.Unique, r.Sent)
	}
	if maxLoss != 0 || r.Sender.Streams[0].FECM != 0 {
		t.Fatalf("reordering reported as loss: interval loss up to %.2f%%, FEC parity %d per block, overhead %.1f%%",
			100*maxLoss, r.Sender.Streams[0].FECM, 100*r.Overhead())
	}
}
