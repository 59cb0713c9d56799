package reliability

import (
	"encoding/binary"
	"testing"

	"github.com/telewire/telewire/packet"
)

// FuzzTracker drives a small Tracker (window 64, at most 16 pending) with
// an arbitrary mix of DATA arrivals, heartbeats, NACK rounds, deadline
// floors and unavailable ranges, and checks after every step that:
//
//   - the counters reconcile: Missing == Recovered + GivenUp + Pending, the
//     give-up reasons sum to GivenUp, every OnData counts once in Received,
//     Duplicates or Stale, the NewlyMissing figures returned sum to Missing,
//     and arrivals reported WasMissing equal Recovered + ArrivedAfterGiveUp;
//   - the missing set is ordered, inside the window, holds no received
//     sequence and stays within its memory bound;
//   - NACK ranges are increasing, only name pending sequences, and split
//     into packets that encode.
func FuzzTracker(f *testing.F) {
	f.Add(uint64(0), []byte{0, 1, 0, 0, 5, 0, 0, 3, 7, 0, 0})
	f.Add(uint64(1<<64-40), []byte{0, 1, 0, 0, 90, 0, 1, 200, 0, 6, 10, 20, 7, 0, 0, 0, 2, 0})
	f.Add(uint64(1<<32-3), []byte{6, 0, 30, 0, 2, 1, 0, 7, 9, 9, 8, 4, 0, 9, 1, 3})
	f.Add(uint64(5), []byte{3, 0xff, 0xff, 0, 1, 0, 0, 40, 0, 0, 255, 255, 7, 1, 2})
	f.Fuzz(func(t *testing.T, start uint64, ops []byte) {
		cfg := TrackerConfig{Window: 64, MaxMissing: 16, ReorderFloor: 1000, NACKInterval: 500, MaxNACKRetries: 3}
		if start&1 == 1 { // a group receiver's back-off: waits that vary, retries shorter
			var k int64
			cfg.NACKBackoff = func(retry bool) int64 {
				k++
				if retry {
					return k * 131 % 700
				}
				return k * 7919 % 3000
			}
		}
		tr := NewTracker(cfg)
		var (
			calls, newly, wasMissing uint64
			now                      int64
			buf                      []packet.Range
		)
		cursor := start
		for len(ops) >= 3 {
			op, arg := ops[0], int64(int16(binary.BigEndian.Uint16(ops[1:3])))
			ops = ops[3:]
			now += 100 + int64(op)*37
			switch op % 8 {
			case 0, 1, 2: // DATA near the cursor
				seq := cursor + uint64(arg%80)
				a, info := tr.OnArrival(seq, now, Source(op%4))
				calls++
				newly += info.NewlyMissing
				if info.WasMissing {
					wasMissing++
				}
				if info.SinceNACKNanos < 0 || (a != ArrivalNew && a != ArrivalResync && info != ArrivalInfo{}) {
					t.Fatalf("arrival %v with info %+v", a, info)
				}
				if packet.SeqLess(cursor, seq) {
					cursor = seq
				}
			case 3: // DATA far away: resync or stale
				a, info := tr.OnData(cursor+uint64(arg)*1000, now)
				calls++
				newly += info.NewlyMissing
				if info.WasMissing {
					wasMissing++
				}
				if a == ArrivalResync {
					cursor += uint64(arg) * 1000
				}
			case 4: // heartbeat
				next := cursor + uint64(arg%100)
				newly += tr.OnHeartbeat(next-uint64(arg&0xff), next, now)
				if packet.SeqLess(cursor, next) {
					cursor = next
				}
			case 5:
				tr.GiveUpBefore(cursor - uint64(arg&0x7f))
			case 6:
				tr.OnUnavailable(packet.Range{First: cursor - uint64(arg&0x7f), Len: uint32(arg & 0x3f)})
			case 7:
				tr.SetJitter(arg * 10)
				buf = tr.AppendNACK(buf[:0], now, arg*50, nil)
				checkFuzzNACK(t, tr, buf)
			}
			checkTrackerInvariants(t, tr)
			s := tr.Stats()
			if calls != s.Received+s.Duplicates+s.Stale {
				t.Fatalf("%d OnData calls, counted %d", calls, s.Received+s.Duplicates+s.Stale)
			}
			if newly != s.Missing {
				t.Fatalf("NewlyMissing summed to %d, Missing is %d", newly, s.Missing)
			}
			if wasMissing != s.Recovered+s.ArrivedAfterGiveUp {
				t.Fatalf("%d WasMissing arrivals, Recovered %d + ArrivedAfterGiveUp %d", wasMissing, s.Recovered, s.ArrivedAfterGiveUp)
			}
			if at, ok := tr.NextNACKAt(); ok != (tr.Pending() > 0) || (ok && at < 0) {
				t.Fatalf("NextNACKAt %d %v with %d pending", at, ok, tr.Pending())
			}
		}
	})
}

