package sender

import (
	"net/netip"
	"testing"

	"github.com/telewire/telewire/packet"
)

// fanStall drives a unicast fan-out Core on a fake clock the way the
// bench's fan-ucast10 case at full speed met its stall: a greedy sender
// (it sends whenever the pacer lets it) to n receivers that keep up for a
// while, then fall behind together — their round trip grows, they see
// half of what is sent and ask for the rest again and again — and then
// catch up. It records the longest time Send would have been held by the
// pacer, and when that hold ended.
type fanStall struct {
	t     *testing.T
	c     *Core
	dests []netip.AddrPort
	now   int64
	// newest[i] is the newest sequence sent at step i (one step per 100 µs),
	// so that a receiver oneWay behind sees what was sent by then.
	newest []uint64
	block  int64 // the sender has been held since this time; 0 when not
	// Figures.
	longest   int64 // longest hold
	longestAt int64 // when it ended (or the run did)
	messages  int
}

const stallStep = 100_000 // ns

func newFanStall(t *testing.T, n int, cfg Config) *fanStall {
	t.Helper()
	dests := make([]netip.AddrPort, n)
	for i := range dests {
		dests[i] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(9100+i))
	}
	c, err := NewFanoutCore(cfg, 0xabc, dests)
	if err != nil {
		t.Fatal(err)
	}
	return &fanStall{t: t, c: c, dests: dests, now: ms}
}

// run advances d: each step the sender sends up to perStep 200-byte
// messages while the pacer allows, the writer takes what is queued, and
// every ms each receiver reports (and, if lossy, NACKs) what it saw
// oneWay ago.
func (f *fanStall) run(d, oneWay int64, perStep int, lossy bool) {
	t := f.t
	payload := make([]byte, 200)
	s := func() *stream { return f.c.findStream(0) }
	for end := f.now + d; f.now < end; f.now += stallStep {
		for range perStep {
			if wait := f.c.PaceDelay(f.now); wait > 0 {
				if f.block == 0 {
					f.block = f.now
				}
				break
			}
			if f.block != 0 {
				f.hold(f.now - f.block)
				f.block = 0
			}
			if err := f.c.Send(0, payload, f.now); err != nil {
				t.Fatal(err)
			}
			f.messages++
		}
		if b := f.c.Outbox().Take(); b != nil {
			f.c.Outbox().Give(b)
		}
		if st := s(); st != nil {
			f.newest = append(f.newest, st.next-1)
		} else {
			f.newest = append(f.newest, 0)
		}
		if f.now%ms != 0 || s() == nil {
			continue
		}
		back := int(oneWay / stallStep)
		if back >= len(f.newest) {
			continue
		}
		st := s()
		seen := f.newest[len(f.newest)-1-back]
		ts := st.sentTs[seen%sentTsLen]
		count := seen - st.start + 1
		received := count
		if lossy {
			received = count / 2
		}
		rep := encode(t, &packet.Packet{
			Header: packet.Header{Kind: packet.KindReport, Session: 0xabc},
			Report: packet.Report{HighestSeq: seen, EchoTimestamp: ts, EchoHoldNanos: oneWay / 2, Received: received},
		})
		for _, a := range f.dests {
			f.c.Handle(rep, a, f.now)
		}
		if !lossy {
			continue
		}
		// Each receiver asks again for the last 2 000 sequences it saw,
		// every other one of which it lost.
		var rs []packet.Range
		first := seen - min(seen-st.start, 2000)
		for q := first; q < seen && len(rs) < packet.MaxRanges; q += 2 {
			rs = append(rs, packet.Range{First: q, Len: 1})
		}
		nack := encode(t, &packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagProof, Session: 0xabc},
			Ranges: rs, ProofSeq: seen, ProofTimestamp: ts})
		for _, a := range f.dests {
			f.c.Handle(nack, a, f.now)
			if b := f.c.Outbox().Take(); b != nil {
				f.c.Outbox().Give(b)
			}
		}
	}
	if f.block != 0 {
		f.hold(f.now - f.block)
	}
}

func (f *fanStall) hold(d int64) {
	if d > f.longest {
		f.longest, f.longestAt = d, f.now
	}
}

// TestFanoutRetransmissionsDoNotStallSend reproduces the bench's stalled
// run (docs/performance.md, "A stalled run"): ten receivers falling
// behind at once asked for repairs that were charged to the pacer's
// credit without waiting for it, while a congestion cut brought the rate
// to its floor, so the credit was seconds in debt and Send waited that
// long (1.3 s here before the fix, 10 s and more in the bench).
// Retransmissions now spend at most their share of the rate: Send is
// held for well under the latency budget, and fresh messages keep going
// out while the receivers ask.
func TestFanoutRetransmissionsDoNotStallSend(t *testing.T) {
	f := newFanStall(t, 10, Config{FEC: FECConfig{Mode: FECOff}})
	f.run(300*ms, ms/2, 40, false) // keeping up
	before := f.messages
	f.run(300*ms, 20*ms, 40, true) // behind, asking for repairs
	behind := f.messages - before
	st := f.c.Stats()
	f.run(1000*ms, ms/2, 40, false) // caught up
	t.Logf("longest hold %d ms, ended at %d ms; %d messages while behind; %d retransmissions, %d held back; rate at the end %.1f MB/s",
		f.longest/ms, f.longestAt/ms, behind, st.Retransmits, st.RetransmitsPaced, f.c.Stats().Pacing.RateBytesPerSec/1e6)
	if st.Retransmits == 0 {
		t.Fatal("nothing was retransmitted: the scenario did not happen")
	}
	if f.longest > 100*ms {
		t.Fatalf("Send was held %d ms (until %d ms), want at most 100 ms, half the default latency budget", f.longest/ms, f.longestAt/ms)
	}
	// Even at the pacer's floor (256 KiB/s) the data's half of the rate
	// carries more than 150 messages of 200 bytes in 300 ms.
	if behind < 150 {
		t.Fatalf("%d messages sent while the receivers asked for repairs, want at least 150", behind)
	}
}
