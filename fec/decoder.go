package fec

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/klauspost/reedsolomon"
	"github.com/telewire/telewire/packet"
)

// Decoder defaults and limits.
const (
	// DefaultRingSize is the default number of recent data shards a Decoder
	// keeps.
	DefaultRingSize = 1024
	// MaxRingSize is the largest RingSize.
	MaxRingSize = 1 << 16
	// DefaultMaxBlocks is the default size of the block table.
	DefaultMaxBlocks = 64
	// MaxBlocks is the largest MaxBlocks.
	MaxBlocks = 4096
	// DefaultParityBuffers is the default number of parity shards held for
	// incomplete blocks.
	DefaultParityBuffers = 256
	// DefaultMaxPayload is the default largest payload a Decoder protects.
	DefaultMaxPayload = 8192
	// DefaultBlockTimeoutNanos is the default time a block waits for the
	// shards it misses after its first parity arrived.
	DefaultBlockTimeoutNanos = 1_000_000_000
	// DefaultParityWaitNanos is the default time parity is still expected
	// for a loss: the encoder's default block time limit plus 50 ms of
	// network delay variation.
	DefaultParityWaitNanos = DefaultMaxDelayNanos + 50_000_000
	// DefaultParityTrailNanos is the default time a block's later parity
	// shards are expected after its first.
	DefaultParityTrailNanos = 10_000_000
	// DefaultParityIdleNanos is the default time after the last parity at
	// which a Decoder considers FEC off for the stream.
	DefaultParityIdleNanos = 5_000_000_000

	// maxStored is the most parity shards one block ever holds: a block
	// holds fewer than it misses data shards, and min(K, M) <= 128.
	maxStored = 128
	// recoveredCap is the capacity of the recovered-message queue.
	recoveredCap = 256
	// noticeScan is how far past a sequence CanRecover looks for the
	// arrival that revealed its loss.
	noticeScan = 256
)

// Errors returned by AddParity. A parity shard rejected with one of them is
// counted and never reaches the codec.
var (
	// ErrInvalidParity: a PARITY field is out of range (K, M, Index, Stride,
	// K+M > 256), the shard is shorter than a shard header, or the block
	// spans more sequences than the decoder remembers.
	ErrInvalidParity = errors.New("fec: invalid parity shard")
	// ErrShardTooLong: the shard is longer than the decoder's
	// MaxPayload + ShardHeaderLen.
	ErrShardTooLong = errors.New("fec: parity shard longer than the maximum")
	// ErrConflict: the shard contradicts what the decoder knows of its
	// block: different K, M, stride or shard length for the same first
	// sequence, or a received data shard longer than the parity shard.
	ErrConflict = errors.New("fec: parity shard contradicts its block")
	// ErrStale: the block has expired, or lies outside the window of
	// sequences the decoder remembers.
	ErrStale = errors.New("fec: parity for an expired or out-of-window block")
)

// DecoderConfig configures a Decoder. The zero value is valid and means the
// defaults.
type DecoderConfig struct {
	// RingSize is how many recent data shards are kept, indexed by
	// sequence: a power of two up to MaxRingSize. It bounds the span of a
	// block, (K-1)·stride+1, and how old a block may be. Default
	// DefaultRingSize.
	RingSize int
	// MaxBlocks is the size of the table of blocks announced by parity,
	// 1..MaxBlocks. When full, the oldest finished block is reused, else
	// the oldest incomplete one is evicted (counted). Default
	// DefaultMaxBlocks.
	MaxBlocks int
	// ParityBuffers is how many parity shards may be held in all for
	// incomplete blocks; further ones are dropped (counted). Default
	// DefaultParityBuffers.
	ParityBuffers int
	// MaxPayload is the largest payload kept and rebuilt, 0..
	// MaxProtectedPayload; parity shards longer than MaxPayload +
	// ShardHeaderLen are rejected. Worst-case memory is about
	// (RingSize + ParityBuffers + 256)·(MaxPayload + ShardHeaderLen) bytes.
	// Default DefaultMaxPayload.
	MaxPayload int
	// BlockTimeoutNanos is how long a block whose data is incomplete waits,
	// from its first parity, before it is given up. Default
	// DefaultBlockTimeoutNanos.
	BlockTimeoutNanos int64
	// ParityWaitNanos is how long after a loss becomes visible the decoder
	// still expects parity that could repair it; CanRecover uses it.
	// Default DefaultParityWaitNanos.
	ParityWaitNanos int64
	// ParityIdleNanos is how long after the last accepted parity the
	// stream still counts as FEC-protected for CanRecover. Default
	// DefaultParityIdleNanos.
	ParityIdleNanos int64
	// Budget, if not nil, is asked before the Decoder's memory grows (the
	// ring's pages as sequences are first seen, shard and parity buffers,
	// a block's parity list, reconstruction scratch); MemBytes says what it
	// holds. What a refusal would have kept is not (DataTooLong,
	// ParityDropped, RecoveredDropped, or a block given up), and counted in
	// BudgetDenied.
	Budget Budget
	// ParityTrailNanos is how long after a block's first parity shard its
	// later shards may still arrive: a block's parity is sent back to
	// back, so a shard missing after this is taken as lost, and CanRecover
	// stops holding NACKs for a block it can no longer repair. Default
	// DefaultParityTrailNanos.
	ParityTrailNanos int64
}

