package wireshark

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

// TestLuaUpToDate: telewire.lua is what the table generates. If it fails,
// run go generate ./tools/wireshark.
func TestLuaUpToDate(t *testing.T) {
	have, err := os.ReadFile("telewire.lua")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, Lua()) {
		t.Fatal("telewire.lua differs from the layouts: run go generate ./tools/wireshark")
	}
}

// docRow is one row of a byte table in a doc comment.
type docRow struct {
	offset string // decimal, or an expression such as "32+n"
	size   string // decimal, or an expression such as "12*c" or "n"
	field  string // with its continuation lines
}

// docTables reads a Go file's comments and returns each byte table
// ("offset size field" rows) under the line or heading that introduces
// it: "# DATA (kind 1), sender to receiver" gives "DATA (kind 1), sender
// to receiver"; a prose paragraph ending in ":" gives its last sentence.
// A table runs over blank lines up to the next prose; a line indented
// past the field column continues the row above. It also returns the
// headings and prose paragraphs, each as one line.
func docTables(t *testing.T, path string) (map[string][]docRow, []string) {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`^(\s*)(\S+)(\s+)(\S+) (.+)$`)
	tables := map[string][]docRow{}
	var paras []string
	var title, alias, para, last string
	in, fieldCol := false, 0
	flush := func() {
		if para != "" {
			paras = append(paras, para)
			last = para
		}
		para = ""
	}
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(line, "//") {
			continue
		}
		text := strings.TrimPrefix(line, "//")
		switch {
		case strings.HasPrefix(text, " # "):
			flush()
			title, in = strings.TrimPrefix(text, " # "), false
			paras = append(paras, title)
			last = title
		case strings.HasPrefix(strings.TrimSpace(text), "offset size field"):
			in = true
			flush()
			if strings.HasSuffix(last, ":") {
				sentences := strings.Split(last, ". ")
				title = sentences[len(sentences)-1]
			}
			tables[title], alias = nil, ""
			if !strings.HasSuffix(last, ":") && last != title {
				// Also under the paragraph introducing it (the message
				// maps' two tables share a heading).
				alias = last
				tables[alias] = nil
			}
		case in && strings.HasPrefix(text, "\t"):
			body := strings.TrimPrefix(text, "\t")
			indent := len(body) - len(strings.TrimLeft(body, " "))
			if rs := tables[title]; len(rs) > 0 && indent >= fieldCol {
				rs[len(rs)-1].field += " " + strings.TrimSpace(body)
				if alias != "" {
					tables[alias][len(rs)-1].field = rs[len(rs)-1].field
				}
				continue
			}
			m := row.FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("%s: table row %q does not parse", path, text)
			}
			fieldCol = len(m[1]) + len(m[2]) + len(m[3]) + len(m[4]) + 1
			tables[title] = append(tables[title], docRow{m[2], m[4], m[5]})
			if alias != "" {
				tables[alias] = append(tables[alias], docRow{m[2], m[4], m[5]})
			}
		case strings.TrimSpace(text) == "":
			flush()
		default:
			in = false
			para = strings.TrimSpace(para + " " + strings.TrimSpace(text))
		}
	}
	flush()
	return tables, paras
}

// findTable returns the table whose title starts with prefix.
func findTable(t *testing.T, tables map[string][]docRow, prefix string) []docRow {
	t.Helper()
	for title, rows := range tables {
		if strings.HasPrefix(title, prefix) {
			return rows
		}
	}
	t.Fatalf("no byte table titled %q in the docs (have %q)", prefix, keys(tables))
	return nil
}

func keys(m map[string][]docRow) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// docField is a field with the offset its doc row must give: a number,
// or an expression after the NACK ranges.
type docField struct {
	Field
	offset string
}

func at(fs ...Field) []docField {
	var out []docField
	for _, f := range fs {
		out = append(out, docField{f, strconv.Itoa(f.Offset)})
	}
	return out
}

