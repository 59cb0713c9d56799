package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// recvSnap builds receiver statistics with one stream per entry of per.
func recvSnap(datagrams, nacks uint64, per ...receiver.StreamStats) receiver.Stats {
	return receiver.Stats{Datagrams: datagrams, NACKs: nacks, Streams: per}
}

func TestDeltasSumToTotals(t *testing.T) {
	a := receiver.StreamStats{Source: "10.0.0.1:5", Session: "aa", Stream: 0}
	b := receiver.StreamStats{Source: "10.0.0.1:5", Session: "aa", Stream: 1}
	var samples []sample
	// Stream a grows; stream b appears in the second sample, is reset in
	// the fourth (a new session's counters start again), and is gone in
	// the fifth.
	for i := uint64(1); i <= 5; i++ {
		a.Received, a.Delivered, a.Lost, a.RecoveredRTX, a.RecoveredFEC, a.Skipped, a.Duplicates, a.Unrecovered = 10*i, 10*i, 2*i, i, i/2, i/3, i, i-i/2
		per := []receiver.StreamStats{a}
		switch i {
		case 2, 3:
			b.Received, b.Delivered, b.Lost = 7*i, 7*i, i
			per = append(per, b)
		case 4:
			b.Received, b.Delivered, b.Lost = 3, 3, 0
			per = append(per, b)
		}
		samples = append(samples, recvSample(recvSnap(11*i, i, per...), 100*i))
	}
	var d deltas
	var sum Counters
	var prevTotals Counters
	streamSum := map[StreamKey]StreamCounters{}
	for i, s := range samples {
		var rec StatsRecord
		d.next(&rec.EndpointStats, s)
		sum = sum.plus(rec.Interval)
		if rec.Totals != sum {
			t.Fatalf("sample %d: totals %+v, sum of intervals %+v", i, rec.Totals, sum)
		}
		if !monotone(prevTotals, rec.Totals) {
			t.Fatalf("sample %d: totals went down: %+v -> %+v", i, prevTotals, rec.Totals)
		}
		prevTotals = rec.Totals
		if len(rec.PerStream) != len(s.streams) {
			t.Fatalf("sample %d: %d stream records for %d streams", i, len(rec.PerStream), len(s.streams))
		}
		for _, x := range rec.PerStream {
			streamSum[x.StreamKey] = streamSum[x.StreamKey].plus(x.Interval)
			if x.StreamKey.Stream == 0 && streamSum[x.StreamKey] != x.Totals {
				t.Fatalf("sample %d stream 0: intervals sum to %+v, totals %+v", i, streamSum[x.StreamKey], x.Totals)
			}
		}
	}
	// Everything each stream ever counted is in the totals: a's final
	// counts, plus b's 21 received before its reset and 3 after.
	if want := a.Received + 21 + 3; prevTotals.Messages != want {
		t.Fatalf("messages total %d, want %d", prevTotals.Messages, want)
	}
	if want := a.RecoveredRTX + a.RecoveredFEC; prevTotals.Repaired != want {
		t.Fatalf("repaired total %d, want %d", prevTotals.Repaired, want)
	}
	if prevTotals.Bytes != 500 || prevTotals.Datagrams != 55 || prevTotals.NACKs != 5 || prevTotals.Skipped != a.Skipped {
		t.Fatalf("endpoint totals %+v", prevTotals)
	}
}

// monotone reports whether no counter of b is below a's (Lost and
// Unrecovered are estimates, revised both ways).
func monotone(a, b Counters) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	for _, f := range reflect.VisibleFields(va.Type()) {
		if f.Type.Kind() == reflect.Uint64 && vb.FieldByIndex(f.Index).Uint() < va.FieldByIndex(f.Index).Uint() {
			return false
		}
	}
	return true
}

