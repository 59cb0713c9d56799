package receiver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/sender"
)

// The sealed stateful fuzz: a real sender core and a real receiver core,
// both with a key, driven by a program that interleaves sends, delivery,
// loss and reordering of datagrams in both directions, time (which runs
// the handshake's retries and rekeys every three simulated seconds), receiver
// restarts (a new core: no keys), replays of anything recorded in either
// direction, forged copies and random bytes. After every operation:
//
//   - every delivered message is byte for byte one that was sent;
//   - no receiver instance delivers a message twice (no replay gets
//     through, into the live receiver or a new one);
//   - a receiver never has more than one session (one sender).
//
// At the end the link turns clean for five simulated seconds of traffic, and
// the receiver in place then must deliver what is sent: whatever the
// program did (restarts, floods, lost handshakes), the two ends find each
// other again.

const (
	sfSend = iota
	sfDeliverFwd
	sfDropFwd
	sfDeliverRev
	sfDropRev
	sfTime
	sfRestart
	sfReplay
	sfForge
	sfRekeyTime
	sfSwap
	sfGarbage
	sfOps
)

type sealedHarness struct {
	t        *testing.T
	now      int64
	snd      *sender.Core
	rcv      *Core
	cfg      Config
	fwd, rev [][]byte // in flight
	fwdHist  [][]byte // everything the sender sent, for replays (bounded)
	revHist  [][]byte
	sent     int
	got      map[uint64]bool // messages the current receiver delivered
	scratch  []byte
	// Both ends' figures when the program ended, before the settle.
	sndStats sender.Stats
	rcvStats Stats
}

var (
	sfSender   = netip.MustParseAddrPort("127.0.0.1:41001")
	sfReceiver = netip.MustParseAddrPort("127.0.0.1:41002")
	sfOther    = netip.MustParseAddrPort("127.0.0.1:41003")
)

