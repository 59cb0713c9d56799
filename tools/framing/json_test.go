package framing

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

// jsonMessage is what AppendJSONMessage writes, as encoding/json reads it.
type jsonMessage struct {
	Type          string  `json:"type"`
	Source        string  `json:"source"`
	Session       string  `json:"session"`
	Stream        uint32  `json:"stream"`
	Seq           uint64  `json:"seq"`
	SentNanos     int64   `json:"sent_ns"`
	ReceiveNanos  int64   `json:"recv_ns"`
	Origin        string  `json:"origin"`
	Payload       *string `json:"payload"`
	PayloadBase64 *string `json:"payload_base64"`
}

// decodeOne decodes b, which must be exactly one JSON object and a newline,
// refusing fields the struct does not know.
func decodeOne(t testing.TB, b []byte, v any) {
	t.Helper()
	if len(b) == 0 || b[len(b)-1] != '\n' || bytes.IndexByte(b[:len(b)-1], '\n') >= 0 {
		t.Fatalf("not one line: %q", b)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	if dec.More() {
		t.Fatalf("%q: more than one value", b)
	}
}

// payloadOf returns the payload a decoded message carries.
func payloadOf(t testing.TB, m *jsonMessage) []byte {
	t.Helper()
	switch {
	case m.Payload != nil && m.PayloadBase64 == nil:
		return []byte(*m.Payload)
	case m.Payload == nil && m.PayloadBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*m.PayloadBase64)
		if err != nil {
			t.Fatalf("payload_base64: %v", err)
		}
		return b
	}
	t.Fatalf("want exactly one of payload and payload_base64: %+v", m)
	return nil
}

func TestJSONStringEscaping(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"l1\nl2\r\t\b\f", `"l1\nl2\r\t\b\f"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f" + `"`},
		{"héllo wörld ✓ 𝄞", `"héllo wörld ✓ 𝄞"`},
		{"bad \xff byte", `"bad \ufffd byte"`},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // a surrogate is not UTF-8
		{"\xc0\xaf", `"\ufffd\ufffd"`},           // overlong
		{"\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`},
		{"cut \xe2\x9c", `"cut \ufffd\ufffd"`},
		{"\u2028", "\"\u2028\""},
	}
	for _, c := range cases {
		if got := string(AppendJSONString(nil, c.in)); got != c.want {
			t.Errorf("%q: got %s, want %s", c.in, got, c.want)
		}
		if got := string(AppendJSONString(nil, []byte(c.in))); got != c.want {
			t.Errorf("%q as bytes: got %s", c.in, got)
		}
		var back string
		if err := json.Unmarshal(AppendJSONString(nil, c.in), &back); err != nil {
			t.Errorf("%q: %v", c.in, err)
		} else if utf8.ValidString(c.in) && back != c.in {
			t.Errorf("%q came back as %q", c.in, back)
		}
	}
}

// TestJSONStringEveryByte: each single byte, and each pair, encodes to
// JSON that encoding/json decodes, to the input when it is valid UTF-8.
func TestJSONStringEveryByte(t *testing.T) {
	var buf []byte
	for a := range 256 {
		for b := -1; b < 256; b++ {
			in := []byte{byte(a)}
			if b >= 0 {
				in = append(in, byte(b))
			}
			buf = AppendJSONString(buf[:0], in)
			var back string
			if err := json.Unmarshal(buf, &back); err != nil {
				t.Fatalf("%q -> %s: %v", in, buf, err)
			}
			if utf8.Valid(in) && back != string(in) {
				t.Fatalf("%q -> %s -> %q", in, buf, back)
			}
		}
	}
}

// TestUTF8LenMatchesStdlib: the validator agrees with unicode/utf8 on
// every 1- to 4-byte prefix shape that matters (random tails).
func TestUTF8LenMatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4)
	for i := range 1 << 20 {
		buf[0] = byte(0x80 + i%128)
		n := 1 + rng.IntN(4)
		for j := 1; j < n; j++ {
			buf[j] = byte(rng.Uint32())
			if rng.IntN(3) > 0 {
				buf[j] = 0x80 | buf[j]&0x3f
			}
		}
		s := buf[:n]
		r, size := utf8.DecodeRune(s)
		want := size
		if r == utf8.RuneError && size == 1 {
			want = 0
		}
		if got := utf8Len(s, 0); got != want {
			t.Fatalf("% x: utf8Len %d, utf8.DecodeRune size %d", s, got, want)
		}
	}
}

