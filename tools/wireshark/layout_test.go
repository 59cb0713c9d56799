package wireshark

import (
	"bytes"
	"encoding/binary"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

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
	field  string
}

// docTables reads a Go file's comments and returns each byte table
// ("offset size field" rows) under the line or heading that introduces
// it: "# DATA (kind 1), sender to receiver" gives "DATA (kind 1), sender
// to receiver", a prose line ending in ":" gives that line.
func docTables(t *testing.T, path string) map[string][]docRow {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`^\s+(\S+)\s+(\S+) (.+)$`)
	tables := map[string][]docRow{}
	var title, prev string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(line, "//") {
			continue
		}
		text := strings.TrimPrefix(line, "//")
		switch {
		case strings.HasPrefix(text, " # "):
			title, in = strings.TrimPrefix(text, " # "), false
		case strings.TrimSpace(text) == "offset size field":
			in = true
			if !strings.HasPrefix(prev, "#") && strings.HasSuffix(prev, ":") {
				title = prev
			}
			tables[title] = nil
		case in && strings.HasPrefix(text, "\t"):
			m := row.FindStringSubmatch(strings.TrimPrefix(text, "\t"))
			if m == nil {
				t.Fatalf("%s: table row %q does not parse", path, text)
			}
			tables[title] = append(tables[title], docRow{m[1], m[2], m[3]})
		default:
			in = false
		}
		if s := strings.TrimSpace(text); s != "" {
			prev = s
		}
	}
	return tables
}

// findTable returns the table whose title starts with prefix.
func findTable(t *testing.T, tables map[string][]docRow, prefix string) []docRow {
	t.Helper()
	for title, rows := range tables {
		if strings.HasPrefix(title, prefix) {
			return rows
		}
	}
	t.Fatalf("no byte table titled %q in the docs (have %v)", prefix, keys(tables))
	return nil
}

func keys(m map[string][]docRow) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	return k
}

// checkRows matches each field to the doc row that names it, and checks
// offset and size (a size 0 field must have a variable size in the docs).
func checkRows(t *testing.T, what string, rows []docRow, fields []Field) {
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
		if r.offset != strconv.Itoa(f.Offset) {
			t.Errorf("%s: %s at offset %d, docs say %s", what, f.Abbrev, f.Offset, r.offset)
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
		if !found && !strings.HasPrefix(r.field, "ranges") && !strings.HasPrefix(r.field, "GCM tag") {
			t.Errorf("%s: doc row %q has no dissector field", what, r.field)
		}
	}
}

