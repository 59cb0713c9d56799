package simreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/tools/netem"
)

// Suite is a parsed scenario file: the repair settings to sweep and the
// scenarios to sweep them over. Every field of every scenario is filled
// in (defaults applied), so a Suite says exactly what will run.
type Suite struct {
	Settings  []Setting
	Scenarios []Scenario
}

// Scenario is one simulated link and workload.
type Scenario struct {
	Name     string     // unique within the suite; letters, digits and . _ + -
	Fwd      netem.Spec // sender→receiver impairment
	Rev      netem.Spec // receiver→sender impairment
	Messages int        // messages to send, 1..1 000 000
	Rate     float64    // messages per second, > 0
	Size     int        // payload bytes, 8..packet.MaxPayload
	Seed     int64      // seeds both links
	Outages  []Outage   // windows during which the link carries nothing
	// Settings names the settings of the suite to run for this scenario,
	// in order; nil means all of them.
	Settings []string
}

// Outage is a window during which a link carries nothing. Times count
// from the first send; a scenario's outages are in time order and do not
// overlap.
type Outage struct {
	From, To time.Duration // [From, To), From >= 0, To > From
	Dir      Direction     // which direction goes dark
}

// Direction selects the links an Outage silences.
type Direction string

// Directions of an Outage.
const (
	DirFwd  Direction = ""     // sender→receiver only (the default; written "fwd")
	DirRev  Direction = "rev"  // receiver→sender only
	DirBoth Direction = "both" // both directions
)

// Setting is one named combination of repair knobs. A repair mechanism
// is off unless the setting turns it on, whatever the transport's own
// defaults, so the zero value (with a name) is "no repair":
// retransmission off, no FEC, the receiver's default delivery mode.
type Setting struct {
	Name string // unique within the suite; letters, digits and . _ + -
	// NACK turns NACK-driven retransmission on.
	NACK bool
	// Delivery is the receiver's delivery mode; DeliveryDefault leaves the
	// receiver's own default (ordered with a 200 ms budget).
	Delivery Delivery
	// LatencyBudget is how long ordered delivery waits for a gap to be
	// repaired; 0 is the receiver's default. Only with DeliveryOrdered.
	LatencyBudget time.Duration
	// FEC selects forward error correction; FECOff by default.
	FEC FECMode
	// FECData and FECParity are K data and M parity datagrams per block,
	// only with FECFixed (K+M <= 256). FECInterleave, also only with
	// FECFixed, spreads consecutive datagrams over that many blocks (0
	// means 1: no interleaving).
	FECData, FECParity, FECInterleave int
}

// Delivery is a receiver delivery mode.
type Delivery string

// Delivery modes.
const (
	DeliveryDefault   Delivery = ""          // whatever the receiver does by default
	DeliveryOrdered   Delivery = "ordered"   // in sequence, waiting up to the latency budget for a gap
	DeliveryUnordered Delivery = "unordered" // as it arrives
	DeliveryLatest    Delivery = "latest"    // only messages newer than the last delivered
)

// FECMode selects forward error correction.
type FECMode string

// FEC modes.
const (
	FECOff   FECMode = ""      // no parity (written "off" in a file)
	FECFixed FECMode = "fixed" // FECData data + FECParity parity per block
	FECAuto  FECMode = "auto"  // parity adapted to the loss the receiver reports
)

// Sentinel errors wrapped by *ParseError; test with errors.Is.
var (
	// ErrSyntax: the file is not well-formed JSON.
	ErrSyntax = errors.New("malformed JSON")
	// ErrUnknownField: an object has a key the format does not define.
	ErrUnknownField = errors.New("unknown field")
	// ErrMissing: a required field is absent.
	ErrMissing = errors.New("missing field")
	// ErrBadValue: a field has the wrong type or an out-of-range value.
	ErrBadValue = errors.New("bad value")
	// ErrDuplicate: two scenarios or two settings share a name.
	ErrDuplicate = errors.New("duplicate name")
	// ErrUnknownSetting: a scenario names a setting the suite lacks.
	ErrUnknownSetting = errors.New("unknown setting")
)

