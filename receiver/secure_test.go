package receiver

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/sender"
)

var testPSK = bytes.Repeat([]byte{0x5a}, seal.KeyLen)

// senderSide seals packets of one session as a sender would, under the
// keys of a handshake it made with a receiver core.
type senderSide struct {
	t       testing.TB
	session uint64
	traffic *seal.Traffic
	sealer  *seal.Sealer
}

// newSenderSide handshakes with c (from addr(0)) for session and returns
// the sender's side, its sealer counting from first. The receiver has no
// session until the first packet under the new keys arrives.
func newSenderSide(t testing.TB, c *Core, psk []byte, session, first uint64) *senderSide {
	t.Helper()
	k, err := seal.NewKey(psk)
	if err != nil {
		t.Fatal(err)
	}
	h := k.NewHandshaker(nil)
	in, err := h.Initiate(session, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.Handle(in.Hello(), addr(0), 0)
	b := c.Outbox().Take()
	if b == nil || b.Len() != 1 {
		t.Fatal("no WELCOME")
	}
	tr, err := h.Finish(in, b.Datagrams()[0].Data)
	c.Outbox().Give(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tr.NewSealer(seal.Params{Session: session, Dir: seal.ToReceiver}, first)
	if err != nil {
		t.Fatal(err)
	}
	return &senderSide{t: t, session: session, traffic: tr, sealer: s}
}

func (s *senderSide) data(seq uint64, ts int64) []byte {
	s.t.Helper()
	p := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: s.session}, Seq: seq, Timestamp: ts, Payload: []byte{byte(seq)}}
	b, err := p.AppendTo(make([]byte, 0, p.EncodedLen()+seal.ToReceiver.Overhead()))
	if err != nil {
		s.t.Fatal(err)
	}
	if b, err = s.sealer.SealInPlace(b); err != nil {
		s.t.Fatal(err)
	}
	return b
}

func popAll(c *Core) []Message {
	var out []Message
	for {
		m, ok := c.Pop()
		if !ok {
			return out
		}
		m.Payload = bytes.Clone(m.Payload)
		out = append(out, m)
	}
}

func TestSealedDeliveryAndSealedFeedback(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	s := newSenderSide(t, c, testPSK, 0x77, 1000)
	for i := range 5 {
		c.Handle(s.data(uint64(i), int64(i+1)), addr(0), int64(i+2))
	}
	got := popAll(c)
	if len(got) != 5 || got[4].Seq != 4 || got[4].Payload[0] != 4 || got[0].Session != 0x77 {
		t.Fatalf("delivered %+v", got)
	}
	c.Tick(1)
	c.Tick(int64(time.Second)) // a report interval later: REPORT due
	b := c.Outbox().Take()
	if b == nil || b.Len() == 0 {
		t.Fatal("no feedback queued")
	}
	for _, d := range b.Datagrams() {
		info, err := seal.Peek(d.Data)
		if err != nil || info.Dir != seal.ToSender || info.Session != 0x77 || info.KeyID != s.traffic.Tag() {
			t.Fatalf("feedback not sealed for the sender: %+v, %v", info, err)
		}
		o, err := s.traffic.NewOpener(seal.Params{Session: 0x77, Dir: seal.ToSender})
		if err != nil {
			t.Fatal(err)
		}
		body, _, err := o.Open(nil, d.Data)
		if err != nil {
			t.Fatalf("sender cannot open feedback: %v", err)
		}
		var p packet.Packet
		h, _ := packet.PeekHeader(d.Data)
		if err := p.ParseBody(h, body); err != nil || p.Kind != packet.KindReport || p.Report.Received != 5 {
			t.Fatalf("feedback %v %+v", err, p.Report)
		}
	}
	c.Outbox().Give(b)
}