// optionalAt places a layout's optional fields as its docs do.
func optionalAt(l Layout) []docField {
	var out []docField
	for _, f := range l.Optional {
		off := strconv.Itoa(packet.HeaderLen + l.BodyLen + f.Offset)
		if l.Range != nil {
			off += "+" + strconv.Itoa(l.RangeLen) + "*c"
		}
		out = append(out, docField{f, off})
	}
	return out
}

// checkRows matches each field to the doc row that names it, and checks
// offset and size (a size 0 field must have a variable size in the docs).
func checkRows(t *testing.T, what string, rows []docRow, fields []docField) {
	t.Helper()
	for _, f := range fields {
		if f.Doc == "" {
			continue
		}
		var r *docRow
		for i := range rows {
			if strings.HasPrefix(rows[i].field, f.Doc) {
				r = &rows[i]
				break
			}
		}
		if r == nil {
			t.Errorf("%s: no doc row for field %s (%q)", what, f.Abbrev, f.Doc)
			continue
		}
		if r.offset != f.offset {
			t.Errorf("%s: %s at offset %s, docs say %s", what, f.Abbrev, f.offset, r.offset)
		}
		_, numeric := strconv.Atoi(r.size)
		switch {
		case f.Size == 0 && numeric == nil:
			t.Errorf("%s: %s runs to the end, docs give a fixed size %s", what, f.Abbrev, r.size)
		case f.Size != 0 && r.size != strconv.Itoa(f.Size):
			t.Errorf("%s: %s is %d bytes, docs say %s", what, f.Abbrev, f.Size, r.size)
		}
	}
	// And every documented row is shown by some field.
	for _, r := range rows {
		found := false
		for _, f := range fields {
			found = found || (f.Doc != "" && strings.HasPrefix(r.field, f.Doc))
		}
		// The subscription kinds share one table; the MAC under the
		// pre-shared key is SUBSCRIBE's and GOODBYE's only (a TOKEN
		// cannot carry FlagAuth).
		tokenAuth := what == "TOKEN" && strings.HasPrefix(r.field, "with [FlagAuth]")
		if !found && !tokenAuth && !strings.HasPrefix(r.field, "ranges") && !strings.HasPrefix(r.field, "GCM tag") {
			t.Errorf("%s: doc row %q has no dissector field", what, r.field)
		}
	}
}

// flagGo returns the Go name of l's flag with mask m.
func flagGo(l Layout, m uint8) string {
	for _, fl := range l.Flags {
		if fl.Mask == m {
			return fl.Go
		}
	}
	return ""
}

// directions reads the directions a kind travels from the heading or
// sentence that introduces it: "NACK (kind 3), receiver to sender; with
// [FlagUnavailable], sender to receiver" gives both.
func directions(t *testing.T, paras []string, l Layout) []uint8 {
	t.Helper()
	intro := fmt.Sprintf("%s (kind %d)", l.Name, l.Kind)
	for _, p := range paras {
		i := strings.Index(p, intro)
		if i < 0 {
			continue
		}
		seg := p[i+len(intro):]
		if j := strings.IndexAny(seg, ":("); j >= 0 {
			seg = seg[:j]
		}
		var d []uint8
		if strings.Contains(seg, "sender to receiver") {
			d = append(d, ToReceiver)
		}
		if strings.Contains(seg, "receiver to sender") {
			d = append(d, ToSender)
		}
		return d
	}
	t.Errorf("no heading or sentence introduces %q in packet/doc.go", intro)
	return nil
}

