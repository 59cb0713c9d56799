package reliability

import (
	"math/bits"

	"github.com/telewire/telewire/packet"
)

// SendBuffer defaults and limits.
const (
	// DefaultSendCapacity is the default number of packets a SendBuffer
	// retains.
	DefaultSendCapacity = 4096
	// MaxSendCapacity is the largest SendBuffer capacity in packets.
	MaxSendCapacity = 1 << 20
	// DefaultSendBytes is the default SendBuffer slab size in bytes.
	DefaultSendBytes = 4 << 20
	// MaxSendBytes is the largest SendBuffer slab in bytes.
	MaxSendBytes = 1 << 30
	// DefaultSendMaxAge is the default longest time a packet is retained,
	// ns.
	DefaultSendMaxAge = 2_000_000_000
	// DefaultSuppressPercent is the default share of the RTT during which
	// a sequence is not resent twice.
	DefaultSuppressPercent = 50
	// DefaultMinSuppress is the default least suppression time, ns.
	DefaultMinSuppress = 1_000_000
	// DefaultRetransmitShare is the default retransmit budget, percent of
	// the stream's measured send rate.
	DefaultRetransmitShare = 50
	// DefaultMinRetransmitRate is the default least retransmit budget,
	// bytes per second.
	DefaultMinRetransmitRate = 256 << 10
	// DefaultRetransmitBurst is the default time of budget the token
	// bucket holds, ns.
	DefaultRetransmitBurst = 100_000_000

	// minBurstBytes is the least token bucket depth: one largest datagram.
	minBurstBytes = 1 << 16
	// rateWindow is the interval over which the send rate is sampled, ns.
	rateWindow = 100_000_000
)

// SendBufferConfig configures a SendBuffer. The zero value gives the
// defaults.
type SendBufferConfig struct {
	// Capacity is the most packets retained, rounded up to a power of two
	// and at most MaxSendCapacity; 0 means DefaultSendCapacity (4096).
	// The index takes 40 bytes per slot.
	Capacity int
	// MaxBytes is the size of the byte slab packets are copied into,
	// allocated once, at most MaxSendBytes; 0 means DefaultSendBytes
	// (4 MiB). A packet larger
	// than the slab is not retained.
	MaxBytes int
	// MaxAge is the longest time a packet is retained, ns; 0 means
	// DefaultSendMaxAge (2 s).
	MaxAge int64
	// SuppressPercent sets the suppression time as a share of the RTT: a
	// sequence is resent at most once per SuppressPercent% of the RTT,
	// however many NACKs ask for it. 0 means DefaultSuppressPercent (50).
	SuppressPercent int
	// MinSuppress is the least suppression time, ns, used too while the
	// RTT is unknown; 0 means DefaultMinSuppress (1 ms).
	MinSuppress int64
	// DisableSuppress turns the shared suppression off: a resend to one
	// destination does not suppress another's request. For a sender
	// whose repairs reach only the receiver that asked (unicast fan-out),
	// where one receiver's repair says nothing about another's; it
	// suppresses per destination instead by passing each destination's
	// ResendLog to OnNACKTo. A request answered without a log is then
	// never suppressed (within the budget).
	DisableSuppress bool
	// RetransmitShare caps retransmitted bytes per second at this percent
	// of the stream's own measured send rate; 0 means
	// DefaultRetransmitShare (50); negative means no cap.
	RetransmitShare int
	// MinRetransmitRate is the least retransmit budget, bytes per second,
	// so that a slow or just-started stream can still repair; 0 means
	// DefaultMinRetransmitRate (256 KiB/s).
	MinRetransmitRate int64
	// RetransmitBurst is how much budget, as time at the capped rate, the
	// token bucket holds (never less than 64 KiB); 0 means
	// DefaultRetransmitBurst (100 ms).
	RetransmitBurst int64
}

func (cfg SendBufferConfig) normalize() SendBufferConfig {
	c := cfg.Capacity
	if c <= 0 {
		c = DefaultSendCapacity
	}
	c = min(c, MaxSendCapacity)
	cfg.Capacity = 1 << bits.Len(uint(c-1))
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultSendBytes
	}
	cfg.MaxBytes = min(cfg.MaxBytes, MaxSendBytes)
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultSendMaxAge
	}
	if cfg.SuppressPercent <= 0 {
		cfg.SuppressPercent = DefaultSuppressPercent
	}
	if cfg.MinSuppress <= 0 {
		cfg.MinSuppress = DefaultMinSuppress
	}
	if cfg.RetransmitShare == 0 {
		cfg.RetransmitShare = DefaultRetransmitShare
	}
	if cfg.MinRetransmitRate <= 0 {
		cfg.MinRetransmitRate = DefaultMinRetransmitRate
	}
	if cfg.RetransmitBurst <= 0 {
		cfg.RetransmitBurst = DefaultRetransmitBurst
	}
	return cfg
}

