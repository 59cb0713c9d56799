package wireshark

import (
	"bytes"
	_ "embed"
	"fmt"
	"text/template"

	"github.com/telewire/telewire/packet"
)

//go:embed telewire.lua.tmpl
var luaTemplate string

// Lua returns the dissector generated from the layouts: the content of
// telewire.lua.
func Lua() []byte {
	t := template.Must(template.New("lua").Funcs(template.FuncMap{
		"protofield": protoField,
		"lua":        func(s string) string { return fmt.Sprintf("%q", s) },
	}).Parse(luaTemplate))
	var b bytes.Buffer
	err := t.Execute(&b, struct {
		Header       []Field
		Layouts      []Layout
		Sealed       SealedLayout
		Envelopes    []Envelope
		Versions     []int
		HeaderLen    int
		MaxPacketLen int
		TagLen       int
		MACLen       int
		Magic        string
		AllFields    []Field
		AllFlags     []Flag
		Map          MessageMap
		DataKind     uint8
		MaxMessage   int
	}{
		Header: Header, Layouts: Layouts, Sealed: Sealed, Envelopes: Envelopes, Versions: Versions,
		HeaderLen: packet.HeaderLen, MaxPacketLen: packet.MaxPacketLen, TagLen: TagLen, MACLen: MACLen,
		Magic: fmt.Sprintf("0x%04x", packet.Magic), AllFields: allFields(), AllFlags: allFlags(),
		Map: Map, DataKind: uint8(packet.KindData), MaxMessage: packet.MaxMessageLimit,
	})
	if err != nil {
		panic(err) // the template and the table are both compiled in: a bug, caught by the tests
	}
	return b.Bytes()
}

// allFields lists every field once.
func allFields() []Field {
	seen := map[string]bool{}
	var out []Field
	add := func(fs ...Field) {
		for _, f := range fs {
			if !seen[f.Abbrev] {
				seen[f.Abbrev] = true
				out = append(out, f)
			}
		}
	}
	add(Header...)
	add(KeyTag, KeyID, MAC)
	for _, l := range Layouts {
		add(l.Fields...)
		add(l.Range...)
		add(l.Optional...)
	}
	add(Map.fields()...)
	add(Sealed.Fields...)
	add(Sealed.Body, Sealed.Tag)
	return out
}

func allFlags() []Flag {
	var out []Flag
	for _, l := range Layouts {
		out = append(out, l.Flags...)
	}
	return out
}

// field returns l's field (fixed, range or optional) named abbrev.
func (l Layout) field(abbrev string) (Field, bool) {
	for _, fs := range [][]Field{l.Fields, l.Range, l.Optional} {
		for _, f := range fs {
			if f.Abbrev == abbrev {
				return f, true
			}
		}
	}
	return Field{}, false
}

// InfoField is an Info item resolved for the template.
type InfoField struct {
	Label string
	Field
}

// InfoFields resolves l.Info to its fields; an unknown abbreviation is a
// bug in the table, caught by the tests.
func (l Layout) InfoFields() []InfoField {
	var out []InfoField
	for _, in := range l.Info {
		f, ok := l.field(in.Abbrev)
		if !ok {
			panic("wireshark: " + l.Name + " info names unknown field " + in.Abbrev)
		}
		out = append(out, InfoField{in.Label, f})
	}
	return out
}

// protoField is the Lua ProtoField constructor call for f.
func protoField(f Field) string {
	base := "base.DEC"
	if f.Hex {
		base = "base.HEX"
	}
	switch f.Type {
	case "bytes":
		return fmt.Sprintf("ProtoField.bytes(%q, %q)", "telewire."+f.Abbrev, f.Name)
	case "uint8", "uint16", "uint32", "uint64", "int64":
		if f.Type == "int64" {
			base = "base.DEC"
		}
		return fmt.Sprintf("ProtoField.%s(%q, %q, %s)", f.Type, "telewire."+f.Abbrev, f.Name, base)
	}
	panic("wireshark: field " + f.Abbrev + " has unknown type " + f.Type)
}

// CountOffset is the datagram offset of the field that counts l's ranges.
func (l Layout) CountOffset() int {
	f, ok := l.field(l.CountAbbrev)
	if !ok {
		panic("wireshark: " + l.Name + " counts its ranges in unknown field " + l.CountAbbrev)
	}
	return f.Offset
}