// TestLayoutsMatchDocs checks the table against the byte tables and the
// prose of packet/doc.go and internal/seal/doc.go.
func TestLayoutsMatchDocs(t *testing.T) {
	pkt, paras := docTables(t, "../../packet/doc.go")
	prose := strings.Join(paras, "\n")
	checkRows(t, "header", findTable(t, pkt, "Header"), at(Header...))
	for _, l := range Layouts {
		if got := directions(t, paras, l); !reflect.DeepEqual(got, l.Dirs) {
			t.Errorf("%s travels %v in the docs, %v in the table", l.Name, got, l.Dirs)
		}
		for _, f := range l.Optional {
			if name := flagGo(l, f.Flag); name == "" || (f.Doc != "" && !strings.Contains(f.Doc, "["+name+"]")) {
				t.Errorf("%s: optional field %s hangs on flag %#x (%q), which its doc %q does not name", l.Name, f.Abbrev, f.Flag, name, f.Doc)
			}
		}
		switch {
		case l.Kind == uint8(packet.KindReport):
			// Described in prose: the fixed block in TestLayoutsMatchEncoder,
			// the challenge here.
			for _, f := range l.Optional {
				want := fmt.Sprintf("Flag [%s] adds %d bytes after the block (offset %d)", flagGo(l, f.Flag), f.Size, packet.HeaderLen+l.BodyLen+f.Offset)
				if !strings.Contains(prose, want) {
					t.Errorf("REPORT: %s: the docs do not say %q", f.Abbrev, want)
				}
			}
			continue
		case len(l.Fields) == 0:
			if !strings.Contains(prose, l.Doc) || l.BodyLen != 0 || !l.Exact {
				t.Errorf("%s: the docs do not say %q, or the table gives it a body", l.Name, l.Doc)
			}
			continue
		}
		rows := findTable(t, pkt, l.Doc)
		checkRows(t, l.Name, rows, append(at(l.Fields...), optionalAt(l)...))
		if l.Range != nil {
			var rr *docRow
			for i := range rows {
				if strings.HasPrefix(rows[i].field, "ranges") {
					rr = &rows[i]
				}
			}
			if rr == nil || rr.size != strconv.Itoa(l.RangeLen)+"*c" || rr.offset != strconv.Itoa(packet.HeaderLen+l.BodyLen) {
				t.Fatalf("%s: ranges row %+v, want offset %d size %d*c", l.Name, rr, packet.HeaderLen+l.BodyLen, l.RangeLen)
			}
			for _, f := range l.Range {
				if !strings.Contains(rr.field, f.Doc+" ("+strconv.Itoa(f.Size)+" bytes") {
					t.Errorf("%s: range field %s (%d bytes) not in %q", l.Name, f.Doc, f.Size, rr.field)
				}
			}
		}
	}
	checkMapDocs(t, pkt, prose)
	// The header's kind row lists every kind the dissector knows and no other.
	var kindRow, envRow string
	for _, r := range findTable(t, pkt, "Header") {
		if strings.HasPrefix(r.field, "kind") {
			kindRow = r.field
		}
		if strings.HasPrefix(r.field, "envelope") {
			envRow = r.field
		}
	}
	for _, l := range Layouts {
		if !strings.Contains(kindRow, strconv.Itoa(int(l.Kind))+" "+l.Name) {
			t.Errorf("header kind row %q lacks %d %s", kindRow, l.Kind, l.Name)
		}
	}
	if n := len(regexp.MustCompile(`\d+ [A-Z]+`).FindAllString(kindRow, -1)); n != len(Layouts) {
		t.Errorf("header kind row %q names %d kinds, the dissector %d", kindRow, n, len(Layouts))
	}
	if want := fmt.Sprintf("envelope: 0 plain; %d or %d sealed", Envelopes[0].Value, Envelopes[1].Value); len(Envelopes) != 2 || !strings.HasPrefix(envRow, want) {
		t.Errorf("header envelope row %q, the dissector knows %v", envRow, Envelopes)
	}

	sealTables, sealParas := docTables(t, "../../internal/seal/doc.go")
	sealProse := strings.Join(sealParas, "\n")
	rows := findTable(t, sealTables, Sealed.Doc)
	header := Field{Abbrev: "header", Doc: "header", Offset: 0, Size: packet.HeaderLen}
	checkRows(t, "sealed", rows, at(append([]Field{header, Sealed.Body}, Sealed.Fields...)...))
	var tag *docRow
	for i := range rows {
		if strings.HasPrefix(rows[i].field, Sealed.Tag.Doc) {
			tag = &rows[i]
		}
		if strings.HasPrefix(rows[i].field, "header") && !strings.Contains(rows[i].field, "CRC field = key tag") {
			t.Errorf("sealed header row %q: the dissector shows the key tag in the CRC field", rows[i].field)
		}
	}
	if tag == nil || tag.size != strconv.Itoa(TagLen) || tag.offset != strconv.Itoa(Sealed.Body.Offset)+"+n" {
		t.Errorf("sealed: tag row %+v, want %d bytes after the body", tag, TagLen)
	}
	var macKinds []string
	for _, l := range Layouts {
		if l.MAC {
			macKinds = append(macKinds, l.Name)
		}
	}
	for _, want := range []string{
		fmt.Sprintf("%s and %s are not encrypted", strings.Join(macKinds[:len(macKinds)-1], ", "), macKinds[len(macKinds)-1]),
		fmt.Sprintf("end with their %d-byte MAC in place of a GCM tag", MACLen),
		"envelope byte set to their direction and the PSK's key id in the CRC field",
	} {
		if !strings.Contains(sealProse, want) {
			t.Errorf("internal/seal/doc.go does not say %q", want)
		}
	}
	dirRow := findTable(t, sealTables, "Nonces")[0].field
	if want := fmt.Sprintf("direction: %d sender to receiver, %d receiver to sender", ToReceiver, ToSender); dirRow != want {
		t.Errorf("internal/seal/doc.go's nonce table says %q, the dissector %q", dirRow, want)
	}
}

