package bridge

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrTemplate wraps every error of ParseTemplate.
var ErrTemplate = errors.New("bridge: invalid subject template")

// TemplateError describes what is wrong with a subject template and where.
type TemplateError struct {
	Template string
	Offset   int // byte offset of the problem in Template
	Reason   string
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("%v %q at byte %d: %s", ErrTemplate, e.Template, e.Offset, e.Reason)
}

// Unwrap returns ErrTemplate.
func (e *TemplateError) Unwrap() error { return ErrTemplate }

// maxSubjectLen bounds a template and every subject rendered from it; NATS
// itself allows more, but a subject this long is a mistake.
const maxSubjectLen = 1024

// field is what a placeholder of a Template stands for.
type field uint8

const (
	fieldText    field = iota // literal text
	fieldStream               // {stream}: stream id in decimal
	fieldSession              // {session}: session id, 16 lower-case hex digits
	fieldSource               // {source}: sender's address, see Template
)

type part struct {
	f    field
	text string
}

// Template is a NATS subject with placeholders, filled in per message:
//
//	{stream}   the telewire stream id in decimal ("7")
//	{session}  the sender's session id as 16 lower-case hex digits
//	{source}   the sender's IP address and port, every byte other than a
//	           letter, digit or '_' turned into '-', so the whole address
//	           stays one subject token ("10.0.0.1:9000" → "10-0-0-1-9000",
//	           "[::1]:9000" → "--1-9000")
//
// A placeholder must be a whole token (between dots), the template must not
// contain wildcards ('*', '>'), white space or empty tokens: it names where
// a message is published. The zero Template is invalid; build one with
// ParseTemplate. A Template is immutable and safe for concurrent use.
type Template struct {
	raw   string
	parts []part
}

// ParseTemplate checks s and returns its Template. Errors are
// *TemplateError, wrapping ErrTemplate.
func ParseTemplate(s string) (Template, error) {
	bad := func(off int, reason string) (Template, error) {
		return Template{}, &TemplateError{Template: s, Offset: off, Reason: reason}
	}
	if s == "" {
		return bad(0, "empty")
	}
	if len(s) > maxSubjectLen {
		return bad(maxSubjectLen, fmt.Sprintf("longer than %d bytes", maxSubjectLen))
	}
	t := Template{raw: s}
	off := 0
	for _, tok := range strings.Split(s, ".") {
		if off > 0 {
			t.appendText(".")
		}
		if tok == "" {
			return bad(off, "empty token")
		}
		switch tok {
		case "{stream}":
			t.parts = append(t.parts, part{f: fieldStream})
		case "{session}":
			t.parts = append(t.parts, part{f: fieldSession})
		case "{source}":
			t.parts = append(t.parts, part{f: fieldSource})
		default:
			for i := 0; i < len(tok); i++ {
				switch c := tok[i]; {
				case c == '{' || c == '}':
					return bad(off+i, "a placeholder must be a whole token: {stream}, {session} or {source}")
				case c == '*' || c == '>':
					return bad(off+i, "wildcards cannot be published to")
				case c <= ' ' || c == 0x7f:
					return bad(off+i, "white space or control character")
				}
			}
			t.appendText(tok)
		}
		off += len(tok) + 1
	}
	return t, nil
}

func (t *Template) appendText(s string) {
	if n := len(t.parts); n > 0 && t.parts[n-1].f == fieldText {
		t.parts[n-1].text += s
		return
	}
	t.parts = append(t.parts, part{text: s})
}

// String returns the template as parsed.
func (t Template) String() string { return t.raw }

// Wildcard returns the subject filter that matches every subject the
// template renders: each placeholder becomes '*' ("telewire.{stream}" →
// "telewire.*"). It is what a stream created for the template listens on.
func (t Template) Wildcard() string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.f == fieldText {
			b.WriteString(p.text)
		} else {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// Static reports whether the template has no placeholder.
func (t Template) Static() bool {
	return len(t.parts) <= 1 && (len(t.parts) == 0 || t.parts[0].f == fieldText)
}

// AppendSubject appends the subject for one message to b.
func (t Template) AppendSubject(b []byte, session uint64, stream uint32, source netip.AddrPort) []byte {
	for _, p := range t.parts {
		switch p.f {
		case fieldText:
			b = append(b, p.text...)
		case fieldStream:
			b = strconv.AppendUint(b, uint64(stream), 10)
		case fieldSession:
			b = appendHex16(b, session)
		case fieldSource:
			b = appendSourceToken(b, source)
		}
	}
	return b
}

func appendHex16(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[(v>>uint(shift))&0xf])
	}
	return b
}

// appendSourceToken appends ap as one subject token (see Template).
func appendSourceToken(b []byte, ap netip.AddrPort) []byte {
	start := len(b)
	b = ap.Addr().AppendTo(b)
	for i := start; i < len(b); i++ {
		if c := b[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
			b[i] = '-'
		}
	}
	b = append(b, '-')
	return strconv.AppendUint(b, uint64(ap.Port()), 10)
}
