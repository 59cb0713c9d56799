package receiver

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// rxAsm assembles receiver fuzz programs (see rxHarness.run for the
// encoding of each operation).
type rxAsm struct{ b []byte }

func (a *rxAsm) u8(v ...byte) *rxAsm { a.b = append(a.b, v...); return a }
func (a *rxAsm) u16(v uint16) *rxAsm { a.b = binary.BigEndian.AppendUint16(a.b, v); return a }
func (a *rxAsm) u64(v uint64) *rxAsm { a.b = binary.BigEndian.AppendUint64(a.b, v); return a }

// Sequence choices for data and heartbeat.
type seqSel func(a *rxAsm)

func next() seqSel       { return func(a *rxAsm) { a.u8(0) } }
func step(d int8) seqSel { return func(a *rxAsm) { a.u8(1, byte(d)) } }
func jump(v uint16, sh byte) seqSel {
	return func(a *rxAsm) { a.u8(2).u16(v).u8(sh) }
}
func abs(v uint64) seqSel { return func(a *rxAsm) { a.u8(3).u64(v) } }

// data: source, session index, stream index, sequence, flags (1 retransmit,
// 2 large payload), payload length.
func (a *rxAsm) data(src, sess, str byte, s seqSel, fl, n byte) *rxAsm {
	a.u8(rxData, src, sess, str)
	s(a)
	a.u8(fl &^ 4).u16(2000) // sent 2 ms ago
	return a.u8(n)
}

func (a *rxAsm) run(src, sess, str byte, k int) *rxAsm {
	for range k {
		a.data(src, sess, str, next(), 0, 32)
	}
	return a
}

func (a *rxAsm) parity(src, sess, str, back, k, m, idx, stride byte, shard []byte) *rxAsm {
	a.u8(rxParity, src, sess, str, back, k, m, idx, stride, byte(len(shard)-1))
	return a.u8(shard...)
}

func (a *rxAsm) heartbeat(src, sess, str byte, s seqSel, back uint16) *rxAsm {
	a.u8(rxHeartbeat, src, sess, str)
	s(a)
	return a.u16(back).u8(0)
}

// groupHeartbeat is a heartbeat flagged packet.FlagGroup, advertising a
// group of 1 + size*16411 receivers (size < 64).
func (a *rxAsm) groupHeartbeat(src, sess, str byte, s seqSel, back uint16, size byte) *rxAsm {
	a.u8(rxHeartbeat, src, sess, str)
	s(a)
	return a.u16(back).u8(2 | size<<2)
}

func (a *rxAsm) unavailable(src, sess, str byte, back uint16, lens ...uint16) *rxAsm {
	a.u8(rxUnavailable, src, sess, str, byte(len(lens)-1)).u16(back)
	for _, l := range lens {
		a.u16(l - 1).u8(1)
	}
	return a
}

func (a *rxAsm) raw(src byte, b []byte, craft bool) *rxAsm {
	a.u8(rxRaw, src, byte(len(b))).u8(b...)
	if len(b) >= 24 {
		if craft {
			a.u8(1)
		} else {
			a.u8(0)
		}
	}
	return a
}

func (a *rxAsm) clock(ms uint16) *rxAsm { return a.u8(rxClock).u16(ms).u8(1) }
func (a *rxAsm) pop(n byte) *rxAsm      { return a.u8(rxPop, n) }
func (a *rxAsm) tick(takeOutbox bool) *rxAsm {
	if takeOutbox {
		return a.u8(rxTick, 1)
	}
	return a.u8(rxTick, 0)
}
func (a *rxAsm) honest(n, lossData, lossParity byte) *rxAsm {
	return a.u8(rxHonest, n-1, lossData, lossParity)
}

// Config bytes (see newRxHarness): b0 picks the mode (b0%3) and 3 sessions
// of 3 streams for 0x20..0x22; b1 = 0x5c: window 256, reorder capacity 24
// (32), interleaving 2 for the honest stream; b2 = 0x40: latency 65 ms,
// queue of 9 messages.
func cfgOrdered() *rxAsm   { return (&rxAsm{}).u8(0x21, 0x5c, 0x40) }
func cfgUnordered() *rxAsm { return (&rxAsm{}).u8(0x22, 0x5c, 0x40) }
func cfgLatest() *rxAsm    { return (&rxAsm{}).u8(0x20, 0x5c, 0x40) }

// cfgGroup is an ordered receiver of a multicast group (b0's two top
// bits) with JoinHistory 12 and a 201 ms budget (b2 0xc8).
func cfgGroup() *rxAsm { return (&rxAsm{}).u8(0xe1, 0x5c, 0xc8) }