// Anti-replay with a key: a duplicate is rejected, a datagram reordered by
// the window less one is accepted, one older than the window rejected.
func TestSealedReplayWindow(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered, Window: 1 << 16})
	const w = guard.DefaultWindow
	s := newSenderSide(t, c, testPSK, 0x77, 0)
	first := s.data(0, 1) // counter 0
	// Seal (window+1) packets; keep the one at counter 1 and the one at
	// counter 2 to send after the newest (counter w+1).
	var c1, c2 []byte
	for i := range uint64(w + 2) {
		d := s.data(i, 1)
		switch i {
		case 0:
			first = d
		case 1:
			c1 = d
		case 2:
			c2 = d
		}
		if i == 0 || i == w+1 {
			c.Handle(d, addr(0), 2)
		}
	}
	popAll(c)
	c.Handle(first, addr(0), 3) // duplicate of the first
	if st := c.Stats(); st.Replayed != 1 {
		t.Fatalf("duplicate: %+v", st)
	}
	c.Handle(c2, addr(0), 4) // counter w+1 - (w-1) = 2: inside the window
	if got := popAll(c); len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("datagram reordered by window-1 not delivered: %+v", got)
	}
	c.Handle(c1, addr(0), 5) // counter 1: w behind, outside the window
	st := c.Stats()
	if st.Replayed != 2 || len(popAll(c)) != 0 {
		t.Fatalf("datagram older than the window: %+v", st)
	}
}

// 10^6 unauthenticated datagrams (random bytes, plain packets, forged
// sealed packets for new and existing sessions) create no state.
func TestUnauthenticatedFloodCreatesNoState(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	s := newSenderSide(t, c, testPSK, 0x77, 0)
	c.Handle(s.data(0, 1), addr(0), 1) // one real session
	popAll(c)
	before := c.Stats()
	rng := rand.New(rand.NewPCG(1, 2))
	good := s.data(1, 1)
	plain := dataPkt(t, 0x99, 0, 1, 1)
	buf := make([]byte, 0, 1500)
	for i := range n {
		buf = buf[:0]
		switch i % 4 {
		case 0: // random bytes
			buf = buf[:rng.IntN(200)]
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
		case 1: // a plain, valid DATA packet
			buf = append(buf, plain...)
		case 2: // a sealed-looking packet for a random session
			buf = append(buf, good...)
			for j := 8; j < 16; j++ {
				buf[j] = byte(rng.Uint32())
			}
		default: // the real session's packet with its body or tag changed
			buf = append(buf, good...)
			buf[24+8+rng.IntN(len(good)-32)] ^= byte(1 + rng.IntN(255))
		}
		c.Handle(buf, addr(1+i%50), int64(2+i))
	}
	st := c.Stats()
	if st.Sessions != before.Sessions || len(st.Streams) != 1 || st.Streams[0].Received != 1 || st.Delivered != before.Delivered {
		t.Fatalf("unauthenticated datagrams created state: %+v", st)
	}
	if st.Streams[0].Source != addr(0).String() {
		t.Fatalf("session moved to %s", st.Streams[0].Source)
	}
	rejected := st.Unsealed + st.AuthFailed + st.NoKeys + st.Malformed + st.KeyMismatch + st.Corrupted
	if rejected != uint64(n) {
		t.Fatalf("%d of %d datagrams counted as rejected: %+v", rejected, n, st)
	}
	if len(popAll(c)) != 0 {
		t.Fatal("unauthenticated datagram delivered")
	}
}

// A valid datagram replayed from a new address is rejected and does not
// move the session; the sender's next datagram from a new address does.
func TestReplayFromNewAddressDoesNotMoveSession(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	s := newSenderSide(t, c, testPSK, 0x77, 0)
	d := s.data(0, 1)
	c.Handle(d, addr(0), 1)
	c.Handle(d, addr(9), 2)
	st := c.Stats()
	if st.Replayed != 1 || st.Streams[0].Source != addr(0).String() || st.AddressChanges != 0 {
		t.Fatalf("replay from a new address: %+v", st)
	}
	c.Handle(s.data(1, 2), addr(9), 3)
	st = c.Stats()
	if st.Streams[0].Source != addr(9).String() || st.AddressChanges != 1 || st.Sessions != 1 {
		t.Fatalf("fresh datagram from a new address: %+v", st)
	}
}

