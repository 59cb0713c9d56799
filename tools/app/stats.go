package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// The statistics output of send, recv and netem (--stats,
// --stats-interval); docs/cli.md describes it for users.
//
// Without an interval, the output is one indented JSON object written at
// the end: the endpoint's full statistics (sender.Stats or receiver.Stats,
// their fields at the top level as before) plus the record fields of
// [StatsRecord] ("type": "final", "version", "settings", "totals", ...).
// A regular file is written atomically (a temporary file beside it,
// renamed at the end), so a reader never sees half of it.
//
// With an interval, the output is JSON Lines: one compact [StatsRecord]
// per interval ("type": "interval"), and the final object as above, on one
// line, last. The file is created (truncated) at start and each line is
// written with one write call as it is made, so `tail -f` and a `kill -9`
// see every complete interval.
//
// Either way the output is checked by OpenStats before the transfer
// starts (opened; for a final-only file, a file is created beside it and
// removed), so a path that cannot be written is refused at once, not after
// an hour of data, and a run killed early leaves no temporary file.

// StatsTimeFormat is the wall-clock time of a statistics record: RFC 3339
// in UTC with nanoseconds (always nine digits, so the strings sort).
const StatsTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// StreamCounters are the cumulative per-stream counts a statistics record
// reports, as totals and as differences over an interval.
type StreamCounters struct {
	// Messages: on send, messages sent on the stream; on recv, messages
	// delivered (packed and fragmented messages counted one by one; loss
	// and repair below count DATA packets).
	Messages uint64 `json:"messages"`
	// Lost on the path before repair (reordering is not loss). On send,
	// as the receiver's latest report said. It is the receiver's current
	// estimate: a sequence counted missing that arrives late after all is
	// taken back, so an interval's Lost can be negative and the totals go
	// down by as much (the only two counts that can, with Unrecovered).
	Lost int64 `json:"lost"`
	// Repaired: of Lost, recovered by retransmission or FEC.
	Repaired uint64 `json:"repaired"`
	// Unrecovered: of Lost, not repaired (yet); an estimate like Lost.
	Unrecovered int64 `json:"unrecovered"`
	// Skipped: recv only, sequences ordered delivery gave up waiting for
	// (the latency budget ran out); always 0 on send, whose reports do not
	// carry it.
	Skipped uint64 `json:"skipped"`
	// Duplicates: extra copies dropped by the receiver.
	Duplicates uint64 `json:"duplicates"`
}

// Counters are the cumulative counts of a whole sender or receiver, as
// totals and as differences over an interval: the sum of the
// [StreamCounters] over every stream, and counts only the endpoint keeps.
type Counters struct {
	StreamCounters
	// Bytes: on send, payload bytes of the messages sent; on recv, payload
	// bytes written to the output.
	Bytes uint64 `json:"bytes"`
	// Datagrams: on send, datagrams written (every kind); on recv,
	// datagrams read.
	Datagrams uint64 `json:"datagrams"`
	// Retransmits: on send, DATA packets resent; on recv, 0.
	Retransmits uint64 `json:"retransmits"`
	// NACKs: on send, NACKs received; on recv, NACKs sent.
	NACKs uint64 `json:"nacks"`
}

// since returns the counts from prev to c, counter by counter. A counter
// that went down was reset (a receiver restarted and its reports began
// again): its difference is then its whole new value, so totals built
// from differences never go down. Lost and Unrecovered are estimates, not
// counters: their difference is signed, and a revision downwards shows
// as a negative interval.
func (c StreamCounters) since(prev StreamCounters) StreamCounters {
	return StreamCounters{
		Messages:    diff(c.Messages, prev.Messages),
		Lost:        c.Lost - prev.Lost,
		Repaired:    diff(c.Repaired, prev.Repaired),
		Unrecovered: c.Unrecovered - prev.Unrecovered,
		Skipped:     diff(c.Skipped, prev.Skipped),
		Duplicates:  diff(c.Duplicates, prev.Duplicates),
	}
}

// plus returns the counter-by-counter sum of c and o.
func (c StreamCounters) plus(o StreamCounters) StreamCounters {
	return StreamCounters{
		Messages:    c.Messages + o.Messages,
		Lost:        c.Lost + o.Lost,
		Repaired:    c.Repaired + o.Repaired,
		Unrecovered: c.Unrecovered + o.Unrecovered,
		Skipped:     c.Skipped + o.Skipped,
		Duplicates:  c.Duplicates + o.Duplicates,
	}
}

