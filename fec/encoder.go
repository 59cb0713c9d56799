package fec

import (
	"errors"
	"fmt"

	"github.com/klauspost/reedsolomon"
	"github.com/telewire/telewire/packet"
)

// Encoder defaults and limits.
const (
	// DefaultK is the default number of data shards per block.
	DefaultK = 10
	// DefaultM is the default number of parity shards per block.
	DefaultM = 3
	// DefaultMaxDelayNanos is the default time limit of a block: 50 ms after
	// its first DATA packet, a block that is not full is encoded with the
	// shards it has. A 50 msg/s stream therefore sends blocks of about three
	// messages instead of holding ten for 200 ms; streams above 200 msg/s
	// fill K=10 blocks before the limit.
	DefaultMaxDelayNanos = 50_000_000
	// MaxInterleave is the largest interleaving depth (the PARITY stride
	// field is one byte).
	MaxInterleave = 255
	// MaxGroupShards bounds Interleave·(K+M), the number of shard buffers
	// one group of interleaved blocks holds.
	MaxGroupShards = 1024
)

// ErrBadParams is returned for a configuration or parameter change outside
// the limits documented on EncoderConfig.
var ErrBadParams = errors.New("fec: parameters out of range")

// EncoderConfig configures an Encoder. The zero value is valid and means
// the defaults.
type EncoderConfig struct {
	// K is the number of data shards per block, 1..255. Default DefaultK.
	K int
	// M is the number of parity shards per block, 1..255, with K+M <= 256.
	// Default DefaultM. To start with FEC off, call SetParams(k, 0) after
	// NewEncoder.
	M int
	// Interleave is the depth D: consecutive sequences are dealt round-robin
	// over D blocks that fill together, so a burst of up to D·M consecutive
	// losses costs each block at most M shards. 1..255, with
	// D·(K+M) <= MaxGroupShards. Default 1 (no interleaving).
	Interleave int
	// MaxDelayNanos is the block time limit: a group of blocks that is not
	// full this long after its first DATA packet is encoded with the shards
	// it has (checked by Add and Flush). Default DefaultMaxDelayNanos;
	// negative means no limit.
	MaxDelayNanos int64
}

func (c *EncoderConfig) setDefaults() {
	if c.K == 0 {
		c.K = DefaultK
	}
	if c.M == 0 {
		c.M = DefaultM
	}
	if c.Interleave == 0 {
		c.Interleave = 1
	}
	if c.MaxDelayNanos == 0 {
		c.MaxDelayNanos = DefaultMaxDelayNanos
	}
}

func checkParams(k, m, d int) error {
	if k < 1 || k > 255 || m < 0 || m > 255 || k+m > 256 ||
		d < 1 || d > MaxInterleave || d*(k+m) > MaxGroupShards {
		return fmt.Errorf("%w: K=%d M=%d D=%d", ErrBadParams, k, m, d)
	}
	return nil
}

// EncoderStats are an Encoder's cumulative counters.
type EncoderStats struct {
	Blocks        uint64 // blocks encoded
	PartialBlocks uint64 // blocks encoded with fewer than K shards (time limit, sequence gap)
	DataShards    uint64 // DATA packets protected
	Unprotected   uint64 // DATA packets with a payload above MaxProtectedPayload, sent without FEC
	ParityShards  uint64 // parity shards produced
	ParityBytes   uint64 // bytes of parity shards produced
	OverheadBytes uint64 // wire bytes FEC adds: parity shards plus their PARITY packet headers
	ParityDropped uint64 // parity shards overwritten before TakeParity collected them
}

// Encoder turns a stream's DATA packets into PARITY shards. Add each
// original DATA packet in sequence order; when a block completes (Add or
// Flush return true) collect its parity with TakeParity and send it.
//
// The zero value is not usable; call NewEncoder. An Encoder is not safe for
// concurrent use. After warm-up (shard buffers grown to the largest payload
// and lanes to the largest parameters in use) Add, Flush and TakeParity do
// not allocate.
type Encoder struct {
	maxDelay int64

	k, m, d int // parameters for the next group

	// The open group: gd interleaved blocks of up to gk shards each.
	open   bool
	gk, gm int
	gd     int
	gFirst uint64 // sequence of the group's first shard
	gCount int    // shards added to the group
	gStart int64  // time of the group's first shard
	next   uint64 // sequence that continues the group

	lanes   []encLane
	pending []int // lanes with parity not yet taken, in completion order

	gf  reedsolomon.LowLevel // the SIMD slice kernels
	crc crcScratch

	stats EncoderStats
}

