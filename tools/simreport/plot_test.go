package simreport

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWritePlots(t *testing.T) {
	s, err := Parse([]byte(`{"settings": [{"name": "none"}, {"name": "nack", "nack": true}],
		"defaults": {"messages": 400, "fwd": "delay 10ms 2ms loss 5%", "rev": "delay 10ms"},
		"scenarios": [{"name": "lossy"}, {"name": "clean", "fwd": "delay 10ms"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "new", "plots")
	files, err := WritePlots(dir, rep)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	want := []string{"latency-lossy.svg", "latency-lossy.png", "latency-clean.svg", "latency-clean.png",
		"residual.svg", "residual.png", "overhead.svg", "overhead.png"}
	if !slices.Equal(names, want) {
		t.Fatalf("wrote %v, want %v", names, want)
	}
	titles := map[string]string{"latency-lossy": "Delivery latency, lossy", "latency-clean": "Delivery latency, clean",
		"residual": "Residual loss against raw loss", "overhead": "Bandwidth overhead against raw loss"}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		switch filepath.Ext(f) {
		case ".png":
			checkPNG(t, f, data)
		case ".svg":
			checkSVG(t, f, data, titles[base])
		}
	}
}

// checkPNG decodes the picture and checks its size and that something
// was drawn in several colours.
func checkPNG(t *testing.T, name string, data []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b := img.Bounds()
	// 20.5 cm by 10 cm at the 96 dpi vgimg draws PNGs at.
	if b.Dx() < 700 || b.Dx() > 800 || b.Dy() < 350 || b.Dy() > 400 {
		t.Fatalf("%s: %v", name, b)
	}
	colours := map[[4]uint32]bool{}
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			colours[[4]uint32{r, g, bl, a}] = true
		}
	}
	if len(colours) < 8 {
		t.Fatalf("%s: only %d colours: an empty picture?", name, len(colours))
	}
}

// checkSVG parses the whole document as XML, checks that its root is an
// svg element, and that the title was drawn (as glyph outlines or text).
func checkSVG(t *testing.T, name string, data []byte, title string) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	root := ""
	paths := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: not well-formed XML: %v", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			if se.Name.Local == "path" {
				paths++
			}
		}
	}
	if root != "svg" || paths < 10 {
		t.Fatalf("%s: root <%s>, %d paths", name, root, paths)
	}
	if !bytes.Contains(data, []byte(title)) {
		t.Fatalf("%s: title %q not in the SVG", name, title)
	}
}

func TestWritePlotsIntoAFileFails(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WritePlots(f, Report{}); err == nil {
		t.Fatal("WritePlots into a regular file succeeded")
	}
}