// encoded returns a packet of layout l with every field distinct, and
// its encoding.
func encoded(t *testing.T, l Layout, flags packet.Flags) (*packet.Packet, []byte) {
	t.Helper()
	p := &packet.Packet{Header: packet.Header{Kind: packet.Kind(l.Kind), Flags: flags, Session: 0x0102030405060708, Stream: 0x0a0b0c0d}}
	switch p.Kind {
	case packet.KindData:
		p.Seq, p.Timestamp, p.Payload = 0x1112131415161718, -0x2122232425262728, packet.AppendEntry(packet.AppendMessagesHeader(nil, 1), 0, []byte("payload")) // a valid message map, with FlagMessages or without
	case packet.KindParity:
		p.Parity = packet.Parity{First: 0x3132333435363738, K: 10, M: 3, Index: 2, Stride: 4}
		p.Payload = []byte("shard!")
	case packet.KindNACK:
		p.Ranges = []packet.Range{{First: 100, Len: 3}, {First: 200, Len: 70000 % packet.MaxRangeLen}}
		p.ProofSeq, p.ProofTimestamp = 0x6162636465666768, -0x7172737475767778
	case packet.KindReport:
		v := reflect.ValueOf(&p.Report).Elem()
		for i := range v.NumField() {
			f := v.Field(i)
			switch f.Kind() {
			case reflect.Int64:
				f.SetInt(int64(0x0101010101010101 * (i + 1) & 0x3fffffffffffffff))
			case reflect.Uint64:
				f.SetUint(uint64(0x0101010101010101 * (i + 1) & 0x3fffffffffffffff))
			case reflect.Uint32:
				f.SetUint(uint64(1000 * (i + 1)))
			}
		}
		p.Challenge = 0x8182838485868788
	case packet.KindHeartbeat:
		p.Heartbeat = packet.Heartbeat{Start: 5, Next: 0x4142434445464748, Timestamp: 0x5152535455565758, Answer: 0x9192939495969798, AnswerHoldNanos: 0x0a0b0c0d0e0f}
		if flags&packet.FlagGroup != 0 {
			p.Heartbeat.Receivers = 0x0e0f10 // within MaxGroupReceivers
		}
	case packet.KindHello, packet.KindWelcome:
		for i := range p.Handshake.Ephemeral {
			p.Handshake.Ephemeral[i] = byte(0xa0 + i)
		}
		p.Handshake.Timestamp = 0x2a2b2c2d2e2f
	case packet.KindRetry:
		p.Handshake.KeyTag, p.Handshake.Counter = 0xb1b2b3b4, 0xc1c2c3c4c5c6c7c8
	}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatalf("%s: %v", l.Name, err)
	}
	return p, b
}