// encLane is one of the interleaved blocks of a group and, after it is
// encoded, the holder of its parity until TakeParity.
type encLane struct {
	data     [][]byte // data shards: header and payload, padded when encoded
	n        int      // data shards in the current block
	shardLen int      // longest shard in the current block

	parity  [][]byte      // parity of the last encoded block, parLen bytes sent of each
	parLen  int           // its shard length
	par     packet.Parity // its PARITY header (Index filled per shard)
	waiting bool          // parity not yet taken
}

// NewEncoder returns an Encoder for one stream. It fails with ErrBadParams
// if the configuration is out of range.
func NewEncoder(cfg EncoderConfig) (*Encoder, error) {
	cfg.setDefaults()
	if cfg.M < 1 {
		return nil, fmt.Errorf("%w: M=%d", ErrBadParams, cfg.M)
	}
	if err := checkParams(cfg.K, cfg.M, cfg.Interleave); err != nil {
		return nil, err
	}
	e := &Encoder{
		maxDelay: cfg.MaxDelayNanos,
		k:        cfg.K,
		m:        cfg.M,
		d:        cfg.Interleave,
		pending:  make([]int, 0, MaxInterleave),
	}
	return e, nil
}

// SetParams sets K and M for the blocks that start after the current group
// completes; the open group keeps its parameters. m = 0 turns FEC off: Add
// then buffers nothing. It fails with ErrBadParams outside the limits of
// EncoderConfig.
func (e *Encoder) SetParams(k, m int) error {
	if err := checkParams(k, m, e.d); err != nil {
		return err
	}
	e.k, e.m = k, m
	return nil
}

// SetInterleave sets the interleaving depth for the groups that start after
// the current one. It fails with ErrBadParams outside the limits of
// EncoderConfig.
func (e *Encoder) SetInterleave(d int) error {
	if err := checkParams(e.k, e.m, d); err != nil {
		return err
	}
	e.d = d
	return nil
}

// Params returns the K, M and interleaving depth the next group will use.
func (e *Encoder) Params() (k, m, d int) { return e.k, e.m, e.d }

// Stats returns the Encoder's counters.
func (e *Encoder) Stats() EncoderStats { return e.stats }

// Add records the original DATA packet seq (sender timestamp ts, payload)
// sent at time now, and reports whether parity became ready to take: a
// block filled, or the open group was closed because its time limit passed
// or seq does not continue it. Sequences are expected consecutive; a gap
// closes the open group and starts a new one at seq. Payloads above
// MaxProtectedPayload are not protected: the open group is closed and the
// packet skipped. Add copies what it needs from payload.
func (e *Encoder) Add(seq uint64, ts int64, payload []byte, now int64) bool {
	ready := false
	if e.open && (seq != e.next || e.expired(now)) {
		ready = e.closeGroup()
	}
	if len(payload) > MaxProtectedPayload {
		e.stats.Unprotected++
		if e.open {
			ready = e.closeGroup() || ready
		}
		return ready
	}
	if !e.open {
		if e.m == 0 {
			return ready
		}
		e.startGroup(seq, now)
	}
	li, idx := e.gCount%e.gd, e.gCount/e.gd
	ln := &e.lanes[li]
	buf := grow(ln.data[idx], ShardHeaderLen+len(payload))
	e.crc.putShardHeader(buf, seq, ts, payload)
	copy(buf[ShardHeaderLen:], payload)
	ln.data[idx] = buf
	ln.n++
	ln.shardLen = max(ln.shardLen, len(buf))
	e.stats.DataShards++
	e.gCount++
	e.next = seq + 1
	if idx == e.gk-1 {
		e.encodeLane(li)
		ready = true
	}
	if e.gCount == e.gk*e.gd {
		e.open = false
	}
	return ready
}

// Flush closes the open group if its time limit has passed at now, and
// reports whether parity became ready. Call it at NextFlushAt.
func (e *Encoder) Flush(now int64) bool {
	if e.open && e.expired(now) {
		return e.closeGroup()
	}
	return false
}

// FlushAll closes the open group whatever its age (for example when the
// stream ends) and reports whether parity became ready.
func (e *Encoder) FlushAll() bool {
	if e.open {
		return e.closeGroup()
	}
	return false
}

// NextFlushAt returns when the open group's time limit passes, and false if
// no group is open or there is no limit.
func (e *Encoder) NextFlushAt() (int64, bool) {
	if !e.open || e.maxDelay < 0 {
		return 0, false
	}
	return e.gStart + e.maxDelay, true
}

// PendingParity returns the number of parity shards waiting for TakeParity.
func (e *Encoder) PendingParity() int {
	n := 0
	for _, li := range e.pending {
		n += int(e.lanes[li].par.M)
	}
	return n
}

