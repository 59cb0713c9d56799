package packet

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in ../testdata/packet")

// TestGolden pins the v1 byte layout: the encodings of the sample packets
// must match ../testdata/packet/v1.golden, one hex line per packet. Any
// change to the wire format shows up here first; run with -update only when
// the change is intended (and the version bumped).
func TestGolden(t *testing.T) {
	var sb strings.Builder
	for _, p := range samples() {
		sb.WriteString(p.Kind.String())
		sb.WriteByte(' ')
		sb.WriteString(hex.EncodeToString(encode(t, p)))
		sb.WriteByte('\n')
	}
	path := filepath.Join("..", "testdata", "packet", "v1.golden")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
	}
	if !bytes.Equal(want, []byte(sb.String())) {
		t.Fatalf("encoding differs from %s:\n got\n%s\nwant\n%s", path, sb.String(), want)
	}
	// Every golden line also parses back.
	for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
		_, hx, _ := strings.Cut(line, " ")
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatal(err)
		}
		var p Packet
		if err := p.Parse(b); err != nil {
			t.Errorf("golden %q does not parse: %v", line[:12], err)
		}
	}
}
