package receiver

import (
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/packet"
)

// TestJoinHistoryAfterHeartbeatFirst (TestMulticastJoinHistory failed
// about one run in three): a late joiner that hears a HEARTBEAT before its
// first DATA (the sender's periodic one, or its group-size announcement)
// still asks for its history, the JoinHistory sequences before the point
// that HEARTBEAT announced, and delivers from the first of them. The
// HEARTBEAT had resynchronised ordered delivery there, and the join used
// to find the start fixed and give the history up.
func TestJoinHistoryAfterHeartbeatFirst(t *testing.T) {
	const id, history = 7, 4
	for _, tc := range []struct {
		name      string
		group     bool   // the first HEARTBEAT is the group-size announcement
		firstData uint64 // the first DATA heard; after 100, the ones before it were lost
		tick      bool   // a Tick between the HEARTBEAT and the DATA
	}{
		{"periodic", false, 100, false},
		{"periodic, a tick before the DATA", false, 100, true},
		{"group size", true, 100, false},
		{"periodic, first DATA lost", false, 102, false},
		{"periodic, first DATA lost, a tick before", false, 102, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCore(t, Config{Group: true, JoinHistory: history, Rand: rand.NewPCG(1, 2)})
			from := addr(1)
			now := 100 * ms
			if tc.group {
				p := packet.Packet{
					Header:    packet.Header{Kind: packet.KindHeartbeat, Flags: packet.FlagGroup, Session: id},
					Heartbeat: packet.Heartbeat{Start: 0, Next: 100, Timestamp: now, Receivers: 3},
				}
				b, err := p.AppendTo(nil)
				if err != nil {
					t.Fatal(err)
				}
				c.Handle(b, from, now)
				now += ms
				c.Handle(dataPkt(t, id, 0, tc.firstData, now), from, now)
				answer(t, c, from, id, 0, 0, tc.firstData+1, now) // validates the sender
			} else {
				answer(t, c, from, id, 0, 0, 100, now) // the HEARTBEAT, before any DATA
				if tc.tick {
					now += ms
					c.Tick(now) // delivery's start, fixed at the HEARTBEAT, reaches the tracker
				}
				now += ms
				c.Handle(dataPkt(t, id, 0, tc.firstData, now), from, now)
			}
			if got := c.Stats().HistoryRequested; got != history {
				t.Fatalf("asked for %d sequences of history, want %d", got, history)
			}
			hist, plain := map[uint64]bool{}, map[uint64]bool{}
			for end := now + 50*ms; now < end; now += ms {
				c.Tick(now)
				b := c.Outbox().Take()
				if b == nil {
					continue
				}
				for _, d := range b.Datagrams() {
					var p packet.Packet
					if p.Parse(d.Data) != nil || p.Kind != packet.KindNACK {
						continue
					}
					for _, r := range p.Ranges {
						for s := r.First; s <= r.Last(); s++ {
							if p.Flags&packet.FlagHistory != 0 {
								hist[s] = true
							} else {
								plain[s] = true
							}
						}
					}
				}
				c.Outbox().Give(b)
			}
			for s := uint64(96); s < 100; s++ {
				if !hist[s] {
					t.Errorf("history %d not asked for (history NACKs %v)", s, hist)
				}
			}
			if len(hist) != history {
				t.Errorf("history NACKs name %v, want 96..99", hist)
			}
			for s := uint64(100); s < tc.firstData; s++ {
				if !plain[s] || hist[s] {
					t.Errorf("lost %d not NACKed as a loss (plain %v, history %v)", s, plain, hist)
				}
			}
			if m, ok := c.Pop(); ok {
				t.Fatalf("delivered %d before the history came", m.Seq)
			}
			for s := uint64(96); s < tc.firstData; s++ {
				c.Handle(retransmitPkt(t, id, s, now), from, now)
			}
			c.Handle(dataPkt(t, id, 0, tc.firstData+1, now), from, now)
			c.Tick(now)
			want := uint64(96)
			for m, ok := c.Pop(); ok; m, ok = c.Pop() {
				if m.Seq != want {
					t.Fatalf("delivered %d, want %d", m.Seq, want)
				}
				want++
			}
			if want != tc.firstData+2 {
				t.Fatalf("delivered up to %d, want 96..%d", want-1, tc.firstData+1)
			}
			if s := c.Stats().Streams[0]; s.Skipped != 0 || s.Unrecovered != 0 {
				t.Fatalf("skipped %d, unrecovered %d", s.Skipped, s.Unrecovered)
			}
		})
	}
}
