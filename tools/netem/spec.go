package netem

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultLimit is the queue capacity in packets when a Spec does not set
// one, as in netem.
const DefaultLimit = 1000

// Sentinel errors carried by [*SpecError]; test with errors.Is.
var (
	// ErrUnknownOption: the token is not a netem option (or sub-option).
	ErrUnknownOption = errors.New("unknown option")
	// ErrBadValue: the token should be a value (time, percentage, rate,
	// size or count) and is malformed or out of range.
	ErrBadValue = errors.New("bad value")
	// ErrMissingValue: an option ended before its required value.
	ErrMissingValue = errors.New("missing value")
	// ErrDuplicateOption: an option was given twice.
	ErrDuplicateOption = errors.New("option given twice")
	// ErrUnsupported: valid tc syntax that this package does not emulate
	// (ecn, percentage rates, slot distributions, distribution files).
	ErrUnsupported = errors.New("unsupported option")
	// ErrConflict: options that tc rejects in combination (reorder without
	// delay, distribution without delay and jitter).
	ErrConflict = errors.New("conflicting options")
)

// SpecError reports the token of a netem specification that could not be
// parsed. Err is one of the sentinel errors above.
type SpecError struct {
	Token string // the offending token; empty when the input ended early
	Pos   int    // byte offset of Token in the input (len(input) at the end)
	Err   error  // sentinel: ErrUnknownOption, ErrBadValue, ...
}

// Error implements error.
func (e *SpecError) Error() string {
	if e.Token == "" {
		return fmt.Sprintf("netem: %v at end of spec (offset %d)", e.Err, e.Pos)
	}
	return fmt.Sprintf("netem: %v %q at offset %d", e.Err, e.Token, e.Pos)
}

// Unwrap returns the sentinel error.
func (e *SpecError) Unwrap() error { return e.Err }

// Distribution selects the shape of the delay jitter.
type Distribution uint8

// Delay distributions, as netem's "distribution" option.
const (
	// DistUniform: delay uniform in [Delay-Jitter, Delay+Jitter). The
	// default (netem's behaviour when no table is loaded).
	DistUniform Distribution = iota
	// DistNormal: normal with mean Delay and standard deviation Jitter.
	DistNormal
	// DistPareto: netem's Pareto table (shape 3, centred on its mean).
	DistPareto
	// DistParetoNormal: netem's 1/4 normal + 3/4 Pareto mix.
	DistParetoNormal
)

var distNames = [...]string{"uniform", "normal", "pareto", "paretonormal"}

// String returns the tc name of the distribution.
func (d Distribution) String() string {
	if int(d) < len(distNames) {
		return distNames[d]
	}
	return "Distribution(" + strconv.Itoa(int(d)) + ")"
}

// LossModel selects how packets are lost.
type LossModel uint8

// Loss models, as netem's "loss" option.
const (
	LossNone    LossModel = iota // no loss
	LossRandom                   // "loss random P [CORR]": independent (optionally correlated) loss
	LossState                    // "loss state P13 ...": 4-state Markov chain (Salsano et al.)
	LossGEModel                  // "loss gemodel P [R [1-H [1-K]]]": Gilbert-Elliott
)