// sbEntry indexes one retained packet.
type sbEntry struct {
	seq        uint64
	off        uint64 // logical slab offset; physical is off % len(slab)
	at         int64  // Put time, ns
	lastResend int64  // ns, valid if resent
	n          int32
	valid      bool
	resent     bool
	resends    uint8 // times resent, saturating
}

// SendBufferStats are a SendBuffer's counters.
type SendBufferStats struct {
	Puts            uint64  // packets retained
	Rejected        uint64  // Puts refused: larger than the slab, or sequence not after the last Put
	Retained        uint64  // packets held now (a gauge)
	RetainedBytes   uint64  // bytes held now (a gauge)
	EvictedCapacity uint64  // evicted to stay within Capacity packets
	EvictedBytes    uint64  // evicted to make room in the slab
	EvictedAge      uint64  // evicted for being older than MaxAge
	Requested       uint64  // sequences asked for by NACKs
	Resent          uint64  // sequences answered with a resend
	ResentBytes     uint64  // their bytes
	Suppressed      uint64  // requests ignored: resent within the suppression time
	Throttled       uint64  // requests refused by the retransmit budget
	Unavailable     uint64  // requests for sequences no longer retained
	Unknown         uint64  // requests for sequences never Put (not yet sent)
	SendRate        float64 // measured send rate, bytes per second (a gauge)
}

// NACKResult is a SendBuffer's answer to one NACK. Reuse one across calls:
// OnNACK truncates and refills the slices, so after warm-up it does not
// allocate.
type NACKResult struct {
	// Resend lists the sequences to retransmit now, in request order; get
	// their bytes with Get.
	Resend []uint64
	// Unavailable lists sequences no longer retained, as ranges valid for
	// a NACK with packet.FlagUnavailable (at most packet.MaxRanges; the
	// rest are left for a later request).
	Unavailable []packet.Range
	// Suppressed counts requests for sequences resent within the
	// suppression time, which are neither resent nor unavailable.
	Suppressed int
	// Throttled counts requests the retransmit budget refused; the
	// receiver will ask again.
	Throttled int
	// Unknown counts requests for sequences never Put.
	Unknown int
}

// SendBuffer is the sender's retransmit memory for one stream: a ring of
// the most recent packets indexed by sequence modulo Capacity, their bytes
// copied into one slab allocated up front, bounded by packet count, bytes
// and age, with O(1) lookup and no allocation per Put or Get. It answers
// NACKs (OnNACK) with retransmit suppression, so that one sequence is
// resent at most once per fraction of the RTT however many receivers ask,
// and a token bucket that caps retransmitted bytes per second at a share of
// the stream's own rate.
//
// Sequences must be Put in increasing order; gaps are allowed. A
// SendBuffer is not safe for concurrent use.
type SendBuffer struct {
	cfg   SendBufferConfig
	mask  uint64
	slots []sbEntry
	slab  []byte

	have  bool
	first uint64 // oldest sequence possibly retained
	next  uint64 // one past the last Put
	wpos  uint64 // logical slab write position

	rateStart int64
	rateBytes float64
	rate      float64 // bytes per second, 0 until measured
	rateOK    bool
	tokens    float64
	bucketAt  int64
	bucketOK  bool

	stats SendBufferStats
}

// NewSendBuffer returns a SendBuffer, allocating its index (40 bytes per
// slot) and its byte slab.
func NewSendBuffer(cfg SendBufferConfig) *SendBuffer {
	cfg = cfg.normalize()
	return &SendBuffer{
		cfg:   cfg,
		mask:  uint64(cfg.Capacity - 1),
		slots: make([]sbEntry, cfg.Capacity),
		slab:  make([]byte, cfg.MaxBytes),
	}
}

// Config returns the buffer's configuration with defaults filled in.
func (b *SendBuffer) Config() SendBufferConfig { return b.cfg }

// Stats returns the buffer's counters.
func (b *SendBuffer) Stats() SendBufferStats {
	s := b.stats
	s.SendRate = b.rate
	return s
}

// entry returns the live entry for seq, or nil.
func (b *SendBuffer) entry(seq uint64) *sbEntry {
	if !b.have || packet.SeqLess(seq, b.first) || !packet.SeqLess(seq, b.next) {
		return nil
	}
	e := &b.slots[seq&b.mask]
	if !e.valid || e.seq != seq {
		return nil
	}
	return e
}

// evictFront drops the oldest slot, counting it in reason if it held a
// packet.
func (b *SendBuffer) evictFront(reason *uint64) {
	e := &b.slots[b.first&b.mask]
	if e.valid && e.seq == b.first {
		e.valid = false
		*reason++
		b.stats.Retained--
		b.stats.RetainedBytes -= uint64(e.n)
	}
	b.first++
}