// A restarted sender (new session id, same address) replaces the old
// session; the old session's datagrams replayed afterwards do not bring it
// back: no keys for them are left.
func TestSealedRestartRetiresOldSession(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	old := newSenderSide(t, c, testPSK, 0x77, 0)
	var recorded [][]byte
	for i := range 3 {
		d := old.data(uint64(i), 1)
		recorded = append(recorded, d)
		c.Handle(d, addr(0), 1)
	}
	fresh := newSenderSide(t, c, testPSK, 0x88, 0)
	c.Handle(fresh.data(0, 2), addr(0), 2)
	st := c.Stats()
	if st.SessionRestarts != 1 || len(st.Streams) != 1 || st.Streams[0].Session != hex64(0x88) {
		t.Fatalf("restart: %+v", st)
	}
	popAll(c)
	for _, d := range recorded {
		c.Handle(d, addr(5), 3)
	}
	st = c.Stats()
	if st.NoKeys != 3 || st.Retries != 3 || len(st.Streams) != 1 || len(popAll(c)) != 0 {
		t.Fatalf("old session replayed: %+v", st)
	}
}

// A sealed stream with FEC 10,3 from a real sender core: a DATA packet
// dropped on the way is rebuilt from sealed parity, and nothing is refused.
func TestSealedFECRebuilds(t *testing.T) {
	snd, err := sender.NewCore(sender.Config{Key: testPSK, FEC: sender.FECConfig{Mode: sender.FECFixed, K: 10, M: 3}, DisablePacking: true}, 0x77, addr(9))
	if err != nil {
		t.Fatal(err)
	}
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	handshakeCores(t, snd, c, 0)
	// Two blocks in two batches: the receiver's FEC decoder starts with
	// the first parity it sees, so the loss is in the second block.
	data := 0
	for batch := range 2 {
		for i := range 10 {
			if err := snd.Send(0, []byte{byte(10*batch + i), 0xaa}, int64(10*batch+i+1)); err != nil {
				t.Fatal(err)
			}
		}
		b := snd.Outbox().Take()
		for _, d := range b.Datagrams() {
			if info, err := seal.Peek(d.Data); err == nil && info.Kind == packet.KindData {
				if data++; data == 15 {
					continue // this one never arrives
				}
			}
			c.Handle(d.Data, addr(0), 30)
		}
		snd.Outbox().Give(b)
	}
	got := popAll(c)
	st := c.Stats()
	if len(got) != 20 || st.AuthFailed+st.Replayed+st.Malformed != 0 {
		t.Fatalf("delivered %d of 20, stats %+v", len(got), st)
	}
	if s := st.Streams[0]; s.RecoveredFEC != 1 || s.ParityReceived != 6 {
		t.Fatalf("stream %+v", s)
	}
}

// exchange moves everything queued in from's outbox to to's Handle, as if
// over a lossless link; it returns how many datagrams moved.
func exchange(from interface{ Outbox() *outbox.Pair }, to func(b []byte, now int64), now int64) int {
	n := 0
	for {
		b := from.Outbox().Take()
		if b == nil {
			return n
		}
		for _, d := range b.Datagrams() {
			to(d.Data, now)
			n++
		}
		from.Outbox().Give(b)
	}
}

// handshakeCores runs a sealed sender core's handshake with receiver c
// over a lossless link at now: HELLO, WELCOME, CONFIRM.
func handshakeCores(t testing.TB, snd *sender.Core, c *Core, now int64) {
	t.Helper()
	snd.Tick(now)
	for range 4 {
		exchange(snd, func(b []byte, now int64) { c.Handle(b, addr(0), now) }, now)
		if exchange(c, func(b []byte, now int64) { snd.Handle(b, addr(9), now) }, now) == 0 {
			break
		}
	}
	if st := snd.Stats(); st.Handshakes == 0 {
		t.Fatalf("handshake did not complete: %+v", st)
	}
}