// receiverSeeds are the named shapes the seed corpus covers.
func receiverSeeds() map[string][]byte {
	s := map[string][]byte{}
	// A group receiver joining a running stream: the group size a
	// HEARTBEAT advertises, a history request, repairs of some of it.
	a := cfgGroup().data(0, 0, 0, abs(1000), 0, 32).groupHeartbeat(0, 0, 0, step(0), 900, 5).run(0, 0, 0, 10)
	a.clock(3).tick(true).data(0, 0, 0, abs(990), 1, 32).data(0, 0, 0, abs(995), 1, 32).clock(30).tick(true).pop(20)
	a.groupHeartbeat(0, 0, 0, next(), 5, 0).clock(300).tick(true).pop(40)
	s["group_join"] = a.b
	// In order, popped and ticked.
	a = cfgOrdered()
	for range 5 {
		a.run(0, 0, 0, 8).clock(20).tick(true).pop(10)
	}
	s["in_order"] = a.b
	// Gaps, reordering, NACK rounds, retransmissions filling the gaps.
	a = cfgOrdered().run(0, 0, 0, 5).data(0, 0, 0, step(5), 0, 32).data(0, 0, 0, step(-2), 0, 32)
	a.clock(3).tick(true).clock(3).tick(true).data(0, 0, 0, step(-3), 1, 32).data(0, 0, 0, step(-2), 1, 32)
	a.clock(30).tick(true).pop(20).clock(300).tick(true).pop(20)
	s["gaps_retransmit"] = a.b
	// A sender restarting: session 1, then 2, then 1 again, same address.
	a = cfgOrdered().run(1, 0, 0, 10).pop(5).run(1, 1, 0, 10).pop(5).run(1, 0, 0, 10).clock(20).tick(true).pop(40)
	s["restart"] = a.b
	// Across the 2^64 wrap, and the 16-bit-style pattern 65535, 0, 65534.
	a = cfgOrdered().data(0, 0, 0, abs(1<<64-3), 0, 8).run(0, 0, 0, 4).data(0, 0, 0, step(-4), 0, 8)
	a.data(0, 0, 1, abs(65535), 0, 8).data(0, 0, 1, abs(65536), 0, 8).data(0, 0, 1, abs(65534), 0, 8).data(0, 0, 1, abs(65535), 0, 8)
	a.clock(50).tick(true).pop(30).clock(300).tick(true).pop(30)
	s["wrap"] = a.b
	// Huge jumps: a resync, a jump of 2^63, absolute extremes, far heartbeats.
	a = cfgUnordered().run(0, 0, 0, 3).data(0, 0, 0, jump(1, 40), 0, 8).data(0, 0, 0, abs(1<<63), 0, 8)
	a.data(0, 0, 0, abs(0), 0, 8).data(0, 0, 0, abs(1<<64-1), 0, 8).heartbeat(0, 0, 0, jump(0xffff, 47), 0xffff)
	a.heartbeat(0, 0, 0, abs(5), 3).run(0, 0, 0, 3).clock(20).tick(true).pop(30)
	s["jumps"] = a.b
	// More senders and streams than the bounds admit.
	a = cfgUnordered()
	for src := range byte(4) {
		for sess := range byte(4) {
			for str := range byte(4) {
				a.data(src, sess, str, next(), 0, 4)
			}
		}
	}
	a.pop(255).tick(true)
	s["session_stream_flood"] = a.b
	// An FEC-protected stream losing data and parity in patterns; its
	// sender answers the challenge its first two messages drew.
	a = cfgOrdered().honest(2, 0, 0).honest(8, 0x12, 0).honest(8, 0x03, 0x01).honest(8, 0x40, 0x02).honest(8, 0xff, 0)
	a.clock(30).tick(true).honest(4, 0x01, 0).clock(30).tick(true).pop(64).clock(300).tick(true).pop(64)
	s["fec_honest"] = a.b
	// Forged parity for a stream with a gap (from a source that has
	// answered its challenge), then the gap's "unavailable".
	a = cfgOrdered().run(0, 0, 0, 4).data(0, 0, 0, step(3), 0, 32).tick(true)
	a.parity(0, 0, 0, 6, 4, 2, 0, 1, bytes.Repeat([]byte{0xa5}, 46)).parity(0, 0, 0, 6, 4, 2, 1, 1, bytes.Repeat([]byte{0x5a}, 46))
	a.parity(0, 0, 0, 6, 200, 56, 55, 1, []byte{1}).unavailable(0, 0, 0, 3, 2).clock(10).tick(true).pop(10)
	s["forged_parity_unavailable"] = a.b
	// Silence past the session timeout with the outbox never taken.
	a = cfgLatest().run(0, 0, 0, 10)
	for range 40 {
		a.clock(15).tick(false)
	}
	a.clock(1000).tick(false).run(0, 0, 0, 3).tick(true).pop(20)
	s["expiry_feedback_full"] = a.b
	// Garbage, crafted headers with bad bodies, truncated packets.
	a = cfgUnordered().raw(0, []byte("GET / HTTP/1.1\r\n"), false)
	a.raw(1, append([]byte{'T', 'W', 1, 3, 0, 0, 0, 0}, make([]byte, 40)...), true)
	a.raw(1, append([]byte{'T', 'W', 1, 2, 0, 0, 0, 0}, make([]byte, 36)...), true)
	a.raw(2, append([]byte{'T', 'W', 1, 1, 0, 0, 0, 0}, make([]byte, 30)...), true)
	a.raw(2, append([]byte{'T', 'W', 1, 5, 0, 0, 0, 0}, make([]byte, 50)...), true)
	s["raw_garbage"] = a.b
	// The receive queue overflowing: nobody pops.
	a = cfgUnordered()
	for range 80 {
		a.data(0, 0, 0, next(), 2, 255)
	}
	a.pop(255)
	s["queue_overflow"] = a.b
	// Ordered delivery holding more than its capacity behind a gap.
	a = cfgOrdered().run(0, 0, 0, 2).data(0, 0, 0, step(2), 0, 16).run(0, 0, 0, 40).clock(1).tick(true).pop(64)
	s["reorder_overflow"] = a.b
	return s
}