// skipHoles advances first past slots holding no packet and reports
// whether a packet remains.
func (b *SendBuffer) skipHoles() bool {
	for b.first != b.next {
		e := &b.slots[b.first&b.mask]
		if e.valid && e.seq == b.first {
			return true
		}
		b.first++
	}
	return false
}

// expire evicts packets older than MaxAge at now.
func (b *SendBuffer) expire(now int64) {
	for b.skipHoles() {
		if now-b.slots[b.first&b.mask].at <= b.cfg.MaxAge {
			return
		}
		b.evictFront(&b.stats.EvictedAge)
	}
}

// Put retains a copy of data as sequence seq, sent at now, evicting the
// oldest packets as needed to stay within the bounds. It reports false,
// counting Rejected, if data is larger than the slab or seq does not come
// after the previous Put. Put does not allocate.
func (b *SendBuffer) Put(seq uint64, data []byte, now int64) bool {
	n := uint64(len(data))
	if n > uint64(len(b.slab)) {
		b.stats.Rejected++
		return false
	}
	if !b.have {
		b.have, b.first, b.next = true, seq, seq
	} else if packet.SeqLess(seq, b.next) {
		b.stats.Rejected++
		return false
	}
	if seq-b.next >= uint64(len(b.slots)) {
		// A jump past the whole ring: everything retained is too old.
		for b.skipHoles() {
			b.evictFront(&b.stats.EvictedCapacity)
		}
		b.first, b.next = seq, seq
	}
	b.observeSend(n, now)
	b.expire(now)
	for seq-b.first >= uint64(len(b.slots)) {
		b.evictFront(&b.stats.EvictedCapacity)
	}
	size := uint64(len(b.slab))
	if phys := b.wpos % size; phys+n > size {
		b.wpos += size - phys // a packet never wraps around the slab end
	}
	end := b.wpos + n
	for b.skipHoles() && b.slots[b.first&b.mask].off+size < end {
		b.evictFront(&b.stats.EvictedBytes)
	}
	phys := b.wpos % size
	copy(b.slab[phys:phys+n], data)
	b.slots[seq&b.mask] = sbEntry{seq: seq, off: b.wpos, at: now, n: int32(n), valid: true}
	b.wpos = end
	b.next = seq + 1
	b.stats.Puts++
	b.stats.Retained++
	b.stats.RetainedBytes += n
	return true
}

// Get returns the bytes retained for seq, if it is still retained at now.
// The slice aliases the slab: it is valid until the next Put. Get does not
// allocate.
func (b *SendBuffer) Get(seq uint64, now int64) ([]byte, bool) {
	b.expire(now)
	e := b.entry(seq)
	if e == nil {
		return nil, false
	}
	phys := e.off % uint64(len(b.slab))
	return b.slab[phys : phys+uint64(e.n)], true
}

// observeSend feeds the send rate meter.
func (b *SendBuffer) observeSend(n uint64, now int64) {
	if !b.rateOK {
		b.rateOK, b.rateStart = true, now
	}
	b.rateBytes += float64(n)
	if el := now - b.rateStart; el >= rateWindow {
		inst := b.rateBytes * 1e9 / float64(el)
		if b.rate == 0 {
			b.rate = inst
		} else {
			b.rate += (inst - b.rate) / 4
		}
		b.rateStart, b.rateBytes = now, 0
	}
}

// budget returns the retransmit rate cap, bytes per second, and the bucket
// depth, bytes.
func (b *SendBuffer) budget() (rate, depth float64) {
	rate = max(float64(b.cfg.MinRetransmitRate), b.rate*float64(b.cfg.RetransmitShare)/100)
	depth = max(rate*float64(b.cfg.RetransmitBurst)/1e9, minBurstBytes)
	return rate, depth
}

// refill adds the budget earned since the last refill. The bucket starts
// full.
func (b *SendBuffer) refill(now int64) {
	rate, depth := b.budget()
	if !b.bucketOK {
		b.bucketOK, b.bucketAt, b.tokens = true, now, depth
		return
	}
	if dt := now - b.bucketAt; dt > 0 {
		b.tokens = min(b.tokens+rate*float64(dt)/1e9, depth)
		b.bucketAt = now
	}
}

// take spends n bytes of retransmit budget if there is enough.
func (b *SendBuffer) take(n int32) bool {
	if b.cfg.RetransmitShare < 0 {
		return true
	}
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}

// OnNACK answers a NACK received at now for the sequences in ranges. rtt is
// the current smoothed RTT, ns (0 if unknown), which sets the suppression
// time. The answer goes into res (see NACKResult): sequences to resend,
// which OnNACK counts as resent at now and charges to the retransmit
// budget; sequences no longer retained; and counts of suppressed, throttled
// and unknown requests. Ranges need not be valid NACK ranges; the work is
// bounded by the buffer's capacity per range. OnNACK does not allocate once
// res's slices have grown.
func (b *SendBuffer) OnNACK(ranges []packet.Range, now, rtt int64, res *NACKResult) {
	b.OnNACKTo(ranges, now, rtt, nil, res)
}