// Spec is a parsed netem specification. Percentages are stored as tc writes
// them (2 means 2 %), so that String reproduces them exactly; times are
// time.Duration; the rate is in bits per second. The zero Spec is a perfect
// link: no delay, no loss, the default limit.
//
// A Spec is a plain comparable value: two specs are equal when == says so,
// and ParseSpec(s.String()) == s for every Spec returned by ParseSpec.
type Spec struct {
	// Limit is the queue capacity in packets; 0 means DefaultLimit.
	Limit int

	// Delay is the base delay; Jitter the variation (half-width for
	// uniform, standard deviation for normal); DelayCorrPercent the
	// netem-style correlation between successive jitter draws.
	Delay            time.Duration
	Jitter           time.Duration
	DelayCorrPercent float64
	Dist             Distribution

	// Loss selects the loss model and which of the fields below apply.
	Loss LossModel
	// LossRandom: LossPercent and LossCorrPercent.
	LossPercent     float64
	LossCorrPercent float64
	// LossState: transition probabilities of the 4-state chain, in percent.
	P13, P31, P32, P23, P14 float64
	// LossGEModel: GEP (good→bad), GER (bad→good), GE1H (loss probability
	// in the bad state, "1-h") and GE1K (loss probability in the good
	// state, "1-k"), all in percent.
	GEP, GER, GE1H, GE1K float64

	DuplicatePercent     float64
	DuplicateCorrPercent float64
	CorruptPercent       float64
	CorruptCorrPercent   float64

	// Reordering is configured when ReorderGap > 0: after ReorderGap-1
	// delayed packets, each packet is sent at once with probability
	// ReorderPercent (then the count restarts). "gap N" alone means
	// ReorderPercent 100, as in netem.
	ReorderPercent     float64
	ReorderCorrPercent float64
	ReorderGap         int

	// RateBitsPerSec, when non-zero, serialises packets at that rate.
	// RatePacketOverhead (may be negative), RateCellSize and
	// RateCellOverhead follow tc's "rate RATE [PACKETOVERHEAD [CELLSIZE
	// [CELLOVERHEAD]]]".
	RateBitsPerSec     uint64
	RatePacketOverhead int
	RateCellSize       int
	RateCellOverhead   int

	// Slotting is configured when SlotMax > 0: packets leave only at slot
	// instants spaced uniformly in [SlotMin, SlotMax]; each slot carries at
	// most SlotPackets packets and SlotBytes bytes (0 = no limit).
	SlotMin     time.Duration
	SlotMax     time.Duration
	SlotPackets int
	SlotBytes   int

	// Seed, when HasSeed, fixes the random seed ("seed VALUE"); it then
	// takes precedence over the seed passed to NewModel/NewLink.
	Seed    uint64
	HasSeed bool
}

// maxCount bounds counts (limit, gap, slot packets/bytes) so they fit an
// int everywhere and match tc's 32-bit fields.
const maxCount = math.MaxUint32

type token struct {
	s   string
	pos int
}

type parser struct {
	in   string
	toks []token
	i    int
}

func (p *parser) errAt(i int, err error) error {
	if i >= len(p.toks) {
		return &SpecError{Pos: len(p.in), Err: err}
	}
	return &SpecError{Token: p.toks[i].s, Pos: p.toks[i].pos, Err: err}
}

// peek returns the next token, if any.
func (p *parser) peek() (string, bool) {
	if p.i < len(p.toks) {
		return p.toks[p.i].s, true
	}
	return "", false
}

// nextIsNumber mirrors tc's NEXT_IS_NUMBER: an optional argument is taken
// only when the next token starts with a digit (or '-' when signed).
func (p *parser) nextIsNumber(signed bool) bool {
	s, ok := p.peek()
	if !ok || s == "" {
		return false
	}
	return isDigit(s[0]) || (signed && s[0] == '-')
}

// value consumes the next token as a required value.
func (p *parser) value() (string, int, error) {
	if p.i >= len(p.toks) {
		return "", p.i, p.errAt(p.i, ErrMissingValue)
	}
	p.i++
	return p.toks[p.i-1].s, p.i - 1, nil
}

