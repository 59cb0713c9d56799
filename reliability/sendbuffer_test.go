package reliability

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/telewire/telewire/packet"
)

// payload returns n bytes derived from seq, so that a mix-up shows.
func payload(seq uint64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(seq*31 + uint64(i))
	}
	return b
}

func TestSendBufferPutGet(t *testing.T) {
	for _, start := range wrapStarts {
		sb := NewSendBuffer(SendBufferConfig{Capacity: 64, MaxBytes: 64 * 200})
		src := payload(start, 100)
		if !sb.Put(start, src, 0) {
			t.Fatalf("start %d: Put refused", start)
		}
		want := slices.Clone(src)
		src[0] ^= 0xff // Put must have copied
		got, ok := sb.Get(start, 0)
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("start %d: Get = %v %v", start, ok, got[:4])
		}
		for i := uint64(1); i < 200; i++ {
			sb.Put(start+i, payload(start+i, int(i%150)), int64(i))
		}
		for i := uint64(0); i < 200; i++ {
			got, ok := sb.Get(start+i, 200)
			if wantOK := i >= 200-64; ok != wantOK {
				t.Fatalf("start %d: Get(+%d) ok=%v, want %v", start, i, ok, wantOK)
			}
			if ok && !bytes.Equal(got, payload(start+i, int(i%150))) {
				t.Fatalf("start %d: Get(+%d) returned wrong bytes", start, i)
			}
		}
		if _, ok := sb.Get(start+200, 200); ok {
			t.Fatalf("start %d: Get of a sequence never Put succeeded", start)
		}
		s := sb.Stats()
		if s.Puts != 200 || s.Retained != 64 || s.EvictedCapacity+s.EvictedBytes != 136 {
			t.Fatalf("start %d: stats %+v", start, s)
		}
	}
}

func TestSendBufferBounds(t *testing.T) {
	cases := []struct {
		name     string
		cfg      SendBufferConfig
		puts     []int // payload sizes, one Put per ms from sequence 0
		getAt    int64
		retained []uint64 // sequences Get must find at getAt
		stats    SendBufferStats
	}{
		{
			name:     "capacity",
			cfg:      SendBufferConfig{Capacity: 8},
			puts:     []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10},
			getAt:    10 * ms,
			retained: []uint64{2, 3, 4, 5, 6, 7, 8, 9},
			stats:    SendBufferStats{Puts: 10, Retained: 8, RetainedBytes: 80, EvictedCapacity: 2},
		},
		{
			name:  "bytes, with the slab end skipped",
			cfg:   SendBufferConfig{Capacity: 16, MaxBytes: 1000},
			puts:  []int{300, 300, 300, 300, 100},
			getAt: 5 * ms,
			// 0, 1, 2 fill 900 bytes; 3 skips the last 100 and overwrites
			// 0; 4 lands at 300 and overwrites 1.
			retained: []uint64{2, 3, 4},
			stats:    SendBufferStats{Puts: 5, Retained: 3, RetainedBytes: 700, EvictedBytes: 2},
		},
		{
			name:     "age",
			cfg:      SendBufferConfig{MaxAge: 3 * ms},
			puts:     []int{1, 2, 3, 4, 5, 6},
			getAt:    7 * ms, // Puts at 0..5ms: those before 4ms are too old
			retained: []uint64{4, 5},
			stats:    SendBufferStats{Puts: 6, Retained: 2, RetainedBytes: 11, EvictedAge: 4},
		},
		{
			name:     "oversized packet rejected",
			cfg:      SendBufferConfig{MaxBytes: 100},
			puts:     []int{50, 101, 50},
			getAt:    3 * ms,
			retained: []uint64{0, 2},
			stats:    SendBufferStats{Puts: 2, Rejected: 1, Retained: 2, RetainedBytes: 100},
		},
	}
	for _, c := range cases {
		for _, start := range wrapStarts {
			t.Run(fmt.Sprintf("%s/start=%d", c.name, start), func(t *testing.T) {
				sb := NewSendBuffer(c.cfg)
				for i, n := range c.puts {
					sb.Put(start+uint64(i), payload(start+uint64(i), n), int64(i)*ms)
				}
				for i := range c.puts {
					seq := start + uint64(i)
					got, ok := sb.Get(seq, c.getAt)
					if want := slices.Contains(c.retained, uint64(i)); ok != want {
						t.Fatalf("Get(+%d) ok=%v, want %v", i, ok, want)
					}
					if ok && !bytes.Equal(got, payload(seq, c.puts[i])) {
						t.Fatalf("Get(+%d): wrong bytes", i)
					}
				}
				s := sb.Stats()
				s.SendRate = 0
				if s != c.stats {
					t.Fatalf("stats\n got %+v\nwant %+v", s, c.stats)
				}
			})
		}
	}
}

