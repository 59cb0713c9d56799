package netem

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// manExamples are the netem option strings of every example in
// tc-netem(8) (iproute2 man/man8/tc-netem.8, including the slot examples
// of the commit that added slotting) and of the Linux Foundation wiki page
// https://wiki.linuxfoundation.org/networking/netem.
var manExamples = []string{
	"delay 100ms",
	"delay 100ms 10ms",
	"delay 100ms 10ms 25%",
	"delay 100ms 20ms distribution normal",
	"loss 0.1%",
	"loss 0.3% 25%",
	"duplicate 1%",
	"corrupt 0.1%",
	"gap 5 delay 10ms",
	"delay 10ms reorder 25% 50%",
	"delay 100ms 75ms",
	"delay 10ms 100ms",
	"rate 5kbit 20 100 5",
	"delay 200ms 10ms distribution normal",
	"delay 750ms",
	"delay 200us slot 800us 10ms bytes 64k packets 42",
	"delay 20ms rate 200mbit limit 10000",
	"delay 200us slot 800us 10ms bytes 64k packets 42 limit 512",
	"delay 10ms reorder 25% 50% gap 5",
	"delay 10ms reorder 25% 50%",
}

func TestParseManExamples(t *testing.T) {
	for _, s := range manExamples {
		sp, err := ParseSpec(s)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", s, err)
			continue
		}
		back, err := ParseSpec(sp.String())
		if err != nil || back != sp {
			t.Errorf("round trip %q -> %q -> %+v, %v", s, sp.String(), back, err)
		}
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
	}{
		{"", Spec{}},
		{"delay 100ms 10ms 25%", Spec{Delay: 100 * time.Millisecond, Jitter: 10 * time.Millisecond, DelayCorrPercent: 25}},
		{"delay 5ms 1ms distribution normal", Spec{Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Dist: DistNormal}},
		{"latency 1.5s", Spec{Delay: 1500 * time.Millisecond}},
		{"delay 100", Spec{Delay: 100 * time.Microsecond}}, // bare = µs, as tc's get_time
		{"delay 250NS", Spec{Delay: 250}},
		{"loss 2%", Spec{Loss: LossRandom, LossPercent: 2}},
		{"loss random 0.5 25", Spec{Loss: LossRandom, LossPercent: 0.5, LossCorrPercent: 25}},
		{"drop 1%", Spec{Loss: LossRandom, LossPercent: 1}},
		{"loss state 1%", Spec{Loss: LossState, P13: 1, P31: 99, P32: 0, P23: 100, P14: 0}},
		{"loss state 1% 30% 10% 40% 0.5%", Spec{Loss: LossState, P13: 1, P31: 30, P32: 10, P23: 40, P14: 0.5}},
		{"loss gemodel 1%", Spec{Loss: LossGEModel, GEP: 1, GER: 99, GE1H: 100, GE1K: 0}},
		{"loss gemodel 1% 10% 70% 0.1%", Spec{Loss: LossGEModel, GEP: 1, GER: 10, GE1H: 70, GE1K: 0.1}},
		{"delay 10ms reorder 25% 50% gap 5", Spec{Delay: 10 * time.Millisecond, ReorderPercent: 25, ReorderCorrPercent: 50, ReorderGap: 5}},
		{"delay 10ms reorder 25%", Spec{Delay: 10 * time.Millisecond, ReorderPercent: 25, ReorderGap: 1}},
		{"gap 5 delay 10ms", Spec{Delay: 10 * time.Millisecond, ReorderPercent: 100, ReorderGap: 5}},
		{"rate 1mbit", Spec{RateBitsPerSec: 1e6}},
		{"rate 1mbps", Spec{RateBitsPerSec: 8e6}}, // tc: case-insensitive Bps = bytes/s
		{"rate 1Kibit", Spec{RateBitsPerSec: 1024}},
		{"rate 100", Spec{RateBitsPerSec: 100}},
		{"rate 5kbit -14 48 5", Spec{RateBitsPerSec: 5000, RatePacketOverhead: -14, RateCellSize: 48, RateCellOverhead: 5}},
		{"limit 10k", Spec{Limit: 10240}},
		{"slot 800us 10ms bytes 64k packets 42", Spec{SlotMin: 800 * time.Microsecond, SlotMax: 10 * time.Millisecond, SlotBytes: 65536, SlotPackets: 42}},
		{"slot 1ms", Spec{SlotMin: time.Millisecond, SlotMax: time.Millisecond}},
		{"seed 42", Spec{Seed: 42, HasSeed: true}},
		{"del 5ms dup 1% lo 2% c 3%", Spec{Delay: 5 * time.Millisecond, DuplicatePercent: 1, Loss: LossRandom, LossPercent: 2, CorruptPercent: 3}},
		{" \tdelay\n5ms  ", Spec{Delay: 5 * time.Millisecond}},
	}
	for _, tc := range tests {
		got, err := ParseSpec(tc.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if back, err := ParseSpec(got.String()); err != nil || back != got {
			t.Errorf("round trip of %q via %q: %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

func TestStringCanonical(t *testing.T) {
	tests := map[string]string{
		"delay 5ms 1ms loss 2%":             "delay 5ms 1ms loss random 2%",
		"delay 1.5ms":                       "delay 1500us",
		"rate 1.5mbit":                      "rate 1500kbit",
		"gap 5 delay 10ms":                  "delay 10ms reorder 100% gap 5",
		"delay 10ms 0 25%":                  "delay 10ms 0ms 25%",
		"limit 1000 delay 3s corrupt 0.01%": "limit 1000 delay 3s corrupt 0.01%",
	}
	for in, want := range tests {
		sp, err := ParseSpec(in)
		if err != nil {
			t.Fatalf("ParseSpec(%q): %v", in, err)
		}
		if got := sp.String(); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in    string
		token string
		pos   int
		err   error
	}{
		{"delay", "", 5, ErrMissingValue},
		{"delay 5xs", "5xs", 6, ErrBadValue},
		{"delay -5ms", "-5ms", 6, ErrBadValue},
		{"delay 5ms loss 200%", "200%", 15, ErrBadValue},
		{"loss 2%%", "2%%", 5, ErrBadValue},
		{"jitter 5ms", "jitter", 0, ErrUnknownOption},
		{"delay 5ms delay 6ms", "delay", 10, ErrDuplicateOption},
		{"loss 1% drop 2%", "drop", 8, ErrDuplicateOption},
		{"loss bursty 1%", "bursty", 5, ErrUnknownOption},
		{"loss random", "", 11, ErrMissingValue},
		{"loss 1% ecn", "ecn", 8, ErrUnsupported},
		{"rate 10%", "10%", 5, ErrUnsupported},
		{"rate fast", "fast", 5, ErrBadValue},
		{"rate 0bit", "0bit", 5, ErrBadValue},
		{"rate 1mbit 14 -48", "-48", 14, ErrUnknownOption}, // CELLSIZE is unsigned, so "-48" is not taken as one
		{"rate 1mbit -", "-", 11, ErrBadValue},
		{"reorder 25%", "reorder", 0, ErrConflict},
		{"gap 5", "gap", 0, ErrConflict},
		{"delay 5ms distribution normal", "distribution", 10, ErrConflict},
		{"delay 5ms 1ms distribution experimental", "experimental", 27, ErrUnsupported},
		{"limit 0", "0", 6, ErrBadValue},
		{"limit 5 packets", "packets", 8, ErrUnknownOption},
		{"slot 5ms 1ms", "1ms", 9, ErrBadValue},
		{"slot 0ms", "0ms", 5, ErrBadValue},
		{"slot distribution normal 1ms 1ms", "distribution", 5, ErrUnsupported},
		{"slot 1ms packets 0", "0", 17, ErrBadValue},
		{"delay 1e3ms", "1e3ms", 6, ErrBadValue},
		{"delay NaNms", "NaNms", 6, ErrBadValue},
		{"seed -1", "-1", 5, ErrBadValue},
		{"delay 99999999999999999999s", "99999999999999999999s", 6, ErrBadValue},
	}
	for _, tc := range tests {
		_, err := ParseSpec(tc.in)
		var se *SpecError
		if !errors.As(err, &se) {
			t.Errorf("ParseSpec(%q) error = %v, want *SpecError", tc.in, err)
			continue
		}
		if se.Token != tc.token || se.Pos != tc.pos || !errors.Is(err, tc.err) {
			t.Errorf("ParseSpec(%q) = token %q pos %d err %v; want %q %d %v",
				tc.in, se.Token, se.Pos, se.Err, tc.token, tc.pos, tc.err)
		}
		if se.Error() == "" {
			t.Errorf("empty error text")
		}
	}
}

func TestValidate(t *testing.T) {
	bad := []Spec{
		{LossPercent: 101},
		{Delay: -1},
		{Jitter: -time.Millisecond},
		{Limit: -1},
		{SlotMin: 2, SlotMax: 1},
		{Dist: 9},
	}
	for _, sp := range bad {
		if err := sp.Validate(); !errors.Is(err, ErrBadValue) {
			t.Errorf("Validate(%+v) = %v, want ErrBadValue", sp, err)
		}
		if _, err := NewLink(sp, 1); err == nil {
			t.Errorf("NewLink(%+v) accepted an invalid spec", sp)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range manExamples {
		f.Add(s)
	}
	f.Add("loss state 1% 30% 10% 40% 0.5% duplicate 5% 50% corrupt 1%")
	f.Add("loss gemodel 1% 10% 70% 0.1% rate 1kibps -14 48 5 seed 7")
	f.Add("del 5 100 0.5 di pareto")
	f.Fuzz(func(t *testing.T, s string) {
		sp, err := ParseSpec(s)
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SpecError", err)
			}
			if se.Pos < 0 || se.Pos > len(s) {
				t.Fatalf("position %d out of range", se.Pos)
			}
			return
		}
		if err := sp.Validate(); err != nil {
			t.Fatalf("parsed spec does not validate: %v", err)
		}
		out := sp.String()
		back, err := ParseSpec(out)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", out, s, err)
		}
		if back != sp {
			t.Fatalf("round trip %q -> %q: %+v != %+v", s, out, back, sp)
		}
	})
}

// TestPerfectSpellings: the empty spec and "none" are the same perfect
// link, and nothing else is.
func TestPerfectSpellings(t *testing.T) {
	for _, s := range []string{"", "  ", "\t\n", "none", "NONE", " None "} {
		sp, err := ParseSpec(s)
		if err != nil || !reflect.DeepEqual(sp, Spec{}) || !IsPerfect(s) {
			t.Errorf("ParseSpec(%q) = %+v, %v; IsPerfect %v", s, sp, err, IsPerfect(s))
		}
	}
	for _, s := range []string{"none loss 1%", "nonesuch", "loss 0%", "n"} {
		if IsPerfect(s) {
			t.Errorf("IsPerfect(%q)", s)
		}
	}
	if _, err := ParseSpec("none delay 5ms"); err == nil {
		t.Error(`"none delay 5ms" parsed`)
	}
}