// ParseError reports what is wrong with a scenario file and where.
type ParseError struct {
	// Where is the object: "settings[1] \"nack\"", "scenarios[0] \"clean\"",
	// "defaults", or "" for the file as a whole.
	Where string
	// Field is the key within the object, or "".
	Field string
	// Line and Col locate a syntax error (1-based); 0 otherwise.
	Line, Col int
	// Err is the sentinel (ErrSyntax, ErrBadValue, ...).
	Err error
	// Detail explains the problem in words.
	Detail string
	// Cause is the underlying error, if any (a *netem.SpecError for a bad
	// link spec).
	Cause error
}

// Error implements error.
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("scenario file")
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d col %d", e.Line, e.Col)
	}
	if e.Where != "" {
		b.WriteString(": " + e.Where)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %q", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Unwrap returns the sentinel and, when present, the underlying cause.
func (e *ParseError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// Bounds on what a scenario file may ask for.
const (
	maxNameLen     = 64
	maxMessages    = 1_000_000
	maxRate        = 10_000_000 // messages per second
	maxFileBytes   = 1 << 20
	maxScenarios   = 1000
	maxSettings    = 100
	maxOutages     = 100
	maxFECShards   = 256
	maxOutageStart = 24 * time.Hour
)

// Built-in per-scenario defaults, used when neither the scenario nor the
// file's "defaults" gives a value.
const (
	defaultMessages = 5000
	defaultRate     = 1000
	defaultSize     = 200
	defaultSeed     = 1
)

// Parse reads a scenario file (see the package documentation for the
// format). Without a "settings" list the suite sweeps [DefaultSettings].
// It never panics; every failure is a *ParseError.
func Parse(data []byte) (Suite, error) {
	return parse(data, DefaultSettings)
}

// parse is Parse with the settings to use when the file has none;
// fallback nil makes "settings" required.
func parse(data []byte, fallback func() []Setting) (Suite, error) {
	if len(data) > maxFileBytes {
		return Suite{}, &ParseError{Err: ErrBadValue, Detail: fmt.Sprintf("file larger than %d bytes", maxFileBytes)}
	}
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		return Suite{}, syntaxError(data, err)
	}
	var top struct {
		Settings  []json.RawMessage
		Defaults  json.RawMessage
		Scenarios []json.RawMessage
	}
	present, err := decodeObject(data, "", map[string]any{
		"settings":  &top.Settings,
		"defaults":  &top.Defaults,
		"scenarios": &top.Scenarios,
	})
	if err != nil {
		return Suite{}, err
	}
	var s Suite
	if present["settings"] {
		if len(top.Settings) == 0 || len(top.Settings) > maxSettings {
			return Suite{}, &ParseError{Field: "settings", Err: ErrBadValue,
				Detail: fmt.Sprintf("want 1 to %d settings, got %d", maxSettings, len(top.Settings))}
		}
		for i, raw := range top.Settings {
			st, err := parseSetting(raw, fmt.Sprintf("settings[%d]", i))
			if err != nil {
				return Suite{}, err
			}
			for _, prev := range s.Settings {
				if prev.Name == st.Name {
					return Suite{}, &ParseError{Where: fmt.Sprintf("settings[%d]", i), Field: "name",
						Err: ErrDuplicate, Detail: fmt.Sprintf("%q is already a setting", st.Name)}
				}
			}
			s.Settings = append(s.Settings, st)
		}
	} else if fallback != nil {
		s.Settings = fallback()
	} else {
		return Suite{}, &ParseError{Field: "settings", Err: ErrMissing}
	}

	def := Scenario{Messages: defaultMessages, Rate: defaultRate, Size: defaultSize, Seed: defaultSeed}
	if present["defaults"] {
		if def, err = parseScenario(top.Defaults, "defaults", def, nil, false); err != nil {
			return Suite{}, err
		}
	}
	if len(top.Scenarios) == 0 || len(top.Scenarios) > maxScenarios {
		return Suite{}, &ParseError{Field: "scenarios", Err: ErrMissing,
			Detail: fmt.Sprintf("want 1 to %d scenarios, got %d", maxScenarios, len(top.Scenarios))}
	}
	for i, raw := range top.Scenarios {
		sc, err := parseScenario(raw, fmt.Sprintf("scenarios[%d]", i), def, s.Settings, true)
		if err != nil {
			return Suite{}, err
		}
		for _, prev := range s.Scenarios {
			if prev.Name == sc.Name {
				return Suite{}, &ParseError{Where: fmt.Sprintf("scenarios[%d]", i), Field: "name",
					Err: ErrDuplicate, Detail: fmt.Sprintf("%q is already a scenario", sc.Name)}
			}
		}
		s.Scenarios = append(s.Scenarios, sc)
	}
	return s, nil
}

// settingJSON and scenarioJSON are the file's objects as written.
type settingJSON struct {
	Name          string
	NACK          bool
	Delivery      string
	LatencyBudget jsonDuration
	FEC           string
	FECData       int
	FECParity     int
	FECInterleave int
}

func parseSetting(raw json.RawMessage, where string) (Setting, error) {
	var j settingJSON
	present, err := decodeObject(raw, where, map[string]any{
		"name":           &j.Name,
		"nack":           &j.NACK,
		"delivery":       &j.Delivery,
		"latency_budget": &j.LatencyBudget,
		"fec":            &j.FEC,
		"fec_data":       &j.FECData,
		"fec_parity":     &j.FECParity,
		"fec_interleave": &j.FECInterleave,
	})
	if err != nil {
		return Setting{}, err
	}
	if !present["name"] {
		return Setting{}, &ParseError{Where: where, Field: "name", Err: ErrMissing}
	}
	if err := checkName(j.Name, where); err != nil {
		return Setting{}, err
	}
	where += fmt.Sprintf(" %q", j.Name)
	bad := func(field, format string, a ...any) error {
		return &ParseError{Where: where, Field: field, Err: ErrBadValue, Detail: fmt.Sprintf(format, a...)}
	}
	st := Setting{Name: j.Name, NACK: j.NACK, LatencyBudget: time.Duration(j.LatencyBudget)}
	switch d := Delivery(j.Delivery); d {
	case DeliveryOrdered, DeliveryUnordered, DeliveryLatest:
		st.Delivery = d
	default:
		if present["delivery"] {
			return Setting{}, bad("delivery", "%q is not ordered, unordered or latest", j.Delivery)
		}
	}
	if present["latency_budget"] {
		if st.Delivery != DeliveryOrdered {
			return Setting{}, bad("latency_budget", `goes with "delivery": "ordered"`)
		}
		if st.LatencyBudget <= 0 {
			return Setting{}, bad("latency_budget", "%v is not positive", st.LatencyBudget)
		}
	}
	switch j.FEC {
	case "off":
		st.FEC = FECOff
	case string(FECFixed), string(FECAuto):
		st.FEC = FECMode(j.FEC)
	default:
		if present["fec"] {
			return Setting{}, bad("fec", "%q is not off, fixed or auto", j.FEC)
		}
	}
	if st.FEC == FECFixed {
		for _, f := range []struct {
			key string
			v   int
		}{{"fec_data", j.FECData}, {"fec_parity", j.FECParity}} {
			if !present[f.key] {
				return Setting{}, &ParseError{Where: where, Field: f.key, Err: ErrMissing, Detail: `required with "fec": "fixed"`}
			}
			if f.v < 1 || f.v >= maxFECShards {
				return Setting{}, bad(f.key, "%d is not in 1..%d", f.v, maxFECShards-1)
			}
		}
		if j.FECData+j.FECParity > maxFECShards {
			return Setting{}, bad("fec_parity", "%d data + %d parity exceeds %d shards", j.FECData, j.FECParity, maxFECShards)
		}
		st.FECData, st.FECParity = j.FECData, j.FECParity
		if present["fec_interleave"] {
			if j.FECInterleave < 1 || j.FECInterleave >= maxFECShards {
				return Setting{}, bad("fec_interleave", "%d is not in 1..%d", j.FECInterleave, maxFECShards-1)
			}
			st.FECInterleave = j.FECInterleave
		}
	} else {
		for _, key := range []string{"fec_data", "fec_parity", "fec_interleave"} {
			if present[key] {
				return Setting{}, bad(key, `goes with "fec": "fixed"`)
			}
		}
	}
	return st, nil
}

type scenarioJSON struct {
	Name     string
	Fwd, Rev string
	Messages int
	Rate     float64
	Size     int
	Seed     int64
	Outages  []json.RawMessage
	Settings []string
}

// parseScenario reads one scenario object over the defaults def. With
// named false it reads the "defaults" object, which has no name and no
// settings list.
func parseScenario(raw json.RawMessage, where string, def Scenario, settings []Setting, named bool) (Scenario, error) {
	var j scenarioJSON
	fields := map[string]any{
		"fwd":      &j.Fwd,
		"rev":      &j.Rev,
		"messages": &j.Messages,
		"rate":     &j.Rate,
		"size":     &j.Size,
		"seed":     &j.Seed,
		"outages":  &j.Outages,
	}
	if named {
		fields["name"] = &j.Name
		fields["settings"] = &j.Settings
	}
	present, err := decodeObject(raw, where, fields)
	if err != nil {
		return Scenario{}, err
	}
	sc := def
	sc.Name, sc.Settings = "", nil
	if named {
		if !present["name"] {
			return Scenario{}, &ParseError{Where: where, Field: "name", Err: ErrMissing}
		}
		if err := checkName(j.Name, where); err != nil {
			return Scenario{}, err
		}
		sc.Name = j.Name
		where += fmt.Sprintf(" %q", j.Name)
	}
	bad := func(field, format string, a ...any) error {
		return &ParseError{Where: where, Field: field, Err: ErrBadValue, Detail: fmt.Sprintf(format, a...)}
	}
	for _, l := range []struct {
		key  string
		text string
		spec *netem.Spec
	}{{"fwd", j.Fwd, &sc.Fwd}, {"rev", j.Rev, &sc.Rev}} {
		if !present[l.key] {
			continue
		}
		sp, err := netem.ParseSpec(l.text)
		if err != nil {
			return Scenario{}, &ParseError{Where: where, Field: l.key, Err: ErrBadValue, Detail: err.Error(), Cause: err}
		}
		*l.spec = sp
	}
	if present["messages"] {
		if j.Messages < 1 || j.Messages > maxMessages {
			return Scenario{}, bad("messages", "%d is not in 1..%d", j.Messages, maxMessages)
		}
		sc.Messages = j.Messages
	}
	if present["rate"] {
		if !(j.Rate > 0 && j.Rate <= maxRate) {
			return Scenario{}, bad("rate", "%v is not in (0, %d] messages per second", j.Rate, maxRate)
		}
		sc.Rate = j.Rate
	}
	if present["size"] {
		if j.Size < 8 || j.Size > packet.MaxPayload {
			return Scenario{}, bad("size", "%d is not in 8..%d bytes", j.Size, packet.MaxPayload)
		}
		sc.Size = j.Size
	}
	if present["seed"] {
		sc.Seed = j.Seed
	}
	if present["outages"] {
		if len(j.Outages) > maxOutages {
			return Scenario{}, bad("outages", "more than %d windows", maxOutages)
		}
		sc.Outages = nil
		for i, raw := range j.Outages {
			o, err := parseOutage(raw, fmt.Sprintf("%s outages[%d]", where, i))
			if err != nil {
				return Scenario{}, err
			}
			if k := len(sc.Outages); k > 0 && o.From < sc.Outages[k-1].To {
				return Scenario{}, &ParseError{Where: fmt.Sprintf("%s outages[%d]", where, i), Field: "from",
					Err: ErrBadValue, Detail: fmt.Sprintf("%v is before the end of the previous outage (%v)", o.From, sc.Outages[k-1].To)}
			}
			sc.Outages = append(sc.Outages, o)
		}
	}
	if present["settings"] {
		if len(j.Settings) == 0 {
			return Scenario{}, bad("settings", "empty list (leave it out to run every setting)")
		}
		for _, name := range j.Settings {
			if !slices.ContainsFunc(settings, func(s Setting) bool { return s.Name == name }) {
				return Scenario{}, &ParseError{Where: where, Field: "settings", Err: ErrUnknownSetting,
					Detail: fmt.Sprintf("%q (settings are %s)", name, settingNames(settings))}
			}
			if slices.Contains(sc.Settings, name) {
				return Scenario{}, &ParseError{Where: where, Field: "settings", Err: ErrDuplicate,
					Detail: fmt.Sprintf("%q is listed twice", name)}
			}
			sc.Settings = append(sc.Settings, name)
		}
	}
	return sc, nil
}

func parseOutage(raw json.RawMessage, where string) (Outage, error) {
	var j struct {
		From, To jsonDuration
		Dir      string
	}
	present, err := decodeObject(raw, where, map[string]any{"from": &j.From, "to": &j.To, "dir": &j.Dir})
	if err != nil {
		return Outage{}, err
	}
	for _, key := range []string{"from", "to"} {
		if !present[key] {
			return Outage{}, &ParseError{Where: where, Field: key, Err: ErrMissing}
		}
	}
	o := Outage{From: time.Duration(j.From), To: time.Duration(j.To)}
	switch {
	case o.From < 0 || o.From > maxOutageStart:
		return Outage{}, &ParseError{Where: where, Field: "from", Err: ErrBadValue,
			Detail: fmt.Sprintf("%v is not in 0..%v", o.From, maxOutageStart)}
	case o.To <= o.From:
		return Outage{}, &ParseError{Where: where, Field: "to", Err: ErrBadValue,
			Detail: fmt.Sprintf("%v is not after from (%v)", o.To, o.From)}
	}
	switch j.Dir {
	case "fwd":
		o.Dir = DirFwd
	case string(DirRev), string(DirBoth):
		o.Dir = Direction(j.Dir)
	default:
		if present["dir"] {
			return Outage{}, &ParseError{Where: where, Field: "dir", Err: ErrBadValue,
				Detail: fmt.Sprintf("%q is not both, fwd or rev", j.Dir)}
		}
	}
	return o, nil
}

// checkName accepts 1 to 64 letters, digits and . _ + -, so that a name is
// safe in a file name and a markdown table.
func checkName(name, where string) error {
	ok := name != "" && len(name) <= maxNameLen
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '+' || c == '-'
	}
	if !ok || name == "." || name == ".." {
		return &ParseError{Where: where, Field: "name", Err: ErrBadValue,
			Detail: fmt.Sprintf("%q: want 1 to %d letters, digits and . _ + -", name, maxNameLen)}
	}
	return nil
}