func TestJSONMessageRoundTrip(t *testing.T) {
	payloads := [][]byte{
		nil,
		[]byte("hello"),
		[]byte("line1\nline2 \"quoted\" \\ tab\t"),
		[]byte("ünïcödé ✓"),
		{0xff, 0x00, 0x10, '\n', 0x80},
		bytes.Repeat([]byte{0xc3}, 100),
	}
	meta := Meta{
		Source: netip.MustParseAddrPort("[fe80::1%eth0]:4000"), Session: 0x00a1b2c3d4e5f607, Stream: math.MaxUint32,
		Seq: math.MaxUint64, SentNanos: -5, ReceiveNanos: math.MaxInt64, Origin: "retransmit",
	}
	for _, p := range payloads {
		var m jsonMessage
		decodeOne(t, AppendJSONMessage(nil, &meta, p), &m)
		if m.Type != "message" || m.Source != "[fe80::1%eth0]:4000" || m.Session != "00a1b2c3d4e5f607" ||
			m.Stream != math.MaxUint32 || m.Seq != math.MaxUint64 || m.SentNanos != -5 ||
			m.ReceiveNanos != math.MaxInt64 || m.Origin != "retransmit" {
			t.Fatalf("metadata %+v", m)
		}
		if got := payloadOf(t, &m); !bytes.Equal(got, p) {
			t.Fatalf("payload %q came back as %q", p, got)
		}
		if utf8.Valid(p) != (m.Payload != nil) {
			t.Fatalf("payload %q: string field for valid UTF-8 only, base64 otherwise", p)
		}
	}
	// Without metadata, only the payload.
	var m jsonMessage
	decodeOne(t, AppendJSONMessage(nil, nil, []byte("x")), &m)
	if m.Type != "message" || string(payloadOf(t, &m)) != "x" || m.Source != "" {
		t.Fatalf("no metadata: %+v", m)
	}
}

