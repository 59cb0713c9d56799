package wireshark

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/tools/capture"
)

// tshark returns the path of tshark, or skips.
func tshark(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not on PATH (Debian: apt-get install tshark; .ci/run installs it)")
	}
	return p
}

// frame is one captured datagram.
type frame struct {
	src, dst netip.AddrPort
	b        []byte
}

// writePcap writes frames into a pcap file in dir.
func writePcap(t *testing.T, dir string, frames []frame) string {
	t.Helper()
	path := filepath.Join(dir, "telewire.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := capture.NewWriter(f, capture.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_800_000_000, 0)
	for i, fr := range frames {
		if err := w.WriteDatagram(capture.Datagram{Time: at.Add(time.Duration(i) * time.Millisecond), Src: fr.src, Dst: fr.dst, Payload: fr.b}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// fieldType is the table's type of each display field, for normalising
// what tshark prints.
func fieldTypes() map[string]string {
	m := map[string]string{}
	for _, f := range allFields() {
		m["telewire."+f.Abbrev] = f.Type
	}
	for _, f := range allFlags() {
		m["telewire."+f.Abbrev] = "bool"
	}
	m["telewire.crc.status"] = "string"
	return m
}

// expertFields are the expert infos the dissector raises, as filter names.
// Those of group Malformed also show as _ws.malformed.
var expertFields = []string{"telewire.bad_crc", "telewire.bad_length", "telewire.bad_field", "telewire.bad_flags", "telewire.bad_direction", "telewire.unknown_kind", "telewire.truncated", "telewire.bad_map"}

// decoded is what tshark shows of one frame: each field's values in
// canonical form (numbers in decimal, bytes in lower-case hex), and the
// expert infos present.
type decoded struct {
	fields  map[string][]string
	experts []string
	proto   string
	info    string
}

// runTshark decodes path with the dissector and returns each frame's
// telewire fields.
func runTshark(t *testing.T, path string) []decoded {
	t.Helper()
	types := fieldTypes()
	var names []string
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	names = append(names, expertFields...)
	names = append(names, "_ws.malformed", "_ws.col.Protocol", "_ws.col.Info", "_ws.expert.message")
	args := []string{"-r", path, "-X", "lua_script:telewire.lua", "-o", "udp.try_heuristic_first:TRUE",
		"-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"}
	for _, n := range names {
		args = append(args, "-e", n)
	}
	cmd := exec.Command(tshark(t), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "Lua") || strings.Contains(s, "lua") {
		t.Fatalf("tshark reports a Lua problem:\n%s", s)
	}
	var frames []decoded
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != len(names) {
			t.Fatalf("tshark printed %d columns, want %d: %q", len(cols), len(names), sc.Text())
		}
		d := decoded{fields: map[string][]string{}}
		for i, n := range names {
			if cols[i] == "" {
				continue
			}
			switch {
			case n == "_ws.col.Protocol":
				d.proto = cols[i]
			case n == "_ws.col.Info":
				d.info = cols[i]
			case n == "_ws.expert.message":
				if strings.Contains(cols[i], "Lua Error") {
					t.Errorf("frame %d: the dissector failed: %s", len(frames)+1, cols[i])
				}
			case strings.HasPrefix(n, "_ws.") || types[n] == "":
				d.experts = append(d.experts, n)
			default:
				for _, v := range strings.Split(cols[i], "|") {
					d.fields[n] = append(d.fields[n], canonical(t, types[n], v))
				}
			}
		}
		frames = append(frames, d)
	}
	return frames
}

// canonical normalises a value tshark printed.
func canonical(t *testing.T, typ, v string) string {
	switch typ {
	case "bytes":
		return strings.ToLower(strings.ReplaceAll(v, ":", ""))
	case "bool":
		switch strings.ToLower(v) {
		case "1", "true":
			return "1"
		case "0", "false":
			return "0"
		}
	case "int64":
		n, err := strconv.ParseInt(v, 0, 64)
		if err != nil {
			t.Fatalf("int64 field value %q: %v", v, err)
		}
		return strconv.FormatInt(n, 10)
	case "string":
		return v
	default:
		n, err := strconv.ParseUint(v, 0, 64)
		if err != nil {
			t.Fatalf("%s field value %q: %v", typ, v, err)
		}
		return strconv.FormatUint(n, 10)
	}
	return v
}

// want builds the expected decoding of a frame from the code's own
// decoders: packet.Parse for a plain datagram; for a sealed one, its
// opener (which yields the counter) and packet.ParseBody.
type want map[string][]string

func (w want) set(name string, vals ...any) {
	for _, v := range vals {
		var s string
		switch x := v.(type) {
		case []byte:
			s = hex.EncodeToString(x)
		case int64:
			s = strconv.FormatInt(x, 10)
		case bool:
			s = map[bool]string{true: "1", false: "0"}[x]
		case string:
			s = x
		default:
			s = fmt.Sprint(x)
		}
		w["telewire."+name] = append(w["telewire."+name], s)
	}
}

func header(w want, b []byte) {
	w.set("magic", packet.Magic)
	w.set("version", b[2])
	w.set("kind", b[3])
	w.set("flags", b[4])
	w.set("envelope", b[5])
	w.set("length", len(b))
	w.set("session", binary.BigEndian.Uint64(b[8:]))
	w.set("stream", binary.BigEndian.Uint32(b[16:]))
}

// layoutOf returns the layout of kind k.
func layoutOf(t *testing.T, k uint8) Layout {
	t.Helper()
	for _, l := range Layouts {
		if l.Kind == k {
			return l
		}
	}
	t.Fatalf("no layout for kind %d", k)
	return Layout{}
}

// bodyWant sets the expected fields of the body of p (the clear bytes
// b[:stop]).
func bodyWant(w want, p *packet.Packet, b []byte, stop int) {
	l := Layout{}
	for _, x := range Layouts {
		if x.Kind == uint8(p.Kind) {
			l = x
		}
	}
	for _, fl := range l.Flags {
		w.set(fl.Abbrev, uint8(p.Flags)&fl.Mask != 0)
	}
	opt, _ := present(l, p.Flags)
	for _, f := range append(append([]Field{}, l.Fields...), opt...) {
		switch {
		case f.Go == "" && f.Abbrev == l.CountAbbrev:
			w.set(f.Abbrev, len(p.Ranges))
		case f.Go == "":
			w.set(f.Abbrev, readField(b[:stop], 0, f))
		case f.Type == "bytes":
			if v := asWire(goValue(p, f.Go)).([]byte); len(v) > 0 {
				w.set(f.Abbrev, v)
			}
		case f.Type == "int64":
			w.set(f.Abbrev, goValue(p, f.Go).Int())
		default:
			w.set(f.Abbrev, goValue(p, f.Go).Uint())
		}
	}
	for _, r := range p.Ranges {
		for _, f := range l.Range {
			w.set(f.Abbrev, goValue(r, f.Go).Uint())
		}
	}
	if p.Kind == packet.KindData && uint8(p.Flags)&Map.Flag != 0 {
		mapWant(w, p)
	}
}

// mapWant sets the expected fields of the message map of p, a DATA
// flagged FlagMessages, as package packet's own readers decode it: the
// Messages iterator for whole messages, ParseFragment for a fragment.
func mapWant(w want, p *packet.Packet) {
	w.set(Map.Byte.Abbrev, p.Payload[0])
	switch p.Payload[0] {
	case packet.MapMessages:
		var m packet.Messages
		if err := m.Init(p.Payload, p.Timestamp); err != nil {
			panic(fmt.Sprintf("test DATA's message map: %v", err)) // plainWant parsed it: cannot happen
		}
		w.set(Map.Messages.Fields[0].Abbrev, m.Count())
		for i := 0; ; i++ {
			ts, msg, ok := m.Next()
			if !ok {
				break
			}
			w.set(Map.EntryIndex.Abbrev, i)
			w.set(Map.EntryLen.Abbrev, len(msg))
			if d := ts - p.Timestamp; d != 0 {
				w.set(Map.EntryDelta.Abbrev, d)
			}
			if len(msg) > 0 {
				w.set(Map.EntryData.Abbrev, msg)
			}
		}
	case packet.MapFragment:
		var f packet.Fragment
		if err := packet.ParseFragment(p.Payload, &f); err != nil {
			panic(fmt.Sprintf("test DATA's fragment: %v", err))
		}
		vals := map[string]any{"length": f.Length, "offset": f.Offset, "index": f.Index, "piece": f.Data}
		for _, fd := range Map.Fragment.Fields {
			w.set(fd.Abbrev, vals[strings.TrimPrefix(fd.Abbrev, "data.frag.")])
		}
		w.set(Map.PieceLen.Abbrev, len(f.Data))
	}
}

// plainWant is the expected decoding of a valid plain datagram.
func plainWant(t *testing.T, b []byte) want {
	t.Helper()
	var p packet.Packet
	if err := p.Parse(b); err != nil {
		t.Fatalf("test datagram does not parse: %v", err)
	}
	w := want{}
	header(w, b)
	w.set("crc", binary.BigEndian.Uint32(b[20:]))
	w.set("crc.status", "Good")
	bodyWant(w, &p, b, len(b))
	return w
}

// handshakeWant is the expected decoding of a HELLO, WELCOME or RETRY in
// seal's envelope, made under key: HELLO and RETRY are authenticated by
// the seal package (a WELCOME only by the Initiation it answers, which
// the test does not have: its key id, body and place in the capture are
// checked instead).
func handshakeWant(t *testing.T, key *seal.Key, b []byte) want {
	t.Helper()
	hs := key.NewHandshaker(nil)
	h, err := packet.PeekHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	switch h.Kind {
	case packet.KindHello:
		if _, _, err := hs.OpenHello(b); err != nil {
			t.Fatalf("HELLO does not authenticate: %v", err)
		}
	case packet.KindRetry:
		if _, _, _, err := hs.OpenRetry(b); err != nil {
			t.Fatalf("RETRY does not authenticate: %v", err)
		}
	}
	if id := binary.BigEndian.Uint32(b[20:]); id != key.ID() {
		t.Fatalf("%s carries key id %#x, the key's is %#x", h.Kind, id, key.ID())
	}
	var p packet.Packet
	if err := p.ParseBody(h, b[packet.HeaderLen:len(b)-MACLen]); err != nil {
		t.Fatalf("%s body does not parse: %v", h.Kind, err)
	}
	w := want{}
	header(w, b)
	w.set("key_id", key.ID())
	bodyWant(w, &p, b, len(b)-MACLen)
	w.set("mac", b[len(b)-MACLen:])
	return w
}

// sealedWant is the expected decoding of a valid sealed datagram: what
// seal.Peek reads of its clear part and, with the traffic keys (tr not
// nil), that it opens with the counter Peek read and its body parses.
// Without them (a real transfer: the handshake's ephemeral keys are gone,
// that is the point) Peek alone is the reference.
func sealedWant(t *testing.T, tr *seal.Traffic, b []byte) want {
	t.Helper()
	in, err := seal.Peek(b)
	if err != nil {
		t.Fatalf("sealed datagram does not peek: %v", err)
	}
	if tr != nil {
		o, err := tr.NewOpener(seal.Params{Session: in.Session, Dir: in.Dir})
		if err != nil {
			t.Fatal(err)
		}
		body, ctr, err := o.Open(nil, b)
		if err != nil {
			t.Fatalf("sealed test datagram does not open: %v", err)
		}
		h, _ := packet.PeekHeader(b)
		var pk packet.Packet
		if err := pk.ParseBody(h, body); err != nil {
			t.Fatalf("sealed body does not parse: %v", err)
		}
		if ctr != in.Counter || in.KeyID != tr.Tag() {
			t.Fatalf("Peek read counter %d tag %#x, Open %d, keys %#x", in.Counter, in.KeyID, ctr, tr.Tag())
		}
	}
	w := want{}
	header(w, b)
	w.set("key_tag", in.KeyID)
	w.set("sealed.counter", in.Counter)
	pre := packet.HeaderLen + in.Dir.PrefixLen()
	if n := len(b) - TagLen - pre; n > 0 {
		w.set("sealed.body", b[pre:len(b)-TagLen])
	}
	w.set("sealed.tag", b[len(b)-TagLen:])
	for _, fl := range layoutOf(t, uint8(in.Kind)).Flags {
		w.set(fl.Abbrev, b[4]&fl.Mask != 0)
	}
	return w
}

// envelopeWant is the expected decoding of a datagram in seal's envelope.
func envelopeWant(t *testing.T, key *seal.Key, tr *seal.Traffic, b []byte) want {
	t.Helper()
	if layoutOf(t, b[3]).MAC {
		return handshakeWant(t, key, b)
	}
	return sealedWant(t, tr, b)
}

// handshake runs a handshake under key and returns its messages, the
// traffic keys, and the responder's handshaker.
func handshake(t *testing.T, key *seal.Key, session uint64) (hello, welcome []byte, tr *seal.Traffic, resp *seal.Handshaker) {
	t.Helper()
	ini := key.NewHandshaker(nil)
	resp = key.NewHandshaker(nil)
	in, err := ini.Initiate(session, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	welcome, _, err = resp.Respond(nil, in.Hello())
	if err != nil {
		t.Fatal(err)
	}
	if tr, err = ini.Finish(in, welcome); err != nil {
		t.Fatal(err)
	}
	return in.Hello(), welcome, tr, resp
}

// check compares tshark's decoding with the expected one, field by field.
func check(t *testing.T, i int, got decoded, w want) {
	t.Helper()
	if got.proto != "telewire" {
		t.Errorf("frame %d: protocol column %q, not telewire", i+1, got.proto)
	}
	if len(got.experts) > 0 {
		t.Errorf("frame %d (%s): expert info %v on a valid datagram", i+1, w["telewire.kind"], got.experts)
	}
	// The info column: the kind, the envelope, and the layout's info
	// fields as the tree shows them.
	kind, _ := strconv.Atoi(w["telewire.kind"][0])
	l := layoutOf(t, uint8(kind))
	prefix := l.Name
	for _, e := range Envelopes {
		if w["telewire.envelope"][0] == strconv.Itoa(int(e.Value)) {
			prefix += " [" + e.Name + "]"
		}
	}
	if !strings.HasPrefix(got.info, prefix+" ") {
		t.Errorf("frame %d: info column %q does not start with %q", i+1, got.info, prefix)
	}
	for _, in := range l.InfoFields() {
		for _, v := range w["telewire."+in.Abbrev] {
			if in.Hex {
				n, _ := strconv.ParseUint(v, 10, 64)
				v = fmt.Sprintf("0x%0*x", 2*in.Size, n)
			}
			if !strings.Contains(got.info, " "+in.Label+"="+v+" ") {
				t.Errorf("frame %d: info column %q lacks %s=%s", i+1, got.info, in.Label, v)
			}
		}
	}
	// A decoded message map adds its summary: " msgs=N " or
	// " frag I @OFFSET/LENGTH ".
	if c := w["telewire."+Map.Messages.Fields[0].Abbrev]; len(c) == 1 && !strings.Contains(got.info, " msgs="+c[0]+" ") {
		t.Errorf("frame %d: info column %q lacks msgs=%s", i+1, got.info, c[0])
	}
	if fi := w["telewire."+Map.Fragment.Fields[2].Abbrev]; len(fi) == 1 {
		s := fmt.Sprintf(" frag %s @%s/%s ", fi[0], w["telewire."+Map.Fragment.Fields[1].Abbrev][0], w["telewire."+Map.Fragment.Fields[0].Abbrev][0])
		if !strings.Contains(got.info, s) {
			t.Errorf("frame %d: info column %q lacks %q", i+1, got.info, s)
		}
	}
	if !reflect.DeepEqual(map[string][]string(w), got.fields) {
		for k, v := range w {
			if !reflect.DeepEqual(v, got.fields[k]) {
				t.Errorf("frame %d: %s = %v, want %v", i+1, k, got.fields[k], v)
			}
		}
		for k, v := range got.fields {
			if _, ok := w[k]; !ok {
				t.Errorf("frame %d: unexpected field %s = %v", i+1, k, v)
			}
		}
	}
}

var (
	senderAddr   = netip.MustParseAddrPort("127.0.0.1:40001")
	receiverAddr = netip.MustParseAddrPort("127.0.0.1:40002")
)

// mappedData returns DATA packets whose payloads carry message maps:
// packed messages (with and without send-time deltas, negative and
// large ones, an empty message) and fragments (first, middle, last).
func mappedData(t *testing.T) [][]byte {
	t.Helper()
	type msg struct {
		delta int64
		b     string
	}
	var payloads [][]byte
	for _, msgs := range [][]msg{
		{{0, "first"}, {1500, "second"}, {-7, ""}, {1 << 40, strings.Repeat("x", 200)}, {-(1 << 62), "last"}},
		{{0, strings.Repeat("y", 130)}},
		{{64, "a"}, {-64, "b"}, {math.MaxInt64, "ten-byte delta"}, {math.MinInt64, "and its negative"}},
	} {
		b := packet.AppendMessagesHeader(nil, uint16(len(msgs)))
		for _, m := range msgs {
			b = packet.AppendEntry(b, m.delta, []byte(m.b))
		}
		payloads = append(payloads, b)
	}
	for _, f := range []packet.Fragment{
		{Length: 100000, Offset: 0, Index: 0, Data: bytes.Repeat([]byte{1}, 1200)},
		{Length: 100000, Offset: 2400, Index: 2, Data: bytes.Repeat([]byte{2}, 1200)},
		{Length: 100000, Offset: 99900, Index: 84, Data: bytes.Repeat([]byte{3}, 100)},
	} {
		payloads = append(payloads, packet.AppendFragment(nil, &f))
	}
	var out [][]byte
	for i, pl := range payloads {
		p := &packet.Packet{Header: packet.Header{Kind: packet.KindData, Flags: packet.FlagMessages, Session: 0x0102030405060708, Stream: 3},
			Seq: uint64(5 + i), Timestamp: 1_000_000_007 * int64(i+1), Payload: pl}
		if i == 1 {
			p.Flags |= packet.FlagRetransmit | packet.FlagProtected
		}
		b, err := p.AppendTo(nil)
		if err != nil {
			t.Fatalf("mapped DATA %d: %v", i, err)
		}
		out = append(out, b)
	}
	return out
}

// TestTsharkEveryKind decodes datagrams of every kind and flag set, plain
// and in seal's envelope in each direction the kind travels, made by the
// code's encoders and a real handshake, and checks every field; then
// corrupted ones, which must raise expert info.
func TestTsharkEveryKind(t *testing.T) {
	tshark(t)
	key, err := seal.NewKey(bytes.Repeat([]byte{7}, seal.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	const session = 0x0102030405060708
	hello, welcome, tr, resp := handshake(t, key, session)
	retry := resp.AppendRetry(nil, session, 0xdeadbeef, 42)
	var frames []frame
	var wants []want
	sealer := map[seal.Direction]*seal.Sealer{}
	for _, d := range []seal.Direction{seal.ToReceiver, seal.ToSender} {
		if sealer[d], err = tr.NewSealer(seal.Params{Session: session, Dir: d}, 1<<40); err != nil {
			t.Fatal(err)
		}
	}
	sealed := map[packet.Kind]map[seal.Direction][]byte{} // the first (no flags) of each, for the corruption cases
	for _, l := range Layouts {
		for _, fs := range flagSets(l) {
			_, b := encoded(t, l, fs)
			frames = append(frames, frame{senderAddr, receiverAddr, b})
			wants = append(wants, plainWant(t, b))
			if l.MAC {
				continue
			}
			for _, d := range l.Dirs {
				s, err := sealer[seal.Direction(d)].Seal(nil, b[:packet.HeaderLen], b[packet.HeaderLen:])
				if err != nil {
					t.Fatal(err)
				}
				frames = append(frames, frame{receiverAddr, senderAddr, s})
				wants = append(wants, sealedWant(t, tr, s))
				if sealed[packet.Kind(l.Kind)] == nil {
					sealed[packet.Kind(l.Kind)] = map[seal.Direction][]byte{}
				}
				if sealed[packet.Kind(l.Kind)][seal.Direction(d)] == nil {
					sealed[packet.Kind(l.Kind)][seal.Direction(d)] = s
				}
			}
		}
	}
	for _, m := range [][]byte{hello, welcome, retry} {
		frames = append(frames, frame{senderAddr, receiverAddr, m})
		wants = append(wants, handshakeWant(t, key, m))
	}
	// An empty DATA payload is valid and shows no payload field.
	empty, _ := (&packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 9}, Seq: 1}).AppendTo(nil)
	frames = append(frames, frame{senderAddr, receiverAddr, empty})
	wants = append(wants, plainWant(t, empty))
	// DATA with message maps: packed messages and fragments, plain (the
	// map decoded field by field) and sealed (the map encrypted, so not
	// shown).
	for _, b := range mappedData(t) {
		frames = append(frames, frame{senderAddr, receiverAddr, b})
		wants = append(wants, plainWant(t, b))
		s, err := sealer[seal.ToReceiver].Seal(nil, b[:packet.HeaderLen], b[packet.HeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, frame{senderAddr, receiverAddr, s})
		wants = append(wants, sealedWant(t, tr, s))
	}

	dir := t.TempDir()
	got := runTshark(t, writePcap(t, dir, frames))
	if len(got) != len(frames) {
		t.Fatalf("tshark decoded %d frames, wrote %d", len(got), len(frames))
	}
	for i := range frames {
		check(t, i, got[i], wants[i])
	}
	t.Logf("%d valid datagrams decoded, every field as the encoders wrote it", len(frames))

	// Corrupted datagrams: each must raise the named expert info.
	_, data := encoded(t, layoutOf(t, 1), packet.FlagRetransmit)
	_, nack := encoded(t, layoutOf(t, 3), 0)
	_, report := encoded(t, layoutOf(t, 4), 0)
	_, heartbeat := encoded(t, layoutOf(t, 5), 0)
	sealedReport := sealed[packet.KindReport][seal.ToSender]
	sealedHeartbeat := sealed[packet.KindHeartbeat][seal.ToReceiver]
	bad := []struct {
		name   string
		b      []byte
		expert string
	}{
		{"payload bit flipped", flip(data, len(data)-1), "telewire.bad_crc"},
		{"stream changed", flip(data, 17), "telewire.bad_crc"},
		{"length field too large", setU16(data, 6, uint16(len(data)+4)), "telewire.bad_length"},
		{"REPORT one byte short", resealed(report[:len(report)-1]), "telewire.bad_length"},
		{"REPORT flagged with a challenge it lacks", resealed(setU8(report, 4, uint8(packet.FlagChallenge))), "telewire.bad_length"},
		{"HEARTBEAT flagged with an answer it lacks", resealed(setU8(heartbeat, 4, uint8(packet.FlagAnswer))), "telewire.bad_length"},
		{"NACK flagged with a proof it lacks", resealed(setU8(nack, 4, uint8(packet.FlagProof))), "telewire.bad_length"},
		{"NACK count disagrees with ranges", resealed(setU16(nack, 24, 3)), "telewire.bad_length"},
		{"NACK with no ranges", resealed(setU16(nack[:28], 24, 0)), "telewire.bad_field"},
		{"NACK reserved bytes set", resealed(setU8(nack, 27, 1)), "telewire.bad_field"},
		{"undefined flag bit", resealed(setU8(data, 4, 0x80)), "telewire.bad_flags"},
		{"reserved kind", resealed(setU8(report, 3, 200)), "telewire.unknown_kind"},
		{"sealed REPORT flagged with a challenge its body lacks", setU8(sealedReport, 4, uint8(packet.FlagChallenge)), "telewire.bad_length"},
		{"sealed HEARTBEAT towards the sender", setU8(sealedHeartbeat, 5, uint8(seal.ToSender)), "telewire.bad_direction"},
		{"HELLO towards the sender", setU8(hello, 5, uint8(seal.ToSender)), "telewire.bad_direction"},
		{"WELCOME one byte short", setU16(welcome[:len(welcome)-1], 6, uint16(len(welcome)-1)), "telewire.bad_length"},
		{"RETRY reserved bytes set", setU8(retry, 31, 1), "telewire.bad_field"},
		{"sealed datagram shorter than counter and tag", setU16(sealedHeartbeat[:40], 6, 40), "telewire.bad_length"},
	}
	// Damaged message maps (length and CRC fixed: only the map is wrong).
	mapped := mappedData(t)
	packed, frag := mapped[0], mapped[4]
	withPayload := func(pl ...byte) []byte {
		return resealed(append(bytes.Clone(packed[:packet.HeaderLen+packet.DataHeaderLen]), pl...))
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"packed DATA counting more messages than it carries", resealed(setU16(packed, 41, 6))},
		{"packed DATA counting fewer messages than it carries", resealed(setU16(packed, 41, 4))},
		{"packed DATA counting no messages", withPayload(packet.MapMessages, 0, 0)},
		{"packed DATA cut inside a message", resealed(packed[:len(packed)-2])},
		{"entry length varint not in its shortest form", withPayload(packet.MapMessages, 0, 1, 0x82, 0x00, 'a')},
		{"send-time delta varint not in its shortest form", withPayload(packet.MapMessages, 0, 1, 0x03, 0x82, 0x00, 'a')},
		{"send-time delta 0 written out", withPayload(packet.MapMessages, 0, 1, 0x03, 0x00, 'a')},
		{"entry length varint truncated", withPayload(packet.MapMessages, 0, 1, 0x82)},
		{"entry length varint longer than 64 bits", withPayload(append([]byte{packet.MapMessages, 0, 1}, bytes.Repeat([]byte{0xff}, 11)...)...)},
		{"unknown map byte", withPayload(2, 0, 1, 0x02, 'a')},
		{"flagged DATA with an empty payload", withPayload()},
		{"fragment header cut short", resealed(frag[:packet.HeaderLen+packet.DataHeaderLen+packet.FragmentHeaderLen])},
		{"fragment past the end of its message", resealed(setU32(frag, 45, 99950))},
		{"fragment of a message longer than the limit", resealed(setU32(frag, 41, packet.MaxMessageLimit+1))},
		{"later fragment at offset 0", resealed(setU32(frag, 45, 0))},
		{"first fragment past offset 0", resealed(setU32(frag, 49, 0))},
		{"fragment index above its offset", resealed(setU32(setU32(frag, 45, 1), 49, 2))},
	} {
		var p packet.Packet
		if err := p.Parse(c.b); !errors.Is(err, packet.ErrBadMap) {
			t.Fatalf("%s: packet.Parse says %v, not ErrBadMap: the case is not a damaged map", c.name, err)
		}
		bad = append(bad, struct {
			name   string
			b      []byte
			expert string
		}{c.name, c.b, "telewire.bad_map"})
	}
	frames = frames[:0]
	for _, c := range bad {
		frames = append(frames, frame{senderAddr, receiverAddr, c.b})
	}
	badPcap := writePcap(t, t.TempDir(), frames)
	if out := os.Getenv("TELEWIRE_BAD_PCAP"); out != "" {
		b, _ := os.ReadFile(badPcap)
		os.WriteFile(out, b, 0o644)
	}
	got = runTshark(t, badPcap)
	if len(got) != len(bad) {
		t.Fatalf("tshark decoded %d corrupted frames, wrote %d", len(got), len(bad))
	}
	for i, c := range bad {
		if !contains(got[i].experts, c.expert) {
			t.Errorf("%s: experts %v, want %s", c.name, got[i].experts, c.expert)
		}
		if c.expert != "telewire.bad_crc" && c.expert != "telewire.unknown_kind" && !contains(got[i].experts, "_ws.malformed") {
			t.Errorf("%s: not marked malformed: %v", c.name, got[i].experts)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x10
	return c
}

func setU8(b []byte, off int, v uint8) []byte {
	c := bytes.Clone(b)
	c[off] = v
	return c
}

func setU32(b []byte, off int, v uint32) []byte {
	c := bytes.Clone(b)
	binary.BigEndian.PutUint32(c[off:], v)
	return c
}

func setU16(b []byte, off int, v uint16) []byte {
	c := bytes.Clone(b)
	binary.BigEndian.PutUint16(c[off:], v)
	return c
}

// resealed fixes the length field and the CRC of a plain datagram, so
// that only the fault the test put in remains.
func resealed(b []byte) []byte {
	c := bytes.Clone(b)
	binary.BigEndian.PutUint16(c[6:], uint16(len(c)))
	crc := crc32c(c[:20], c[packet.HeaderLen:])
	binary.BigEndian.PutUint32(c[20:], crc)
	return c
}

// TestTsharkDamaged feeds the dissector every valid datagram of
// TestTsharkEveryKind's kinds cut short at every length (with the length
// field kept and with it rewritten to match) and with seeded random byte
// changes: whatever the bytes, tshark must decode each frame as telewire
// without a Lua error. (The dissector's checks on damage that the ends
// would see are TestTsharkEveryKind's corrupted cases; this is the
// robustness half, the dissector's fuzz test.)
func TestTsharkDamaged(t *testing.T) {
	tshark(t)
	key, err := seal.NewKey(bytes.Repeat([]byte{9}, seal.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	const session = 0x0102030405060708
	hello, welcome, tr, resp := handshake(t, key, session)
	valid := [][]byte{hello, welcome, resp.AppendRetry(nil, session, 1, 2)}
	for _, l := range Layouts {
		for _, fs := range flagSets(l) {
			_, b := encoded(t, l, fs)
			valid = append(valid, b)
			if !l.MAC {
				s, err := tr.NewSealer(seal.Params{Session: session, Dir: seal.Direction(l.Dirs[0])}, 0)
				if err != nil {
					t.Fatal(err)
				}
				sb, err := s.Seal(nil, b[:packet.HeaderLen], b[packet.HeaderLen:])
				if err != nil {
					t.Fatal(err)
				}
				valid = append(valid, sb)
			}
		}
	}
	mapped := mappedData(t)
	for _, b := range mapped {
		s, err := tr.NewSealer(seal.Params{Session: session, Dir: seal.ToReceiver}, 0)
		if err != nil {
			t.Fatal(err)
		}
		sb, err := s.Seal(nil, b[:packet.HeaderLen], b[packet.HeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		valid = append(valid, b, sb)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var frames []frame
	// Damage inside the message map only (header, length and CRC intact):
	// tshark must flag the map malformed exactly when packet.Parse
	// refuses it.
	badMap := map[int]bool{} // frame index -> packet.Parse says ErrBadMap
	for _, b := range mapped {
		payload := packet.HeaderLen + packet.DataHeaderLen
		var damaged [][]byte
		for n := payload; n < len(b); n += 1 + (n-payload)/8 {
			damaged = append(damaged, resealed(b[:n]))
		}
		for range 60 {
			c := bytes.Clone(b)
			for range 1 + rng.IntN(3) {
				i := payload + rng.IntN(min(len(c)-payload, 24)) // the map's headers are near the start
				if rng.IntN(3) == 0 {
					i = payload + rng.IntN(len(c)-payload)
				}
				c[i] = byte(rng.Uint32())
			}
			damaged = append(damaged, resealed(c))
		}
		for _, c := range damaged {
			var p packet.Packet
			err := p.Parse(c)
			if err != nil && !errors.Is(err, packet.ErrBadMap) {
				t.Fatalf("map damage made packet.Parse fail otherwise: %v", err)
			}
			badMap[len(frames)] = err != nil
			frames = append(frames, frame{senderAddr, receiverAddr, c})
		}
	}
	for _, b := range valid {
		for n := packet.HeaderLen; n < len(b); n += 1 + n/16 {
			frames = append(frames, frame{senderAddr, receiverAddr, b[:n]})
			frames = append(frames, frame{senderAddr, receiverAddr, setU16(b[:n], 6, uint16(n))})
		}
		for range 20 {
			c := bytes.Clone(b)
			for range 1 + rng.IntN(4) {
				c[rng.IntN(len(c))] = byte(rng.Uint32())
			}
			copy(c, b[:3]) // keep magic and version: the heuristic's part
			frames = append(frames, frame{senderAddr, receiverAddr, c})
		}
	}
	got := runTshark(t, writePcap(t, t.TempDir(), frames)) // fails on any Lua error
	if len(got) != len(frames) {
		t.Fatalf("tshark decoded %d frames, wrote %d", len(got), len(frames))
	}
	nbad := 0
	for i, d := range got {
		if d.proto != "telewire" {
			t.Errorf("frame %d (% x): protocol %q", i+1, frames[i].b, d.proto)
		}
		want, ok := badMap[i]
		if !ok {
			continue
		}
		if want {
			nbad++
		}
		if flagged := contains(d.experts, "telewire.bad_map"); flagged != want {
			t.Errorf("frame %d (payload % x): bad_map expert %v, packet.Parse refuses the map: %v (experts %v)", i+1, frames[i].b[packet.HeaderLen+packet.DataHeaderLen:], flagged, want, d.experts)
		}
		if other := slices.DeleteFunc(slices.Clone(d.experts), func(e string) bool { return e == "telewire.bad_map" || e == "_ws.malformed" }); len(other) > 0 {
			t.Errorf("frame %d: map damage raised %v", i+1, other)
		}
	}
	t.Logf("%d damaged datagrams decoded without a Lua error; %d with damage inside a message map, %d of them malformed, each flagged exactly as packet.Parse judges it", len(frames), len(badMap), nbad)
}
