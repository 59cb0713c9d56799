package metrics

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/telewire/telewire/tools/bridge"
)

// described returns every metric the collectors describe, as the table
// row docs/observability.md gives it.
func described() map[string]string {
	out := map[string]string{}
	for _, f := range []family{
		NewSenderCollector(&fakeSender{}, Options{}).f,
		NewReceiverCollector(&fakeReceiver{}, Options{}).f,
		NewRelayCollector(&fakeRelay{}).f,
		NewPublisherCollector(&bridge.Publisher{}).f,
		NewForwarderCollector(&bridge.Forwarder{}, &bridge.Conn{}).f,
	} {
		for _, m := range f.meta {
			out[m.name] = fmt.Sprintf("| `%s` | %s | %s | %s |", m.name, m.kind, strings.Join(m.labels, ", "), m.help)
		}
	}
	return out
}

// TestDocsListEveryMetric: docs/observability.md names every metric the
// collectors export, and no other. TELEWIRE_PRINT_METRICS=1 prints the
// table rows.
func TestDocsListEveryMetric(t *testing.T) {
	d := described()
	if os.Getenv("TELEWIRE_PRINT_METRICS") != "" {
		var rows []string
		for _, r := range d {
			rows = append(rows, r)
		}
		sort.Strings(rows)
		fmt.Println(strings.Join(rows, "\n"))
	}
	doc, err := os.ReadFile("../../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	inDoc := map[string]bool{}
	for _, m := range regexp.MustCompile("`(telewire_[a-z_]*[a-z])`").FindAllStringSubmatch(string(doc), -1) {
		inDoc[m[1]] = true
	}
	for name := range d {
		if !inDoc[name] {
			t.Errorf("docs/observability.md does not list %s", name)
		}
	}
	for name := range inDoc {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if d[name] == "" && d[base] == "" {
			t.Errorf("docs/observability.md lists %s, which no collector exports", name)
		}
	}
}