// flagSets are the flag bytes the tests encode a kind with: none, each
// flag alone, and all together.
func flagSets(l Layout) []packet.Flags {
	sets := []packet.Flags{0}
	var all packet.Flags
	for _, fl := range l.Flags {
		// A flag that needs another (FlagAuth needs FlagToken) is not a
		// set of its own: the encoder refuses it alone.
		if !flagAlone(l, packet.Flags(fl.Mask)) {
			continue
		}
		sets = append(sets, packet.Flags(fl.Mask))
		all |= packet.Flags(fl.Mask)
	}
	for _, fl := range l.Flags {
		all |= packet.Flags(fl.Mask)
	}
	if len(l.Flags) > 1 && !l.Exclusive {
		sets = append(sets, all)
	}
	return sets
}

// flagAlone reports whether a packet of l's kind may carry flag f alone.
func flagAlone(l Layout, f packet.Flags) bool {
	p := packet.Packet{Header: packet.Header{Kind: packet.Kind(l.Kind), Flags: f}}
	_, err := p.AppendTo(nil)
	return !errors.Is(err, packet.ErrBadFlags)
}

// present returns l's optional fields that flags adds, and their size.
func present(l Layout, flags packet.Flags) ([]Field, int) {
	var fs []Field
	n := 0
	for _, f := range l.Optional {
		if uint8(flags)&f.Flag != 0 {
			fs = append(fs, f)
			n = max(n, f.Offset+f.Size)
		}
	}
	return fs, n
}

// goValue returns the packet field a Field's Go path names.
func goValue(p any, path string) reflect.Value {
	v := reflect.ValueOf(p)
	for _, name := range strings.Split(path, ".") {
		v = reflect.Indirect(v).FieldByName(name)
	}
	return v
}

// readField reads f from b at offset base+f.Offset as the wire does.
func readField(b []byte, base int, f Field) any {
	at := b[base+f.Offset:]
	switch {
	case f.Type == "bytes" && f.Size > 0:
		return at[:f.Size]
	case f.Size == 0:
		return at
	case f.Size == 1:
		return uint64(at[0])
	case f.Size == 2:
		return uint64(binary.BigEndian.Uint16(at))
	case f.Size == 4:
		return uint64(binary.BigEndian.Uint32(at))
	}
	return binary.BigEndian.Uint64(at)
}

// asWire is a Go value as readField reads it.
func asWire(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Slice:
		return v.Bytes()
	case reflect.Array:
		b := make([]byte, v.Len())
		reflect.Copy(reflect.ValueOf(b), v)
		return b
	case reflect.Int64:
		return uint64(v.Int())
	}
	return v.Uint()
}

