package netem

import (
	"math"
	"math/rand/v2"
)

// Verdict is what the model decided for one copy of a packet.
type Verdict uint8

// Verdicts.
const (
	Deliver   Verdict = iota // queue the copy for delivery at Copy.At
	Lost                     // dropped by the loss model
	LimitDrop                // dropped because the queue was full
)

// Copy is the fate of one copy of a packet.
type Copy struct {
	Verdict Verdict
	// At is the delivery time in nanoseconds (same clock as the arrival
	// time), valid when Verdict is Deliver.
	At int64
	// Reordered is set when the copy jumped the queue (sent at once).
	Reordered bool
	// CorruptBit is the index of the bit to flip (byte CorruptBit/8, mask
	// 1<<(CorruptBit%8)), or -1 when the copy is not corrupted.
	CorruptBit int
}

// Decision is the model's verdict on one arriving packet: one copy, or two
// when the packet was duplicated. Copies[1], the duplicate, is decided
// first, as netem re-enqueues its clone before finishing the original.
type Decision struct {
	N      int // 1, or 2 when duplicated
	Copies [2]Copy
}

// QueueState is what the model needs to know of the queue it feeds: the
// number of packets and bytes held, for the limit check.
type QueueState struct {
	Packets int
	Bytes   int
}

// crnd is netem's correlated random source: each value is a weighted mean
// of a fresh uniform value and the previous result.
type crnd struct {
	rho  uint64 // correlation scaled to 2^32, plus one; 0 when off
	last uint32
}

// Model is the pure decision core of the emulator: for each arriving
// packet (arrival time in nanoseconds and size in bytes) it decides loss,
// duplication, corruption, reordering and the delivery time, exactly as
// the netem qdisc's enqueue path does, with all randomness from one seeded
// PCG generator. It holds no clock and starts no goroutines; the same seed
// and the same calls give the same decisions.
//
// A Model is not safe for concurrent use. Most users want [Link], which
// wraps a Model with the queue.
type Model struct {
	spec Spec
	rng  rand.PCG
	slot rand.PCG // separate stream so slot draws never shift packet decisions

	limit     int
	byteLimit int
	table     []float64

	lossP, dupP, corruptP, reorderP uint32
	lossCor, dupCor, corruptCor     crnd
	reorderCor, delayCor            crnd

	// loss state: 4-state chain state (1..4) or GE state (1 good, 2 bad)
	state                   int
	p13, p31, p32, p23, p14 float64
	geP, geR, geH, ge1K     uint32

	counter  int   // packets delayed since the last reordered one
	lastSend int64 // delivery time of the last rate-limited packet
}

// prob32 scales a percentage to netem's 32-bit probability.
func prob32(pct float64) uint32 {
	return uint32(math.Round(pct / 100 * math.MaxUint32))
}

func newCrnd(pct float64) crnd {
	if pct == 0 {
		return crnd{}
	}
	return crnd{rho: uint64(prob32(pct)) + 1}
}

// NewModel returns a Model for spec seeded with seed (or with spec.Seed
// when spec.HasSeed). It fails only if spec does not Validate.
func NewModel(spec Spec, seed int64) (*Model, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	s := uint64(seed)
	if spec.HasSeed {
		s = spec.Seed
	}
	m := &Model{
		spec:       spec,
		limit:      spec.Limit,
		table:      distTables[spec.Dist],
		lossP:      prob32(spec.LossPercent),
		dupP:       prob32(spec.DuplicatePercent),
		corruptP:   prob32(spec.CorruptPercent),
		reorderP:   prob32(spec.ReorderPercent),
		lossCor:    newCrnd(spec.LossCorrPercent),
		dupCor:     newCrnd(spec.DuplicateCorrPercent),
		corruptCor: newCrnd(spec.CorruptCorrPercent),
		reorderCor: newCrnd(spec.ReorderCorrPercent),
		delayCor:   newCrnd(spec.DelayCorrPercent),
		state:      1,
		p13:        spec.P13 / 100, p31: spec.P31 / 100, p32: spec.P32 / 100,
		p23: spec.P23 / 100, p14: spec.P14 / 100,
		geP: prob32(spec.GEP), geR: prob32(spec.GER),
		geH: prob32(100 - spec.GE1H), ge1K: prob32(spec.GE1K),
		lastSend: math.MinInt64,
	}
	if m.limit == 0 {
		m.limit = DefaultLimit
	}
	m.rng.Seed(s, 0x6e6574656d2d7076)  // "netem-pv"
	m.slot.Seed(s, 0x6e6574656d2d736c) // "netem-sl"
	return m, nil
}

// Spec returns the specification the model emulates.
func (m *Model) Spec() Spec { return m.spec }

// Limit returns the queue capacity in packets.
func (m *Model) Limit() int { return m.limit }

// SetByteLimit additionally caps the bytes the queue may hold (0, the
// default, means no byte cap; netem has none). A packet that would exceed
// it is a LimitDrop.
func (m *Model) SetByteLimit(n int) { m.byteLimit = max(n, 0) }

func (m *Model) u32() uint32 { return uint32(m.rng.Uint64() >> 32) }

// crandom is netem's get_crandom: with correlation rho the result is
// (1-rho)*fresh + rho*previous, which keeps the mean but narrows the
// distribution (hence tc-netem(8) calls loss correlation deprecated).
func (m *Model) crandom(c *crnd) uint32 {
	v := m.u32()
	if c.rho == 0 {
		return v
	}
	a := uint32((uint64(v)*((1<<32)-c.rho) + uint64(c.last)*c.rho) >> 32)
	c.last = a
	return a
}

