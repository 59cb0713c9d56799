package simreport

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that every failure is a
// *ParseError wrapping one of the sentinels, and that whatever parses
// survives a write and a re-read unchanged.
func FuzzParse(f *testing.F) {
	f.Add(defaultFile)
	f.Add([]byte(`{"scenarios": [{"name": "s", "fwd": "delay 1ms loss 1%", "outages": [{"from": "1s", "to": "2s"}]}]}`))
	f.Add([]byte(`{"settings": [{"name": "k", "fec": "fixed", "fec_data": 4, "fec_parity": 2}], "scenarios": [{"name": "s", "settings": ["k"]}]}`))
	f.Add([]byte(`{"defaults": {"rate": 1e3, "seed": -1}, "scenarios": [{"name": "a"}, {"name": "a"}]}`))
	f.Add([]byte(`{"scenarios": [{"name": "s", "rate": "x"}]}`))
	f.Add([]byte(`{"scenarios": [`))
	f.Add([]byte(`null`))
	sentinels := []error{ErrSyntax, ErrUnknownField, ErrMissing, ErrBadValue, ErrDuplicate, ErrUnknownSetting}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%T %v is not a *ParseError", err, err)
			}
			known := false
			for _, e := range sentinels {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("%v wraps no sentinel", err)
			}
			return
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, b)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip changed the suite:\n%+v\n%+v", s, back)
		}
	})
}