// TestLayoutsMatchEncoder encodes a packet of every kind and flag set
// with distinct field values and reads each field back at the table's
// offset (the optional ones exactly when their flag is set), checks the
// lengths, the flag bits each kind accepts, and that every kind the
// packet package names has a layout.
func TestLayoutsMatchEncoder(t *testing.T) {
	for _, l := range Layouts {
		for _, flags := range flagSets(l) {
			p, b := encoded(t, l, flags)
			opt, optLen := present(l, flags)
			for _, f := range append(append([]Field{}, Header...), l.Fields...) {
				if f.Go == "" {
					continue
				}
				if got, want := readField(b, 0, f), asWire(goValue(p, f.Go)); !reflect.DeepEqual(got, want) {
					t.Errorf("%s %#x: %s at %d reads %v, encoder wrote %v", l.Name, flags, f.Abbrev, f.Offset, got, want)
				}
			}
			for i, r := range p.Ranges {
				for _, f := range l.Range {
					if got, want := readField(b, packet.HeaderLen+l.BodyLen+i*l.RangeLen, f), asWire(goValue(r, f.Go)); got != want {
						t.Errorf("%s range %d: %s reads %v, encoder wrote %v", l.Name, i, f.Abbrev, got, want)
					}
				}
			}
			optBase := packet.HeaderLen + l.BodyLen + len(p.Ranges)*l.RangeLen
			for _, f := range opt {
				if got, want := readField(b, optBase, f), asWire(goValue(p, f.Go)); !reflect.DeepEqual(got, want) {
					t.Errorf("%s %#x: optional %s at %d+%d reads %v, encoder wrote %v", l.Name, flags, f.Abbrev, optBase, f.Offset, got, want)
				}
			}
			body := len(b) - packet.HeaderLen
			end := packet.HeaderLen
			if len(l.Fields) > 0 {
				last := l.Fields[len(l.Fields)-1]
				end = last.Offset + last.Size
			}
			switch {
			case l.Exact && (body != l.BodyLen+optLen || end != packet.HeaderLen+l.BodyLen):
				t.Errorf("%s %#x: body %d bytes, fields end at %d, table says exactly %d+%d", l.Name, flags, body, end, l.BodyLen, optLen)
			case l.Range != nil && body != l.BodyLen+len(p.Ranges)*l.RangeLen+optLen:
				t.Errorf("%s %#x: body %d bytes, table says %d+%d*%d+%d", l.Name, flags, body, l.BodyLen, len(p.Ranges), l.RangeLen, optLen)
			case !l.Exact && l.Range == nil && l.Fields[len(l.Fields)-1].Offset != packet.HeaderLen+l.BodyLen:
				t.Errorf("%s: variable part at %d, fixed body ends at %d", l.Name, l.Fields[len(l.Fields)-1].Offset, packet.HeaderLen+l.BodyLen)
			}
		}
		// Optional fields: only after a fixed body or ranges (so that
		// their place is known), on one flag the kind accepts, or on a
		// second one that needs the first (FlagAuth after FlagToken):
		// its fields lie after the first flag's, at fixed offsets.
		firstEnd := 0
		for _, f := range l.Optional {
			if f.Flag == l.Optional[0].Flag {
				firstEnd = max(firstEnd, f.Offset+f.Size)
			}
		}
		for _, f := range l.Optional {
			if !l.Exact && l.Range == nil {
				t.Errorf("%s: optional field %s after a variable part", l.Name, f.Abbrev)
			}
			// Exclusive flags (never together) put their fields at the same place.
			if f.Flag != l.Optional[0].Flag && !l.Exclusive && (f.Offset < firstEnd || flagAlone(l, packet.Flags(f.Flag))) {
				t.Errorf("%s: optional fields on flags %#x and %#x: a second flag's must need the first and follow its fields", l.Name, l.Optional[0].Flag, f.Flag)
			}
			if flagGo(l, f.Flag) == "" {
				t.Errorf("%s: optional field %s on flag %#x, which is not among the kind's flags", l.Name, f.Abbrev, f.Flag)
			}
		}
		// Flag bits: exactly those the encoder accepts for this kind.
		var table, accepted uint8
		for _, fl := range l.Flags {
			table |= fl.Mask
		}
		for bit := range 8 {
			pp, _ := encoded(t, l, 0)
			pp.Flags = packet.Flags(1 << bit)
			if pp.Kind == packet.KindHeartbeat && pp.Flags == packet.FlagGroup {
				pp.Heartbeat.Receivers = 1 // a flag whose field zero would refuse
			}
			if _, err := pp.AppendTo(nil); err == nil {
				accepted |= 1 << bit
			}
			pp.Flags = packet.Flags(table | 1<<bit) // a flag that needs another
			if _, err := pp.AppendTo(nil); err == nil {
				accepted |= 1 << bit
			}
		}
		if table != accepted {
			t.Errorf("%s: dissector flags %08b, encoder accepts %08b", l.Name, table, accepted)
		}
		l.InfoFields() // panics on an unknown field
	}
	known := map[uint8]bool{}
	for _, l := range Layouts {
		known[l.Kind] = true
		if packet.Kind(l.Kind).String() != l.Name {
			t.Errorf("kind %d is %s, the dissector calls it %s", l.Kind, packet.Kind(l.Kind), l.Name)
		}
		if l.MAC != (packet.Kind(l.Kind).IsHandshake() && l.Kind != uint8(packet.KindConfirm)) {
			t.Errorf("%s: MAC %v, but the handshake messages in clear are HELLO, WELCOME and RETRY", l.Name, l.MAC)
		}
	}
	for k := 1; k < 256; k++ {
		if name := packet.Kind(k).String(); !strings.HasPrefix(name, "KIND(") && !known[uint8(k)] {
			t.Errorf("packet kind %d (%s) has no dissector layout: add it to Layouts and run go generate ./tools/wireshark", k, name)
		}
	}
	if got := Layouts[3].Fields[len(Layouts[3].Fields)-1]; got.Offset+got.Size != packet.HeaderLen+packet.ReportLen {
		t.Errorf("REPORT fields end at %d, ReportLen says %d", got.Offset+got.Size, packet.HeaderLen+packet.ReportLen)
	}
}