// since is StreamCounters.since for the endpoint's own counters; the
// embedded stream sums are left zero (they are summed per stream).
func (c Counters) since(prev Counters) Counters {
	return Counters{
		Bytes:       diff(c.Bytes, prev.Bytes),
		Datagrams:   diff(c.Datagrams, prev.Datagrams),
		Retransmits: diff(c.Retransmits, prev.Retransmits),
		NACKs:       diff(c.NACKs, prev.NACKs),
	}
}

// plus returns the counter-by-counter sum of c and o.
func (c Counters) plus(o Counters) Counters {
	return Counters{
		StreamCounters: c.StreamCounters.plus(o.StreamCounters),
		Bytes:          c.Bytes + o.Bytes,
		Datagrams:      c.Datagrams + o.Datagrams,
		Retransmits:    c.Retransmits + o.Retransmits,
		NACKs:          c.NACKs + o.NACKs,
	}
}

func diff(cur, prev uint64) uint64 {
	if cur < prev {
		return cur // reset
	}
	return cur - prev
}

// StreamKey names a stream across snapshots: a receiver sees the same
// stream id from several senders (Source, Session); a sender leaves both
// empty.
type StreamKey struct {
	Source  string `json:"source,omitempty"`
	Session string `json:"session,omitempty"`
	Stream  uint32 `json:"stream"`
}

// StreamRecord is one stream in a statistics record.
type StreamRecord struct {
	StreamKey
	Interval StreamCounters `json:"interval"` // since the previous record (or since the stream appeared)
	Totals   StreamCounters `json:"totals"`   // the stream's counts now
	// Gauges, as of now: RFC 3550 jitter and one-way delay percentiles
	// above the minimum seen (on send, from the receiver's latest report).
	JitterNanos   uint64 `json:"jitter_ns"`
	DelayP50Nanos uint64 `json:"delay_p50_ns"`
	DelayP99Nanos uint64 `json:"delay_p99_ns"`
}

// StatsHead leads every object of a statistics output, whatever the
// command.
type StatsHead struct {
	Type  string `json:"type"`  // "interval" or "final"
	Final bool   `json:"final"` // true on the last object only
	// Time is the wall clock when the record was taken ([StatsTimeFormat]).
	Time string `json:"time"`
	// ElapsedNanos is the time since the start (monotonic clock);
	// IntervalNanos the time since the previous record.
	ElapsedNanos  int64 `json:"elapsed_ns"`
	IntervalNanos int64 `json:"interval_ns"`
	// Version is the build that wrote the record; Settings the command's
	// effective settings (every flag, defaults included).
	Version  Version           `json:"version"`
	Settings map[string]string `json:"settings"`
}

// StatsRecord is one object of the statistics output of send and recv.
// The final one also carries the endpoint's full statistics
// (sender.Stats or receiver.Stats), their fields beside these.
type StatsRecord struct {
	StatsHead
	EndpointStats
}

// EndpointStats are the figures of one sender or receiver in a record.
type EndpointStats struct {
	// Interval is what happened since the previous record; Totals is the
	// sum of every Interval so far, this one included, so it never goes
	// down even when a session's counters are reset (except Lost and
	// Unrecovered, which follow the receiver's revised estimates).
	Interval Counters `json:"interval"`
	Totals   Counters `json:"totals"`
	// PerStream lists every stream the endpoint reports now.
	PerStream []StreamRecord `json:"per_stream"`
	// Sender only: smoothed round-trip time and pacing rate now.
	RTTNanos          int64   `json:"rtt_ns,omitempty"`
	PacingBytesPerSec float64 `json:"pacing_bytes_per_sec,omitempty"`
}

// sample is one snapshot reduced to what a record reports.
type sample struct {
	own     Counters // the endpoint's own counters; StreamCounters zero
	streams []streamSample
	rtt     int64
	pacing  float64
}

type streamSample struct {
	key                        StreamKey
	c                          StreamCounters
	jitter, delayP50, delayP99 uint64
}

// sendSample reduces a sender's statistics.
func sendSample(st sender.Stats) sample {
	s := sample{
		own: Counters{Bytes: st.PayloadBytes, Datagrams: st.DatagramsSent, Retransmits: st.Retransmits, NACKs: st.NACKs},
		rtt: st.RTT.SmoothedNanos, pacing: st.Pacing.RateBytesPerSec,
		streams: make([]streamSample, 0, len(st.Streams)),
	}
	for _, x := range st.Streams {
		r := x.Receiver
		s.streams = append(s.streams, streamSample{
			key: StreamKey{Stream: x.Stream},
			c: StreamCounters{Messages: x.Messages, Lost: int64(r.Lost), Repaired: r.RecoveredRTX + r.RecoveredFEC,
				Unrecovered: int64(r.Unrecovered), Duplicates: r.Duplicates},
			jitter: r.JitterNanos, delayP50: r.DelayP50Nanos, delayP99: r.DelayP99Nanos,
		})
	}
	return s
}

