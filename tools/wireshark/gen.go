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
		Sealed       []SealedLayout
		KeyID        Field
		Versions     []int
		HeaderLen    int
		MaxPacketLen int
		TagLen       int
		Magic        string
		AllFields    []Field
		AllFlags     []Flag
	}{
		Header: Header, Layouts: Layouts, Sealed: Sealed, KeyID: KeyID, Versions: Versions,
		HeaderLen: packet.HeaderLen, MaxPacketLen: packet.MaxPacketLen, TagLen: TagLen,
		Magic: fmt.Sprintf("0x%04x", packet.Magic), AllFields: allFields(), AllFlags: allFlags(),
	})
	if err != nil {
		panic(err) // the template and the table are both compiled in: a bug, caught by the tests
	}
	return b.Bytes()
}

// allFields lists every field once (the sealed counter appears in both
// directions).
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
	add(KeyID)
	for _, l := range Layouts {
		add(l.Fields...)
		add(l.Range...)
	}
	for _, s := range Sealed {
		add(s.Fields...)
		add(s.Body, s.Tag)
	}
	return out
}

func allFlags() []Flag {
	var out []Flag
	for _, l := range Layouts {
		out = append(out, l.Flags...)
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
