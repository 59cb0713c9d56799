package packet

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

// framed wraps body in a valid header of the given kind and flags with a
// correct length and checksum, so that fuzzing reaches the body decoder
// instead of stopping at the checksum.
func framed(k Kind, flags byte, body []byte) []byte {
	if HeaderLen+len(body) > MaxPacketLen {
		body = body[:MaxPacketLen-HeaderLen]
	}
	b := appendHeader(nil, &Header{Kind: k, Flags: Flags(flags), Session: 9, Stream: 3}, HeaderLen+len(body))
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	return b
}

// checkReencode parses b and, when it parses, requires that encoding the
// result gives b back exactly: the format has one encoding per packet.
func checkReencode(t *testing.T, b []byte) {
	var p Packet
	if err := p.Parse(b); err != nil {
		return
	}
	out, err := p.AppendTo(nil)
	if err != nil {
		t.Fatalf("parsed %v packet does not re-encode: %v", p.Kind, err)
	}
	if !bytes.Equal(out, b) {
		t.Fatalf("re-encoding differs\n in  %x\n out %x", b, out)
	}
}

// fuzzBody runs a fuzz target for one kind's body decoder, seeded with the
// bodies of the sample packets of that kind.
func fuzzBody(f *testing.F, k Kind) {
	for _, p := range samples() {
		if p.Kind == k {
			b := encode(f, p)
			f.Add(byte(p.Flags), b[HeaderLen:])
		}
	}
	f.Add(byte(0), []byte{})
	f.Fuzz(func(t *testing.T, flags byte, body []byte) {
		b := framed(k, flags, body)
		checkReencode(t, b)
		checkParseBody(t, b)
	})
}

// checkParseBody requires ParseBody on b's header and body to agree with
// Parse on b: the same error, or the same packet.
func checkParseBody(t *testing.T, b []byte) {
	h, err := PeekHeader(b)
	if err != nil {
		return
	}
	var whole, parts Packet
	errWhole := whole.Parse(b)
	errParts := parts.ParseBody(h, b[HeaderLen:])
	if errWhole != errParts {
		t.Fatalf("Parse says %v, ParseBody says %v", errWhole, errParts)
	}
	if errWhole == nil && !reflect.DeepEqual(whole, parts) {
		t.Fatalf("Parse gives %+v, ParseBody %+v", whole, parts)
	}
}

func FuzzDataBody(f *testing.F)      { fuzzBody(f, KindData) }
func FuzzParityBody(f *testing.F)    { fuzzBody(f, KindParity) }
func FuzzNACKBody(f *testing.F)      { fuzzBody(f, KindNACK) }
func FuzzReportBody(f *testing.F)    { fuzzBody(f, KindReport) }
func FuzzHeartbeatBody(f *testing.F) { fuzzBody(f, KindHeartbeat) }
func FuzzHelloBody(f *testing.F)     { fuzzBody(f, KindHello) }
func FuzzWelcomeBody(f *testing.F)   { fuzzBody(f, KindWelcome) }
func FuzzConfirmBody(f *testing.F)   { fuzzBody(f, KindConfirm) }
func FuzzRetryBody(f *testing.F)     { fuzzBody(f, KindRetry) }
func FuzzSubscribeBody(f *testing.F) { fuzzBody(f, KindSubscribe) }
func FuzzTokenBody(f *testing.F)     { fuzzBody(f, KindToken) }
func FuzzGoodbyeBody(f *testing.F)   { fuzzBody(f, KindGoodbye) }

// FuzzParse feeds whole datagrams, header included, to Parse.
func FuzzParse(f *testing.F) {
	for _, p := range samples() {
		f.Add(encode(f, p))
	}
	f.Add([]byte("TW"))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkReencode(t, b)
		_, _ = PeekHeader(b)
	})
}