func (c *DecoderConfig) setDefaults() {
	if c.RingSize == 0 {
		c.RingSize = DefaultRingSize
	}
	if c.MaxBlocks == 0 {
		c.MaxBlocks = DefaultMaxBlocks
	}
	if c.ParityBuffers == 0 {
		c.ParityBuffers = DefaultParityBuffers
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.BlockTimeoutNanos == 0 {
		c.BlockTimeoutNanos = DefaultBlockTimeoutNanos
	}
	if c.ParityTrailNanos == 0 {
		c.ParityTrailNanos = DefaultParityTrailNanos
	}
	if c.ParityWaitNanos == 0 {
		c.ParityWaitNanos = DefaultParityWaitNanos
	}
	if c.ParityIdleNanos == 0 {
		c.ParityIdleNanos = DefaultParityIdleNanos
	}
}

func (c *DecoderConfig) validate() error {
	switch {
	case c.RingSize < 2 || c.RingSize > MaxRingSize || c.RingSize&(c.RingSize-1) != 0:
		return fmt.Errorf("%w: RingSize=%d", ErrBadParams, c.RingSize)
	case c.MaxBlocks < 1 || c.MaxBlocks > MaxBlocks:
		return fmt.Errorf("%w: MaxBlocks=%d", ErrBadParams, c.MaxBlocks)
	case c.ParityBuffers < 1 || c.ParityBuffers > MaxBlocks*maxStored:
		return fmt.Errorf("%w: ParityBuffers=%d", ErrBadParams, c.ParityBuffers)
	case c.MaxPayload < 0 || c.MaxPayload > MaxProtectedPayload:
		return fmt.Errorf("%w: MaxPayload=%d", ErrBadParams, c.MaxPayload)
	case c.BlockTimeoutNanos < 0 || c.ParityWaitNanos < 0 || c.ParityIdleNanos < 0 || c.ParityTrailNanos < 0:
		return fmt.Errorf("%w: negative duration", ErrBadParams)
	}
	return nil
}

// DecoderStats are a Decoder's cumulative counters.
type DecoderStats struct {
	DataShards          uint64 // data shards stored
	DataTooLong         uint64 // data packets with a payload above MaxPayload, not kept
	ParityReceived      uint64 // parity shards accepted (duplicates and unneeded ones included)
	ParityRejected      uint64 // parity shards rejected with ErrInvalidParity, ErrShardTooLong or ErrConflict
	ParityStale         uint64 // parity shards rejected with ErrStale
	ParityDuplicate     uint64 // accepted parity shards already held for their block
	ParityUnneeded      uint64 // accepted parity shards for blocks already complete or given up
	ParityDropped       uint64 // accepted parity shards not kept for want of a buffer
	ParityBytes         uint64 // shard bytes of accepted parity
	Recovered           uint64 // messages rebuilt, validated and handed out
	RecoveryRejected    uint64 // rebuilt shards failing validation, never handed out
	RecoveredDropped    uint64 // rebuilt messages lost before TakeRecovered collected them
	BlocksRecovered     uint64 // blocks with losses that were repaired
	BlocksUnrecoverable uint64 // blocks given up with data missing (expired, evicted, inconsistent)
	BlocksEvicted       uint64 // incomplete blocks pushed out of a full table
	BlocksInconsistent  uint64 // blocks whose data or rebuilt shards contradicted their parity
	BudgetDenied        uint64 // growths the DecoderConfig.Budget refused
}

// Budget meters a Decoder's memory; it has the shape of
// reliability.Budget, so one meter can serve a stream's every structure.
type Budget interface {
	// Reserve asks for n more bytes and reports whether they are granted.
	Reserve(n int) bool
	// Release gives back n bytes reserved earlier.
	Release(n int)
}

// ringPage is the number of ring slots allocated together (4 KiB).
const ringPage = 64

// Decoder rebuilds a stream's lost DATA packets from PARITY shards. Feed it
// every DATA packet received (AddData) and every PARITY packet (AddParity);
// collect rebuilt messages with TakeRecovered; call Expire periodically; ask
// CanRecover before NACKing a missing sequence.
//
// Everything a peer can make it hold is bounded by DecoderConfig. The zero
// value is not usable; call NewDecoder. A Decoder is not safe for concurrent
// use. After warm-up (each ring slot used once, so that its buffer has grown
// to the payload sizes in use) its methods do not allocate, reconstruction
// included.
type Decoder struct {
	cfg  DecoderConfig
	mask uint64

	// ring holds the recent data shards by sequence, in pages of
	// ringPage slots allocated when first written to (nil until then).
	ring     [][]dslot
	none     dslot // what peek returns for a slot of a page not allocated
	budget   Budget
	haveHigh bool
	high     uint64 // highest data sequence seen
	highAt   int64  // when it arrived

	blocks  []block
	last    *block   // the block find or newBlock returned last: its next parity finds it first
	pending int      // blocks in stPending: AddData looks for none when 0
	pool    [][]byte // parity buffers
	free    []int32  // indices of free pool buffers

	haveParity   bool
	lastParityAt int64
	parityFirst  uint64 // latest-starting block any accepted parity named

	// recovered messages waiting for TakeRecovered: sequences, FIFO
	rq     [recoveredCap]uint64
	rqHead int
	rqLen  int

	// reconstruction scratch
	present [][]byte
	presIdx []int
	missing []int
	mat     []byte
	inv     []byte
	syn     [][]byte
	out     [][]byte
	ll      reedsolomon.LowLevel
	crc     crcScratch

	stats DecoderStats
}

// dslot is one entry of the data ring.
type dslot struct {
	seq  uint64
	used bool
	at   int64  // arrival (or rebuild) time
	ts   int64  // sender timestamp
	n    int    // payload length
	buf  []byte // shard header (filled when needed) and payload
}

type blockState uint8

const (
	stFree    blockState = iota
	stPending            // data missing, waiting for shards
	stDone               // all data present, received or rebuilt
	stFailed             // given up: expired, evicted or inconsistent
)

// block is what the decoder knows of one FEC block. The table of blocks is
// scanned for every PARITY packet, so the parity a pending block holds is
// kept apart (held), and a block is a little over one cache line.
type block struct {
	state    blockState
	k, m     uint8
	stride   uint8
	first    uint64
	shardLen int
	created  int64
	nData    int // data shards present
	nPar     int // parity shards held
	maxIdx   int // highest parity index seen, -1 if none
	seen     [4]uint64
	held     *heldParity // this entry's own, for as long as the decoder lives
}

// heldParity lists the parity shards a pending block holds: indices in
// the block and pool buffers, nPar of each.
type heldParity struct {
	idx [maxStored]uint8
	buf [maxStored]int32
}

func (b *block) seq(i int) uint64 { return b.first + uint64(i)*uint64(b.stride) }

// contains reports whether seq is one of b's data sequences and its index.
func (b *block) contains(seq uint64) (int, bool) {
	d := seq - b.first
	s := uint64(b.stride)
	if d%s != 0 || d/s >= uint64(b.k) {
		return 0, false
	}
	return int(d / s), true
}

// NewDecoder returns a Decoder for one stream. It fails with ErrBadParams
// if the configuration is out of range. Its fixed tables (ring and block
// table) are allocated here; shard buffers grow with the payloads seen.
func NewDecoder(cfg DecoderConfig) (*Decoder, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	d := &Decoder{
		cfg:    cfg,
		mask:   uint64(cfg.RingSize - 1),
		ring:   make([][]dslot, (cfg.RingSize+ringPage-1)/ringPage),
		budget: cfg.Budget,
		blocks: make([]block, cfg.MaxBlocks),
		pool:   make([][]byte, cfg.ParityBuffers),
		free:   make([]int32, 0, cfg.ParityBuffers),
	}
	d.Reset()
	return d, nil
}

// reserve asks the budget for n bytes, counting a refusal.
func (d *Decoder) reserve(n int) bool {
	if d.budget == nil || n <= 0 || d.budget.Reserve(n) {
		return true
	}
	d.stats.BudgetDenied++
	return false
}

// grow is the package's grow, with the budget asked for any new capacity.
func (d *Decoder) grow(b []byte, n int) ([]byte, bool) {
	if cap(b) >= n {
		return b[:n], true
	}
	if !d.reserve(n - cap(b)) {
		return b, false
	}
	return grow(b, n), true
}

// peek returns the ring slot for seq to read: an unused one if its page
// was never allocated. Do not write to it.
func (d *Decoder) peek(seq uint64) *dslot {
	i := seq & d.mask
	p := d.ring[i/ringPage]
	if p == nil {
		d.none = dslot{}
		return &d.none
	}
	return &p[i%ringPage]
}

// slotFor returns the ring slot for seq to write, allocating its page
// (within the budget); nil if refused.
func (d *Decoder) slotFor(seq uint64) *dslot {
	i := seq & d.mask
	p := d.ring[i/ringPage]
	if p == nil {
		n := min(ringPage, int(d.mask)+1)
		if !d.reserve(n * int(unsafe.Sizeof(dslot{}))) {
			return nil
		}
		p = make([]dslot, n)
		d.ring[i/ringPage] = p
	}
	return &p[i%ringPage]
}

// Reset forgets every data shard, block and queued message, as for a new
// session, keeping buffers and counters.
func (d *Decoder) Reset() {
	for _, p := range d.ring {
		for i := range p {
			p[i].used = false
		}
	}
	for i := range d.blocks {
		d.blocks[i].state = stFree
	}
	d.pending = 0
	d.free = d.free[:0]
	for i := len(d.pool) - 1; i >= 0; i-- {
		d.free = append(d.free, int32(i))
	}
	d.haveHigh, d.haveParity = false, false
	d.rqHead, d.rqLen = 0, 0
}

// Stats returns the Decoder's counters.
func (d *Decoder) Stats() DecoderStats { return d.stats }

// AddData records a received DATA packet (original or retransmission) with
// sender timestamp ts, received at now. It keeps a copy of the payload, and
// if the packet completes enough of a pending block, rebuilds the block's
// missing messages for TakeRecovered.
func (d *Decoder) AddData(seq uint64, ts int64, payload []byte, now int64) {
	if !d.haveHigh || packet.SeqLess(d.high, seq) {
		d.haveHigh, d.high, d.highAt = true, seq, now
	}
	if s := d.peek(seq); s.used && (s.seq == seq || packet.SeqLess(seq, s.seq)) {
		return // duplicate, already rebuilt, or older than the ring
	}
	s := d.slotFor(seq)
	if s == nil {
		return // over budget: not kept (counted)
	}
	if len(payload) > d.cfg.MaxPayload {
		d.stats.DataTooLong++
		s.used = false
		return
	}
	buf, ok := d.grow(s.buf, ShardHeaderLen+len(payload))
	if !ok {
		s.used = false
		return
	}
	s.buf = buf
	copy(s.buf[ShardHeaderLen:], payload)
	s.seq, s.used, s.at, s.ts, s.n = seq, true, now, ts, len(payload)
	d.stats.DataShards++
	// Without loss every block is complete when its parity arrives, and the
	// table (of blocks several hundred bytes apart) need not be walked for
	// each DATA packet.
	for i := 0; d.pending > 0 && i < len(d.blocks); i++ {
		b := &d.blocks[i]
		if b.state != stPending {
			continue
		}
		if _, ok := b.contains(seq); !ok {
			continue
		}
		if ShardHeaderLen+len(payload) > b.shardLen {
			// The data is checksummed by the packet layer; the parity
			// that announced this shard length is wrong.
			d.stats.BlocksInconsistent++
			d.giveUp(b)
			continue
		}
		b.nData++
		d.progress(b, now)
	}
}

// AddParity records a received PARITY shard (shard aliases nothing after
// the call: it is copied if kept). It validates the shard against the
// block's known parameters and data, and rebuilds the block's missing data
// shards as soon as any K of its shards are present. A rejected shard
// returns ErrInvalidParity, ErrShardTooLong, ErrConflict or ErrStale and is
// counted. Duplicates and parity for blocks already complete return nil.
func (d *Decoder) AddParity(par packet.Parity, shard []byte, now int64) error {
	k, m := int(par.K), int(par.M)
	switch {
	case k == 0 || m == 0 || k+m > 256 || par.Index >= par.M || par.Stride == 0,
		len(shard) < ShardHeaderLen,
		(k-1)*int(par.Stride)+1 > d.cfg.RingSize:
		d.stats.ParityRejected++
		return ErrInvalidParity
	case len(shard) > d.cfg.MaxPayload+ShardHeaderLen:
		d.stats.ParityRejected++
		return ErrShardTooLong
	}
	b := d.find(par.First)
	if b != nil {
		if b.k != par.K || b.m != par.M || b.stride != par.Stride || b.shardLen != len(shard) {
			d.stats.ParityRejected++
			return ErrConflict
		}
		if b.state == stPending && now-b.created >= d.cfg.BlockTimeoutNanos {
			d.giveUp(b)
		}
	} else {
		if d.haveHigh {
			last := par.First + uint64(k-1)*uint64(par.Stride)
			if packet.SeqDiff(d.high, last) >= int64(d.cfg.RingSize) ||
				packet.SeqDiff(par.First, d.high) > int64(d.cfg.RingSize) {
				d.stats.ParityStale++
				return ErrStale
			}
		}
		var err error
		if b, err = d.newBlock(par, len(shard), now); err != nil {
			d.stats.ParityRejected++
			return err
		}
	}
	if b.state == stFailed && now-b.created >= d.cfg.BlockTimeoutNanos {
		d.stats.ParityStale++
		return ErrStale
	}
	d.stats.ParityReceived++
	d.stats.ParityBytes += uint64(len(shard))
	if !d.haveParity || packet.SeqLess(d.parityFirst, par.First) {
		d.parityFirst = par.First
	}
	d.haveParity, d.lastParityAt = true, now
	idx := int(par.Index)
	if b.seen[idx>>6]&(1<<(idx&63)) != 0 {
		d.stats.ParityDuplicate++
		return nil
	}
	b.seen[idx>>6] |= 1 << (idx & 63)
	b.maxIdx = max(b.maxIdx, idx)
	if b.state != stPending {
		d.stats.ParityUnneeded++
		return nil
	}
	if len(d.free) == 0 {
		d.stats.ParityDropped++
		return nil
	}
	if b.held == nil {
		if !d.reserve(int(unsafe.Sizeof(heldParity{}))) {
			d.stats.ParityDropped++
			return nil
		}
		b.held = new(heldParity) // the table entry's own, for as long as the decoder lives
	}
	bi := d.free[len(d.free)-1]
	buf, ok := d.grow(d.pool[bi], len(shard))
	if !ok {
		d.stats.ParityDropped++
		return nil
	}
	d.free = d.free[:len(d.free)-1]
	d.pool[bi] = buf
	copy(d.pool[bi], shard)
	b.held.idx[b.nPar], b.held.buf[b.nPar] = par.Index, bi
	b.nPar++
	d.progress(b, now)
	return nil
}

// find returns the block whose first sequence is first, or nil. A block's
// parity shards arrive together, so the block found last is tried first.
func (d *Decoder) find(first uint64) *block {
	if b := d.last; b != nil && b.state != stFree && b.first == first {
		return b
	}
	for i := range d.blocks {
		if b := &d.blocks[i]; b.state != stFree && b.first == first {
			d.last = b
			return b
		}
	}
	return nil
}

// newBlock takes a table entry for the block par announces and counts the
// data shards already received. It returns ErrConflict, leaving the table
// unchanged, if one of them is longer than the parity shard.
func (d *Decoder) newBlock(par packet.Parity, shardLen int, now int64) (*block, error) {
	nData := 0
	for i := 0; i < int(par.K); i++ {
		seq := par.First + uint64(i)*uint64(par.Stride)
		if s := d.peek(seq); s.used && s.seq == seq {
			if ShardHeaderLen+s.n > shardLen {
				return nil, ErrConflict
			}
			nData++
		}
	}
	b := d.slot() // free, finished or failed: never pending
	*b = block{
		state:    stFree,
		first:    par.First,
		k:        par.K,
		m:        par.M,
		stride:   par.Stride,
		shardLen: shardLen,
		created:  now,
		nData:    nData,
		maxIdx:   -1,
		held:     b.held,
	}
	d.last = b
	if nData == int(par.K) {
		d.setState(b, stDone)
	} else {
		d.setState(b, stPending)
	}
	return b, nil
}

// slot returns a table entry for a new block: a free one, else the oldest
// finished one, else the oldest incomplete one, which is evicted.
func (d *Decoder) slot() *block {
	var oldDone, oldPending *block
	for i := range d.blocks {
		b := &d.blocks[i]
		switch b.state {
		case stFree:
			return b
		case stPending:
			if oldPending == nil || b.created < oldPending.created {
				oldPending = b
			}
		default:
			if oldDone == nil || b.created < oldDone.created {
				oldDone = b
			}
		}
	}
	if oldDone != nil {
		return oldDone
	}
	d.stats.BlocksEvicted++
	d.giveUp(oldPending)
	return oldPending
}

// giveUp abandons a pending block with data missing.
func (d *Decoder) giveUp(b *block) {
	d.stats.BlocksUnrecoverable++
	d.fail(b)
}

// fail marks b failed and releases its parity buffers.
func (d *Decoder) fail(b *block) {
	d.release(b)
	d.setState(b, stFailed)
}

// setState moves b to state s, keeping the count of pending blocks.
func (d *Decoder) setState(b *block, s blockState) {
	if b.state == stPending {
		d.pending--
	}
	if s == stPending {
		d.pending++
	}
	b.state = s
}

func (d *Decoder) release(b *block) {
	for i := 0; i < b.nPar; i++ {
		d.free = append(d.free, b.held.buf[i])
	}
	b.nPar = 0
}

// progress completes b if all its data is present, or rebuilds it if
// enough shards are.
func (d *Decoder) progress(b *block, now int64) {
	switch {
	case b.nData >= int(b.k):
		d.release(b)
		d.setState(b, stDone)
	case b.nData+b.nPar >= int(b.k):
		d.reconstruct(b, now)
	}
}

// Expire gives up the pending blocks older than BlockTimeoutNanos at now
// and returns how many. Call it periodically (every few tens of
// milliseconds); AddParity and CanRecover also apply the timeout to the
// block they touch.
func (d *Decoder) Expire(now int64) int {
	n := 0
	for i := range d.blocks {
		b := &d.blocks[i]
		if b.state == stPending && now-b.created >= d.cfg.BlockTimeoutNanos {
			d.giveUp(b)
			n++
		}
	}
	return n
}

// reconstruct rebuilds b's missing data shards from the data present and
// the first e parity shards held, e being the number missing:
//
//	S_a = P_a + Σ_{j present} c(r_a, j)·D_j   (syndromes: the parity of the missing shards alone)
//	D_missing = C⁻¹·S, where C[a][b] = c(r_a, missing_b)
//
// then validates each rebuilt shard before handing it out.
func (d *Decoder) reconstruct(b *block, now int64) {
	k, L := int(b.k), b.shardLen
	d.present, d.presIdx, d.missing = d.present[:0], d.presIdx[:0], d.missing[:0]
	for i := 0; i < k; i++ {
		seq := b.seq(i)
		s := d.peek(seq)
		if s.used && s.seq == seq {
			if ShardHeaderLen+s.n > L {
				// Only a message rebuilt for an overlapping block with
				// another shard length gets here.
				d.stats.BlocksInconsistent++
				d.giveUp(b)
				return
			}
			d.crc.putShardHeader(s.buf, seq, s.ts, s.buf[ShardHeaderLen:ShardHeaderLen+s.n])
			d.present = append(d.present, s.buf[:ShardHeaderLen+s.n])
			d.presIdx = append(d.presIdx, i)
		} else {
			d.missing = append(d.missing, i)
		}
	}
	e := len(d.missing)
	if e == 0 {
		// Rebuilt for an overlapping block, the data arrived without
		// counting here: the block is complete.
		b.nData = k
		d.progress(b, now)
		return
	}
	if e > b.nPar {
		// Data counted earlier has left the ring; the count was optimistic.
		b.nData = k - e
		return
	}
	// C and its inverse, and the syndromes and rebuilt shards: scratch
	// that grows to the largest block seen, within the budget.
	if !d.scratch(e, L) {
		d.giveUp(b)
		return
	}
	for a := 0; a < e; a++ {
		for c, j := range d.missing {
			d.mat[a*e+c] = coef(int(b.held.idx[a]), j)
		}
	}
	if !gfInvert(d.mat, d.inv, e) {
		d.stats.BlocksInconsistent++
		d.giveUp(b)
		return
	}
	for a := 0; a < e; a++ {
		syn := d.syn[a][:L]
		d.syn[a] = syn
		copy(syn, d.pool[b.held.buf[a]])
		r := int(b.held.idx[a])
		for x, sh := range d.present {
			d.ll.GalMulSliceXor(coef(r, d.presIdx[x]), sh, syn[:len(sh)])
		}
	}
	for c := 0; c < e; c++ {
		out := d.out[c][:L]
		d.out[c] = out
		d.ll.GalMulSlice(d.inv[c*e], d.syn[0], out)
		for a := 1; a < e; a++ {
			d.ll.GalMulSliceXor(d.inv[c*e+a], d.syn[a], out)
		}
	}
	ok := true
	for c, j := range d.missing {
		seq := b.seq(j)
		ts, payload, valid := d.crc.checkShard(seq, d.out[c])
		if !valid {
			d.stats.RecoveryRejected++
			ok = false
			continue
		}
		d.store(seq, ts, payload, now)
	}
	if ok {
		d.stats.BlocksRecovered++
		b.nData = k
		d.release(b)
		d.setState(b, stDone)
		return
	}
	d.stats.BlocksInconsistent++
	d.giveUp(b)
}

// scratch grows the reconstruction scratch for e missing shards of L
// bytes, within the budget; false if refused.
func (d *Decoder) scratch(e, L int) bool {
	var ok bool
	if d.mat, ok = d.grow(d.mat, e*e); !ok {
		return false
	}
	if d.inv, ok = d.grow(d.inv, e*e); !ok {
		return false
	}
	for len(d.syn) < e {
		d.syn = append(d.syn, nil)
		d.out = append(d.out, nil)
	}
	for a := range e {
		if d.syn[a], ok = d.grow(d.syn[a], L); !ok {
			return false
		}
		if d.out[a], ok = d.grow(d.out[a], L); !ok {
			return false
		}
	}
	return true
}

// store puts a rebuilt message into the ring and queues it for
// TakeRecovered, unless the ring holds it already or has moved past it.
func (d *Decoder) store(seq uint64, ts int64, payload []byte, now int64) {
	if s := d.peek(seq); s.used && (s.seq == seq || packet.SeqLess(seq, s.seq)) {
		d.stats.RecoveredDropped++
		return
	}
	s := d.slotFor(seq)
	var buf []byte
	ok := s != nil
	if ok {
		buf, ok = d.grow(s.buf, ShardHeaderLen+len(payload))
	}
	if !ok {
		d.stats.RecoveredDropped++ // over budget
		return
	}
	s.buf = buf
	copy(s.buf[ShardHeaderLen:], payload)
	s.seq, s.used, s.at, s.ts, s.n = seq, true, now, ts, len(payload)
	d.stats.Recovered++
	if d.rqLen == recoveredCap {
		d.stats.RecoveredDropped++
		d.rqHead = (d.rqHead + 1) % recoveredCap
		d.rqLen--
	}
	d.rq[(d.rqHead+d.rqLen)%recoveredCap] = seq
	d.rqLen++
}

// TakeRecovered calls fn for every message rebuilt since the last call, in
// the order rebuilt, and returns how many it passed. payload is owned by the
// Decoder and valid only during the call; fn must not call the Decoder.
func (d *Decoder) TakeRecovered(fn func(seq uint64, ts int64, payload []byte)) int {
	n := 0
	for ; d.rqLen > 0; d.rqLen-- {
		seq := d.rq[d.rqHead]
		d.rqHead = (d.rqHead + 1) % recoveredCap
		s := d.peek(seq)
		if !s.used || s.seq != seq {
			d.stats.RecoveredDropped++
			continue
		}
		fn(seq, s.ts, s.buf[ShardHeaderLen:ShardHeaderLen+s.n])
		n++
	}
	return n
}

// CanRecover reports whether the missing sequence seq could still be
// rebuilt from parity at time now, so that a NACK for it should wait:
//
//   - seq is present (received or rebuilt): false, nothing to rebuild;
//   - seq belongs to a block announced by parity: true while the block is
//     pending, younger than BlockTimeoutNanos, and misses no more data
//     shards than the parity it holds plus the parity still expected
//     (indices above the highest seen, while the block is younger than
//     ParityWaitNanos);
//   - otherwise, if parity arrived within ParityIdleNanos: true while the
//     loss of seq became visible (the first later sequence received, or
//     the newest one if none is later) less than ParityWaitNanos ago, since
//     parity for its block may still come; false when FEC is idle, and
//     false once parity has arrived for a block that starts after seq. An
//     Encoder completes blocks in the order of their first sequences
//     (interleaved ones included) and the sender keeps that order, so the
//     parity of seq's block left before that parity: it was lost, or seq
//     was never protected. Waiting for it would only let the sender's
//     retransmit buffer age out, which at high rates takes less than
//     ParityWaitNanos. (Parity reordered by the network costs at worst a
//     NACK that was not needed.)
func (d *Decoder) CanRecover(seq uint64, now int64) bool {
	s := d.peek(seq)
	if s.used && s.seq == seq {
		return false
	}
	for i := range d.blocks {
		b := &d.blocks[i]
		if b.state == stFree {
			continue
		}
		if _, ok := b.contains(seq); !ok {
			continue
		}
		if b.state != stPending {
			return false
		}
		age := now - b.created
		if age >= d.cfg.BlockTimeoutNanos {
			d.giveUp(b)
			return false
		}
		possible := b.nPar
		if age < d.cfg.ParityTrailNanos {
			possible += int(b.m) - 1 - b.maxIdx
		}
		return int(b.k)-b.nData <= possible
	}
	if !d.haveParity || now-d.lastParityAt >= d.cfg.ParityIdleNanos || !d.haveHigh ||
		packet.SeqLess(seq, d.parityFirst) {
		return false
	}
	noticed := d.highAt
	if packet.SeqLess(seq, d.high) {
		lim := min(packet.SeqDiff(d.high, seq), noticeScan)
		for i := int64(1); i <= lim; i++ {
			x := seq + uint64(i)
			if t := d.peek(x); t.used && t.seq == x {
				noticed = t.at
				break
			}
		}
	}
	return now-noticed < d.cfg.ParityWaitNanos
}

// MemBytes returns about how many bytes the Decoder holds: its tables,
// the ring pages allocated and every buffer grown so far; with a Budget,
// what it charged beyond the tables. It walks the ring: call it rarely.
func (d *Decoder) MemBytes() int {
	n := len(d.ring)*int(unsafe.Sizeof([]dslot(nil))) +
		len(d.blocks)*int(unsafe.Sizeof(block{})) +
		len(d.pool)*int(unsafe.Sizeof([]byte(nil))) + 4*cap(d.free) +
		cap(d.mat) + cap(d.inv)
	for _, p := range d.ring {
		n += len(p) * int(unsafe.Sizeof(dslot{}))
		for i := range p {
			n += cap(p[i].buf)
		}
	}
	for i := range d.blocks {
		if d.blocks[i].held != nil {
			n += int(unsafe.Sizeof(heldParity{}))
		}
	}
	for _, b := range d.pool {
		n += cap(b)
	}
	for i := range d.syn {
		n += cap(d.syn[i]) + cap(d.out[i])
	}
	return n
}