func TestSendSample(t *testing.T) {
	st := sender.Stats{PayloadBytes: 900, DatagramsSent: 120, Retransmits: 4, NACKs: 2,
		Streams: []sender.StreamStats{{Stream: 3, Sent: 100, Messages: 100, Receiver: sender.ReceiverView{
			Reported: true, Lost: 6, RecoveredRTX: 4, RecoveredFEC: 1, Unrecovered: 1, Duplicates: 2, JitterNanos: 7, DelayP99Nanos: 9}}}}
	st.RTT.SmoothedNanos = 5000
	var d deltas
	var rec StatsRecord
	d.next(&rec.EndpointStats, sendSample(st))
	want := Counters{StreamCounters: StreamCounters{Messages: 100, Lost: 6, Repaired: 5, Unrecovered: 1, Duplicates: 2},
		Bytes: 900, Datagrams: 120, Retransmits: 4, NACKs: 2}
	if rec.Totals != want || rec.Interval != want {
		t.Fatalf("totals %+v interval %+v, want %+v", rec.Totals, rec.Interval, want)
	}
	if len(rec.PerStream) != 1 || rec.PerStream[0].Stream != 3 || rec.PerStream[0].JitterNanos != 7 || rec.PerStream[0].DelayP99Nanos != 9 || rec.RTTNanos != 5000 {
		t.Fatalf("record %+v", rec)
	}
	st.PayloadBytes, st.Streams[0].Sent, st.Streams[0].Messages = 1000, 130, 130
	d.next(&rec.EndpointStats, sendSample(st))
	if rec.Interval.Bytes != 100 || rec.Interval.Messages != 30 || rec.Interval.Lost != 0 || rec.Totals.Messages != 130 {
		t.Fatalf("second record: interval %+v totals %+v", rec.Interval, rec.Totals)
	}
}

// TestFinalHasNoDuplicateMembers checks that the record's members and the
// endpoint statistics' members do not collide when merged.
func TestFinalHasNoDuplicateMembers(t *testing.T) {
	for _, full := range []any{sender.Stats{Streams: []sender.StreamStats{{}}}, receiver.Stats{Streams: []receiver.StreamStats{{}}}} {
		b, err := mergeJSON(&StatsRecord{StatsHead: StatsHead{Type: "final"}}, full)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("%s: not an object", b)
		}
		seen := map[string]bool{}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			k := tok.(string)
			if seen[k] {
				t.Fatalf("%T: member %q twice", full, k)
			}
			seen[k] = true
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				t.Fatal(err)
			}
		}
		for _, k := range []string{"type", "version", "settings", "totals", "per_stream", "streams"} {
			if !seen[k] {
				t.Fatalf("%T: no member %q in %s", full, k, b)
			}
		}
	}
}

func TestMergeJSON(t *testing.T) {
	for _, c := range []struct {
		a, b any
		want string
	}{
		{map[string]int{"x": 1}, map[string]int{"y": 2}, `{"x":1,"y":2}`},
		{map[string]int{}, map[string]int{"y": 2}, `{"y":2}`},
		{map[string]int{"x": 1}, map[string]int{}, `{"x":1}`},
		{map[string]int{"x": 1}, nil, `{"x":1}`},
	} {
		got, err := mergeJSON(c.a, c.b)
		if err != nil || string(got) != c.want {
			t.Errorf("mergeJSON(%v, %v) = %s, %v; want %s", c.a, c.b, got, err, c.want)
		}
	}
	if _, err := mergeJSON(map[string]int{}, []int{1}); err == nil {
		t.Error("merging an array: no error")
	}
}

func TestOpenStatsRefusesUnwritable(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []StatsConfig{
		{Path: filepath.Join(dir, "missing", "s.json")},
		{Path: filepath.Join(dir, "missing", "s.json"), Interval: time.Second},
		{Path: dir},
		{Path: ""},
	} {
		if _, err := OpenStats(c); !errors.Is(err, ErrStatsOutput) {
			t.Errorf("OpenStats(%+v): %v, want ErrStatsOutput", c, err)
		}
	}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenStats(StatsConfig{Path: filepath.Join(ro, "s.json")}); !errors.Is(err, ErrStatsOutput) {
			t.Errorf("read-only directory: %v", err)
		}
	}
}

