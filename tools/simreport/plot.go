package simreport

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Quantile is one point of a latency distribution: a fraction P of the
// deliveries took at most Nanos.
type Quantile struct {
	P     float64
	Nanos int64
}

// LatencyQuantiles returns the points of the row's latency distribution
// that the simulator reports: p50, p99, p99.9 and the maximum. Each is an
// element of the n sorted latencies (tools/sim picks index
// min(n-1, floor(p·n))), placed at its plotting position (i+½)/n, so the
// maximum sits at 1-1/(2n) rather than at 1. Duplicate points (small n)
// are dropped. It returns nil when nothing was delivered.
func (r Row) LatencyQuantiles() []Quantile {
	n := r.Delivered
	if n == 0 {
		return nil
	}
	var out []Quantile
	add := func(i uint64, nanos int64) {
		q := Quantile{P: (float64(i) + 0.5) / float64(n), Nanos: nanos}
		if k := len(out); k > 0 && out[k-1].P >= q.P {
			return
		}
		out = append(out, q)
	}
	for _, p := range []struct {
		frac  float64
		nanos int64
	}{{0.50, r.LatencyP50Nanos}, {0.99, r.LatencyP99Nanos}, {0.999, r.LatencyP999Nanos}} {
		add(min(n-1, uint64(p.frac*float64(n))), p.nanos)
	}
	add(n-1, r.LatencyMaxNanos)
	return out
}

// nines maps a cumulative fraction to the "number of nines" axis:
// 0.9 → 1, 0.99 → 2, 0.999 → 3.
func nines(p float64) float64 { return -math.Log10(1 - p) }

// Picture dimensions: the plot, and the legend in a column to its right
// so that it never hides a point.
const (
	plotWidth   = 16 * vg.Centimeter
	legendWidth = 4.5 * vg.Centimeter
	plotHeight  = 10 * vg.Centimeter
)

// palette holds ten distinguishable colours (Tableau 10), one per setting.
var palette = []color.Color{
	color.RGBA{0x4e, 0x79, 0xa7, 0xff}, color.RGBA{0xf2, 0x8e, 0x2b, 0xff},
	color.RGBA{0xe1, 0x57, 0x59, 0xff}, color.RGBA{0x76, 0xb7, 0xb2, 0xff},
	color.RGBA{0x59, 0xa1, 0x4f, 0xff}, color.RGBA{0xed, 0xc9, 0x48, 0xff},
	color.RGBA{0xb0, 0x7a, 0xa1, 0xff}, color.RGBA{0xff, 0x9d, 0xa7, 0xff},
	color.RGBA{0x9c, 0x75, 0x5f, 0xff}, color.RGBA{0x3b, 0x3b, 0x3b, 0xff},
}

// figure is a plot and its legend, drawn side by side.
type figure struct {
	p      *plot.Plot
	legend plot.Legend
}

func newFigure(title, xlabel, ylabel string) *figure {
	f := &figure{p: plot.New(), legend: plot.NewLegend()}
	f.p.Title.Text = title
	f.p.X.Label.Text = xlabel
	f.p.Y.Label.Text = ylabel
	f.p.Add(plotter.NewGrid())
	f.legend.Top = true
	return f
}

// save writes the figure to file, in the format its extension names.
func (f *figure) save(file string) (err error) {
	ext := strings.TrimPrefix(filepath.Ext(file), ".")
	c, err := draw.NewFormattedCanvas(plotWidth+legendWidth, plotHeight, ext)
	if err != nil {
		return err
	}
	dc := draw.New(c)
	f.p.Draw(draw.Crop(dc, 0, -legendWidth, 0, 0))
	f.legend.Draw(draw.Crop(dc, plotWidth+vg.Millimeter, 0, 0, -vg.Centimeter))
	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer func() {
		if e := out.Close(); err == nil {
			err = e
		}
	}()
	_, err = c.WriteTo(out)
	return err
}

// WritePlots draws the report into dir (created if needed), each picture
// as SVG and PNG: latency-SCENARIO (the latency distribution of every
// setting on a nines scale), residual (residual against raw loss, one
// point per scenario and setting) and overhead (bandwidth overhead
// against raw loss). It returns the files written.
func WritePlots(dir string, r Report) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	save := func(fig *figure, base string) error {
		for _, ext := range []string{".svg", ".png"} {
			f := filepath.Join(dir, base+ext)
			if err := fig.save(f); err != nil {
				return fmt.Errorf("simreport: writing %s: %w", f, err)
			}
			files = append(files, f)
		}
		return nil
	}
	for _, sc := range r.Scenarios {
		if len(sc.Rows) == 0 {
			continue
		}
		p, err := latencyPlot(sc)
		if err != nil {
			return files, err
		}
		if err := save(p, "latency-"+sc.Name); err != nil {
			return files, err
		}
	}
	for _, fig := range []struct {
		base, title, ylabel string
		y                   func(Row) float64
		diagonal            bool
	}{
		{"residual", "Residual loss against raw loss", "residual loss (%)", func(r Row) float64 { return r.Residual }, true},
		{"overhead", "Bandwidth overhead against raw loss", "overhead (% of payload bytes)", func(r Row) float64 { return r.Overhead }, false},
	} {
		p, err := lossPlot(r, fig.title, fig.ylabel, fig.y, fig.diagonal)
		if err != nil {
			return files, err
		}
		if err := save(p, fig.base); err != nil {
			return files, err
		}
	}
	return files, nil
}