func TestJSONGap(t *testing.T) {
	type jsonGap struct {
		Type         string `json:"type"`
		Source       string `json:"source"`
		Session      string `json:"session"`
		Stream       uint32 `json:"stream"`
		First        uint64 `json:"first"`
		Last         uint64 `json:"last"`
		Count        uint64 `json:"count"`
		Reason       string `json:"reason"`
		ReceiveNanos int64  `json:"recv_ns"`
	}
	g := Gap{Source: netip.MustParseAddrPort("127.0.0.1:9"), Session: 1, Stream: 2, First: 10, Last: 14, Reason: "deadline", ReceiveNanos: 77}
	var got jsonGap
	decodeOne(t, AppendJSONGap(nil, &g), &got)
	want := jsonGap{"gap", "127.0.0.1:9", "0000000000000001", 2, 10, 14, 5, "deadline", 77}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestWriterLineRefusesNewline(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, Line)
	for _, p := range []string{"a", "b\nc", "d", "e\n"} {
		err := w.Write([]byte(p))
		if strings.Contains(p, "\n") != errors.Is(err, ErrNewline) {
			t.Fatalf("%q: %v", p, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\nd\n" || w.Refused() != 2 {
		t.Fatalf("output %q, refused %d", out.String(), w.Refused())
	}
	// len32 and json carry newlines.
	for _, f := range []Framing{Len32, JSON} {
		w := NewWriter(&out, f)
		if err := w.Write([]byte("b\nc")); err != nil || w.Refused() != 0 {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

// countingWriter counts the Write calls it gets.
type countingWriter struct {
	bytes.Buffer
	calls int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.calls++
	return c.Buffer.Write(p)
}

// TestWriterHoldsUntilFlush: nothing reaches the underlying writer before
// Flush (one Write for the batch) unless the buffer passes the threshold.
func TestWriterHoldsUntilFlush(t *testing.T) {
	for _, f := range []Framing{Line, Len32, JSON} {
		var out countingWriter
		w := NewWriter(&out, f)
		for range 10 {
			if err := w.Write([]byte("msg")); err != nil {
				t.Fatal(err)
			}
		}
		if out.calls != 0 || w.Buffered() == 0 {
			t.Fatalf("%s: %d writes before Flush", f, out.calls)
		}
		if err := w.Flush(); err != nil || out.calls != 1 || w.Buffered() != 0 {
			t.Fatalf("%s: flush: %v, %d writes, %d buffered", f, err, out.calls, w.Buffered())
		}
		if err := w.Flush(); err != nil || out.calls != 1 {
			t.Fatalf("%s: an empty Flush wrote", f)
		}
		big := make([]byte, FlushThreshold)
		if err := w.Write(big); err != nil || out.calls != 2 || w.Buffered() != 0 {
			t.Fatalf("%s: past the threshold: %v, %d writes, %d buffered", f, err, out.calls, w.Buffered())
		}
	}
}

// failWriter takes n bytes, then fails.
type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	k := min(f.n, len(p))
	f.n -= k
	if k < len(p) {
		return k, errors.New("disk full")
	}
	return k, nil
}

func TestWriterKeepsWhatWasNotWritten(t *testing.T) {
	w := NewWriter(&failWriter{n: 3}, Line)
	w.Write([]byte("abcdef"))
	if err := w.Flush(); err == nil || w.Buffered() != 4 {
		t.Fatalf("err %v, %d buffered, want 4 (\"def\\n\")", err, w.Buffered())
	}
}

// TestWriterAllocatesNothing: per message, in every framing, once the
// buffer has grown.
func TestWriterAllocatesNothing(t *testing.T) {
	payload := []byte("a telemetry sample, 42.0 °C")
	binary := []byte{0xff, 0xfe, 1, 2, 3}
	meta := Meta{Source: netip.MustParseAddrPort("127.0.0.1:5000"), Session: 7, Seq: 1, Origin: "first"}
	gap := Gap{Source: meta.Source, First: 1, Last: 2, Reason: "deadline"}
	for _, f := range []Framing{Line, Len32, JSON} {
		w := NewWriter(discard{}, f)
		n := testing.AllocsPerRun(1000, func() {
			meta.Seq++
			w.WriteMessage(&meta, payload)
			w.WriteMessage(&meta, binary)
			w.WriteGap(&gap)
			w.Flush()
		})
		if n != 0 {
			t.Errorf("%s: %.1f allocations per message", f, n)
		}
	}
}

// discard is io.Discard without the io package's pooled ReadFrom.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkWriteJSON(b *testing.B) {
	payload := []byte("a telemetry sample, 42.0 °C, with \"quotes\"")
	meta := Meta{Source: netip.MustParseAddrPort("127.0.0.1:5000"), Session: 7, Origin: "first"}
	w := NewWriter(discard{}, JSON)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		meta.Seq++
		w.WriteMessage(&meta, payload)
	}
	w.Flush()
}

// FuzzJSONMessage: whatever the payload and metadata strings, the object
// decodes with encoding/json, and the payload comes back byte for byte.
func FuzzJSONMessage(f *testing.F) {
	f.Add([]byte("hello"), "first", uint64(1), int64(2))
	f.Add([]byte("a\nb\"c\\"), "fec", uint64(0), int64(-1))
	f.Add([]byte{0xff, 0xc0, 0x80}, "re\x00transmit", uint64(math.MaxUint64), int64(math.MinInt64))
	f.Add([]byte("\xed\xa0\x80 surrogate"), "\xff", uint64(5), int64(5))
	f.Fuzz(func(t *testing.T, payload []byte, origin string, seq uint64, ts int64) {
		meta := Meta{Source: netip.MustParseAddrPort("10.0.0.1:1"), Session: seq ^ 0x5555, Seq: seq, SentNanos: ts, ReceiveNanos: -ts, Origin: origin}
		var m jsonMessage
		decodeOne(t, AppendJSONMessage(nil, &meta, payload), &m)
		if got := payloadOf(t, &m); !bytes.Equal(got, payload) {
			t.Fatalf("payload %q came back as %q", payload, got)
		}
		if m.Seq != seq || m.SentNanos != ts || m.ReceiveNanos != -ts {
			t.Fatalf("numbers %+v", m)
		}
		if utf8.ValidString(origin) && m.Origin != origin {
			t.Fatalf("origin %q came back as %q", origin, m.Origin)
		}
		g := Gap{Source: meta.Source, First: seq, Last: seq + uint64(ts&0xff), Reason: origin}
		var back map[string]any
		decodeOne(t, AppendJSONGap(nil, &g), &back)
	})
}