// TestFinalOnlyIsAtomic: the old file stays until the final record
// replaces it; an output closed without one leaves no temporary file.
func TestFinalOnlyIsAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.json")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := OpenStats(StatsConfig{Path: path, Settings: map[string]string{"rate": "5"}})
	if err != nil {
		t.Fatal(err)
	}
	run := out.begin(func() sample { t.Error("a final-only output took a sample"); return sample{} })
	if b, _ := os.ReadFile(path); string(b) != "old\n" {
		t.Fatalf("file changed before the end: %q", b)
	}
	st := receiver.Stats{Delivered: 3, Streams: []receiver.StreamStats{{Stream: 1, Received: 3, Delivered: 3}}}
	if err := run.finish(recvSample(st, 30), st); err != nil {
		t.Fatal(err)
	}
	out.Close()
	var v map[string]any
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if v["final"] != true || v["delivered"].(float64) != 3 || v["settings"].(map[string]any)["rate"] != "5" ||
		v["totals"].(map[string]any)["bytes"].(float64) != 30 || !strings.Contains(string(b), "\n  \"") {
		t.Fatalf("final object: %s", b)
	}
	if _, ok := v["version"].(map[string]any)["go"]; !ok {
		t.Fatalf("no version: %s", b)
	}

	out, err = OpenStats(StatsConfig{Path: filepath.Join(dir, "never.json")})
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
	out.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
}

// TestIntervalLines drives the interval records with a fake snapshot.
func TestIntervalLines(t *testing.T) {
	var buf lockedWriter
	out, err := OpenStats(StatsConfig{Path: "-", Stdout: &buf, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	run := out.begin(func() sample {
		n++
		return recvSample(receiver.Stats{Datagrams: n, Streams: []receiver.StreamStats{{Stream: 0, Received: n, Delivered: n}}}, 10*n)
	})
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(buf.String(), "\n") < 4 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	run.stop()
	final := n + 1
	st := receiver.Stats{Datagrams: final, Streams: []receiver.StreamStats{{Stream: 0, Received: final, Delivered: final}}}
	if err := run.finish(recvSample(st, 10*final), st); err != nil {
		t.Fatal(err)
	}
	var sum Counters
	var recs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var rec StatsRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%v: %s", err, sc.Bytes())
		}
		var m map[string]any
		json.Unmarshal(sc.Bytes(), &m)
		recs = append(recs, m)
		sum = sum.plus(rec.Interval)
		if rec.Totals != sum || rec.Final != (rec.Type == "final") || len(rec.PerStream) != 1 {
			t.Fatalf("record %+v (sum %+v)", rec, sum)
		}
		if _, err := time.Parse(time.RFC3339Nano, rec.Time); err != nil || len(rec.Time) != len("2006-01-02T15:04:05.000000000Z") {
			t.Fatalf("time %q: %v", rec.Time, err)
		}
	}
	if len(recs) < 5 || recs[len(recs)-1]["final"] != true || sum.Messages != final || sum.Bytes != 10*final {
		t.Fatalf("%d records, sum %+v, last %v", len(recs), sum, recs[len(recs)-1])
	}
}

// lockedWriter is a buffer the interval goroutine writes while the test
// reads it.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99", Main: debug.Module{Path: "github.com/telewire/telewire", Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-07T00:00:00Z"}}}
	v := versionOf(bi, true)
	want := Version{Module: "github.com/telewire/telewire", Version: "(devel)", Revision: "0123abcd", Time: "2026-12-07T00:00:00Z", Modified: true, Go: "go1.99"}
	if v != want {
		t.Fatalf("%+v, want %+v", v, want)
	}
	if s := v.String(); s != "github.com/telewire/telewire (devel) rev 0123abcd 2026-12-07T00:00:00Z (modified) go1.99" {
		t.Fatalf("String() = %q", s)
	}
	if s := versionOf(nil, false).String(); !strings.Contains(s, "no build information") {
		t.Fatalf("without build info: %q", s)
	}
	bi.Settings, bi.Main.Version = nil, "v1.2.3"
	if s := versionOf(bi, true).String(); !strings.HasPrefix(s, "github.com/telewire/telewire v1.2.3 rev unknown") {
		t.Fatalf("a tagged go install: %q", s)
	}
}

