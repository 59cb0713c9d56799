package gen

import (
	"bytes"
	"strings"
	"testing"
)

func TestSizesAndDeterminism(t *testing.T) {
	for _, k := range []Kind{Market, Game} {
		for _, size := range []int{0, MinSize, 200, 1400} {
			a, err := New(k, size, 7)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := New(k, size, 7)
			for i := range 1000 {
				ma, mb := a.Next(nil), b.Next(nil)
				if !bytes.Equal(ma, mb) {
					t.Fatalf("%s: same seed diverged at %d", k, i)
				}
				if size != 0 && len(ma) != size {
					t.Fatalf("%s size %d: message of %d bytes", k, size, len(ma))
				}
				if bytes.IndexByte(ma, '\n') >= 0 {
					t.Fatalf("%s: message contains a newline", k)
				}
			}
		}
	}
}

func TestContent(t *testing.T) {
	m, _ := New(Market, 0, 1)
	if s := string(m.Next(nil)); !strings.HasPrefix(s, "T 1 ") || !strings.Contains(s, " bid ") {
		t.Fatalf("market message %q", s)
	}
	g, _ := New(Game, 0, 1)
	if s := string(g.Next(nil)); !strings.HasPrefix(s, "G 1 e0 x ") {
		t.Fatalf("game message %q", s)
	}
}

func TestErrors(t *testing.T) {
	if _, err := New("weather", 0, 1); err == nil {
		t.Error("unknown kind accepted")
	}
	if _, err := New(Market, 10, 1); err == nil {
		t.Error("size below MinSize accepted")
	}
}

func TestNextAllocatesNothingWithRoom(t *testing.T) {
	s, _ := New(Market, 256, 1)
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf = s.Next(buf[:0]) }); n != 0 {
		t.Fatalf("Next allocates %.1f times", n)
	}
}
