package bridge

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestParseTemplate(t *testing.T) {
	src := netip.MustParseAddrPort("10.0.0.1:9000")
	cases := []struct {
		in, subject, wildcard string
	}{
		{"telewire.{stream}", "telewire.7", "telewire.*"},
		{"md.{session}.{stream}", "md.00000000000000ab.7", "md.*.*"},
		{"feed.{source}.x", "feed.10-0-0-1-9000.x", "feed.*.x"},
		{"static", "static", "static"},
		{"a.b.c", "a.b.c", "a.b.c"},
		{"{stream}", "7", "*"},
	}
	for _, c := range cases {
		tm, err := ParseTemplate(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got := string(tm.AppendSubject(nil, 0xab, 7, src)); got != c.subject {
			t.Errorf("%q: subject %q, want %q", c.in, got, c.subject)
		}
		if got := tm.Wildcard(); got != c.wildcard {
			t.Errorf("%q: wildcard %q, want %q", c.in, got, c.wildcard)
		}
		if tm.String() != c.in {
			t.Errorf("%q: String %q", c.in, tm.String())
		}
		if tm.Static() != !strings.Contains(c.in, "{") {
			t.Errorf("%q: Static %v", c.in, tm.Static())
		}
	}
}

func TestParseTemplateErrors(t *testing.T) {
	cases := []struct {
		in  string
		off int
	}{
		{"", 0},
		{"a..b", 2},
		{".a", 0},
		{"a.", 2},
		{"a.*", 2},
		{"a.>", 2},
		{"a.b c", 3},
		{"a.x{stream}", 3},
		{"a.{strea}", 2},
		{"a.{stream", 2},
		{"a.\x00", 2},
		{strings.Repeat("a", maxSubjectLen+1), maxSubjectLen},
	}
	for _, c := range cases {
		_, err := ParseTemplate(c.in)
		var te *TemplateError
		if !errors.As(err, &te) || !errors.Is(err, ErrTemplate) {
			t.Errorf("%q: error %v, want a *TemplateError", c.in, err)
			continue
		}
		if te.Offset != c.off {
			t.Errorf("%q: offset %d, want %d (%v)", c.in, te.Offset, c.off, err)
		}
	}
}

func TestSourceToken(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1:9000":         "10-0-0-1-9000",
		"[::1]:9000":            "--1-9000",
		"[fe80::1%eth0]:1":      "fe80--1-eth0-1",
		"[2001:db8::a.b%x y]:2": "",
	} {
		ap, err := netip.ParseAddrPort(in)
		if err != nil {
			continue // not every zone parses; the point is what does
		}
		got := string(appendSourceToken(nil, ap))
		if want != "" && got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
		if strings.ContainsAny(got, ". *>\t") {
			t.Errorf("%s: %q is not one subject token", in, got)
		}
	}
}

func TestAppendSubjectDoesNotAllocate(t *testing.T) {
	tm, err := ParseTemplate("md.{session}.{stream}.{source}")
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddrPort("[2001:db8::1]:65535")
	buf := make([]byte, 0, 128)
	if n := testing.AllocsPerRun(100, func() { buf = tm.AppendSubject(buf[:0], 1<<63, 1<<31, src) }); n != 0 {
		t.Errorf("AppendSubject: %v allocations", n)
	}
	id := make([]byte, 0, 48)
	if n := testing.AllocsPerRun(100, func() { id = appendMsgID(id[:0], 1<<63, 1<<31, 1<<62, 7) }); n != 0 {
		t.Errorf("appendMsgID: %v allocations", n)
	}
}

// FuzzParseTemplate: any input either fails with a *TemplateError or
// yields a template whose subjects are valid publish subjects and match
// its wildcard token for token.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"telewire.{stream}", "md.{session}.{stream}.{source}", "a..b", "{x}", "a.*", ""} {
		f.Add(s, uint64(1), uint32(2))
	}
	src := netip.MustParseAddrPort("[fe80::1%eth0]:9")
	f.Fuzz(func(t *testing.T, s string, session uint64, stream uint32) {
		tm, err := ParseTemplate(s)
		if err != nil {
			var te *TemplateError
			if !errors.As(err, &te) || te.Offset < 0 || te.Offset > len(s) {
				t.Fatalf("%q: %v", s, err)
			}
			return
		}
		subj := string(tm.AppendSubject(nil, session, stream, src))
		toks, wild := strings.Split(subj, "."), strings.Split(tm.Wildcard(), ".")
		if len(toks) != len(wild) {
			t.Fatalf("%q: subject %q and wildcard %q differ in tokens", s, subj, tm.Wildcard())
		}
		for i, tok := range toks {
			if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
				t.Fatalf("%q: subject %q has a bad token %q", s, subj, tok)
			}
			if wild[i] != "*" && wild[i] != tok {
				t.Fatalf("%q: subject %q does not match wildcard %q", s, subj, tm.Wildcard())
			}
		}
	})
}

func TestBackoff(t *testing.T) {
	const lo, hi = 100 * time.Millisecond, 2 * time.Second
	for attempts, want := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		want *= time.Millisecond
		if got := Backoff(attempts, lo, hi, 0); got != want/2 {
			t.Errorf("attempt %d, u=0: %v, want %v", attempts, got, want/2)
		}
		if got := Backoff(attempts, lo, hi, 0.999999); got > want || got < want*99/100 {
			t.Errorf("attempt %d, u≈1: %v, want about %v", attempts, got, want)
		}
	}
	if got := Backoff(1000, lo, hi, 0.5); got > hi {
		t.Errorf("attempt 1000: %v above the cap", got)
	}
}

// TestMsgIDOfPackedMessages: messages packed into one datagram share its
// sequence and differ by index, so their de-duplication ids differ too;
// the first (index 0) keeps the id of an unpacked message.
func TestMsgIDOfPackedMessages(t *testing.T) {
	for _, c := range []struct {
		index uint16
		want  string
	}{{0, "00000000000000ab/7/41"}, {1, "00000000000000ab/7/41.1"}, {65535, "00000000000000ab/7/41.65535"}} {
		if got := MsgID(0xab, 7, 41, c.index); got != c.want {
			t.Errorf("MsgID(index %d) = %q, want %q", c.index, got, c.want)
		}
	}
}
