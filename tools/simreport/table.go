package simreport

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteMarkdown writes one markdown section per scenario: a heading with
// the link and workload, a table with one row per setting, and a line
// for each setting that was not run and why.
func (r Report) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for i, sc := range r.Scenarios {
		if i > 0 {
			bw.WriteString("\n")
		}
		writeScenario(bw, sc)
	}
	return bw.Flush()
}

var tableHeader = []string{"setting", "raw loss", "residual", "FEC rec.", "RTX rec.", "overhead",
	"p50", "p99", "p99.9", "max", "NACKs", "retx"}

func writeScenario(w *bufio.Writer, sc ScenarioReport) {
	fmt.Fprintf(w, "### %s\n\n", sc.Name)
	fmt.Fprintf(w, "fwd `%s`, rev `%s`", specText(sc.Fwd), specText(sc.Rev))
	if len(sc.Outages) > 0 {
		fmt.Fprintf(w, ", outage %s", strings.Join(sc.Outages, ", "))
	}
	fmt.Fprintf(w, "; %d messages of %d B at %g/s, seed %d\n\n", sc.Messages, sc.Size, sc.Rate, sc.Seed)
	if len(sc.Rows) > 0 {
		w.WriteString("| " + strings.Join(tableHeader, " | ") + " |\n|---|")
		w.WriteString(strings.Repeat("--:|", len(tableHeader)-1) + "\n")
		for _, row := range sc.Rows {
			cells := []string{
				row.Setting,
				percent(row.RawLoss), percent(row.Residual),
				fmt.Sprint(row.RecoveredFEC), fmt.Sprint(row.RecoveredRTX),
				percent(row.Overhead),
				millis(row.LatencyP50Nanos), millis(row.LatencyP99Nanos),
				millis(row.LatencyP999Nanos), millis(row.LatencyMaxNanos),
				fmt.Sprint(row.NACKs), fmt.Sprint(row.Retransmits),
			}
			w.WriteString("| " + strings.Join(cells, " | ") + " |\n")
		}
		w.WriteString("\n")
	}
	for _, n := range sc.NotRun {
		fmt.Fprintf(w, "- not run: %s\n", n.Reason)
	}
	for _, row := range sc.Rows {
		if row.Corrupt > 0 {
			fmt.Fprintf(w, "- **%s: %d corrupt deliveries**\n", row.Setting, row.Corrupt)
		}
	}
}

func specText(s string) string {
	if s == "" {
		return "(perfect link)"
	}
	return s
}

func percent(f float64) string { return fmt.Sprintf("%.2f%%", 100*f) }

func millis(nanos int64) string { return fmt.Sprintf("%.2f ms", float64(nanos)/1e6) }
