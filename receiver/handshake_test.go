package receiver

import (
	"bytes"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/sender"
)

// recordSession runs a sealed sender core against receiver c over a
// lossless in-process link for msgs messages and returns every datagram
// the sender sent, in order: a capture of the session.
func recordSession(t *testing.T, c *Core, session uint64, msgs int, start int64) (recorded [][]byte) {
	t.Helper()
	snd, err := sender.NewCore(sender.Config{Key: testPSK, FEC: sender.FECConfig{Mode: sender.FECOff}}, session, addr(9))
	if err != nil {
		t.Fatal(err)
	}
	now := start
	fwd := func(b []byte, now int64) {
		recorded = append(recorded, bytes.Clone(b))
		c.Handle(b, addr(0), now)
	}
	back := func(b []byte, now int64) { snd.Handle(b, addr(9), now) }
	for i := range msgs {
		now += int64(time.Millisecond)
		if err := snd.Send(0, []byte{byte(i), byte(i >> 8), 'x'}, now); err != nil {
			t.Fatal(err)
		}
		snd.Tick(now)
		exchange(snd, fwd, now)
		c.Tick(now)
		exchange(c, back, now)
		exchange(snd, fwd, now) // what the feedback drew (CONFIRM, held data)
	}
	return recorded
}

// A recorded sealed session resent into a new receiver core with the same
// key (a restarted process) delivers nothing: the recorded HELLO draws a
// new WELCOME whose keys the recording's packets were not sealed under.
// Resent into the live receiver it delivers nothing either.
func TestRecordedSessionDoesNotReplay(t *testing.T) {
	live := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	recorded := recordSession(t, live, 0x77, 300, int64(time.Second))
	if got := len(popAll(live)); got != 300 {
		t.Fatalf("live receiver delivered %d of 300", got)
	}
	sealedData := 0
	for _, d := range recorded {
		if info, err := seal.Peek(d); err == nil && info.Kind != packet.KindHello {
			sealedData++
		}
	}

	fresh := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	now := int64(10 * time.Second)
	for _, d := range recorded {
		now += int64(100 * time.Microsecond)
		fresh.Handle(d, addr(5), now)
		fresh.Tick(now)
	}
	st := fresh.Stats()
	if got := popAll(fresh); len(got) != 0 || st.Delivered != 0 || st.Sessions != 0 || st.Handshakes != 0 {
		t.Fatalf("new receiver delivered %d recorded messages: %+v", len(got), st)
	}
	if st.NoKeys != uint64(sealedData) || st.Welcomes != 1 {
		t.Fatalf("new receiver: no_keys %d of %d sealed packets, welcomes %d", st.NoKeys, sealedData, st.Welcomes)
	}

	for _, d := range recorded {
		now += int64(100 * time.Microsecond)
		live.Handle(d, addr(5), now)
	}
	st = live.Stats()
	if got := popAll(live); len(got) != 0 || st.Delivered != 300 {
		t.Fatalf("live receiver delivered %d replayed messages", len(got))
	}
	if st.Replayed != uint64(len(recorded)) {
		t.Fatalf("live receiver counted %d of %d replayed", st.Replayed, len(recorded))
	}
}