func tokenize(s string) []token {
	var toks []token
	i := 0
	for i < len(s) {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		start := i
		for i < len(s) && !isSpace(s[i]) {
			i++
		}
		if i > start {
			toks = append(toks, token{s: s[start:i], pos: start})
		}
	}
	return toks
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// PerfectSpec is the spelling of the perfect link a command line can give
// where an empty value would mean a default instead.
const PerfectSpec = "none"

// IsPerfect reports whether s names the perfect link: empty (or white
// space) or "none" in any case. ParseSpec returns the zero Spec for it.
func IsPerfect(s string) bool {
	t := strings.TrimSpace(s)
	return t == "" || strings.EqualFold(t, PerfectSpec)
}

// keywords in tc's matching order: a token selects the first keyword it is
// a non-empty prefix of, as tc's matches() does ("del" is delay, "dup" is
// duplicate).
var keywords = []string{"limit", "latency", "delay", "loss", "drop", "ecn", "reorder",
	"corrupt", "gap", "duplicate", "distribution", "rate", "slot", "seed"}

func matchKeyword(tok string) string {
	for _, kw := range keywords {
		if tok != "" && strings.HasPrefix(kw, tok) {
			return kw
		}
	}
	return ""
}

// ParseSpec parses netem options as written after "tc qdisc ... netem", for
// example "delay 5ms 1ms loss 2%". Every example of tc-netem(8) and of the
// Linux Foundation netem wiki page parses. On failure it returns a
// *SpecError naming the offending token and its byte offset.
//
// Syntax accepted (keywords may be abbreviated to any prefix, resolved in
// tc's order, so "del" is delay):
//
//	limit PACKETS
//	delay|latency TIME [JITTER [CORR]]  distribution uniform|normal|pareto|paretonormal
//	loss|drop [random] P [CORR] | state P13 [P31 [P32 [P23 [P14]]]] | gemodel P [R [1-H [1-K]]]
//	duplicate P [CORR]   corrupt P [CORR]   reorder P [CORR] [gap N]   gap N
//	rate RATE [PACKETOVERHEAD [CELLSIZE [CELLOVERHEAD]]]
//	slot MIN [MAX] [packets N] [bytes B]   seed VALUE
//
// Values follow tc: percentages "2%" or "2" (both 2 %); times with unit
// s/sec/secs, ms/msec/msecs, us/usec/usecs, ns/nsec/nsecs (a bare number is
// microseconds, as tc's get_time); rates with unit bit, kbit, mbit, gbit,
// tbit, Kibit..Tibit, or bytes per second Bps, KBps, MBps, GBps, TBps,
// KiBps..TiBps (case-insensitive, so "mbps" is megabytes per second; a bare
// number is bits per second); sizes (limit, slot bytes) with optional b, k/kb,
// m/mb, g/gb (powers of 1024) or kbit, mbit, gbit. An optional argument is
// taken only when the next token starts with a digit, as tc does.
//
// The empty string (or only white space) and "none" (any case) are the
// perfect link: the zero Spec, which loses, delays and alters nothing.
// Every command that takes a spec means the same by both.
//
// Where this differs from tc: an option given twice is an error rather
// than "last one wins"; "ecn", "rate N%", "slot distribution" and
// distribution files are ErrUnsupported; "limit 0" and a zero rate or slot
// are ErrBadValue.
func ParseSpec(s string) (Spec, error) {
	if IsPerfect(s) {
		return Spec{}, nil
	}
	p := &parser{in: s, toks: tokenize(s)}
	var sp Spec
	seen := map[string]int{}
	distTok := -1
	reorderTok := -1
	gapSeen := false
	for p.i < len(p.toks) {
		ti := p.i
		tok := p.toks[ti].s
		kw := matchKeyword(tok)
		switch kw {
		case "latency":
			kw = "delay"
		case "drop":
			kw = "loss"
		}
		if kw == "" {
			return Spec{}, p.errAt(ti, ErrUnknownOption)
		}
		if _, dup := seen[kw]; dup {
			return Spec{}, p.errAt(ti, ErrDuplicateOption)
		}
		seen[kw] = ti
		p.i++
		var err error
		switch kw {
		case "limit":
			err = p.parseLimit(&sp)
		case "delay":
			err = p.parseDelay(&sp)
		case "distribution":
			distTok = ti
			err = p.parseDistribution(&sp)
		case "loss":
			err = p.parseLoss(&sp)
		case "ecn":
			err = p.errAt(ti, ErrUnsupported)
		case "reorder":
			reorderTok = ti
			err = p.parseReorder(&sp)
		case "gap":
			gapSeen = true
			var v string
			var vi int
			if v, vi, err = p.value(); err == nil {
				sp.ReorderGap, err = parseCount(v, 1)
				if err != nil {
					err = p.errAt(vi, ErrBadValue)
				}
			}
		case "corrupt":
			sp.CorruptPercent, sp.CorruptCorrPercent, err = p.parsePercentCorr()
		case "duplicate":
			sp.DuplicatePercent, sp.DuplicateCorrPercent, err = p.parsePercentCorr()
		case "rate":
			err = p.parseRate(&sp)
		case "slot":
			err = p.parseSlot(&sp)
		case "seed":
			var v string
			var vi int
			if v, vi, err = p.value(); err == nil {
				sp.Seed, err = strconv.ParseUint(v, 10, 64)
				if err != nil || !isDigit(v[0]) {
					err = p.errAt(vi, ErrBadValue)
				}
				sp.HasSeed = true
			}
		}
		if err != nil {
			return Spec{}, err
		}
	}
	// "reorder P" without gap means gap 1; "gap N" without reorder means
	// reorder 100% (the kernel's compatibility rule for the old syntax).
	if reorderTok >= 0 && !gapSeen {
		sp.ReorderGap = 1
	}
	if gapSeen && reorderTok < 0 {
		sp.ReorderPercent = 100
		reorderTok = seen["gap"]
	}
	if reorderTok >= 0 && sp.ReorderPercent > 0 && sp.Delay == 0 {
		return Spec{}, p.errAt(reorderTok, ErrConflict)
	}
	if distTok >= 0 && (sp.Delay == 0 || sp.Jitter == 0) {
		return Spec{}, p.errAt(distTok, ErrConflict)
	}
	return sp, nil
}

func (p *parser) parseLimit(sp *Spec) error {
	v, vi, err := p.value()
	if err != nil {
		return err
	}
	n, ok := parseSize(v)
	if !ok || n < 1 || n > maxCount {
		return p.errAt(vi, ErrBadValue)
	}
	sp.Limit = int(n)
	return nil
}

func (p *parser) parseDelay(sp *Spec) error {
	v, vi, err := p.value()
	if err != nil {
		return err
	}
	if sp.Delay, err = parseTime(v); err != nil {
		return p.errAt(vi, ErrBadValue)
	}
	if !p.nextIsNumber(false) {
		return nil
	}
	v, vi, _ = p.value()
	if sp.Jitter, err = parseTime(v); err != nil {
		return p.errAt(vi, ErrBadValue)
	}
	if !p.nextIsNumber(false) {
		return nil
	}
	v, vi, _ = p.value()
	if sp.DelayCorrPercent, err = parsePercent(v); err != nil {
		return p.errAt(vi, ErrBadValue)
	}
	return nil
}

func (p *parser) parseDistribution(sp *Spec) error {
	v, vi, err := p.value()
	if err != nil {
		return err
	}
	for i, name := range distNames {
		if v == name {
			sp.Dist = Distribution(i)
			return nil
		}
	}
	// tc would look for a table file of that name.
	return p.errAt(vi, ErrUnsupported)
}

// percents parses up to len(dst) optional percentages after a required one
// already stored in dst[0]'s caller.
func (p *parser) optionalPercents(dst ...*float64) error {
	for _, d := range dst {
		if !p.nextIsNumber(false) {
			return nil
		}
		v, vi, _ := p.value()
		x, err := parsePercent(v)
		if err != nil {
			return p.errAt(vi, ErrBadValue)
		}
		*d = x
	}
	return nil
}

func (p *parser) requiredPercent() (float64, error) {
	v, vi, err := p.value()
	if err != nil {
		return 0, err
	}
	x, err := parsePercent(v)
	if err != nil {
		return 0, p.errAt(vi, ErrBadValue)
	}
	return x, nil
}

func (p *parser) parsePercentCorr() (pct, corr float64, err error) {
	if pct, err = p.requiredPercent(); err != nil {
		return 0, 0, err
	}
	err = p.optionalPercents(&corr)
	return pct, corr, err
}

func (p *parser) parseLoss(sp *Spec) error {
	v, vi, err := p.value()
	if err != nil {
		return err
	}
	switch {
	case isDigit(v[0]): // old syntax: "loss 2%"
		p.i = vi
		fallthrough
	case v == "random":
		sp.Loss = LossRandom
		sp.LossPercent, sp.LossCorrPercent, err = p.parsePercentCorr()
		return err
	case v == "state":
		sp.Loss = LossState
		if sp.P13, err = p.requiredPercent(); err != nil {
			return err
		}
		sp.P31, sp.P32, sp.P23, sp.P14 = 100-sp.P13, 0, 100, 0
		return p.optionalPercents(&sp.P31, &sp.P32, &sp.P23, &sp.P14)
	case v == "gemodel":
		sp.Loss = LossGEModel
		if sp.GEP, err = p.requiredPercent(); err != nil {
			return err
		}
		// Defaults per tc-netem(8): r = 1-p, 1-h = 1, 1-k = 0, which
		// makes "gemodel P" a Bernoulli loss of P.
		sp.GER, sp.GE1H, sp.GE1K = 100-sp.GEP, 100, 0
		return p.optionalPercents(&sp.GER, &sp.GE1H, &sp.GE1K)
	}
	return p.errAt(vi, ErrUnknownOption)
}

func (p *parser) parseReorder(sp *Spec) error {
	var err error
	if sp.ReorderPercent, sp.ReorderCorrPercent, err = p.parsePercentCorr(); err != nil {
		return err
	}
	return nil
}

func (p *parser) parseRate(sp *Spec) error {
	v, vi, err := p.value()
	if err != nil {
		return err
	}
	if strings.HasSuffix(v, "%") {
		return p.errAt(vi, ErrUnsupported)
	}
	r, ok := parseRate(v)
	if !ok {
		return p.errAt(vi, ErrBadValue)
	}
	sp.RateBitsPerSec = r
	fields := []*int{&sp.RatePacketOverhead, &sp.RateCellSize, &sp.RateCellOverhead}
	for k, f := range fields {
		signed := k != 1
		if !p.nextIsNumber(signed) {
			return nil
		}
		v, vi, _ := p.value()
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || (!signed && n < 0) || (v[0] == '+') {
			return p.errAt(vi, ErrBadValue)
		}
		*f = int(n)
	}
	return nil
}

func (p *parser) parseSlot(sp *Spec) error {
	v, vi, err := p.value()
	if err != nil {
		return err
	}
	if v == "distribution" {
		return p.errAt(vi, ErrUnsupported)
	}
	if sp.SlotMin, err = parseTime(v); err != nil {
		return p.errAt(vi, ErrBadValue)
	}
	sp.SlotMax = sp.SlotMin
	if p.nextIsNumber(false) {
		v, vi, _ = p.value()
		if sp.SlotMax, err = parseTime(v); err != nil || sp.SlotMax < sp.SlotMin {
			return p.errAt(vi, ErrBadValue)
		}
	}
	if sp.SlotMax == 0 {
		return p.errAt(vi, ErrBadValue)
	}
	for {
		s, ok := p.peek()
		if !ok || (s != "packets" && s != "bytes") {
			return nil
		}
		ki := p.i
		p.i++
		v, vi, err := p.value()
		if err != nil {
			return err
		}
		var n uint64
		if s == "packets" {
			if sp.SlotPackets != 0 {
				return p.errAt(ki, ErrDuplicateOption)
			}
			c, err := parseCount(v, 1)
			if err != nil {
				return p.errAt(vi, ErrBadValue)
			}
			sp.SlotPackets = c
			continue
		}
		if sp.SlotBytes != 0 {
			return p.errAt(ki, ErrDuplicateOption)
		}
		n, ok = parseSize(v)
		if !ok || n < 1 || n > maxCount {
			return p.errAt(vi, ErrBadValue)
		}
		sp.SlotBytes = int(n)
	}
}

var errSyntax = errors.New("syntax")

// splitNumber splits a token into its leading unsigned decimal number and
// the suffix. Only digits with an optional fraction are accepted: no sign,
// exponent, hex, underscores, "inf" or "nan".
func splitNumber(s string) (float64, string, error) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	digits := i
	if i < len(s) && s[i] == '.' {
		i++
		frac := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		digits += i - frac
	}
	if digits == 0 {
		return 0, "", errSyntax
	}
	x, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || math.IsInf(x, 0) {
		return 0, "", errSyntax
	}
	return x, s[i:], nil
}