// Decide returns the fate of a packet of size bytes arriving at now
// (nanoseconds) at a queue currently in state q. It follows the order of
// netem_enqueue: duplicate?, lost?, (the duplicate's own pass), corrupt?,
// queue full?, then reorder or delay (+ rate). A packet that is both
// duplicated and lost yields one copy, as in netem.
func (m *Model) Decide(now int64, size int, q QueueState) Decision {
	var d Decision
	count := 1
	if m.dupP != 0 && m.dupP >= m.crandom(&m.dupCor) {
		count++
	}
	if m.lossEvent() {
		count--
	}
	if count == 0 {
		d.N = 1
		d.Copies[0] = Copy{Verdict: Lost, CorruptBit: -1}
		return d
	}
	d.N = count
	if count == 2 {
		c := Copy{Verdict: Lost, CorruptBit: -1}
		if !m.lossEvent() {
			c = m.finish(now, size, q)
		}
		if c.Verdict == Deliver {
			q.Packets++
			q.Bytes += size
		}
		d.Copies[1] = c
	}
	d.Copies[0] = m.finish(now, size, q)
	return d
}

// finish is the part of netem_enqueue after loss: corruption, the limit
// check, then reordering or delay.
func (m *Model) finish(now int64, size int, q QueueState) Copy {
	c := Copy{CorruptBit: -1}
	if m.corruptP != 0 && m.corruptP >= m.crandom(&m.corruptCor) && size > 0 {
		c.CorruptBit = int(m.rng.Uint64() % (uint64(size) * 8))
	}
	if q.Packets >= m.limit || (m.byteLimit > 0 && q.Bytes+size > m.byteLimit) {
		c.Verdict = LimitDrop
		return c
	}
	gap := m.spec.ReorderGap
	if gap == 0 || m.counter < gap-1 || m.reorderP < m.crandom(&m.reorderCor) {
		at := now + m.delay()
		if m.spec.RateBitsPerSec != 0 {
			// netem takes the last queued packet's send time as the
			// reference, which comes to max(now+delay, last) + tx time.
			at = max(at, m.lastSend) + m.txTime(size)
			m.lastSend = at
		}
		m.counter++
		c.At = at
		return c
	}
	m.counter = 0
	c.At = now
	c.Reordered = true
	return c
}

// delay is netem's tabledist: Delay plus Jitter times a draw from the
// distribution, never negative.
func (m *Model) delay() int64 {
	mu, sigma := int64(m.spec.Delay), int64(m.spec.Jitter)
	if sigma == 0 {
		return mu
	}
	u := float64(m.crandom(&m.delayCor)) / (1 << 32)
	var x float64
	if m.table == nil {
		x = 2*u - 1
	} else {
		x = m.table[int(u*distTableSize)]
	}
	return max(0, mu+int64(math.Round(float64(sigma)*x)))
}

// txTime is the serialisation time of size bytes at the configured rate,
// with tc's packet overhead and cell rounding.
func (m *Model) txTime(size int) int64 {
	n := int64(size) + int64(m.spec.RatePacketOverhead)
	if cs := int64(m.spec.RateCellSize); cs > 0 && n > 0 {
		cells := (n + cs - 1) / cs
		n = cells * (cs + int64(m.spec.RateCellOverhead))
	}
	if n <= 0 {
		return 0
	}
	return int64(uint64(n) * 8e9 / m.spec.RateBitsPerSec)
}

// lossEvent draws one loss decision from the configured loss model.
func (m *Model) lossEvent() bool {
	switch m.spec.Loss {
	case LossRandom:
		return m.lossP != 0 && m.lossP >= m.crandom(&m.lossCor)
	case LossState:
		return m.loss4State()
	case LossGEModel:
		return m.lossGE()
	}
	return false
}

// loss4State steps the 4-state Markov chain of Salsano et al. (NetemCLG):
// 1 = good reception in a gap, 2 = good reception in a burst, 3 = loss in
// a burst, 4 = isolated loss. A packet is lost when the step lands in
// state 3 or 4, as in netem's loss_4state.
func (m *Model) loss4State() bool {
	u := float64(m.u32()) / (1 << 32)
	switch m.state {
	case 1:
		switch {
		case u < m.p14:
			m.state = 4
			return true
		case u < m.p14+m.p13:
			m.state = 3
			return true
		}
	case 2:
		if u < m.p23 {
			m.state = 3
			return true
		}
	case 3:
		switch {
		case u < m.p32:
			m.state = 2
		case u < m.p32+m.p31:
			m.state = 1
		default:
			return true
		}
	case 4:
		m.state = 1
	}
	return false
}

// lossGE steps the Gilbert-Elliott chain as netem's loss_gilb_ell: the
// packet is lost with probability 1-k in the good state and 1-h in the bad
// one (the state before this packet's transition), and the state moves
// good→bad with probability p and bad→good with probability r.
func (m *Model) lossGE() bool {
	if m.state == 1 {
		if m.u32() < m.geP {
			m.state = 2
		}
		return m.u32() < m.ge1K
	}
	if m.u32() < m.geR {
		m.state = 1
	}
	return m.u32() > m.geH
}

// slotDelay draws the interval to the next delivery slot, uniform in
// [SlotMin, SlotMax].
func (m *Model) slotDelay() int64 {
	lo, hi := int64(m.spec.SlotMin), int64(m.spec.SlotMax)
	if hi <= lo {
		return lo
	}
	return lo + int64(m.slot.Uint64()%uint64(hi-lo+1))
}
