package sender

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// txAsm assembles sender fuzz programs (see txHarness.run for the encoding
// of each operation).
type txAsm struct{ b []byte }

func (a *txAsm) u8(v ...byte) *txAsm { a.b = append(a.b, v...); return a }
func (a *txAsm) u16(v uint16) *txAsm { a.b = binary.BigEndian.AppendUint16(a.b, v); return a }
func (a *txAsm) u32(v uint32) *txAsm { a.b = binary.BigEndian.AppendUint32(a.b, v); return a }
func (a *txAsm) u64(v uint64) *txAsm { a.b = binary.BigEndian.AppendUint64(a.b, v); return a }

// send queues k messages of n bytes (n odd: n·100 bytes) on stream s.
func (a *txAsm) send(s byte, n byte, k int) *txAsm {
	for range k {
		a.u8(txSend, s, n)
	}
	return a
}

// Feedback origin byte: bit 0 another session (bits 1-2 pick it), bits
// 3-4 the source address (0 the receiver).
const (
	fromReceiver = 0
	fromOther    = 1 << 3
	foreignSess  = 1
)

// report: loss in ppm, burst in thousandths, echo mode 0 (a real send
// time held hold µs), 1 (now - back ns, held hold ns), 2 (anything).
func (a *txAsm) report(s, who byte, highest uint64, lossPPM, burst uint32, echoMode byte, x, y uint64) *txAsm {
	a.u8(txReport, s, who).u64(highest).u64(5).u64(1).u64(1000).u64(50000).u32(lossPPM).u32(burst).u8(echoMode)
	switch echoMode {
	case 0:
		a.u16(uint16(x))
	case 1:
		a.u32(uint32(x)).u32(uint32(y))
	case 2:
		a.u64(x).u64(y)
	}
	return a
}

// nackRange is one range of a NACK program: absolute first (abs) or
// relative to the previous, length, and the gap after it.
type nackRange struct {
	abs   bool
	first uint64
	max   bool // length MaxRangeLen
	len   uint16
	gap   byte
}

// nack: back is how far before the stream's next sequence the first range
// starts; trunc (t&7 == 0) cuts t>>3 bytes off the body.
func (a *txAsm) nack(s, who byte, back uint16, trunc byte, rs ...nackRange) *txAsm {
	a.u8(txNACK, s, who, byte(len(rs)-1)).u16(back)
	for _, r := range rs {
		fl := byte(0)
		if r.abs {
			fl |= 1
		}
		if r.max {
			fl |= 2
		}
		a.u8(fl)
		if r.abs {
			a.u64(r.first)
		}
		a.u16(r.len - 1).u8(r.gap)
	}
	if trunc == 0 {
		return a.u8(1) // odd: not truncated
	}
	return a.u8(trunc &^ 7)
}

func (a *txAsm) clock(us uint16) *txAsm { return a.u8(txClock).u16(us).u8(0) }
func (a *txAsm) tick() *txAsm           { return a.u8(txTick) }
func (a *txAsm) take() *txAsm           { return a.u8(txTake) }

// Config bytes (see newTxHarness): FEC mode in b0%3, 3 streams for b0 in
// 0x40..0x42; b1 = 0x03: 128-packet retransmit buffer; b2 = 0x3f: a
// 71-packet queue; b2 | 0x40 starts the streams just below 2^64.
func cfg(b0, b2 byte) *txAsm { return (&txAsm{}).u8(b0, 0x03, b2) }

