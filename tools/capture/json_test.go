package capture

import (
	"encoding/json"
	"reflect"
	"regexp"
	"testing"
)

// TestStatsJSONKeys: Stats goes into the replay command's JSON statistics,
// so every counter has a snake_case key and survives a round trip.
func TestStatsJSONKeys(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	var in Stats
	v := reflect.ValueOf(&in).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if key := f.Tag.Get("json"); !snake.MatchString(key) {
			t.Errorf("field %s has JSON key %q, want snake_case", f.Name, key)
		}
		v.Field(i).SetUint(uint64(i + 1)) // every counter distinct
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out Stats
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("round trip: got %+v, want %+v", out, in)
	}
}