// OnNACKTo is OnNACK for a request from the destination whose resends log
// records (nil: none), with rtt that destination's round trip: a sequence
// resent to it within the suppression time is suppressed, whatever was
// resent to other destinations; with no log, the shared rule applies (a
// sequence is resent at most once per suppression time, to anyone), or,
// with DisableSuppress, none. Sequences put in Resend are recorded in log
// (call log.Forget with Unresend for one not sent).
func (b *SendBuffer) OnNACKTo(ranges []packet.Range, now, rtt int64, log *ResendLog, res *NACKResult) {
	res.Resend = res.Resend[:0]
	res.Unavailable = res.Unavailable[:0]
	res.Suppressed, res.Throttled, res.Unknown = 0, 0, 0
	b.expire(now)
	b.refill(now)
	rtt = min(max(rtt, 0), maxRTTSample)
	window := max(b.cfg.MinSuppress, rtt*int64(b.cfg.SuppressPercent)/100)
	shared := window
	if b.cfg.DisableSuppress || log != nil {
		shared = 0
	}
	for _, r := range ranges {
		if r.Len == 0 {
			continue
		}
		b.stats.Requested += uint64(r.Len)
		if !b.have {
			res.Unknown += int(r.Len)
			continue
		}
		seq, left := r.First, uint64(r.Len)
		if packet.SeqLess(seq, b.first) {
			k := min(uint64(packet.SeqDiff(b.first, seq)), left)
			b.unavailable(res, seq, k)
			seq += k
			left -= k
		}
		for ; left > 0 && packet.SeqLess(seq, b.next); seq, left = seq+1, left-1 {
			e := b.entry(seq)
			switch {
			case e == nil:
				b.unavailable(res, seq, 1)
			case e.resent && now-e.lastResend < shared, log != nil && log.recent(seq, now, window):
				res.Suppressed++
				b.stats.Suppressed++
			case !b.take(e.n):
				res.Throttled++
				b.stats.Throttled++
			default:
				e.resent, e.lastResend = true, now
				e.resends = min(e.resends, 254) + 1
				if log != nil {
					log.record(seq, now)
				}
				res.Resend = append(res.Resend, seq)
				b.stats.Resent++
				b.stats.ResentBytes += uint64(e.n)
			}
		}
		res.Unknown += int(left)
		b.stats.Unknown += left
	}
}

// Resends returns how many times seq has been resent (OnNACK putting it in
// Resend counts; Unresend takes it back), at most 255; 0 for a sequence
// not retained.
func (b *SendBuffer) Resends(seq uint64) int {
	if e := b.entry(seq); e != nil {
		return int(e.resends)
	}
	return 0
}

// Unresend takes back a sequence OnNACK put in NACKResult.Resend that the
// caller did not send after all (its queue was full, or the request's
// source was over its amplification limit): it is not suppressed as
// recently resent, and its bytes go back to the retransmit budget. So a
// request that could not be answered, perhaps a forged one, does not hold
// back the answer to the next.
func (b *SendBuffer) Unresend(seq uint64) {
	e := b.entry(seq)
	if e == nil || !e.resent {
		return
	}
	e.resent = false
	e.resends = max(e.resends, 1) - 1
	if b.cfg.RetransmitShare >= 0 {
		b.tokens += float64(e.n)
	}
	b.stats.Resent--
	b.stats.ResentBytes -= uint64(e.n)
}

// unavailable adds n sequences from first to res.Unavailable, merging with
// the previous range and keeping the list a valid FlagUnavailable NACK.
func (b *SendBuffer) unavailable(res *NACKResult, first, n uint64) {
	b.stats.Unavailable += n
	for n > 0 {
		us := res.Unavailable
		if k := len(us); k > 0 {
			last := &us[k-1]
			if last.Last()+1 == first && last.Len < packet.MaxRangeLen {
				add := min(n, uint64(packet.MaxRangeLen-last.Len))
				if packet.SeqDiff(first+add-1, us[0].First) >= packet.MaxNACKSpan {
					return
				}
				last.Len += uint32(add)
				first += add
				n -= add
				continue
			}
			// Keep ranges increasing and apart, as the wire demands.
			if packet.SeqDiff(first, last.Last()) < 2 || k == packet.MaxRanges {
				return
			}
		}
		add := min(n, packet.MaxRangeLen)
		if len(us) > 0 && packet.SeqDiff(first+add-1, us[0].First) >= packet.MaxNACKSpan {
			return
		}
		res.Unavailable = append(us, packet.Range{First: first, Len: uint32(add)})
		first += add
		n -= add
	}
}