func newSealedHarness(t *testing.T) *sealedHarness {
	// Small queues and buffers: a core is made for every run (and every
	// restart), and the defaults' tens of megabytes would be most of the
	// cost.
	h := &sealedHarness{t: t, now: int64(time.Second), got: map[uint64]bool{},
		cfg: Config{Key: testPSK, Mode: ModeUnordered, QueueMessages: 1024, QueueBytes: 1 << 20, ReorderCapacity: 1024}}
	var err error
	if h.snd, err = sender.NewCore(sender.Config{Key: testPSK, RekeyInterval: 3 * time.Second, QueuePackets: 1024, QueueBytes: 1 << 20,
		RetransmitPackets: 1024, RetransmitBytes: 1 << 20}, 0x5eed, sfReceiver); err != nil {
		t.Fatal(err)
	}
	if h.rcv, err = NewCore(h.cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

const sfHistory = 512

func (h *sealedHarness) collect() {
	for {
		b := h.snd.Outbox().Take()
		if b == nil {
			break
		}
		for _, d := range b.Datagrams() {
			c := bytes.Clone(d.Data)
			h.fwd = append(h.fwd, c)
			if len(h.fwdHist) < sfHistory {
				h.fwdHist = append(h.fwdHist, c)
			}
		}
		h.snd.Outbox().Give(b)
	}
	for {
		b := h.rcv.Outbox().Take()
		if b == nil {
			break
		}
		for _, d := range b.Datagrams() {
			c := bytes.Clone(d.Data)
			h.rev = append(h.rev, c)
			if len(h.revHist) < sfHistory {
				h.revHist = append(h.revHist, c)
			}
		}
		h.rcv.Outbox().Give(b)
	}
	// Keep the links bounded: a program that never delivers loses the
	// oldest, as a full queue would.
	if len(h.fwd) > 4096 {
		h.fwd = h.fwd[len(h.fwd)-4096:]
	}
	if len(h.rev) > 4096 {
		h.rev = h.rev[len(h.rev)-4096:]
	}
}

func (h *sealedHarness) toReceiver(b []byte, from netip.AddrPort) {
	h.rcv.Handle(b, from, h.now)
	h.check()
}

func (h *sealedHarness) toSender(b []byte) { h.snd.Handle(b, sfReceiver, h.now) }

// check pops every delivered message and holds it to the invariants.
func (h *sealedHarness) check() {
	for m, ok := h.rcv.Pop(); ok; m, ok = h.rcv.Pop() {
		if len(m.Payload) < 8 {
			h.t.Fatalf("delivered a %d-byte payload", len(m.Payload))
		}
		i := binary.BigEndian.Uint64(m.Payload)
		if i >= uint64(h.sent) || !bytes.Equal(m.Payload, payloadOf(i, h.scratch[:0])) {
			h.t.Fatalf("delivered a message never sent: %x", m.Payload)
		}
		if h.got[i] {
			h.t.Fatalf("message %d delivered twice by one receiver", i)
		}
		h.got[i] = true
	}
}

func payloadOf(i uint64, b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, i)
	for k := range 8 + int(i%24) {
		b = append(b, byte(i)+byte(k))
	}
	return b
}

func (h *sealedHarness) send() {
	p := payloadOf(uint64(h.sent), h.scratch[:0])
	err := h.snd.Send(0, p, h.now)
	switch {
	case err == nil:
		h.sent++
	case errors.Is(err, sender.ErrQueueFull):
	default:
		h.t.Fatalf("send: %v", err)
	}
}

func (h *sealedHarness) tick() {
	h.snd.Tick(h.now)
	h.rcv.Tick(h.now)
	h.check()
	h.collect()
	if n := len(h.rcv.sessions); n > 1 {
		h.t.Fatalf("receiver has %d sessions", n)
	}
}

func (h *sealedHarness) run(p *prog) {
	h.scratch = make([]byte, 0, 64)
	for steps := 0; !p.done() && steps < 2000; steps++ {
		op, k := p.u8()%sfOps, int(p.u8()%8)+1
		switch op {
		case sfSend:
			for range k {
				h.send()
			}
		case sfDeliverFwd:
			for ; k > 0 && len(h.fwd) > 0; k-- {
				d := h.fwd[0]
				h.fwd = h.fwd[1:]
				h.toReceiver(d, sfSender)
			}
		case sfDropFwd:
			h.fwd = h.fwd[min(k, len(h.fwd)):]
		case sfDeliverRev:
			for ; k > 0 && len(h.rev) > 0; k-- {
				d := h.rev[0]
				h.rev = h.rev[1:]
				h.toSender(d)
			}
		case sfDropRev:
			h.rev = h.rev[min(k, len(h.rev)):]
		case sfTime:
			h.now += int64(p.u8()) * int64(time.Millisecond)
		case sfRestart:
			var err error
			if h.rcv, err = NewCore(h.cfg); err != nil {
				h.t.Fatal(err)
			}
			h.got = map[uint64]bool{}
		case sfReplay:
			i := int(p.u16())
			if p.u8()&1 == 0 && len(h.fwdHist) > 0 {
				h.toReceiver(h.fwdHist[i%len(h.fwdHist)], []netip.AddrPort{sfSender, sfOther}[k%2])
			} else if len(h.revHist) > 0 {
				h.toSender(h.revHist[i%len(h.revHist)])
			}
		case sfForge:
			i, at, x := int(p.u16()), int(p.u16()), p.u8()|1
			if p.u8()&1 == 0 && len(h.fwdHist) > 0 {
				d := bytes.Clone(h.fwdHist[i%len(h.fwdHist)])
				d[at%len(d)] ^= x
				h.toReceiver(d, sfSender)
			} else if len(h.revHist) > 0 {
				d := bytes.Clone(h.revHist[i%len(h.revHist)])
				d[at%len(d)] ^= x
				h.toSender(d)
			}
		case sfRekeyTime:
			h.now += int64(3*time.Second) + int64(k)*int64(100*time.Millisecond)
		case sfSwap:
			if n := len(h.fwd); n > 1 {
				h.fwd[0], h.fwd[k%n] = h.fwd[k%n], h.fwd[0]
			}
		case sfGarbage:
			n := int(p.u8())
			g := make([]byte, n)
			for j := range g {
				g[j] = p.u8()
			}
			if k%2 == 0 {
				h.toReceiver(g, sfSender)
			} else {
				h.toSender(g)
			}
		}
		h.tick()
	}
	h.sndStats, h.rcvStats = h.snd.Stats(), h.rcv.Stats()
	h.settle()
}

// settle runs five clean seconds: everything in flight is delivered at
// once, a message goes every 50 ms, and the last second's messages must
// all reach the receiver in place.
func (h *sealedHarness) settle() {
	h.fwd, h.rev = nil, nil
	start := h.sent
	var lastSecond int
	for step := range 100 {
		h.now += int64(50 * time.Millisecond)
		if step == 80 {
			lastSecond = h.sent
		}
		h.send()
		h.tick()
		for len(h.fwd) > 0 || len(h.rev) > 0 {
			fwd, rev := h.fwd, h.rev
			h.fwd, h.rev = nil, nil
			for _, d := range fwd {
				h.toReceiver(d, sfSender)
			}
			for _, d := range rev {
				h.toSender(d)
			}
			h.tick()
		}
	}
	for i := lastSecond; i < h.sent; i++ {
		if !h.got[uint64(i)] {
			st, rs := h.snd.Stats(), h.rcv.Stats()
			h.t.Fatalf("after five clean seconds message %d (of %d, %d in the settle) is not delivered\nsender %+v\nreceiver %+v",
				i, h.sent, h.sent-start, st, rs)
		}
	}
}

// sealedSeeds are hand-written programs: a clean transfer, a lost
// handshake, a receiver restart mid-stream, rekeys under loss, replays and
// forgeries.
func sealedSeeds() [][]byte {
	op := func(o, k byte, args ...byte) []byte { return append([]byte{o, k}, args...) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	clean := cat(op(sfSend, 3), op(sfDeliverFwd, 7), op(sfDeliverRev, 7), op(sfDeliverFwd, 7), op(sfTime, 0, 10), op(sfDeliverFwd, 7))
	return [][]byte{
		clean,
		cat(op(sfSend, 2), op(sfDropFwd, 7), op(sfTime, 0, 150), op(sfDeliverFwd, 7), op(sfDropRev, 7), op(sfTime, 0, 200), op(sfDeliverFwd, 7), op(sfDeliverRev, 7), op(sfDeliverFwd, 7)),
		cat(clean, op(sfRestart, 0), op(sfSend, 4), op(sfDeliverFwd, 7), op(sfDeliverRev, 7), op(sfDeliverFwd, 7), op(sfDeliverRev, 7), op(sfDeliverFwd, 7)),
		cat(clean, op(sfRekeyTime, 2), op(sfSend, 3), op(sfDeliverFwd, 2), op(sfSwap, 3), op(sfDeliverRev, 7), op(sfDeliverFwd, 7), op(sfRekeyTime, 0), op(sfDropRev, 7)),
		cat(clean, op(sfReplay, 1, 0, 0, 0), op(sfReplay, 0, 0, 3, 0), op(sfReplay, 0, 0, 1, 1), op(sfRestart, 0), op(sfReplay, 1, 0, 0, 0), op(sfReplay, 1, 0, 1, 0)),
		cat(clean, op(sfForge, 0, 0, 2, 0, 30, 1, 0), op(sfForge, 0, 0, 0, 0, 40, 4, 0), op(sfForge, 0, 0, 0, 0, 5, 2, 1), op(sfGarbage, 0, 4, 0x54, 0x57, 1, 6)),
	}
}

func FuzzSealedSession(f *testing.F) {
	for _, s := range sealedSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<10 {
			return // long programs add time, not shapes
		}
		newSealedHarness(t).run(&prog{b: b})
	})
}

