package replay

import (
	"encoding/json"
	"reflect"
	"regexp"
	"testing"
)

// TestJSONKeys: Stats and AccuracySummary go into the replay command's JSON
// statistics, so every field has a snake_case key and survives a round trip.
func TestJSONKeys(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	check := func(ptr any) {
		v := reflect.ValueOf(ptr).Elem()
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if key := f.Tag.Get("json"); !snake.MatchString(key) {
				t.Errorf("%s.%s has JSON key %q, want snake_case", v.Type().Name(), f.Name, key)
			}
			switch f.Type.Kind() {
			case reflect.Int, reflect.Int64:
				v.Field(i).SetInt(int64(i + 1))
			default:
				v.Field(i).SetUint(uint64(i + 1))
			}
		}
		b, err := json.Marshal(ptr)
		if err != nil {
			t.Fatal(err)
		}
		out := reflect.New(v.Type())
		if err := json.Unmarshal(b, out.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(out.Elem().Interface(), v.Interface()) {
			t.Errorf("round trip: got %+v, want %+v", out.Elem().Interface(), v.Interface())
		}
	}
	check(&Stats{})
	check(&AccuracySummary{})
}
