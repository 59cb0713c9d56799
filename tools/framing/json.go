package framing

import (
	"encoding/base64"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// Meta is what JSON framing writes about a message besides its payload.
// Line and len32 framing ignore it.
type Meta struct {
	Source       netip.AddrPort // the sender's address
	Session      uint64         // the sender's session id (written as 16 hex digits)
	Stream       uint32
	Seq          uint64
	SentNanos    int64  // the sender's timestamp (its own clock)
	ReceiveNanos int64  // when it arrived, Unix nanoseconds
	Origin       string // "first", "retransmit" or "fec"
}

// Gap is a range of sequences of one stream that the receiver passed over
// for good, as JSON framing writes it.
type Gap struct {
	Source       netip.AddrPort
	Session      uint64
	Stream       uint32
	First, Last  uint64 // the sequences skipped, inclusive
	Reason       string // e.g. "deadline"; see receiver.GapReason
	ReceiveNanos int64  // when the receiver passed them, Unix nanoseconds
}

// AppendJSONMessage appends one message as a JSON object and a newline:
//
//	{"type":"message","source":"127.0.0.1:40000","session":"00a1b2c3d4e5f607",
//	 "stream":0,"seq":5,"sent_ns":123,"recv_ns":1765000000000000000,
//	 "origin":"first","payload":"hello"}
//
// (on one line). The payload is a JSON string when it is valid UTF-8, and
// otherwise standard base64 in "payload_base64" instead. With m nil only
// "type" and the payload are written. It allocates nothing when b has
// room.
func AppendJSONMessage(b []byte, m *Meta, payload []byte) []byte {
	b = append(b, `{"type":"message"`...)
	if m != nil {
		b = appendOrigin(b, m.Source, m.Session, m.Stream)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, m.Seq, 10)
		b = append(b, `,"sent_ns":`...)
		b = strconv.AppendInt(b, m.SentNanos, 10)
		b = append(b, `,"recv_ns":`...)
		b = strconv.AppendInt(b, m.ReceiveNanos, 10)
		b = append(b, `,"origin":`...)
		b = AppendJSONString(b, m.Origin)
	}
	if utf8.Valid(payload) {
		b = append(b, `,"payload":`...)
		b = AppendJSONString(b, payload)
	} else {
		b = append(b, `,"payload_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, payload)
		b = append(b, '"')
	}
	return append(b, '}', '\n')
}

// AppendJSONGap appends one gap as a JSON object and a newline:
//
//	{"type":"gap","source":"127.0.0.1:40000","session":"00a1b2c3d4e5f607",
//	 "stream":0,"first":6,"last":8,"count":3,"reason":"deadline",
//	 "recv_ns":1765000000000000000}
//
// (on one line). It allocates nothing when b has room.
func AppendJSONGap(b []byte, g *Gap) []byte {
	b = append(b, `{"type":"gap"`...)
	b = appendOrigin(b, g.Source, g.Session, g.Stream)
	b = append(b, `,"first":`...)
	b = strconv.AppendUint(b, g.First, 10)
	b = append(b, `,"last":`...)
	b = strconv.AppendUint(b, g.Last, 10)
	b = append(b, `,"count":`...)
	// The count of First..Last (0 for the whole 2^64 range, which no
	// receiver's window can skip).
	b = strconv.AppendUint(b, g.Last-g.First+1, 10)
	b = append(b, `,"reason":`...)
	b = AppendJSONString(b, g.Reason)
	b = append(b, `,"recv_ns":`...)
	b = strconv.AppendInt(b, g.ReceiveNanos, 10)
	return append(b, '}', '\n')
}

// appendOrigin appends the source, session and stream fields.
func appendOrigin(b []byte, src netip.AddrPort, session uint64, stream uint32) []byte {
	b = append(b, `,"source":"`...)
	if src.IsValid() {
		n := len(b)
		b = src.AppendTo(b)
		if needsEscape(b[n:]) { // only an IPv6 zone could
			zone := string(b[n:])
			b = AppendJSONString(b[:n-1], zone)
			b = b[:len(b)-1]
		}
	}
	b = append(b, `","session":"`...)
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[session>>uint(shift)&15])
	}
	b = append(b, `","stream":`...)
	return strconv.AppendUint(b, uint64(stream), 10)
}

// AppendJSONString appends s as a quoted JSON string. Bytes below 0x20,
// the quote and the backslash are escaped (\n, \r, \t, \b, \f or \u00XX);
// everything else, multi-byte UTF-8 included, is copied. A byte that is
// not part of valid UTF-8 is written as \ufffd, so the result is always
// valid JSON; callers with binary data check utf8.Valid first (as
// AppendJSONMessage does) to keep it lossless. It allocates nothing when b
// has room.
func AppendJSONString[S ~string | ~[]byte](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			size := utf8Len(s, i)
			if size == 0 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// utf8Len returns the length of the valid UTF-8 sequence starting at s[i]
// (a byte >= 0x80), or 0 if there is none: the byte ranges of RFC 3629 §4,
// which exclude overlong forms, surrogates and code points past U+10FFFF.
func utf8Len[S ~string | ~[]byte](s S, i int) int {
	cont := func(j int, lo, hi byte) bool { return j < len(s) && s[j] >= lo && s[j] <= hi }
	c := s[i]
	switch {
	case c >= 0xc2 && c <= 0xdf:
		if cont(i+1, 0x80, 0xbf) {
			return 2
		}
	case c >= 0xe0 && c <= 0xef:
		lo, hi := byte(0x80), byte(0xbf)
		if c == 0xe0 {
			lo = 0xa0
		} else if c == 0xed {
			hi = 0x9f
		}
		if cont(i+1, lo, hi) && cont(i+2, 0x80, 0xbf) {
			return 3
		}
	case c >= 0xf0 && c <= 0xf4:
		lo, hi := byte(0x80), byte(0xbf)
		if c == 0xf0 {
			lo = 0x90
		} else if c == 0xf4 {
			hi = 0x8f
		}
		if cont(i+1, lo, hi) && cont(i+2, 0x80, 0xbf) && cont(i+3, 0x80, 0xbf) {
			return 4
		}
	}
	return 0
}

// needsEscape reports whether AppendJSONString would change s.
func needsEscape(s []byte) bool {
	for _, c := range s {
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return true
		}
	}
	return false
}