// TestSealedSessionSeeds runs the hand-written programs as plain tests,
// and checks that each did what it was written for.
func TestSealedSessionSeeds(t *testing.T) {
	want := []func(s sender.Stats, r Stats) bool{
		func(s sender.Stats, r Stats) bool { return s.Handshakes >= 1 && s.HandshakeAttempts == 1 },
		func(s sender.Stats, r Stats) bool { return s.HandshakeAttempts >= 2 },      // lost HELLO or WELCOME
		func(s sender.Stats, r Stats) bool { return s.Rehandshakes >= 1 },           // the restart drew a RETRY
		func(s sender.Stats, r Stats) bool { return s.Rekeys >= 1 },                 // rekeyed
		func(s sender.Stats, r Stats) bool { return r.NoKeys+r.Replayed >= 1 },      // the new receiver refused replays
		func(s sender.Stats, r Stats) bool { return r.AuthFailed+r.Malformed >= 1 }, // forgeries refused
	}
	for i, s := range sealedSeeds() {
		t.Run(string(rune('a'+i)), func(t *testing.T) {
			h := newSealedHarness(t)
			h.run(&prog{b: s})
			if st, rs := h.sndStats, h.rcvStats; !want[i](st, rs) {
				t.Fatalf("the seed did not exercise what it is for:\nsender %+v\nreceiver %+v", st, rs)
			}
		})
	}
}
