package reliability

import (
	"strconv"
	"testing"

	"github.com/telewire/telewire/packet"
)

// msg stands for a receiver's message type in the Delivery tests and
// benchmarks: a payload view and a timestamp.
type msg struct {
	data []byte
	ts   int64
}

// lossyFeeder drives a tracker with a stream that loses one packet in 50
// and recovers it 20 packets later, so that OnData exercises gap finding,
// the missing set and recovery, not only the in-order path.
type lossyFeeder struct {
	tr  *Tracker
	seq uint64
	now int64
}

func (f *lossyFeeder) step() {
	f.now += 10_000
	if f.seq%50 == 0 {
		f.seq++ // lost for now
	}
	f.tr.OnData(f.seq, f.now)
	if f.seq%50 == 20 {
		f.tr.OnArrival(f.seq-20, f.now, SourceRetransmit)
	}
	f.seq++
}

func newLossyFeeder(start uint64) *lossyFeeder {
	f := &lossyFeeder{tr: NewTracker(TrackerConfig{}), seq: start}
	for range 5000 { // warm the missing set up to its working size
		f.step()
	}
	return f
}

func TestAllocsTracker(t *testing.T) {
	f := newLossyFeeder(1<<64 - 100)
	if a := testing.AllocsPerRun(10000, f.step); a != 0 {
		t.Errorf("OnData allocates %.1f per call", a)
	}
	// A standing set of gaps for AppendNACK.
	tr := NewTracker(TrackerConfig{NACKInterval: 1})
	for i := uint64(0); i < 2000; i += 2 {
		tr.OnData(i, 0)
	}
	dst := make([]packet.Range, 0, DefaultMaxNACKRanges)
	now := int64(10 * ms)
	if a := testing.AllocsPerRun(100, func() {
		now += 200 * ms
		dst = tr.AppendNACK(dst[:0], now, 100*ms, nil)
		tr.NextNACKAt()
	}); a != 0 {
		t.Errorf("AppendNACK allocates %.1f per call", a)
	}
	if a := testing.AllocsPerRun(100, func() {
		tr.OnHeartbeat(0, 2000, now)
		tr.Stats()
	}); a != 0 {
		t.Errorf("OnHeartbeat allocates %.1f per call", a)
	}
}

func TestAllocsSendBuffer(t *testing.T) {
	sb := NewSendBuffer(SendBufferConfig{Capacity: 1024, MaxBytes: 1 << 20})
	data := make([]byte, 1200)
	seq := uint64(1<<64 - 10)
	now := int64(0)
	for range 20 {
		sb.Put(seq, data, now)
		seq++
	}
	if a := testing.AllocsPerRun(10000, func() {
		now += 1000
		sb.Put(seq, data, now)
		if _, ok := sb.Get(seq-10, now); !ok {
			t.Fatal("Get missed")
		}
		seq++
	}); a != 0 {
		t.Errorf("Put+Get allocates %.1f per call", a)
	}
	var res NACKResult
	ranges := []packet.Range{{First: seq - 500, Len: 20}, {First: seq - 100, Len: 5}, {First: seq - 5000, Len: 3}}
	sb.OnNACK(ranges, now, 10*ms, &res) // grow res once
	if a := testing.AllocsPerRun(1000, func() {
		now += 1000
		sb.OnNACK(ranges, now, 10*ms, &res)
	}); a != 0 {
		t.Errorf("OnNACK allocates %.1f per call", a)
	}
}

func TestAllocsDelivery(t *testing.T) {
	for _, m := range []Mode{ModeOrdered, ModeUnordered, ModeLatest} {
		d := NewDelivery[msg](DeliveryConfig{Mode: m})
		payload := []byte("x")
		seq := uint64(1<<64 - 5)
		now := int64(0)
		if a := testing.AllocsPerRun(10000, func() {
			now += 1000
			// Push pairs out of order so that ordered mode buffers.
			d.Push(seq+1, msg{payload, now}, now+5000)
			d.Push(seq, msg{payload, now}, now+5000)
			for {
				if _, _, ok := d.Pop(now); !ok {
					break
				}
			}
			d.NextDeadline()
			d.WantFrom()
			seq += 2
		}); a != 0 {
			t.Errorf("%v: Push/Pop allocates %.1f per call", m, a)
		}
	}
}

