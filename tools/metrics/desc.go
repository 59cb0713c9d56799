package metrics

import "github.com/prometheus/client_golang/prometheus"

// streamLabels are the labels of per-stream metrics.
var streamLabels = []string{"peer", "stream"}

// metric is one metric a collector exports: its description and kind.
type metric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}

// family builds metrics with a common name prefix.
type family struct {
	prefix string
	all    []*prometheus.Desc
	meta   []meta // what all describes, for the documentation test
}

// meta is one metric's name, type, labels and help.
type meta struct {
	name, kind, help string
	labels           []string
}

func (f *family) def(name, help string, kind prometheus.ValueType, labels ...string) metric {
	d := prometheus.NewDesc(f.prefix+name, help, labels, nil)
	f.all = append(f.all, d)
	f.meta = append(f.meta, meta{f.prefix + name, map[prometheus.ValueType]string{prometheus.CounterValue: "counter", prometheus.GaugeValue: "gauge"}[kind], help, labels})
	return metric{desc: d, kind: kind}
}

func (f *family) counter(name, help string, labels ...string) metric {
	return f.def(name, help, prometheus.CounterValue, labels...)
}

func (f *family) gauge(name, help string, labels ...string) metric {
	return f.def(name, help, prometheus.GaugeValue, labels...)
}

func (f *family) histogram(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(f.prefix+name, help, labels, nil)
	f.all = append(f.all, d)
	f.meta = append(f.meta, meta{f.prefix + name, "histogram", help, labels})
	return d
}

func (f *family) describe(ch chan<- *prometheus.Desc) {
	for _, d := range f.all {
		ch <- d
	}
}

// emit sends one sample of m.
func emit[T uint64 | int64 | int | float64](ch chan<- prometheus.Metric, m metric, v T, labels ...string) {
	ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(v), labels...)
}

// nanos converts nanoseconds to seconds.
func seconds[T uint64 | int64](nanos T) float64 { return float64(nanos) / 1e9 }
