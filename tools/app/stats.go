package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// writeJSON writes v as indented JSON to path, atomically: a reader never
// sees a half-written file.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".stats-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write stats: %w", err)
	}
	return nil
}

// ms formats nanoseconds as milliseconds with three decimals.
func ms(nanos uint64) string { return fmt.Sprintf("%.3fms", float64(nanos)/1e6) }

// rate formats a count over a duration as a per-second figure.
func rate(n uint64, d time.Duration) string {
	if d <= 0 {
		return "0/s"
	}
	return fmt.Sprintf("%.0f/s", float64(n)/d.Seconds())
}