// checkFuzzNACK checks one AppendNACK result.
func checkFuzzNACK(t *testing.T, tr *Tracker, rs []packet.Range) {
	t.Helper()
	for i, r := range rs {
		if r.Len == 0 || r.Len > packet.MaxRangeLen {
			t.Fatalf("range %d has length %d", i, r.Len)
		}
		if i > 0 && !packet.SeqLess(rs[i-1].Last(), r.First) {
			t.Fatalf("ranges out of order: %v", rs)
		}
		for k := range uint64(r.Len) {
			if _, ok := tr.miss.find(r.First + k); !ok {
				t.Fatalf("NACK names %d, which is not pending", r.First+k)
			}
		}
	}
	for rest := rs; len(rest) > 0; {
		var head []packet.Range
		head, rest = SplitNACK(rest)
		p := packet.Packet{Header: packet.Header{Kind: packet.KindNACK}, Ranges: head}
		if _, err := p.AppendTo(nil); err != nil {
			t.Fatalf("NACK packet does not encode: %v %v", err, head)
		}
	}
}

// FuzzSendBuffer feeds a small SendBuffer Puts of arbitrary sizes and
// NACKs of arbitrary ranges, and checks that Get returns exactly the bytes
// Put for every retained sequence, that the bounds hold, and that the
// unavailable answer is always a valid NACK.
func FuzzSendBuffer(f *testing.F) {
	f.Add(uint64(0), []byte{1, 10, 0, 1, 20, 0, 2, 0, 0, 5, 1, 3})
	f.Add(uint64(1<<64-3), []byte{1, 200, 1, 1, 200, 2, 0, 0, 9, 2, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, start uint64, ops []byte) {
		sb := NewSendBuffer(SendBufferConfig{Capacity: 16, MaxBytes: 1000, MaxAge: 50_000})
		sizes := map[uint64]int{} // test bookkeeping only
		next := start
		now := int64(0)
		var res NACKResult
		// Two destinations of a fan-out (op bit 4 picks one) and the
		// shared rule (op bit 3 clear): a sequence is resent to a
		// destination at most once per suppression time.
		logs := [2]*ResendLog{NewResendLog(16), NewResendLog(16)} // as large as the buffer: no retained sequence shares a slot
		lastTo := [2]map[uint64]int64{{}, {}}
		for len(ops) >= 3 {
			op, a, b := ops[0], ops[1], ops[2]
			ops = ops[3:]
			now += int64(a) * 10
			switch op % 3 {
			case 0, 1: // Put, sometimes after a gap
				seq := next + uint64(b%4)
				n := int(a)*int(op%5+1) + int(b)
				if sb.Put(seq, payload(seq, n), now) {
					sizes[seq] = n
					next = seq + 1
				} else if n <= 1000 && !packet.SeqLess(seq, next) {
					t.Fatalf("Put of %d bytes at %d refused", n, seq)
				}
			case 2: // NACK
				rs := []packet.Range{{First: next - uint64(a), Len: uint32(b)}, {First: next - uint64(a) + uint64(b) + 1 + uint64(op), Len: uint32(op)}}
				rtt := int64(b) * 100_000
				if op&8 == 0 {
					sb.OnNACK(rs, now, rtt, &res)
				} else {
					d := int(op>>4) & 1
					sb.OnNACKTo(rs, now, rtt, logs[d], &res)
					window := max(int64(DefaultMinSuppress), rtt*DefaultSuppressPercent/100)
					for _, seq := range res.Resend {
						if at, ok := lastTo[d][seq]; ok && now-at < window {
							t.Fatalf("%d resent to destination %d at %d and again at %d, within %d", seq, d, at, now, window)
						}
						lastTo[d][seq] = now
					}
				}
				if len(res.Unavailable) > 0 {
					p := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagUnavailable}, Ranges: res.Unavailable}
					if _, err := p.AppendTo(nil); err != nil {
						t.Fatalf("unavailable answer invalid: %v %v", err, res.Unavailable)
					}
				}
				for _, seq := range res.Resend {
					if _, ok := sb.Get(seq, now); !ok {
						t.Fatalf("resend %d is not retained", seq)
					}
				}
			}
			s := sb.Stats()
			if s.Retained > 16 || s.RetainedBytes > 1000 {
				t.Fatalf("bounds exceeded: %+v", s)
			}
			held := uint64(0)
			for seq, n := range sizes {
				got, ok := sb.Get(seq, now)
				if !ok {
					delete(sizes, seq)
					continue
				}
				held++
				if string(got) != string(payload(seq, n)) {
					t.Fatalf("Get(%d) returned other bytes", seq)
				}
			}
			if held != sb.Stats().Retained {
				t.Fatalf("Get finds %d packets, Retained says %d", held, sb.Stats().Retained)
			}
		}
	})
}