func parsePercent(s string) (float64, error) {
	x, suffix, err := splitNumber(s)
	if err != nil || (suffix != "" && suffix != "%") || x > 100 {
		return 0, errSyntax
	}
	return x, nil
}

func parseCount(s string, min int) (int, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || !isDigit(s[0]) || n < uint64(min) {
		return 0, errSyntax
	}
	return int(n), nil
}

var timeUnits = []struct {
	names []string
	scale float64
}{
	{[]string{"s", "sec", "secs"}, 1e9},
	{[]string{"ms", "msec", "msecs"}, 1e6},
	{[]string{"us", "usec", "usecs"}, 1e3},
	{[]string{"ns", "nsec", "nsecs"}, 1},
}

func parseTime(s string) (time.Duration, error) {
	x, suffix, err := splitNumber(s)
	if err != nil {
		return 0, err
	}
	scale := 0.0
	if suffix == "" {
		scale = 1e3 // tc's get_time: a bare number is microseconds
	}
	for _, u := range timeUnits {
		for _, n := range u.names {
			if strings.EqualFold(suffix, n) {
				scale = u.scale
			}
		}
	}
	if scale == 0 {
		return 0, errSyntax
	}
	ns := math.Round(x * scale)
	if ns >= math.MaxInt64 {
		return 0, errSyntax
	}
	return time.Duration(ns), nil
}