// TestReceiverSeedFiles checks that testdata/fuzz/FuzzReceiverCore holds
// exactly the seeds receiverSeeds assembles; with TELEWIRE_WRITE_SEEDS=1 it
// writes them instead.
func TestReceiverSeedFiles(t *testing.T) {
	checkSeedFiles(t, "FuzzReceiverCore", receiverSeeds())
}

// checkSeedFiles compares (or, with TELEWIRE_WRITE_SEEDS=1, writes) the
// named seeds in the root corpus directory of a fuzz target.
func checkSeedFiles(t *testing.T, target string, seeds map[string][]byte) {
	dir := filepath.Join("..", "testdata", "fuzz", target)
	write := os.Getenv("TELEWIRE_WRITE_SEEDS") == "1"
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range seeds {
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

// TestReceiverSeedsReachTheirShapes runs each seed and checks that it does
// what its name says, so that the corpus keeps covering those shapes.
func TestReceiverSeedsReachTheirShapes(t *testing.T) {
	check := map[string]func(h *rxHarness, st Stats) bool{
		"in_order": func(h *rxHarness, st Stats) bool { return st.Delivered == 40 && h.popped == 40 },
		"group_join": func(h *rxHarness, st Stats) bool {
			return st.HistoryRequested == 12 && st.GroupSize == 1 && st.NACKs > 0 && h.origins[OriginRetransmit] > 0
		},
		"gaps_retransmit": func(h *rxHarness, st Stats) bool { return st.NACKs > 0 && h.origins[OriginRetransmit] > 0 },
		"restart":         func(h *rxHarness, st Stats) bool { return st.SessionRestarts == 2 },
		"wrap":            func(h *rxHarness, st Stats) bool { return st.Delivered >= 8 },
		"jumps": func(h *rxHarness, st Stats) bool {
			n := uint64(0)
			for _, x := range st.Streams {
				n += x.Resyncs
			}
			return n > 0
		},
		"session_stream_flood":      func(h *rxHarness, st Stats) bool { return st.SessionsRefused > 0 && st.StreamsRefused > 0 },
		"fec_honest":                func(h *rxHarness, st Stats) bool { return h.origins[OriginFEC] > 0 },
		"forged_parity_unavailable": func(h *rxHarness, st Stats) bool { return st.Unavailable == 1 && st.ParityRejected > 0 },
		"expiry_feedback_full":      func(h *rxHarness, st Stats) bool { return st.SessionsExpired > 0 },
		"raw_garbage":               func(h *rxHarness, st Stats) bool { return st.Malformed >= 4 },
		"queue_overflow":            func(h *rxHarness, st Stats) bool { return st.QueueOverflow > 0 },
		"reorder_overflow": func(h *rxHarness, st Stats) bool {
			for _, s := range h.c.sessions {
				for _, x := range s.streams {
					if x.delivery.Stats().Dropped > 0 {
						return true
					}
				}
			}
			return false
		},
	}
	seeds := receiverSeeds()
	if len(check) != len(seeds) {
		t.Fatalf("%d checks for %d seeds", len(check), len(seeds))
	}
	for name, b := range seeds {
		p := &prog{b: b}
		h := newRxHarness(t, p)
		h.run(p)
		if st := h.c.Stats(); !check[name](h, st) {
			t.Errorf("seed %s does not reach its shape: popped %d, origins %v, stats %+v", name, h.popped, h.origins, st)
		}
	}
}