// TakeParity calls fn for every parity shard ready since the last call, in
// the order the blocks completed and by index within a block, and returns
// how many it passed. Blocks complete in the order of their first
// sequences, interleaved ones included (lane j of a group completes before
// lane j+1, and a group before the next): the Decoder's CanRecover relies
// on parity leaving in that order. shard is owned by the Encoder and valid only during
// the call; fn must not call the Encoder. A block's parity not taken before
// its buffers are needed again (one group later) is dropped and counted.
func (e *Encoder) TakeParity(fn func(par packet.Parity, shard []byte)) int {
	n := 0
	for _, li := range e.pending {
		ln := &e.lanes[li]
		par := ln.par
		for t := 0; t < int(par.M); t++ {
			par.Index = uint8(t)
			fn(par, ln.parity[t][:ln.parLen])
			n++
		}
		ln.waiting = false
	}
	e.pending = e.pending[:0]
	return n
}

func (e *Encoder) expired(now int64) bool {
	return e.maxDelay >= 0 && now-e.gStart >= e.maxDelay
}

// startGroup opens a group at seq with the current parameters, growing the
// lane buffers if the parameters grew.
func (e *Encoder) startGroup(seq uint64, now int64) {
	e.gk, e.gm, e.gd = e.k, e.m, e.d
	e.open = true
	e.gFirst, e.gCount, e.gStart, e.next = seq, 0, now, seq
	for len(e.lanes) < e.gd {
		e.lanes = append(e.lanes, encLane{})
	}
	for i := 0; i < e.gd; i++ {
		ln := &e.lanes[i]
		for len(ln.data) < e.gk {
			ln.data = append(ln.data, nil)
		}
		for len(ln.parity) < e.gm {
			ln.parity = append(ln.parity, nil)
		}
		ln.n, ln.shardLen = 0, 0
	}
}

// closeGroup encodes every lane of the open group that holds shards.
func (e *Encoder) closeGroup() bool {
	ready := false
	for li := 0; li < e.gd; li++ {
		if e.lanes[li].n > 0 {
			e.encodeLane(li)
			ready = true
		}
	}
	e.open = false
	return ready
}

// kernelAlign is the granularity, in bytes, of the parity computation:
// shards are zero-padded to a multiple of it, which is a whole number of
// steps of every SIMD kernel of reedsolomon.LowLevel (64 bytes with AVX2,
// 16 with SSSE3). A ragged end is otherwise finished through 16-bit lookup
// tables of 128 KiB per coefficient, whose cache misses cost several times
// the SIMD work on short shards (a 10+3 block of 214-byte shards took 4-7 µs
// of CPU with a 22-byte tail, under 1 µs padded to 256). The padding's
// parity is zero and is not sent.
const kernelAlign = 64

// encodeLane computes the parity of lane li's block and queues it. Parity
// shard t is Σ_j coef(t, j)·D_j over the block's n data shards; the shards
// of a partial block beyond n are zero and are skipped.
func (e *Encoder) encodeLane(li int) {
	ln := &e.lanes[li]
	n, m, L := ln.n, e.gm, ln.shardLen
	if n < e.gk {
		e.stats.PartialBlocks++
	}
	padded := (L + kernelAlign - 1) &^ (kernelAlign - 1)
	for i := 0; i < n; i++ {
		buf := ln.data[i]
		old := len(buf)
		buf = grow(buf, padded)
		clear(buf[old:])
		ln.data[i] = buf
	}
	if ln.waiting {
		e.stats.ParityDropped += uint64(ln.par.M)
		for i, p := range e.pending {
			if p == li {
				e.pending = append(e.pending[:i], e.pending[i+1:]...)
				break
			}
		}
	}
	for t := 0; t < m; t++ {
		out := grow(ln.parity[t], padded)
		ln.parity[t] = out
		e.gf.GalMulSlice(coef(t, 0), ln.data[0], out)
		for j := 1; j < n; j++ {
			e.gf.GalMulSliceXor(coef(t, j), ln.data[j], out)
		}
	}
	ln.parLen = L
	ln.par = packet.Parity{
		First:  e.gFirst + uint64(li),
		K:      uint8(n),
		M:      uint8(m),
		Stride: uint8(e.gd),
	}
	ln.waiting = true
	e.pending = append(e.pending, li)
	e.stats.Blocks++
	e.stats.ParityShards += uint64(m)
	e.stats.ParityBytes += uint64(m * L)
	e.stats.OverheadBytes += uint64(m * (L + packet.HeaderLen + packet.ParityHeaderLen))
	ln.n, ln.shardLen = 0, 0
}