var rateUnits = []struct {
	name  string
	scale float64 // bits per second per unit
}{
	{"bit", 1}, {"kibit", 1024}, {"kbit", 1e3}, {"mibit", 1 << 20}, {"mbit", 1e6},
	{"gibit", 1 << 30}, {"gbit", 1e9}, {"tibit", 1 << 40}, {"tbit", 1e12},
	{"bps", 8}, {"kibps", 8 * 1024}, {"kbps", 8e3}, {"mibps", 8 << 20}, {"mbps", 8e6},
	{"gibps", 8 << 30}, {"gbps", 8e9}, {"tibps", 8 << 40}, {"tbps", 8e12},
}

func parseRate(s string) (uint64, bool) {
	x, suffix, err := splitNumber(s)
	if err != nil {
		return 0, false
	}
	scale := 0.0
	if suffix == "" {
		scale = 1
	}
	for _, u := range rateUnits {
		if strings.EqualFold(suffix, u.name) {
			scale = u.scale
		}
	}
	bits := math.Round(x * scale)
	if scale == 0 || bits < 1 || bits >= 1<<63 {
		return 0, false
	}
	return uint64(bits), true
}

// parseSize follows tc's get_size: b, k/kb, m/mb, g/gb are powers of 1024
// bytes; kbit, mbit, gbit are 1024-based bits.
func parseSize(s string) (uint64, bool) {
	x, suffix, err := splitNumber(s)
	if err != nil {
		return 0, false
	}
	scale := 0.0
	switch strings.ToLower(suffix) {
	case "", "b":
		scale = 1
	case "k", "kb":
		scale = 1024
	case "m", "mb":
		scale = 1 << 20
	case "g", "gb":
		scale = 1 << 30
	case "kbit":
		scale = 1024 / 8
	case "mbit":
		scale = (1 << 20) / 8
	case "gbit":
		scale = (1 << 30) / 8
	}
	n := math.Round(x * scale)
	if scale == 0 || n >= 1<<63 {
		return 0, false
	}
	return uint64(n), true
}

