package bench

import (
	"fmt"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Chart size.
const (
	chartWidth  = 18 * vg.Centimeter
	chartHeight = 10 * vg.Centimeter
)

// WritePlots draws the report's charts into dir (created if needed), each
// as SVG and PNG, and returns the files written:
//
//   - throughput: goodput at full speed (load "max"), one bar per
//     transport, grouped by loss rate, medians;
//   - latency-LOAD for each paced load: one-way p99 latency per transport
//     across the loss rates, log scale, medians.
//
// Peer transports (rep.Peers) are drawn beside telewire's.
func WritePlots(dir string, rep *Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cases := append(append([]Case(nil), rep.Cases...), peerCases(rep)...)
	names := transportOrder(cases)
	losses, rates := axes(rep)
	lossLabels := make([]string, len(losses))
	for i, l := range losses {
		lossLabels[i] = LossName(l)
	}
	var files []string
	save := func(p *plot.Plot, base string) error {
		for _, ext := range []string{".svg", ".png"} {
			f := filepath.Join(dir, base+ext)
			if err := p.Save(chartWidth, chartHeight, f); err != nil {
				return fmt.Errorf("bench: writing %s: %w", f, err)
			}
			files = append(files, f)
		}
		return nil
	}
	for _, rate := range rates {
		var p *plot.Plot
		var err error
		if rate == 0 {
			p, err = throughputChart(cases, names, losses, lossLabels)
		} else {
			p, err = latencyChart(cases, names, rate, losses, lossLabels)
		}
		if err != nil {
			return files, err
		}
		base := "throughput"
		if rate > 0 {
			base = "latency-" + LoadName(rate)
		}
		if err := save(p, base); err != nil {
			return files, err
		}
	}
	return files, nil
}

// transportOrder lists the transports of cs in first-seen order.
func transportOrder(cs []Case) []string {
	var names []string
	seen := map[string]bool{}
	for _, c := range cs {
		if !seen[c.Transport] {
			seen[c.Transport] = true
			names = append(names, c.Transport)
		}
	}
	return names
}

// median returns a case's median figure f at rate and loss, and whether
// that case ran.
func median(cs []Case, name string, rate, loss float64, f func(*Figures) float64) (float64, bool) {
	for _, c := range cs {
		if c.Transport == name && c.Rate == rate && c.LossPercent == loss && c.Median != nil {
			return f(c.Median), true
		}
	}
	return 0, false
}

func throughputChart(cs []Case, names []string, losses []float64, labels []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Goodput at full speed (200-byte messages, median)"
	p.Y.Label.Text = "messages delivered per second"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	width := vg.Points(120 / float64(max(1, len(names))))
	for i, name := range names {
		vals := make(plotter.Values, len(losses))
		for j, l := range losses {
			vals[j], _ = median(cs, name, 0, l, func(f *Figures) float64 { return f.MsgsPerSec })
		}
		bars, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, fmt.Errorf("bench: throughput chart: %w", err)
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = width * vg.Length(float64(i)-float64(len(names)-1)/2)
		p.Add(bars)
		p.Legend.Add(name, bars)
	}
	p.NominalX(labels...)
	return p, nil
}

func latencyChart(cs []Case, names []string, rate float64, losses []float64, labels []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("One-way p99 latency at %s msgs/s (median)", LoadName(rate))
	p.Y.Label.Text = "p99 latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	for i, name := range names {
		var xys plotter.XYs
		for j, l := range losses {
			v, ok := median(cs, name, rate, l, func(f *Figures) float64 { return f.P99Nanos })
			if ok && v > 0 {
				xys = append(xys, plotter.XY{X: float64(j), Y: v / 1e6})
			}
		}
		if len(xys) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("bench: latency chart: %w", err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(name, line, points)
	}
	p.NominalX(labels...)
	return p, nil
}