func settingNames(settings []Setting) string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = fmt.Sprintf("%q", s.Name)
	}
	return strings.Join(names, ", ")
}

// decodeObject decodes a JSON object key by key into fields (key → pointer),
// so that an error names its key. It reports which keys were present; a
// key whose value is null counts as absent.
func decodeObject(raw []byte, where string, fields map[string]any) (map[string]bool, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, &ParseError{Where: where, Err: ErrBadValue, Detail: "want a JSON object"}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	present := make(map[string]bool, len(m))
	for _, k := range keys {
		p, ok := fields[k]
		if !ok {
			known := make([]string, 0, len(fields))
			for f := range fields {
				known = append(known, f)
			}
			slices.Sort(known)
			return nil, &ParseError{Where: where, Field: k, Err: ErrUnknownField,
				Detail: "known fields are " + strings.Join(known, ", ")}
		}
		v := m[k]
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		if err := json.Unmarshal(v, p); err != nil {
			return nil, &ParseError{Where: where, Field: k, Err: ErrBadValue,
				Detail: "want " + describe(p) + ", got " + abbreviate(v)}
		}
		present[k] = true
	}
	return present, nil
}

// describe names the JSON a field pointer takes, for error messages.
func describe(p any) string {
	switch p.(type) {
	case *string:
		return "a string"
	case *bool:
		return "true or false"
	case *int, *int64:
		return "an integer"
	case *float64:
		return "a number"
	case *jsonDuration:
		return `a duration string such as "200ms"`
	case *[]string:
		return "a list of strings"
	case *[]json.RawMessage:
		return "a list of objects"
	default:
		return "an object"
	}
}