// String formats the Spec in netem syntax, with options in a fixed order
// and only those that differ from the defaults; ParseSpec of the result
// gives back the same Spec. Times are written in the largest unit that
// represents them exactly, rates likewise; the zero Spec gives "".
func (sp Spec) String() string {
	var b []byte
	word := func(s string) {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, s...)
	}
	pct := func(x float64) { word(formatPercent(x)) }
	if sp.Limit != 0 {
		word("limit")
		word(strconv.Itoa(sp.Limit))
	}
	if sp.Delay != 0 || sp.Jitter != 0 || sp.DelayCorrPercent != 0 {
		word("delay")
		word(formatTime(sp.Delay))
		if sp.Jitter != 0 || sp.DelayCorrPercent != 0 {
			word(formatTime(sp.Jitter))
			if sp.DelayCorrPercent != 0 {
				pct(sp.DelayCorrPercent)
			}
		}
		if sp.Dist != DistUniform {
			word("distribution")
			word(sp.Dist.String())
		}
	}
	switch sp.Loss {
	case LossRandom:
		word("loss random")
		pct(sp.LossPercent)
		if sp.LossCorrPercent != 0 {
			pct(sp.LossCorrPercent)
		}
	case LossState:
		word("loss state")
		for _, x := range []float64{sp.P13, sp.P31, sp.P32, sp.P23, sp.P14} {
			pct(x)
		}
	case LossGEModel:
		word("loss gemodel")
		for _, x := range []float64{sp.GEP, sp.GER, sp.GE1H, sp.GE1K} {
			pct(x)
		}
	}
	if sp.DuplicatePercent != 0 || sp.DuplicateCorrPercent != 0 {
		word("duplicate")
		pct(sp.DuplicatePercent)
		if sp.DuplicateCorrPercent != 0 {
			pct(sp.DuplicateCorrPercent)
		}
	}
	if sp.ReorderGap > 0 {
		word("reorder")
		pct(sp.ReorderPercent)
		if sp.ReorderCorrPercent != 0 {
			pct(sp.ReorderCorrPercent)
		}
		if sp.ReorderGap > 1 {
			word("gap")
			word(strconv.Itoa(sp.ReorderGap))
		}
	}
	if sp.CorruptPercent != 0 || sp.CorruptCorrPercent != 0 {
		word("corrupt")
		pct(sp.CorruptPercent)
		if sp.CorruptCorrPercent != 0 {
			pct(sp.CorruptCorrPercent)
		}
	}
	if sp.RateBitsPerSec != 0 {
		word("rate")
		word(formatRate(sp.RateBitsPerSec))
		extra := []int{sp.RatePacketOverhead, sp.RateCellSize, sp.RateCellOverhead}
		n := len(extra)
		for n > 0 && extra[n-1] == 0 {
			n--
		}
		for _, x := range extra[:n] {
			word(strconv.Itoa(x))
		}
	}
	if sp.SlotMax != 0 {
		word("slot")
		word(formatTime(sp.SlotMin))
		if sp.SlotMax != sp.SlotMin {
			word(formatTime(sp.SlotMax))
		}
		if sp.SlotPackets != 0 {
			word("packets")
			word(strconv.Itoa(sp.SlotPackets))
		}
		if sp.SlotBytes != 0 {
			word("bytes")
			word(strconv.Itoa(sp.SlotBytes))
		}
	}
	if sp.HasSeed {
		word("seed")
		word(strconv.FormatUint(sp.Seed, 10))
	}
	return string(b)
}