// recvSample reduces a receiver's statistics; written is the payload
// bytes written to the output so far.
func recvSample(st receiver.Stats, written uint64) sample {
	s := sample{
		own:     Counters{Bytes: written, Datagrams: st.Datagrams, NACKs: st.NACKs},
		streams: make([]streamSample, 0, len(st.Streams)),
	}
	for _, x := range st.Streams {
		s.streams = append(s.streams, streamSample{
			key: StreamKey{Source: x.Source, Session: x.Session, Stream: x.Stream},
			c: StreamCounters{Messages: x.Delivered, Lost: int64(x.Lost), Repaired: x.RecoveredRTX + x.RecoveredFEC,
				Unrecovered: int64(x.Unrecovered), Skipped: x.Skipped, Duplicates: x.Duplicates},
			jitter: x.JitterNanos, delayP50: x.Delay.P50, delayP99: x.Delay.P99,
		})
	}
	return s
}

// deltas turns successive samples into records. The zero value starts
// from nothing: the first record's interval is everything so far.
type deltas struct {
	prev   map[StreamKey]StreamCounters
	own    Counters
	totals Counters
}

// next fills rec's Interval, Totals and PerStream from cur. A stream not
// in the previous sample counts from zero; a stream gone since is no
// longer listed, and what it counted stays in Totals.
func (d *deltas) next(rec *EndpointStats, cur sample) {
	iv := cur.own.since(d.own)
	d.own = cur.own
	seen := make(map[StreamKey]StreamCounters, len(cur.streams))
	rec.PerStream = make([]StreamRecord, 0, len(cur.streams))
	for _, x := range cur.streams {
		si := x.c.since(d.prev[x.key])
		iv.StreamCounters = iv.StreamCounters.plus(si)
		seen[x.key] = x.c
		rec.PerStream = append(rec.PerStream, StreamRecord{StreamKey: x.key, Interval: si, Totals: x.c,
			JitterNanos: x.jitter, DelayP50Nanos: x.delayP50, DelayP99Nanos: x.delayP99})
	}
	d.prev = seen
	d.totals = d.totals.plus(iv)
	rec.Interval, rec.Totals = iv, d.totals
	rec.RTTNanos, rec.PacingBytesPerSec = cur.rtt, cur.pacing
}

// StatsConfig says where a command's statistics go.
type StatsConfig struct {
	// Path is the file, "-" for Stdout. An existing regular file is
	// replaced; a FIFO or device (/dev/stderr, /dev/fd/3) is written in
	// place.
	Path string
	// Interval, if positive, adds one record per interval (JSON Lines).
	Interval time.Duration
	// Stdout is where "-" writes (default os.Stdout).
	Stdout io.Writer
	// Settings are the command's effective settings, copied into every
	// record.
	Settings map[string]string
}

// ErrStatsOutput is wrapped by OpenStats's and CheckWritable's errors: the
// path cannot be written.
var ErrStatsOutput = errors.New("cannot be written")

// StatsOutput is an open statistics output. It is not safe for concurrent
// use; one command writes it from one statistics run at a time. A nil
// *StatsOutput is valid and writes nothing.
type StatsOutput struct {
	cfg     StatsConfig
	version Version
	w       io.Writer // where records go
	file    *os.File  // the file behind w, if this opened one
	replace bool      // final-only to a regular file: replaced at the end (w is nil)
	err     error     // the first write error
}

// OpenStats opens the output now, before any transfer starts: it creates
// the file (or, for a final-only regular file, the temporary file beside
// it that will replace it). The error wraps ErrStatsOutput and names the
// path and the reason.
func OpenStats(cfg StatsConfig) (*StatsOutput, error) {
	o := &StatsOutput{cfg: cfg, version: BuildVersion()}
	if cfg.Path == "-" {
		o.w = cfg.Stdout
		if o.w == nil {
			o.w = os.Stdout
		}
		return o, nil
	}
	if cfg.Path == "" {
		return nil, fmt.Errorf("%w: no path", ErrStatsOutput)
	}
	fail := func(err error) (*StatsOutput, error) {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrStatsOutput, cfg.Path, err)
	}
	inPlace, err := writtenInPlace(cfg.Path)
	switch {
	case err != nil:
		return fail(err)
	case inPlace || cfg.Interval > 0:
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if inPlace {
			flags = os.O_WRONLY | os.O_APPEND
		}
		f, err := os.OpenFile(cfg.Path, flags, 0o644)
		if err != nil {
			return fail(err)
		}
		o.w, o.file = f, f
	default:
		// Written at the end, beside the path and renamed onto it: make
		// sure now that a file can be created there, and leave nothing
		// (a run killed before its end leaves no temporary file).
		f, err := os.CreateTemp(filepath.Dir(cfg.Path), ".stats-*")
		if err != nil {
			return fail(fmt.Errorf("cannot create a file in %s: %w", filepath.Dir(cfg.Path), errors.Unwrap(err)))
		}
		f.Close()
		os.Remove(f.Name())
		o.replace = true
	}
	return o, nil
}