func abbreviate(v []byte) string {
	s := string(bytes.TrimSpace(v))
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// syntaxError turns a JSON decoding error of the whole file into a
// *ParseError with the line and column.
func syntaxError(data []byte, err error) error {
	pe := &ParseError{Err: ErrSyntax, Detail: err.Error(), Cause: err}
	off := int64(len(data))
	var se *json.SyntaxError
	if errors.As(err, &se) {
		off = se.Offset
	}
	off = min(max(off, 0), int64(len(data)))
	pe.Line = 1 + bytes.Count(data[:off], []byte("\n"))
	pe.Col = 1 + int(off) - (bytes.LastIndexByte(data[:off], '\n') + 1)
	return pe
}

// jsonDuration is a time.Duration written as a Go duration string.
type jsonDuration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = jsonDuration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// MarshalJSON writes the suite in the scenario-file format, every value
// explicit, so that Parse of the result gives the suite back.
func (s Suite) MarshalJSON() ([]byte, error) {
	type settingOut struct {
		Name          string        `json:"name"`
		NACK          bool          `json:"nack,omitempty"`
		Delivery      Delivery      `json:"delivery,omitempty"`
		LatencyBudget *jsonDuration `json:"latency_budget,omitempty"`
		FEC           FECMode       `json:"fec,omitempty"`
		FECData       int           `json:"fec_data,omitempty"`
		FECParity     int           `json:"fec_parity,omitempty"`
		FECInterleave int           `json:"fec_interleave,omitempty"`
	}
	type outageOut struct {
		From jsonDuration `json:"from"`
		To   jsonDuration `json:"to"`
		Dir  Direction    `json:"dir,omitempty"`
	}
	type scenarioOut struct {
		Name     string      `json:"name"`
		Fwd      string      `json:"fwd"`
		Rev      string      `json:"rev"`
		Messages int         `json:"messages"`
		Rate     float64     `json:"rate"`
		Size     int         `json:"size"`
		Seed     int64       `json:"seed"`
		Outages  []outageOut `json:"outages,omitempty"`
		Settings []string    `json:"settings,omitempty"`
	}
	var out struct {
		Settings  []settingOut  `json:"settings"`
		Scenarios []scenarioOut `json:"scenarios"`
	}
	for _, st := range s.Settings {
		o := settingOut{Name: st.Name, NACK: st.NACK, Delivery: st.Delivery, FEC: st.FEC,
			FECData: st.FECData, FECParity: st.FECParity, FECInterleave: st.FECInterleave}
		if st.LatencyBudget != 0 {
			d := jsonDuration(st.LatencyBudget)
			o.LatencyBudget = &d
		}
		out.Settings = append(out.Settings, o)
	}
	for _, sc := range s.Scenarios {
		if math.IsNaN(sc.Rate) || math.IsInf(sc.Rate, 0) {
			return nil, fmt.Errorf("simreport: scenario %q: rate %v cannot be written", sc.Name, sc.Rate)
		}
		o := scenarioOut{Name: sc.Name, Fwd: sc.Fwd.String(), Rev: sc.Rev.String(), Messages: sc.Messages,
			Rate: sc.Rate, Size: sc.Size, Seed: sc.Seed, Settings: sc.Settings}
		for _, w := range sc.Outages {
			o.Outages = append(o.Outages, outageOut{From: jsonDuration(w.From), To: jsonDuration(w.To), Dir: w.Dir})
		}
		out.Scenarios = append(out.Scenarios, o)
	}
	return json.Marshal(out)
}
