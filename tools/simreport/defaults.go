package simreport

import (
	_ "embed"
	"fmt"
	"slices"
	"sync"
)

// defaultFile is the built-in scenario set, in the scenario-file format.
//
//go:embed scenarios.json
var defaultFile []byte

var defaultSuite = sync.OnceValue(func() Suite {
	s, err := parse(defaultFile, nil)
	if err != nil {
		panic(fmt.Sprintf("simreport: built-in scenarios.json: %v", err)) // a build defect, caught by the tests
	}
	return s
})

// Default returns the built-in suite, 5000 messages of 200 bytes at
// 1000/s over a 10 ms link each way: a clean link; 1 %, 5 % and 20 %
// random loss; Gilbert-Elliott bursts (mean burst 10 datagrams, about 9 %
// loss); 20 ms ± 5 ms normal jitter with netem reordering; 5 %
// duplication; a 2-second outage of the forward link; and a link rate
// limited to 1.8 Mbit/s (slightly under the offered load) with a
// 100-packet queue; each swept over [DefaultSettings]. It runs in a few
// seconds. Each call returns a fresh copy.
func Default() Suite {
	s := defaultSuite()
	s.Settings = slices.Clone(s.Settings)
	s.Scenarios = slices.Clone(s.Scenarios)
	for i := range s.Scenarios {
		s.Scenarios[i].Outages = slices.Clone(s.Scenarios[i].Outages)
		s.Scenarios[i].Settings = slices.Clone(s.Scenarios[i].Settings)
	}
	return s
}

// DefaultSettings returns the built-in repair matrix: no repair; NACK;
// fixed FEC 10+3; adaptive FEC; NACK with adaptive FEC (the transport's
// defaults); NACK with ordered delivery under a 50 ms budget; NACK with
// unordered delivery; and latest-only delivery without repair.
func DefaultSettings() []Setting { return Default().Settings }

// DefaultJSON returns the built-in suite as a scenario file, a starting
// point for writing one's own.
func DefaultJSON() []byte { return slices.Clone(defaultFile) }