// latencyPlot draws, per setting, its latency quantiles as points and the
// step function through them (latency across, cumulative fraction up on a
// nines scale). Between two reported quantiles the step is the lower
// bound of the distribution: the fraction delivered within a latency is
// at least the step's height there.
func latencyPlot(sc ScenarioReport) (*figure, error) {
	f := newFigure("Delivery latency, "+sc.Name, "latency from send to delivery (ms)", "fraction delivered within")
	p := f.p
	p.X.Min = 0
	p.Y.Min, p.Y.Max = 0, 3.5
	for i, row := range sc.Rows {
		qs := row.LatencyQuantiles()
		if len(qs) == 0 {
			continue
		}
		pts := make(plotter.XYs, len(qs))
		steps := make(plotter.XYs, 0, 2*len(qs))
		for j, q := range qs {
			pts[j] = plotter.XY{X: float64(q.Nanos) / 1e6, Y: nines(q.P)}
			if j > 0 {
				steps = append(steps, plotter.XY{X: pts[j].X, Y: pts[j-1].Y})
			}
			steps = append(steps, pts[j])
			p.Y.Max = max(p.Y.Max, pts[j].Y+0.25)
		}
		line, err := plotter.NewLine(steps)
		if err != nil {
			return nil, fmt.Errorf("simreport: latency plot of %s/%s: %w", sc.Name, row.Setting, err)
		}
		points, err := plotter.NewScatter(pts)
		if err != nil {
			return nil, fmt.Errorf("simreport: latency plot of %s/%s: %w", sc.Name, row.Setting, err)
		}
		style(line, points, i)
		p.Add(line, points)
		f.legend.Add(row.Setting, line, points)
	}
	ticks := plot.ConstantTicks{}
	for _, t := range []struct {
		p     float64
		label string
	}{{0.5, "50%"}, {0.9, "90%"}, {0.99, "99%"}, {0.999, "99.9%"}, {0.9999, "99.99%"}, {0.99999, "99.999%"}} {
		if nines(t.p) <= p.Y.Max {
			ticks = append(ticks, plot.Tick{Value: nines(t.p), Label: t.label})
		}
	}
	p.Y.Tick.Marker = ticks
	p.X.Max *= 1.05 // room for the glyphs at the edge
	return f, nil
}

// lossPlot draws y(row) against raw loss, both in percent, one series of
// points per setting across the scenarios; diagonal adds the line
// y = raw loss (what no repair gives).
func lossPlot(r Report, title, ylabel string, y func(Row) float64, diagonal bool) (*figure, error) {
	f := newFigure(title, "raw loss on the forward link (%)", ylabel)
	p := f.p
	p.X.Min, p.Y.Min = 0, 0
	var order []string
	series := map[string]plotter.XYs{}
	xmax := 0.0
	for _, sc := range r.Scenarios {
		for _, row := range sc.Rows {
			if _, ok := series[row.Setting]; !ok {
				order = append(order, row.Setting)
			}
			series[row.Setting] = append(series[row.Setting], plotter.XY{X: 100 * row.RawLoss, Y: 100 * y(row)})
			xmax = max(xmax, 100*row.RawLoss)
		}
	}
	if diagonal {
		ref := plotter.NewFunction(func(x float64) float64 { return x })
		ref.XMin, ref.XMax = 0, max(xmax, 1)
		ref.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		ref.Color = color.Gray{Y: 0x80}
		p.Add(ref)
		f.legend.Add("residual = raw loss", ref)
	}
	for i, name := range order {
		points, err := plotter.NewScatter(series[name])
		if err != nil {
			return nil, fmt.Errorf("simreport: %s plot, setting %s: %w", title, name, err)
		}
		style(nil, points, i)
		p.Add(points)
		f.legend.Add(name, points)
	}
	p.X.Max, p.Y.Max = max(p.X.Max*1.05, 1), max(p.Y.Max*1.05, 1)
	return f, nil
}

// style gives series i its colour, dash pattern and glyph.
func style(l *plotter.Line, s *plotter.Scatter, i int) {
	c := palette[i%len(palette)]
	if l != nil {
		l.Color = c
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.2)
	}
	if s != nil {
		s.Color = c
		s.Shape = plotutil.Shape(i)
		s.Radius = vg.Points(3)
	}
}