// TestStatsInPlace: a symbolic link (as /dev/stderr is) and a device are
// written in place, appending; the link is not replaced by a file.
func TestStatsInPlace(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "log")
	if err := os.WriteFile(target, []byte("earlier line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, interval := range []time.Duration{0, time.Hour} {
		out, err := OpenStats(StatsConfig{Path: link, Interval: interval})
		if err != nil {
			t.Fatal(err)
		}
		st := receiver.Stats{Delivered: 1}
		if err := out.begin(nil).finish(recvSample(st, 0), st); err != nil {
			t.Fatal(err)
		}
		out.Close()
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi, err)
	}
	b, _ := os.ReadFile(target)
	if !strings.HasPrefix(string(b), "earlier line\n{\n") || strings.Count(string(b), `"final": true`) != 1 || strings.Count(string(b), `"final":true`) != 1 {
		t.Fatalf("target holds:\n%s", b)
	}
	if err := writeJSON(link, map[string]int{"x": 1}); err != nil {
		t.Fatal(err)
	}
	if err := CheckWritable(os.DevNull); err != nil {
		t.Fatal(err)
	}
	out, err := OpenStats(StatsConfig{Path: os.DevNull, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	out.Close()
}

func TestJSONLinesStamper(t *testing.T) {
	var out bytes.Buffer
	s, err := NewJSONLinesStamper(&out, map[string]string{"rate": "5"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{`{"type":"sample","n":1}`, "\n{\"type\":\"sum", "mary\"}\nplain text\n{}\n", `{"tail":true}`} {
		if n, err := s.Write([]byte(p)); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) != 5 || lines[2] != "plain text" || lines[3] != "{}" || lines[4] != `{"tail":true}` {
		t.Fatalf("output:\n%s", out.String())
	}
	for _, l := range lines[:2] {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil || v["version"] == nil || v["settings"].(map[string]any)["rate"] != "5" || v["type"] == nil {
			t.Fatalf("line %q: %v", l, err)
		}
	}
}

// TestLossRevised: a loss estimate revised downwards (a late arrival)
// is a negative interval, not a reset; the totals follow the estimate.
func TestLossRevised(t *testing.T) {
	st := func(lost, unrec uint64) sample {
		return recvSample(recvSnap(0, 0, receiver.StreamStats{Stream: 1, Received: 100, Delivered: 100, Lost: lost, Unrecovered: unrec}), 0)
	}
	var d deltas
	var rec EndpointStats
	d.next(&rec, st(10, 4))
	d.next(&rec, st(7, 1))
	if rec.Interval.Lost != -3 || rec.Interval.Unrecovered != -3 || rec.Totals.Lost != 7 || rec.Totals.Unrecovered != 1 || rec.Totals.Messages != 100 {
		t.Fatalf("interval %+v totals %+v", rec.Interval, rec.Totals)
	}
	d.next(&rec, st(9, 1))
	if rec.Interval.Lost != 2 || rec.Totals.Lost != 9 || rec.PerStream[0].Interval.Lost != 2 {
		t.Fatalf("interval %+v totals %+v", rec.Interval, rec.Totals)
	}
}

// BenchmarkIntervalRecord is the cost of one --stats-interval record of a
// receiver with 64 streams: the reduction, the differences and the JSON.
func BenchmarkIntervalRecord(b *testing.B) {
	st := receiver.Stats{Datagrams: 1e6}
	for i := range 64 {
		st.Streams = append(st.Streams, receiver.StreamStats{Source: "10.0.0.1:4000", Session: "0123456789abcdef", Stream: uint32(i), Received: 1e4, Delivered: 1e4, Lost: 10})
	}
	out := &StatsOutput{cfg: StatsConfig{Settings: map[string]string{"listen": "127.0.0.1:9000"}}, version: BuildVersion(), w: io.Discard}
	run := out.begin(func() sample { return recvSample(st, 1e6) })
	b.ReportAllocs()
	for b.Loop() {
		for i := range st.Streams {
			st.Streams[i].Received++
			st.Streams[i].Delivered++
		}
		run.interval(func(h StatsHead) any {
			rec := &StatsRecord{StatsHead: h}
			run.d.next(&rec.EndpointStats, recvSample(st, 1e6))
			return rec
		})
	}
}
