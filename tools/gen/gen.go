// Package gen makes synthetic telemetry for demos and load tests: market
// ticks (instrument, bid/ask, size, following a random walk per
// instrument) and game state (entity positions and velocities moving in a
// 2-D arena). Output is printable text on one line, so it works with the
// line framing, padded to a requested size. Sources are deterministic from
// their seed.
package gen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
)

// Kind names a generator.
type Kind string

// The generators.
const (
	Market Kind = "market"
	Game   Kind = "game"
)

// Source produces one message per call to Next.
type Source interface {
	// Next appends the next message to dst and returns it.
	Next(dst []byte) []byte
}

// MinSize is the smallest size New accepts: enough for every field.
const MinSize = 64

// New returns a source of the given kind whose messages are exactly size
// bytes (size 0 means unpadded), seeded with seed.
func New(kind Kind, size int, seed uint64) (Source, error) {
	if size != 0 && size < MinSize {
		return nil, fmt.Errorf("gen: size %d below the minimum %d", size, MinSize)
	}
	rng := rand.New(rand.NewPCG(seed, 0x7e1e))
	switch kind {
	case Market:
		m := &market{rng: rng, size: size}
		for range symbols {
			m.prices = append(m.prices, 50+rng.Float64()*400)
		}
		return m, nil
	case Game:
		g := &game{rng: rng, size: size}
		for range entities {
			g.ents = append(g.ents, entity{
				x: rng.Float64() * arena, y: rng.Float64() * arena,
				vx: rng.NormFloat64() * 3, vy: rng.NormFloat64() * 3,
			})
		}
		return g, nil
	}
	return nil, fmt.Errorf("gen: unknown source %q (want market or game)", kind)
}

var symbols = []string{"AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "BRK.B", "JPM", "V", "XOM", "UNH"}

type market struct {
	rng    *rand.Rand
	size   int
	seq    uint64
	prices []float64
}

// Next appends "T <seq> <symbol> bid <p> ask <p> size <n>".
func (m *market) Next(dst []byte) []byte {
	start := len(dst)
	i := m.rng.IntN(len(symbols))
	// Geometric random walk with ~2 bp steps.
	m.prices[i] *= math.Exp(m.rng.NormFloat64() * 0.0002)
	bid := math.Round(m.prices[i]*100) / 100
	ask := bid + 0.01*float64(1+m.rng.IntN(3))
	m.seq++
	dst = append(dst, "T "...)
	dst = strconv.AppendUint(dst, m.seq, 10)
	dst = append(dst, ' ')
	dst = append(dst, symbols[i]...)
	dst = append(dst, " bid "...)
	dst = strconv.AppendFloat(dst, bid, 'f', 2, 64)
	dst = append(dst, " ask "...)
	dst = strconv.AppendFloat(dst, ask, 'f', 2, 64)
	dst = append(dst, " size "...)
	dst = strconv.AppendInt(dst, int64(100*(1+m.rng.IntN(50))), 10)
	return pad(dst, start, m.size)
}

const (
	entities = 64
	arena    = 1000.0
)

type entity struct{ x, y, vx, vy float64 }

type game struct {
	rng  *rand.Rand
	size int
	tick uint64
	ents []entity
}

// Next appends "G <tick> e<id> x <x> y <y> vx <vx> vy <vy>" for the next
// entity, advancing the world one step each time every entity was sent.
func (g *game) Next(dst []byte) []byte {
	start := len(dst)
	id := int(g.tick % entities)
	e := &g.ents[id]
	e.vx += g.rng.NormFloat64() * 0.2
	e.vy += g.rng.NormFloat64() * 0.2
	e.x = bounce(e.x+e.vx, &e.vx)
	e.y = bounce(e.y+e.vy, &e.vy)
	g.tick++
	dst = append(dst, "G "...)
	dst = strconv.AppendUint(dst, g.tick, 10)
	dst = append(dst, " e"...)
	dst = strconv.AppendInt(dst, int64(id), 10)
	for _, f := range [...]struct {
		name string
		v    float64
	}{{" x ", e.x}, {" y ", e.y}, {" vx ", e.vx}, {" vy ", e.vy}} {
		dst = append(dst, f.name...)
		dst = strconv.AppendFloat(dst, f.v, 'f', 2, 64)
	}
	return pad(dst, start, g.size)
}

func bounce(p float64, v *float64) float64 {
	switch {
	case p < 0:
		*v = -*v
		return -p
	case p > arena:
		*v = -*v
		return 2*arena - p
	}
	return p
}

// pad extends the message begun at start to size bytes with a run of '.'
// (or cuts it, which MinSize makes rare), leaving it as is when size is 0.
func pad(dst []byte, start, size int) []byte {
	if size == 0 {
		return dst
	}
	if n := len(dst) - start; n >= size {
		return dst[:start+size]
	}
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, '.')
	}
	return dst
}