// TestLayoutsMatchSeal checks the sealed layout and the handshake
// messages against package seal: its constants, and real messages from
// a handshake, a RETRY and sealed packets.
func TestLayoutsMatchSeal(t *testing.T) {
	if TagLen != seal.TagLen || MACLen != seal.MACLen || Sealed.Body.Offset != packet.HeaderLen+seal.CounterLen ||
		Sealed.Fields[0].Size != seal.CounterLen || ToReceiver != int(seal.ToReceiver) || ToSender != int(seal.ToSender) {
		t.Fatalf("sealed layout disagrees with package seal's sizes or directions")
	}
	key, err := seal.NewKey(bytes.Repeat([]byte{3}, seal.KeyLen))
	if err != nil {
		t.Fatal(err)
	}
	const session = 0x1122334455667788
	ini, resp := key.NewHandshaker(nil), key.NewHandshaker(nil)
	in, err := ini.Initiate(session, 12345)
	if err != nil {
		t.Fatal(err)
	}
	welcome, trR, err := resp.Respond(nil, in.Hello())
	if err != nil {
		t.Fatal(err)
	}
	trS, err := ini.Finish(in, welcome)
	if err != nil {
		t.Fatal(err)
	}
	if trS.Tag() != trR.Tag() {
		t.Fatal("the two ends derived different key tags")
	}
	confirm := sealedPacket(t, trS, seal.ToReceiver, &packet.Packet{Header: packet.Header{Kind: packet.KindConfirm, Session: session}})
	retry := resp.AppendRetry(nil, session, trS.Tag(), 77)
	layout := map[packet.Kind]Layout{}
	for _, l := range Layouts {
		layout[packet.Kind(l.Kind)] = l
	}
	for _, m := range [][]byte{in.Hello(), welcome, retry, confirm} {
		l := layout[packet.Kind(m[3])]
		info, err := seal.Peek(m)
		if err != nil {
			t.Fatalf("%s: %v", l.Name, err)
		}
		if !slices.Contains(l.Dirs, uint8(info.Dir)) {
			t.Errorf("%s travels %s, the table says %v", l.Name, info.Dir, l.Dirs)
		}
		want := uint32(key.ID())
		if !l.MAC {
			want = trS.Tag()
		}
		if info.KeyID != want || readField(m, 0, KeyID) != uint64(want) {
			t.Errorf("%s: key field %#x, want %#x", l.Name, info.KeyID, want)
		}
		size := packet.HeaderLen + l.BodyLen + MACLen
		if !l.MAC {
			size = Sealed.Body.Offset + l.BodyLen + TagLen
		}
		if len(m) != size {
			t.Errorf("%s: %d bytes, the table says %d", l.Name, len(m), size)
		}
		if !l.MAC {
			continue
		}
		var p packet.Packet
		h, _ := packet.PeekHeader(m)
		if err := p.ParseBody(h, m[packet.HeaderLen:len(m)-MACLen]); err != nil {
			t.Fatalf("%s body: %v", l.Name, err)
		}
		for _, f := range l.Fields {
			if f.Go == "" {
				continue
			}
			if got, want := readField(m, 0, f), asWire(goValue(&p, f.Go)); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s reads %v, the handshake wrote %v", l.Name, f.Abbrev, got, want)
			}
		}
	}
	if got := readField(in.Hello(), 0, Layouts[5].Fields[1]); got != uint64(12345) {
		t.Errorf("HELLO timestamp reads %v, Initiate was given 12345", got)
	}
	if got := readField(retry, 0, Layouts[8].Fields[2]); got != uint64(77) {
		t.Errorf("RETRY counter reads %v, AppendRetry was given 77", got)
	}
}