func formatPercent(x float64) string {
	// 'f' with the shortest precision never uses an exponent, which the
	// parser (like tc's syntax) does not accept.
	return strconv.FormatFloat(x, 'f', -1, 64) + "%"
}

func formatTime(d time.Duration) string {
	n := int64(d)
	switch {
	case n == 0:
		return "0ms"
	case n%1e9 == 0:
		return strconv.FormatInt(n/1e9, 10) + "s"
	case n%1e6 == 0:
		return strconv.FormatInt(n/1e6, 10) + "ms"
	case n%1e3 == 0:
		return strconv.FormatInt(n/1e3, 10) + "us"
	}
	return strconv.FormatInt(n, 10) + "ns"
}

func formatRate(bits uint64) string {
	switch {
	case bits%1e9 == 0:
		return strconv.FormatUint(bits/1e9, 10) + "gbit"
	case bits%1e6 == 0:
		return strconv.FormatUint(bits/1e6, 10) + "mbit"
	case bits%1e3 == 0:
		return strconv.FormatUint(bits/1e3, 10) + "kbit"
	}
	return strconv.FormatUint(bits, 10) + "bit"
}

// Validate reports whether a Spec built by hand is usable: percentages in
// [0,100], non-negative times and counts, slot bounds ordered. Specs from
// ParseSpec always validate.
func (sp Spec) Validate() error {
	bad := func(field string) error {
		return &SpecError{Token: field, Err: ErrBadValue}
	}
	pcts := map[string]float64{
		"DelayCorrPercent": sp.DelayCorrPercent, "LossPercent": sp.LossPercent,
		"LossCorrPercent": sp.LossCorrPercent, "P13": sp.P13, "P31": sp.P31, "P32": sp.P32,
		"P23": sp.P23, "P14": sp.P14, "GEP": sp.GEP, "GER": sp.GER, "GE1H": sp.GE1H,
		"GE1K": sp.GE1K, "DuplicatePercent": sp.DuplicatePercent,
		"DuplicateCorrPercent": sp.DuplicateCorrPercent, "CorruptPercent": sp.CorruptPercent,
		"CorruptCorrPercent": sp.CorruptCorrPercent, "ReorderPercent": sp.ReorderPercent,
		"ReorderCorrPercent": sp.ReorderCorrPercent,
	}
	for name, x := range pcts {
		if !(x >= 0 && x <= 100) { // also rejects NaN
			return bad(name)
		}
	}
	switch {
	case sp.Limit < 0 || sp.Limit > maxCount:
		return bad("Limit")
	case sp.Delay < 0:
		return bad("Delay")
	case sp.Jitter < 0:
		return bad("Jitter")
	case sp.Dist > DistParetoNormal:
		return bad("Dist")
	case sp.Loss > LossGEModel:
		return bad("Loss")
	case sp.ReorderGap < 0 || sp.ReorderGap > maxCount:
		return bad("ReorderGap")
	case sp.RateCellSize < 0:
		return bad("RateCellSize")
	case sp.SlotMin < 0 || sp.SlotMax < sp.SlotMin:
		return bad("SlotMax")
	case sp.SlotPackets < 0 || sp.SlotBytes < 0:
		return bad("SlotPackets")
	}
	return nil
}