// Close releases the output; records already written stay. Close is
// idempotent.
func (o *StatsOutput) Close() error {
	if o == nil || o.file == nil {
		return nil
	}
	err := o.file.Close()
	o.file = nil
	return err
}

// head returns the head of a record of the given type.
func (o *StatsOutput) head(typ string, now time.Time, elapsed, interval time.Duration) StatsHead {
	return StatsHead{Type: typ, Final: typ == "final", Time: now.UTC().Format(StatsTimeFormat),
		ElapsedNanos: int64(elapsed), IntervalNanos: int64(interval), Version: o.version, Settings: o.cfg.Settings}
}

// writeLine writes b and a newline in one write; after an error it
// writes nothing more.
func (o *StatsOutput) writeLine(b []byte) {
	if o.err != nil {
		return
	}
	if _, err := o.w.Write(append(b, '\n')); err != nil {
		o.err = fmt.Errorf("writing statistics to %s: %w", o.cfg.Path, err)
	}
}

// StatsRun is the statistics of one command run: the interval records and
// the final one. A nil *StatsRun does nothing.
type StatsRun struct {
	out    *StatsOutput
	start  time.Time
	last   time.Time
	d      *deltas // send's and recv's records: their running totals
	ticker *ticker
}

// Begin starts a run. With an interval, a goroutine calls record every
// interval until Stop or Finish, and writes what it returns: an object
// that carries the head it is given (embedding StatsHead) and the
// interval's figures. record must be safe to call from that goroutine.
func (o *StatsOutput) Begin(record func(StatsHead) any) *StatsRun {
	if o == nil {
		return nil
	}
	now := time.Now()
	r := &StatsRun{out: o, start: now, last: now}
	if o.cfg.Interval > 0 && record != nil {
		r.ticker = startTicker(o.cfg.Interval, func() { r.interval(record) })
	}
	return r
}

// begin starts a run of send's or recv's records, from snap.
func (o *StatsOutput) begin(snap func() sample) *StatsRun {
	d := new(deltas)
	r := o.Begin(func(h StatsHead) any {
		rec := &StatsRecord{StatsHead: h}
		d.next(&rec.EndpointStats, snap())
		return rec
	})
	if r != nil {
		r.d = d // read by finish only, after the goroutine has stopped
	}
	return r
}

// interval writes one interval record.
func (r *StatsRun) interval(record func(StatsHead) any) {
	now := time.Now()
	h := r.out.head("interval", now, now.Sub(r.start), now.Sub(r.last))
	r.last = now
	b, err := json.Marshal(record(h))
	if err != nil {
		r.out.err = err
		return
	}
	r.out.writeLine(b)
}

// Stop ends the interval records, if not yet ended; it is idempotent.
func (r *StatsRun) Stop() {
	if r != nil {
		r.ticker.stop()
		r.ticker = nil
	}
}

func (r *StatsRun) stop() { r.Stop() }

// finish is Finish for send's and recv's records.
func (r *StatsRun) finish(s sample, full any) error {
	if r == nil {
		return nil
	}
	return r.Finish(func(h StatsHead) any {
		rec := &StatsRecord{StatsHead: h}
		r.d.next(&rec.EndpointStats, s)
		return rec
	}, full)
}

// Finish stops the interval records and writes the final one: what record
// returns for the final head, with the members of full (if not nil)
// beside its own. Without an interval the object is indented; with one it
// is the last line. It returns the first write error of the run, and
// completes a final-only file (renaming it into place).
func (r *StatsRun) Finish(record func(StatsHead) any, full any) error {
	if r == nil {
		return nil
	}
	r.Stop()
	o := r.out
	now := time.Now()
	h := o.head("final", now, now.Sub(r.start), now.Sub(r.last))
	b, err := mergeJSON(record(h), full)
	if err != nil {
		return err
	}
	if o.cfg.Interval <= 0 {
		var ind bytes.Buffer
		if err := json.Indent(&ind, b, "", "  "); err != nil {
			return err
		}
		b = ind.Bytes()
	}
	if o.replace {
		if err := replaceFile(o.cfg.Path, append(b, '\n')); err != nil {
			return fmt.Errorf("writing statistics: %w", err)
		}
		return nil
	}
	o.writeLine(b)
	if o.err != nil {
		return o.err
	}
	if o.file != nil {
		if err := o.file.Close(); err != nil {
			return fmt.Errorf("writing statistics to %s: %w", o.cfg.Path, err)
		}
		o.file = nil
	}
	return nil
}

