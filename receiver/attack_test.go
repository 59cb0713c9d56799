package receiver

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/sender"
)

// link runs real senders and a receiver Core in process, on a fake clock,
// handing every datagram across at once (no loss, no delay).
type link struct {
	t       testing.TB
	rcv     *Core
	rcvAddr netip.AddrPort
	snd     map[netip.AddrPort]*sender.Core
	now     int64
	got     map[uint64]int // messages popped, by session
}

func newLink(t testing.TB, cfg Config) *link {
	return &link{t: t, rcv: newCore(t.(*testing.T), cfg), rcvAddr: netip.MustParseAddrPort("10.0.0.1:7000"),
		snd: map[netip.AddrPort]*sender.Core{}, now: int64(time.Second), got: map[uint64]int{}}
}

func (l *link) addSender(from netip.AddrPort, session uint64) *sender.Core {
	// A small retransmit buffer (256 KiB, ample for these tests), so that
	// a sender's own memory does not blur the receiver's heap figures.
	s, err := sender.NewCore(sender.Config{RetransmitBytes: 256 << 10, RetransmitPackets: 2048}, session, l.rcvAddr)
	if err != nil {
		l.t.Fatal(err)
	}
	l.snd[from] = s
	return s
}

// send sends one message from the sender at from and runs the exchange.
func (l *link) send(from netip.AddrPort, payload []byte) {
	if err := l.snd[from].Send(0, payload, l.now); err != nil {
		l.t.Fatal(err)
	}
	l.exchange()
}

// exchange moves datagrams both ways until both outboxes are empty, and
// pops what the receiver delivers. Feedback to any other address (the
// attackers') is dropped: they never see it.
func (l *link) exchange() {
	for moved := true; moved; {
		moved = false
		for from, s := range l.snd {
			if b := s.Outbox().Take(); b != nil {
				for _, d := range b.Datagrams() {
					l.rcv.Handle(d.Data, from, l.now)
					moved = true
				}
				s.Outbox().Give(b)
			}
		}
		if b := l.rcv.Outbox().Take(); b != nil {
			for _, d := range b.Datagrams() {
				if s := l.snd[d.Addr]; s != nil {
					s.Handle(d.Data, l.rcvAddr, l.now)
					moved = true
				}
			}
			l.rcv.Outbox().Give(b)
		}
		for m, ok := l.rcv.Pop(); ok; m, ok = l.rcv.Pop() {
			l.got[m.Session]++
		}
	}
}

// tick advances the clock and runs both ends' timers.
func (l *link) tick(d time.Duration) {
	l.now += int64(d)
	l.rcv.Tick(l.now)
	for _, s := range l.snd {
		s.Tick(l.now)
	}
	l.exchange()
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// attackAddr is the source of attacker port p: 64+ ports of one host.
func attackAddr(p int) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("10.6.6.6"), uint16(20000+p))
}

// attackDatagram is a valid-CRC 60-byte DATA of session 0xa0000+port, as
// in issue #19: nothing in it is authenticated. Protected, it claims FEC
// protection, which gives its stream an FEC decoder.
func attackDatagram(t testing.TB, port int, stream uint32, seq uint64, protected bool, buf []byte) []byte {
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 0xa0000 + uint64(port), Stream: stream},
		Seq: seq, Timestamp: int64(seq) * 1000, Payload: make([]byte, 20)}
	if protected {
		p.Flags = packet.FlagProtected
	}
	b, err := p.AppendTo(buf[:0])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUnauthenticatedFloodMemoryBounded is issue #19's memory attack: valid