func TestSendBufferOrderAndGaps(t *testing.T) {
	for _, start := range wrapStarts {
		sb := NewSendBuffer(SendBufferConfig{Capacity: 8})
		sb.Put(start+5, []byte("a"), 0)
		if sb.Put(start+5, []byte("b"), 0) || sb.Put(start+4, []byte("c"), 0) {
			t.Fatalf("start %d: a Put not after the last was accepted", start)
		}
		sb.Put(start+8, []byte("d"), 0) // 6, 7 never Put
		if _, ok := sb.Get(start+6, 0); ok {
			t.Fatalf("start %d: hole found", start)
		}
		var res NACKResult
		sb.OnNACK([]packet.Range{rg(start+3, 6)}, ms, 0, &res)
		// 3, 4: before the first Put; 5: resend; 6, 7: holes; 8: resend.
		if !slices.Equal(res.Resend, []uint64{start + 5, start + 8}) {
			t.Fatalf("start %d: resend %v", start, res.Resend)
		}
		if !slices.Equal(res.Unavailable, []packet.Range{rg(start+3, 2), rg(start+6, 2)}) {
			t.Fatalf("start %d: unavailable %v", start, res.Unavailable)
		}
		// A jump past the whole ring evicts everything.
		sb.Put(start+100, []byte("e"), 0)
		if _, ok := sb.Get(start+8, 0); ok {
			t.Fatalf("start %d: packet survived a jump past the ring", start)
		}
		if s := sb.Stats(); s.EvictedCapacity != 2 || s.Retained != 1 || s.Rejected != 2 {
			t.Fatalf("start %d: stats %+v", start, s)
		}
	}
}

func TestSendBufferSuppression(t *testing.T) {
	for _, start := range wrapStarts {
		sb := NewSendBuffer(SendBufferConfig{SuppressPercent: 50})
		for i := range uint64(10) {
			sb.Put(start+i, payload(i, 200), 0)
		}
		rtt := 40 * ms // suppression time 20ms
		var res NACKResult
		resent := 0
		// 50 receivers ask for sequence 3 within 20ms.
		for r := range 50 {
			sb.OnNACK([]packet.Range{rg(start+3, 1)}, 10*ms+int64(r)*ms/5, rtt, &res)
			resent += len(res.Resend)
			if len(res.Resend)+res.Suppressed != 1 {
				t.Fatalf("start %d: receiver %d: %+v", start, r, res)
			}
		}
		if resent != 1 {
			t.Fatalf("start %d: 50 NACKs within the suppression time caused %d resends", start, resent)
		}
		// Once the suppression time has passed it is resent again.
		sb.OnNACK([]packet.Range{rg(start+3, 1)}, 30*ms, rtt, &res)
		if !slices.Equal(res.Resend, []uint64{start + 3}) {
			t.Fatalf("start %d: after suppression: %+v", start, res)
		}
		// Unknown RTT: MinSuppress (1ms) applies.
		sb.OnNACK([]packet.Range{rg(start+4, 1)}, 40*ms, 0, &res)
		sb.OnNACK([]packet.Range{rg(start+4, 1)}, 40*ms+ms/2, 0, &res)
		if res.Suppressed != 1 {
			t.Fatalf("start %d: no suppression with unknown RTT: %+v", start, res)
		}
		s := sb.Stats()
		if s.Resent != 3 || s.Suppressed != 50 || s.Requested != 53 {
			t.Fatalf("start %d: stats %+v", start, s)
		}
		// Resends counts what was resent, suppressed requests not, and
		// Unresend takes one back.
		if n3, n4, n5 := sb.Resends(start+3), sb.Resends(start+4), sb.Resends(start+5); n3 != 2 || n4 != 1 || n5 != 0 {
			t.Fatalf("start %d: resends %d, %d, %d; want 2, 1, 0", start, n3, n4, n5)
		}
		sb.Unresend(start + 4)
		if n := sb.Resends(start + 4); n != 0 {
			t.Fatalf("start %d: %d resends after Unresend, want 0", start, n)
		}
		if n := sb.Resends(start + 100); n != 0 {
			t.Fatalf("start %d: a sequence never put has %d resends", start, n)
		}
	}
}