// TestLayoutsMatchDocs checks the table against the byte tables of
// packet/doc.go and internal/seal/doc.go.
func TestLayoutsMatchDocs(t *testing.T) {
	pkt := docTables(t, "../../packet/doc.go")
	checkRows(t, "header", findTable(t, pkt, "Header"), Header)
	for _, l := range Layouts {
		if l.Kind == uint8(packet.KindReport) {
			continue // described in prose: see TestLayoutsMatchEncoder
		}
		rows := findTable(t, pkt, l.Doc)
		checkRows(t, l.Name, rows, l.Fields)
		if l.Range != nil {
			var rr *docRow
			for i := range rows {
				if strings.HasPrefix(rows[i].field, "ranges") {
					rr = &rows[i]
				}
			}
			if rr == nil || rr.size != strconv.Itoa(l.RangeLen)+"*c" || rr.offset != strconv.Itoa(packet.HeaderLen+l.BodyLen) {
				t.Errorf("%s: ranges row %+v, want offset %d size %d*c", l.Name, rr, packet.HeaderLen+l.BodyLen, l.RangeLen)
			}
			for _, f := range l.Range {
				if !strings.Contains(rr.field, f.Doc+" ("+strconv.Itoa(f.Size)+" bytes") {
					t.Errorf("%s: range field %s (%d bytes) not in %q", l.Name, f.Doc, f.Size, rr.field)
				}
			}
		}
	}
	// The header's kind row lists every kind the dissector knows and no other.
	var kindRow string
	for _, r := range findTable(t, pkt, "Header") {
		if strings.HasPrefix(r.field, "kind") {
			kindRow = r.field
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

	seal := docTables(t, "../../internal/seal/doc.go")
	for _, s := range Sealed {
		rows := findTable(t, seal, s.Doc)
		checkRows(t, s.Name, rows, append([]Field{{Abbrev: "header", Doc: "header", Offset: 0, Size: packet.HeaderLen}, s.Body}, s.Fields...))
		var tag *docRow
		for i := range rows {
			if strings.HasPrefix(rows[i].field, s.Tag.Doc) {
				tag = &rows[i]
			}
		}
		if tag == nil || tag.size != strconv.Itoa(TagLen) || tag.offset != strconv.Itoa(s.Body.Offset)+"+n" {
			t.Errorf("%s: tag row %+v, want %d bytes after the body", s.Name, tag, TagLen)
		}
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
	case packet.KindHeartbeat:
		p.Heartbeat = packet.Heartbeat{Start: 5, Next: 0x4142434445464748, Timestamp: 0x5152535455565758}
	}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatalf("%s: %v", l.Name, err)
	}
	return p, b
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
	switch f.Size {
	case 0:
		return at
	case 1:
		return uint64(at[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(at))
	case 4:
		return uint64(binary.BigEndian.Uint32(at))
	}
	return binary.BigEndian.Uint64(at)
}

func asWire(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Slice:
		return v.Bytes()
	case reflect.Int64:
		return uint64(v.Int())
	}
	return v.Uint()
}

// TestLayoutsMatchEncoder encodes a packet of every kind with distinct
// field values and reads each field back at the table's offset, checks
// the lengths, the flag bits each kind accepts, and that every kind the
// packet package names has a layout.
func TestLayoutsMatchEncoder(t *testing.T) {
	for _, l := range Layouts {
		p, b := encoded(t, l, 0)
		for _, f := range append(append([]Field{}, Header...), l.Fields...) {
			if f.Go == "" {
				continue
			}
			if got, want := readField(b, 0, f), asWire(goValue(p, f.Go)); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: %s at %d reads %v, encoder wrote %v", l.Name, f.Abbrev, f.Offset, got, want)
			}
		}
		for i, r := range p.Ranges {
			for _, f := range l.Range {
				if got, want := readField(b, packet.HeaderLen+l.BodyLen+i*l.RangeLen, f), asWire(goValue(r, f.Go)); got != want {
					t.Errorf("%s range %d: %s reads %v, encoder wrote %v", l.Name, i, f.Abbrev, got, want)
				}
			}
		}
		body := len(b) - packet.HeaderLen
		last := l.Fields[len(l.Fields)-1]
		switch {
		case l.Exact && (body != l.BodyLen || last.Offset+last.Size != len(b)):
			t.Errorf("%s: body %d bytes, fields end at %d, table says exactly %d", l.Name, body, last.Offset+last.Size, l.BodyLen)
		case !l.Exact && l.Range == nil && last.Offset != packet.HeaderLen+l.BodyLen:
			t.Errorf("%s: variable part at %d, fixed body ends at %d", l.Name, last.Offset, packet.HeaderLen+l.BodyLen)
		}
		// Flag bits: exactly those the encoder accepts for this kind.
		var table, accepted uint8
		for _, fl := range l.Flags {
			table |= fl.Mask
		}
		for bit := range 8 {
			pp := *p
			pp.Flags = packet.Flags(1 << bit)
			if _, err := pp.AppendTo(nil); err == nil {
				accepted |= 1 << bit
			}
		}
		if table != accepted {
			t.Errorf("%s: dissector flags %08b, encoder accepts %08b", l.Name, table, accepted)
		}
	}
	known := map[uint8]bool{}
	for _, l := range Layouts {
		known[l.Kind] = true
		if packet.Kind(l.Kind).String() != l.Name {
			t.Errorf("kind %d is %s, the dissector calls it %s", l.Kind, packet.Kind(l.Kind), l.Name)
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