// A flood of handshake initiations: forged HELLOs cost one HMAC each and
// allocate nothing; authentic HELLOs recorded from many sessions (the
// worst an attacker without the key can send) cost at most
// handshakesPerSecond key agreements per second, the rest counted as
// throttled; the same HELLO again costs no agreement at all; and none of
// it makes receiver memory grow or creates a session.
func TestHandshakeFloodIsBounded(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	k, _ := seal.NewKey(testPSK)
	h := k.NewHandshaker(nil)
	const distinct = 2000
	hellos := make([][]byte, distinct)
	for i := range hellos {
		in, err := h.Initiate(uint64(1000+i), int64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		hellos[i] = bytes.Clone(in.Hello())
	}
	forged := bytes.Clone(hellos[0])
	forged[40] ^= 1
	n := 200_000
	if testing.Short() || raceEnabled {
		n = 20_000
	}

	// Forged: nothing allocated, nothing answered.
	from := addr(1)
	if allocs := testing.AllocsPerRun(1000, func() { c.Handle(forged, from, 1) }); allocs != 0 {
		t.Fatalf("a forged HELLO costs %.1f allocations", allocs)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	froms := make([]netip.AddrPort, 50)
	for i := range froms {
		froms[i] = addr(1 + i)
	}
	now := int64(time.Second)
	const gap = int64(10 * time.Microsecond) // 100 000 HELLOs per second
	authentic, answers := 0, 0
	for i := range n {
		now += gap
		if i%3 != 0 {
			authentic++
		}
		switch i % 3 {
		case 0:
			c.Handle(forged, froms[i%50], now)
		case 1:
			c.Handle(hellos[(i/3)%distinct], froms[i%50], now)
		default:
			c.Handle(hellos[0], froms[0], now) // the same one over and over
		}
		if i%256 == 0 {
			c.Tick(now)
			if b := c.Outbox().Take(); b != nil {
				answers += b.Len()
				c.Outbox().Give(b)
			}
		}
	}
	if b := c.Outbox().Take(); b != nil {
		answers += b.Len()
		c.Outbox().Give(b)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := c.Stats()
	elapsed := float64(now-int64(time.Second)) / 1e9
	maxAgreements := uint64(handshakesPerSecond + handshakesPerSecond*elapsed + 1)
	t.Logf("%d HELLOs over %.2f s: %d key agreements (bound %d), %d throttled, %d repeats, %d forged, %d WELCOMEs sent; heap %+d bytes",
		n, elapsed, st.Welcomes, maxAgreements, st.HandshakesThrottled, st.HelloRepeats, st.AuthFailed, answers, int64(after.HeapAlloc)-int64(before.HeapAlloc))
	if st.Welcomes > maxAgreements || st.Welcomes == 0 {
		t.Fatalf("%d key agreements in %.2f s, bound %d", st.Welcomes, elapsed, maxAgreements)
	}
	if st.AuthFailed != uint64(n-authentic)+1001 { // and those of AllocsPerRun

		t.Fatalf("forged HELLOs counted %d", st.AuthFailed)
	}
	if st.Sessions != 0 || st.Handshakes != 0 || st.Delivered != 0 {
		t.Fatalf("a flood of HELLOs created state: %+v", st)
	}
	// Every authentic HELLO was answered (a key agreement or a repeat),
	// throttled, or refused as older than the one pending for its session.
	if got := st.Welcomes + st.HandshakesThrottled + st.HelloRepeats + st.Replayed; got != uint64(authentic) {
		t.Fatalf("authentic HELLOs accounted %d of %d: %+v", got, authentic, st)
	}
	// Answers: one WELCOME per key agreement, and stored WELCOMEs sent
	// again for repeated HELLOs at most repeatsPerSecond.
	if maxAnswers := int(st.Welcomes) + int(repeatsPerSecond*(1+elapsed)) + 1; answers > maxAnswers {
		t.Fatalf("%d WELCOMEs sent, bound %d", answers, maxAnswers)
	}
	// The pending table is allocated with the core: a flood adds nothing
	// that stays. A generous bound for the runtime's own noise.
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 1<<20 {
		t.Fatalf("heap grew %d bytes under a HELLO flood", grow)
	}
}

// Sealed packets under keys the receiver does not hold (a forged flood
// naming random sessions) draw RETRYs at most retriesPerSecond, each no
// larger than the packet that drew it.
func TestRetriesAreRateLimited(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	s := newSenderSide(t, newCore(t, Config{Key: testPSK}), testPSK, 0x77, 0)
	good := s.data(1, 1) // sealed under keys c never agreed
	now := int64(time.Second)
	var sent, bytesOut, bytesIn int
	for i := range 10_000 {
		now += int64(100 * time.Microsecond) // 10 000/s for 1 s
		c.Handle(good, addr(1), now)
		bytesIn += len(good)
		if i%100 == 0 {
			if b := c.Outbox().Take(); b != nil {
				for _, d := range b.Datagrams() {
					sent++
					bytesOut += len(d.Data)
					if len(d.Data) > len(good) {
						t.Fatalf("RETRY of %d bytes for a packet of %d", len(d.Data), len(good))
					}
				}
				c.Outbox().Give(b)
			}
		}
	}
	st := c.Stats()
	if st.NoKeys != 10_000 || st.Retries > 2*retriesPerSecond+1 || st.Retries+st.RetriesThrottled != 10_000 {
		t.Fatalf("no_keys %d, retries %d, throttled %d", st.NoKeys, st.Retries, st.RetriesThrottled)
	}
	t.Logf("%d packets (%d bytes) under unknown keys drew %d RETRYs (%d bytes)", st.NoKeys, bytesIn, sent, bytesOut)
}

// A sender's handshake answered in the middle of a flood of recorded
// HELLOs (from 2000 sessions, at 100 000/s, long enough to have filled
// the pending table) is still confirmed 2.5 s later: the flood replaces
// pending answers only at the key agreement rate, oldest first.
func TestPendingHandshakeSurvivesFlood(t *testing.T) {
	c := newCore(t, Config{Key: testPSK, Mode: ModeUnordered})
	k, _ := seal.NewKey(testPSK)
	h := k.NewHandshaker(nil)
	hellos := make([][]byte, 2000)
	for i := range hellos {
		in, _ := h.Initiate(uint64(1000+i), int64(i+1))
		hellos[i] = bytes.Clone(in.Hello())
	}
	from := addr(1)
	now := int64(time.Second)
	i := 0
	flood := func(d time.Duration) {
		for end := now + int64(d); now < end; i++ {
			now += int64(10 * time.Microsecond)
			c.Handle(hellos[i%len(hellos)], from, now)
			if i%256 == 0 {
				if b := c.Outbox().Take(); b != nil {
					c.Outbox().Give(b)
				}
			}
		}
	}
	flood(5 * time.Second) // 64 + 5*64 agreements: the 256-entry table is full

	in, err := h.Initiate(0x77, now)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Stats().Welcomes
	for c.Stats().Welcomes == before { // the sender retries until a token is free
		now += int64(20 * time.Millisecond)
		c.Handle(in.Hello(), addr(0), now)
	}
	var welcome []byte
	b := c.Outbox().Take()
	for _, d := range b.Datagrams() {
		if d.Addr == addr(0) {
			welcome = bytes.Clone(d.Data)
		}
	}
	c.Outbox().Give(b)
	tr, err := h.Finish(in, welcome)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := tr.NewSealer(seal.Params{Session: 0x77, Dir: seal.ToReceiver}, 0)
	confirm := packet.Packet{Header: packet.Header{Kind: packet.KindConfirm, Session: 0x77}}
	cb, _ := confirm.AppendTo(make([]byte, 0, seal.ConfirmLen))
	if cb, err = sealer.SealInPlace(cb); err != nil {
		t.Fatal(err)
	}

	flood(2500 * time.Millisecond)
	c.Handle(cb, addr(0), now)
	if st := c.Stats(); st.Handshakes != 1 || st.Sessions != 1 || st.Welcomes < 400 {
		t.Fatalf("the pending handshake did not survive: %d handshakes, %d sessions, %d agreements in the flood", st.Handshakes, st.Sessions, st.Welcomes)
	}
}