// DATA from 64 source ports x 64 stream ids, with a real transfer running
// alongside and a second real sender arriving during the flood. The
// receiver's state stays within the share of Config.MaxStateBytes that
// unvalidated senders get, every stream refused is counted, and both real
// transfers deliver everything.
func TestUnauthenticatedFloodMemoryBounded(t *testing.T) {
	for _, n := range []int{4096, 100_000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l := newLink(t, Config{})
			a, b := netip.MustParseAddrPort("10.0.0.2:5000"), netip.MustParseAddrPort("10.0.0.3:5000")
			l.addSender(a, 0xaaaa)
			l.addSender(b, 0xbbbb) // created now, so its memory is not counted below; it starts later
			payload := make([]byte, 100)
			sentA, sentB := 0, 0
			for range 200 {
				l.send(a, payload)
				sentA++
				l.tick(100 * time.Microsecond)
			}
			before := liveHeap()
			var flood Stats
			rng := rand.New(rand.NewPCG(uint64(n), 19))
			buf := make([]byte, 0, 128)
			// 4096: one datagram per (port, stream). More: each pair comes
			// back with sequences spread over a reorder ring's span, half
			// of them claiming FEC protection, to make every structure
			// grow as far as it will.
			for i := range n {
				port, stream := i%64, uint32(i/64%64)
				seq := uint64(i / 4096)
				if n > 4096 {
					seq = rng.Uint64N(8192)
				}
				l.rcv.Handle(attackDatagram(t, port, stream, seq, n > 4096 && i%2 == 1, buf), attackAddr(port), l.now)
				if i%50 == 0 {
					l.send(a, payload)
					sentA++
					if sentB > 0 || l.now > int64(3*time.Second) {
						l.send(b, payload)
						sentB++
					}
					l.tick(200 * time.Microsecond)
				}
			}
			flood = l.rcv.Stats()
			// The second sender arrives after the attackers' grace time
			// if the flood was too short to reach it.
			for sentB < 500 {
				if sentB == 0 {
					l.tick(2 * time.Second)
				}
				l.send(b, payload)
				sentB++
				l.tick(200 * time.Microsecond)
			}
			for range 100 {
				l.tick(10 * time.Millisecond)
			}
			after := liveHeap()
			st := l.rcv.Stats()
			grew := int64(after) - int64(before)
			t.Logf("%d datagrams: heap %+.1f MiB; state %.1f MiB (unvalidated %.1f MiB); sessions refused %d, evicted %d; streams refused %d, budget refused %d, denied %d",
				n, float64(grew)/(1<<20), float64(st.StateBytes)/(1<<20), float64(st.UnvalidatedStateBytes)/(1<<20),
				st.SessionsRefused, st.SessionsEvicted, st.StreamsRefused, st.BudgetRefused, st.BudgetDenied)
			share := int64(defaultMaxStateBytes / unvalidatedShare)
			if st.UnvalidatedStateBytes > uint64(share) || grew > share+8<<20 {
				t.Errorf("unvalidated state %d B, heap growth %d B: want both within the %d B share (heap: +8 MiB slack)", st.UnvalidatedStateBytes, grew, share)
			}
			if l.got[0xaaaa] != sentA || l.got[0xbbbb] != sentB {
				t.Errorf("real transfers: delivered %d of %d and %d of %d", l.got[0xaaaa], sentA, l.got[0xbbbb], sentB)
			}
			// Every attacker stream either holds state or was refused, and
			// counted: in the 4096 run each sends one datagram, before any
			// attacker's grace time could let it be evicted.
			live := 0
			for _, x := range flood.Streams {
				if x.Session != hex64(0xaaaa) && x.Session != hex64(0xbbbb) {
					live++
				}
			}
			if n == 4096 {
				refused := flood.SessionsRefused + flood.StreamsRefused + flood.BudgetRefused
				if uint64(live)+refused != 4096 || flood.BudgetRefused == 0 || flood.SessionsEvicted != 0 {
					t.Errorf("%d attacker streams live + %d refused (sessions %d, streams %d, budget %d) != 4096",
						live, refused, flood.SessionsRefused, flood.StreamsRefused, flood.BudgetRefused)
				}
			}
			if st.SessionsValidated != 2 {
				t.Errorf("%d sessions validated, want the 2 real senders", st.SessionsValidated)
			}
		})
	}
}