// senderSeeds are the named shapes the seed corpus covers.
func senderSeeds() map[string][]byte {
	s := map[string][]byte{}
	r := func(len uint16) nackRange { return nackRange{len: len, gap: 1} }
	// Send, take, NACK a few, take the retransmissions, NACK again at once
	// (suppressed) and later (resent).
	a := cfg(0x41, 0x3f).send(0, 40, 20).take().nack(0, fromReceiver, 10, 0, r(2), r(3)).take()
	a.nack(0, fromReceiver, 10, 0, r(2)).clock(2000).nack(0, fromReceiver, 10, 0, r(2)).take()
	s["nack_resend_suppress"] = a.b
	// NACK flood: the same ranges over and over, and the widest NACK.
	a = cfg(0x42, 0x3f).send(1, 60, 40).take()
	for range 30 {
		a.nack(1, fromReceiver, 40, 0, r(40)).clock(100)
	}
	a.nack(1, fromReceiver, 0, 0, nackRange{abs: true, first: 0, max: true, gap: 1}, nackRange{max: true, gap: 1}).take()
	s["nack_flood"] = a.b
	// Peer-bug shapes: a range with a start and no end (truncated), lo > hi
	// (ranges out of order), a span of 2^31, ranges beyond what was sent.
	a = cfg(0x41, 0x3f).send(0, 10, 10).take()
	a.nack(0, fromReceiver, 5, 4<<3, r(1))                                                                        // truncated
	a.nack(0, fromReceiver, 2, 0, nackRange{abs: true, first: 8, len: 1}, nackRange{abs: true, first: 2, len: 1}) // lo > hi
	a.nack(0, fromReceiver, 9, 0, r(1), nackRange{abs: true, first: 1 << 31, len: 1})                             // span 2^31
	a.nack(0, fromReceiver, 0, 0, nackRange{abs: true, first: 1 << 63, max: true}).take()
	s["nack_malformed"] = a.b
	// Across the 2^64 wrap.
	a = cfg(0x42, 0x7f).send(0, 20, 40).take().nack(0, fromReceiver, 30, 0, r(5), r(5)).take()
	s["wrap"] = a.b
	// Lying reports: echoes from the future, holds longer than the time,
	// loss of 100%, bursts of four million packets, HighestSeq anywhere.
	a = cfg(0x40, 0x3f).send(0, 20, 10).take()
	a.report(0, fromReceiver, 10, 20_000, 1500, 0, 500, 0).clock(50000)
	a.report(0, fromReceiver, 1<<63, 1_000_000, 1<<32-1, 2, 1<<62, 0).clock(60000)
	a.report(0, fromReceiver, 0, 0, 0, 1, 1, 0).report(0, fromReceiver, 5, 999_999, 1, 2, 1<<64-1, 1<<62)
	a.report(0, fromReceiver, 7, 500_000, 20_000, 1, 5000, 4000).send(0, 20, 10).tick().take()
	s["lying_reports"] = a.b
	// Feedback from other sessions and other addresses.
	a = cfg(0x41, 0x3f).send(0, 10, 10).take().nack(0, foreignSess|2, 5, 0, r(2)).nack(0, fromOther, 5, 0, r(2))
	a.report(0, foreignSess, 3, 1000, 1000, 0, 1, 0).report(0, fromOther|foreignSess|4, 3, 1000, 1000, 0, 1, 0).take()
	s["foreign_feedback"] = a.b
	// Idle streams: heartbeats back off; FEC blocks closed by their time
	// limit; more streams than the bound.
	a = cfg(0x42, 0x3f).send(0, 10, 3).send(1, 10, 1).send(2, 10, 1).send(3, 10, 1)
	for range 20 {
		a.clock(30000).tick().take()
	}
	s["idle_heartbeats"] = a.b
	// The queue filling: large messages, never taken.
	a = cfg(0x42, 0x3f).send(0, 201, 80).nack(0, fromReceiver, 50, 0, r(50))
	s["queue_full"] = a.b
	// Retransmit buffer evicting by count, bytes and age, then NACKs for
	// what it no longer has.
	a = cfg(0x41, 0x3f).send(0, 255, 200).take().clock(60000).nack(0, fromReceiver, 199, 0, r(150)).take()
	s["evicted_unavailable"] = a.b
	return s
}

// TestSenderSeedFiles checks that testdata/fuzz/FuzzSenderCore holds
// exactly the seeds senderSeeds assembles; with TELEWIRE_WRITE_SEEDS=1 it
// writes them instead.
func TestSenderSeedFiles(t *testing.T) {
	dir := filepath.Join("..", "testdata", "fuzz", "FuzzSenderCore")
	write := os.Getenv("TELEWIRE_WRITE_SEEDS") == "1"
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range senderSeeds() {
		path := filepath.Join(dir, "seed_"+name)
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(b)))
		if write {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (regenerate with TELEWIRE_WRITE_SEEDS=1)", err)
		}
		if string(got) != want {
			t.Errorf("%s differs from the assembled seed (regenerate with TELEWIRE_WRITE_SEEDS=1)", path)
		}
		if rb, err := readCorpusFile(path); err != nil || !bytes.Equal(rb, b) {
			t.Errorf("%s does not read back: %v", path, err)
		}
	}
}

// TestSenderSeedsReachTheirShapes runs each seed and checks that it does
// what its name says, so that the corpus keeps covering those shapes.
func TestSenderSeedsReachTheirShapes(t *testing.T) {
	check := map[string]func(h *txHarness, st Stats) bool{
		"nack_resend_suppress": func(h *txHarness, st Stats) bool { return st.Retransmits >= 5 && st.Suppressed > 0 },
		"nack_flood":           func(h *txHarness, st Stats) bool { return st.Suppressed > 100 && st.Malformed == 0 },
		"nack_malformed":       func(h *txHarness, st Stats) bool { return st.Malformed == 3 && st.Retransmits == 0 },
		"wrap": func(h *txHarness, st Stats) bool {
			return st.Retransmits >= 10 && st.Streams[0].NextSeq < h.cfg.FirstSeq
		},
		"lying_reports":       func(h *txHarness, st Stats) bool { return st.Reports == 5 }, // the lies give no RTT sample
		"foreign_feedback":    func(h *txHarness, st Stats) bool { return st.ForeignSession == 3 && st.Retransmits > 0 },
		"idle_heartbeats":     func(h *txHarness, st Stats) bool { return st.Heartbeats > 6 && h.tooMany > 0 },
		"queue_full":          func(h *txHarness, st Stats) bool { return h.queueFull > 0 },
		"evicted_unavailable": func(h *txHarness, st Stats) bool { return st.Unavailable > 0 },
	}
	seeds := senderSeeds()
	if len(check) != len(seeds) {
		t.Fatalf("%d checks for %d seeds", len(check), len(seeds))
	}
	for name, b := range seeds {
		p := &prog{b: b}
		h := newTxHarness(t, p)
		h.run(p)
		if st := h.c.Stats(); !check[name](h, st) {
			t.Errorf("seed %s does not reach its shape: stats %+v", name, st)
		}
	}
}