// sealedPacket encodes p and seals it under tr for dir.
func sealedPacket(t *testing.T, tr *seal.Traffic, dir seal.Direction, p *packet.Packet) []byte {
	t.Helper()
	s, err := tr.NewSealer(seal.Params{Session: p.Session, Dir: dir}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.Seal(nil, b[:packet.HeaderLen], b[packet.HeaderLen:])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkMapDocs checks the message map's layout against the two tables of
// "Messages and datagrams" in packet/doc.go: the fixed fields by offset
// and size, the entry's varints and message by their rows, the map byte
// values and the count's bounds.
func checkMapDocs(t *testing.T, pkt map[string][]docRow, prose string) {
	t.Helper()
	data := layoutOf(t, uint8(packet.KindData))
	if name := flagGo(data, Map.Flag); name == "" || !strings.Contains(prose, "Flag ["+name+"] says the payload begins with a message map") {
		t.Errorf("the map hangs on DATA flag %#x (%q), which the docs do not say starts a message map", Map.Flag, name)
	}
	for _, ml := range []MapLayout{Map.Messages, Map.Fragment} {
		rows := findTable(t, pkt, ml.Doc)
		var fixed []docRow // rows with a numeric offset and size, or the piece's
		for _, r := range rows {
			_, e1 := strconv.Atoi(r.offset)
			_, e2 := strconv.Atoi(r.size)
			if e1 == nil && (e2 == nil || r.size == "p") {
				fixed = append(fixed, r)
			}
			if strings.HasPrefix(r.field, Map.Byte.Doc+":") && r.field != Map.Byte.Doc+": "+strconv.Itoa(int(ml.Value)) {
				t.Errorf("%s: map byte row %q, the table's value is %d", ml.Doc, r.field, ml.Value)
			}
		}
		checkRows(t, ml.Doc, fixed, at(append([]Field{Map.Byte}, ml.Fields...)...))
		last := ml.Fields[len(ml.Fields)-1]
		switch ml.Value {
		case packet.MapMessages:
			want := []string{strconv.Itoa(ml.HeaderLen) + " count entries", "v " + Map.EntryLen.Doc, "v " + Map.EntryDelta.Doc, "n " + Map.EntryData.Doc}
			i := 0
			for _, r := range rows {
				if i < len(want) && strings.HasPrefix(r.offset+" "+r.size+" "+r.field, want[i]) {
					i++
				}
			}
			if i < len(want) {
				t.Errorf("%s: no row %q (in that order) in %+v", ml.Doc, want[i], rows)
			}
			if last.Offset+last.Size != ml.HeaderLen || !strings.Contains(last.Doc+" "+rowOf(rows, last.Doc), fmt.Sprintf("%d..%d", ml.Min, ml.Max)) {
				t.Errorf("%s: count %s ends at %d (header %d), bounds %d..%d: the docs say %q", ml.Doc, last.Abbrev, last.Offset+last.Size, ml.HeaderLen, ml.Min, ml.Max, rowOf(rows, last.Doc))
			}
		case packet.MapFragment:
			if last.Size != 0 || last.Offset != ml.HeaderLen {
				t.Errorf("%s: the piece %s at %d size %d, want the rest from %d", ml.Doc, last.Abbrev, last.Offset, last.Size, ml.HeaderLen)
			}
		default:
			t.Errorf("%s: map byte %d is neither MapMessages nor MapFragment", ml.Doc, ml.Value)
		}
	}
}

// rowOf returns the field text of the row starting with doc.
func rowOf(rows []docRow, doc string) string {
	for _, r := range rows {
		if strings.HasPrefix(r.field, doc) {
			return r.field
		}
	}
	return ""
}