func TestSendBufferTokenBucket(t *testing.T) {
	sb := NewSendBuffer(SendBufferConfig{Capacity: 256, MinRetransmitRate: 100_000, RetransmitBurst: 100 * ms})
	for i := range uint64(200) {
		sb.Put(i, payload(i, 1000), 0)
	}
	var res NACKResult
	// Depth is max(100 kB/s * 100 ms, 64 KiB) = 65536 bytes: 65 packets.
	sb.OnNACK([]packet.Range{rg(0, 100)}, ms, 0, &res)
	if len(res.Resend) != 65 || res.Throttled != 35 {
		t.Fatalf("first burst: resent %d throttled %d", len(res.Resend), res.Throttled)
	}
	// 10 ms later the bucket has earned 1000 bytes (plus the 536 left).
	sb.OnNACK([]packet.Range{rg(100, 5)}, 11*ms, 0, &res)
	if len(res.Resend) != 1 || res.Throttled != 4 {
		t.Fatalf("after 10ms: resent %d throttled %d", len(res.Resend), res.Throttled)
	}
	// A negative share removes the cap.
	free := NewSendBuffer(SendBufferConfig{Capacity: 256, RetransmitShare: -1})
	for i := range uint64(200) {
		free.Put(i, payload(i, 1000), 0)
	}
	free.OnNACK([]packet.Range{rg(0, 200)}, ms, 0, &res)
	if len(res.Resend) != 200 {
		t.Fatalf("uncapped: resent %d", len(res.Resend))
	}
}

func TestSendBufferRateShare(t *testing.T) {
	// 1000-byte packets every 1ms for 1s: 1 MB/s; 50% share = 500 kB/s,
	// above the 256 KiB/s floor.
	sb := NewSendBuffer(SendBufferConfig{Capacity: 2048, MaxBytes: 4 << 20, MaxAge: 10_000 * ms})
	for i := range int64(1001) {
		sb.Put(uint64(i), payload(uint64(i), 1000), i*ms)
	}
	if r := sb.Stats().SendRate; r < 0.99e6 || r > 1.01e6 {
		t.Fatalf("measured rate %.0f B/s, want about 1e6", r)
	}
	rate, depth := sb.budget()
	if rate < 0.49e6 || rate > 0.51e6 || depth < 0.049e6 || depth > 65536 {
		t.Fatalf("budget %.0f B/s depth %.0f", rate, depth)
	}
}

func TestSendBufferUnavailableAnswerIsValidNACK(t *testing.T) {
	for _, start := range wrapStarts {
		sb := NewSendBuffer(SendBufferConfig{Capacity: 1024})
		// Every third sequence is a hole, and the first 1000 are evicted.
		for i := uint64(0); i < 3000; i++ {
			if i%3 != 0 {
				sb.Put(start+i, []byte{1}, 0)
			}
		}
		var res NACKResult
		req := []packet.Range{rg(start+10, 100), rg(start+2000, 900), rg(start+2950, 200)}
		sb.OnNACK(req, ms, 0, &res)
		if len(res.Unavailable) == 0 || len(res.Unavailable) > packet.MaxRanges {
			t.Fatalf("start %d: %d unavailable ranges", start, len(res.Unavailable))
		}
		p := packet.Packet{Header: packet.Header{Kind: packet.KindNACK, Flags: packet.FlagUnavailable}, Ranges: res.Unavailable}
		if _, err := p.AppendTo(nil); err != nil {
			t.Fatalf("start %d: unavailable answer is not a valid NACK: %v %v", start, err, res.Unavailable)
		}
		if res.Unavailable[0] != rg(start+10, 100) {
			t.Fatalf("start %d: evicted range answered %v", start, res.Unavailable[0])
		}
		if res.Unknown != 150 { // 3000..3149 never Put
			t.Fatalf("start %d: unknown %d, want 150", start, res.Unknown)
		}
		// An empty buffer knows nothing; zero-length ranges are skipped.
		empty := NewSendBuffer(SendBufferConfig{})
		empty.OnNACK([]packet.Range{rg(start, 5), rg(start+9, 0)}, ms, 0, &res)
		if res.Unknown != 5 || len(res.Resend)+len(res.Unavailable) != 0 {
			t.Fatalf("start %d: empty buffer answered %+v", start, res)
		}
	}
}