// mergeJSON encodes a and b, both JSON objects, as one object holding the
// members of a, then those of b. The two must not share a member name
// (the statistics types and StatsRecord do not; a test checks).
func mergeJSON(a, b any) ([]byte, error) {
	ja, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return ja, nil
	}
	jb, err := json.Marshal(b)
	if err != nil {
		return nil, err
	}
	if len(ja) < 2 || ja[0] != '{' || len(jb) < 2 || jb[0] != '{' {
		return nil, fmt.Errorf("merging statistics: %T or %T is not a JSON object", a, b)
	}
	if len(jb) == 2 { // {}
		return ja, nil
	}
	out := make([]byte, 0, len(ja)+len(jb))
	out = append(out, ja[:len(ja)-1]...)
	if len(ja) > 2 {
		out = append(out, ',')
	}
	return append(out, jb[1:]...), nil
}

// versioned is the head every JSON document of the command starts with.
type versioned struct {
	Version  Version           `json:"version"`
	Settings map[string]string `json:"settings,omitempty"`
}

// EncodeJSON writes v (a value encoding as a JSON object) to w as
// indented JSON, led by the build's "version" and, if given, the
// command's effective "settings": the form of every JSON document the
// command prints.
func EncodeJSON(w io.Writer, v any, settings map[string]string) error {
	b, err := mergeJSON(versioned{Version: BuildVersion(), Settings: settings}, v)
	if err != nil {
		return err
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", "  "); err != nil {
		return err
	}
	ind.WriteByte('\n')
	_, err = w.Write(ind.Bytes())
	return err
}

// writeJSON writes v (a JSON object) as indented JSON to path, led by the
// build's "version". A regular file is replaced atomically: a reader never
// sees a half-written file. "-" writes to the process's standard output.
func writeJSON(path string, v any) error { return writeJSONWith(path, v, nil) }

// writeJSONWith is writeJSON with the command's effective settings too.
func writeJSONWith(path string, v any, settings map[string]string) error {
	b, err := mergeJSON(versioned{Version: BuildVersion(), Settings: settings}, v)
	if err != nil {
		return err
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", "  "); err != nil {
		return err
	}
	ind.WriteByte('\n')
	if path == "-" {
		_, err := os.Stdout.Write(ind.Bytes())
		return err
	}
	if inPlace, err := writtenInPlace(path); err != nil {
		return err
	} else if inPlace {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.Write(ind.Bytes())
		return errors.Join(err, f.Close())
	}
	return replaceFile(path, ind.Bytes())
}

// replaceFile writes data to a new file beside path and renames it onto
// path, so that a reader sees the old content or the new, never a part.
func replaceFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".stats-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
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
		return err
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

// writtenInPlace says how an output path is written: a new file or an
// existing regular file is replaced (false); an existing symbolic link,
// FIFO or device (/dev/stderr, /dev/fd/3, a named pipe) is opened and
// appended to in place (true), so that neither the link nor what a file
// descriptor alias points at is replaced. A directory is an error.
func writtenInPlace(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.Mode().IsRegular():
		return false, nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return false, errors.New("is a directory")
	}
	return true, nil
}

// CheckWritable reports, with an error wrapping ErrStatsOutput, whether a
// JSON document could be written to path at the end of a run as writeJSON
// does ("-" always can). It leaves nothing behind, so commands call it at
// start for outputs they write later.
func CheckWritable(path string) error {
	if path == "-" {
		return nil
	}
	if inPlace, err := writtenInPlace(path); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrStatsOutput, path, err)
	} else if inPlace {
		return nil // opening a FIFO now could block
	}
	out, err := OpenStats(StatsConfig{Path: path})
	if err != nil {
		return err
	}
	return out.Close()
}

// openStatsOption returns out if set, else opens path as a final-only
// output (nil for no path). The caller closes what it gets.
func openStatsOption(out *StatsOutput, path string) (*StatsOutput, error) {
	if out != nil || path == "" {
		return out, nil
	}
	return OpenStats(StatsConfig{Path: path})
}