func BenchmarkTrackerOnData(b *testing.B) {
	b.Run("in-order", func(b *testing.B) {
		tr := NewTracker(TrackerConfig{})
		seq := uint64(0)
		b.ReportAllocs()
		for b.Loop() {
			tr.OnData(seq, int64(seq))
			seq++
		}
	})
	b.Run("lossy-2pct", func(b *testing.B) {
		f := newLossyFeeder(0)
		b.ReportAllocs()
		for b.Loop() {
			f.step()
		}
	})
}

func BenchmarkAppendNACK(b *testing.B) {
	for _, pending := range []int{16, 1024, DefaultMaxMissing} {
		b.Run(strconv.Itoa(pending)+"-pending", func(b *testing.B) {
			// pending isolated gaps, all due every round; the tracker is
			// rebuilt (untimed) before the retry limit would empty it.
			build := func() *Tracker {
				tr := NewTracker(TrackerConfig{NACKInterval: 1, MaxNACKRetries: 1000})
				for i := range uint64(pending) {
					tr.OnData(2*i, 0)
				}
				tr.OnData(2*uint64(pending), 0)
				return tr
			}
			tr := build()
			dst := make([]packet.Range, 0, DefaultMaxNACKRanges)
			now := int64(0)
			rounds := 0
			b.ReportAllocs()
			for b.Loop() {
				if rounds++; rounds%900 == 0 {
					b.StopTimer()
					tr = build()
					b.StartTimer()
				}
				now += 10_000 * ms
				dst = tr.AppendNACK(dst[:0], now, ms, nil)
				if len(dst) == 0 {
					b.Fatal("no ranges")
				}
			}
		})
	}
}

func BenchmarkSendBuffer(b *testing.B) {
	data := make([]byte, 1200)
	b.Run("Put", func(b *testing.B) {
		sb := NewSendBuffer(SendBufferConfig{})
		seq := uint64(0)
		b.ReportAllocs()
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sb.Put(seq, data, int64(seq)*1000)
			seq++
		}
	})
	b.Run("Get", func(b *testing.B) {
		sb := NewSendBuffer(SendBufferConfig{MaxBytes: 8 << 20})
		for i := range uint64(4096) {
			sb.Put(i, data, 0)
		}
		i := uint64(0)
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := sb.Get(i&4095, 0); !ok {
				b.Fatal("miss")
			}
			i++
		}
	})
	b.Run("OnNACK-64seq", func(b *testing.B) {
		sb := NewSendBuffer(SendBufferConfig{RetransmitShare: -1})
		for i := range uint64(4096) {
			sb.Put(i, data, 0)
		}
		ranges := []packet.Range{{First: 100, Len: 32}, {First: 1000, Len: 32}}
		var res NACKResult
		now := int64(0)
		b.ReportAllocs()
		for b.Loop() {
			now += 10 // mostly suppressed, as under a NACK storm
			sb.OnNACK(ranges, now, 0, &res)
		}
	})
}

func BenchmarkDeliveryPushPop(b *testing.B) {
	for _, m := range []Mode{ModeOrdered, ModeUnordered, ModeLatest} {
		b.Run(m.String(), func(b *testing.B) {
			d := NewDelivery[msg](DeliveryConfig{Mode: m})
			payload := []byte("x")
			seq := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				d.Push(seq^1, msg{payload, 0}, 100) // pairs swapped: 1, 0, 3, 2 ...
				d.Pop(0)
				seq++
			}
		})
	}
}