func TestSendBufferConfigNormalize(t *testing.T) {
	c := SendBufferConfig{Capacity: 1000, MaxBytes: 1 << 40}.normalize() // not allocated: 1 GiB
	if c.Capacity != 1024 || c.MaxBytes != MaxSendBytes || c.MaxAge != DefaultSendMaxAge ||
		c.SuppressPercent != DefaultSuppressPercent || c.RetransmitShare != DefaultRetransmitShare {
		t.Fatalf("normalized %+v", c)
	}
}

// TestSendBufferPerDestination: with a ResendLog per destination
// (OnNACKTo), a sequence is resent to each destination at most once per
// suppression time, another destination's request is still answered, and
// Forget takes a resend back; without a log, DisableSuppress answers every
// request.
func TestSendBufferPerDestination(t *testing.T) {
	for _, start := range wrapStarts {
		sb := NewSendBuffer(SendBufferConfig{SuppressPercent: 100, DisableSuppress: true})
		for i := range uint64(10) {
			sb.Put(start+i, payload(i, 200), 0)
		}
		a, b := NewResendLog(0), NewResendLog(4)
		var res NACKResult
		ask := func(log *ResendLog, now, rtt int64) int {
			sb.OnNACKTo([]packet.Range{rg(start+3, 2)}, now, rtt, log, &res)
			return len(res.Resend)
		}
		steps := []struct {
			log      *ResendLog
			now, rtt int64
			want     int
			why      string
		}{
			{a, 10 * ms, 20 * ms, 2, "a asks"},
			{a, 20 * ms, 20 * ms, 0, "a again within its 20 ms"},
			{b, 20 * ms, 5 * ms, 2, "b asks: a's resend says nothing of b"},
			{b, 24 * ms, 5 * ms, 0, "b again within its 5 ms"},
			{b, 26 * ms, 5 * ms, 2, "b again past its 5 ms"},
			{a, 31 * ms, 20 * ms, 2, "a again past its 20 ms"},
			{nil, 31 * ms, 20 * ms, 2, "no log: DisableSuppress answers"},
			{nil, 31 * ms, 20 * ms, 2, "no log, again"},
		}
		for _, st := range steps {
			if got := ask(st.log, st.now, st.rtt); got != st.want {
				t.Fatalf("start %d: %s: resent %d, want %d (%+v)", start, st.why, got, st.want, res)
			}
		}
		// A resend not sent after all is taken back: the next request is
		// answered.
		ask(a, 60*ms, 20*ms)
		sb.Unresend(start + 3)
		a.Forget(start + 3)
		if got := ask(a, 61*ms, 20*ms); got != 1 || res.Resend[0] != start+3 {
			t.Fatalf("start %d: after Forget: %+v", start, res)
		}
		// A later sequence in the same slot of a small log evicts the
		// record: the repeat is answered early, never refused wrongly.
		sb.OnNACKTo([]packet.Range{rg(start+5, 1)}, 62*ms, 20*ms, b, &res)
		sb.OnNACKTo([]packet.Range{rg(start+9, 1)}, 62*ms, 20*ms, b, &res) // 5 and 9 share a slot of 4
		if sb.OnNACKTo([]packet.Range{rg(start+5, 1)}, 63*ms, 20*ms, b, &res); len(res.Resend) != 1 {
			t.Fatalf("start %d: an evicted record suppressed: %+v", start, res)
		}
	}
	if n := NewResendLog(1 << 30).MemBytes(); n != 24*MaxResendLogSize {
		t.Fatalf("the largest log holds %d bytes", n)
	}
	if n := NewResendLog(5).MemBytes(); n != 24*8 {
		t.Fatalf("a log of 5 holds %d bytes, want 8 slots", n)
	}
}
