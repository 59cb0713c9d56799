package fault

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// bottleneck starts a netem relay in front of to whose forward direction
// serialises at rateMbit and drops loss percent, and whose reverse drops
// loss percent. The relay's queue holds a second at that rate: a greedy
// sender without congestion control fills it and waits seconds in it.
func bottleneck(t *testing.T, to string, rateMbit float64, loss string) *netem.Relay {
	t.Helper()
	fwd, err := netem.ParseSpec("rate " + strconv.FormatFloat(rateMbit, 'f', -1, 64) + "mbit loss random " + loss)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := netem.ParseSpec("loss random " + loss)
	if err != nil {
		t.Fatal(err)
	}
	r, err := netem.NewRelay(netem.RelayConfig{
		Listen: "127.0.0.1:0", To: to, Fwd: fwd, Rev: rev, Seed: 7,
		MaxQueueBytes: int(rateMbit * 1e6 / 8), // one second
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r
}

// TestGreedySenderThroughABottleneck: a sender calling Send as fast as it
// returns, through an 8 Mbit/s bottleneck that also loses 5% each way,
// with ordered delivery and a 500 ms latency budget. The congestion
// controller must find the bottleneck's rate (no standing queue of
// seconds), so that messages arrive within the budget, repaired where
// they were lost. Without it the relay's one-second queue fills, delay
// passes the budget, and ordered delivery skips what repair cannot bring
// in time (about three quarters of the messages here).
func TestGreedySenderThroughABottleneck(t *testing.T) {
	testutil.NoLeaks(t)
	const messages = 8_000 // about a second at the bottleneck's rate (64 B + headers)
	rcv := listen(t, receiver.Config{Listen: "127.0.0.1:0", Latency: 500 * time.Millisecond})
	col := collect(t, rcv)
	relay := bottleneck(t, rcv.Addr().String(), 8, "5%")
	snd := newSender(t, sender.Config{To: relay.Addr().String(), FEC: sender.FECConfig{Mode: sender.FECOff}})

	start := time.Now()
	sendRange(t, snd, 0, messages)
	testutil.Eventually(t, wait, "every message delivered or given up", func() bool {
		st := rcv.Stats()
		return len(st.Streams) == 1 && uint64(len(col.snapshot()))+st.Streams[0].Skipped == messages
	})
	elapsed := time.Since(start)
	got := col.snapshot()
	st := snd.Stats()
	rs := rcv.Stats()
	t.Logf("%d messages in %v: pacing %.1f Mbit/s, %d congestion events, Send waited %d times; min RTT %v; retransmits %d (suppressed %d, NACKs %d, throttled %d); receiver skipped %v",
		len(got), elapsed.Round(time.Millisecond), st.Pacing.RateBytesPerSec*8/1e6, st.Pacing.CongestionEvents, st.Pacing.Waits,
		time.Duration(st.Pacing.MinRTTNanos), st.Retransmits, st.Suppressed, st.NACKs, st.Throttled, skipped(rs))
	// In order, once each, byte-exact; at most 10% skipped. Without
	// congestion control the same test delivers about a quarter, so the
	// bound still tells a controller that found the bottleneck from one
	// that did not. It is not tighter because on a loaded machine about
	// one run in twenty skips 2-4%: repairs queue behind data at the
	// bottleneck, are asked for again and again (such runs retransmit
	// about 5 000 times with 10 000 requests suppressed, against about
	// 900 and 700 otherwise), and some miss the 500 ms budget; see the
	// issue #7 notes. Most runs skip none.
	for k := 1; k < len(got); k++ {
		if got[k].index == ^uint64(0) || got[k].index <= got[k-1].index {
			t.Fatalf("delivery %d is message %d after %d: %v", k, int64(got[k].index), got[k-1].index, brief(got))
		}
	}
	if len(got) < messages*90/100 {
		t.Fatalf("delivered %d of %d messages", len(got), messages)
	}
	if st.Pacing.CongestionEvents == 0 || st.Pacing.Waits == 0 {
		t.Errorf("the pacer never acted (events %d, waits %d): the bottleneck was not found", st.Pacing.CongestionEvents, st.Pacing.Waits)
	}
}

func skipped(st receiver.Stats) uint64 {
	var n uint64
	for _, s := range st.Streams {
		n += s.Skipped
	}
	return n
}
