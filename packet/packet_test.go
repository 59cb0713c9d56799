package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

// samples returns one valid packet of every kind.
func samples() []*Packet {
	h := func(k Kind, f Flags) Header {
		return Header{Kind: k, Flags: f, Session: 0x0123456789abcdef, Stream: 7}
	}
	return []*Packet{
		{Header: h(KindData, 0), Seq: 42, Timestamp: 1_000_000_007, Payload: []byte("tick AAPL 187.25 100")},
		{Header: h(KindData, FlagRetransmit), Seq: 1<<32 - 1, Timestamp: -5, Payload: []byte{}},
		{Header: h(KindParity, 0), Parity: Parity{First: 1 << 40, K: 10, M: 3, Index: 2, Stride: 1}, Payload: bytes.Repeat([]byte{0xa5}, 100)},
		{Header: h(KindNACK, 0), Ranges: []Range{{First: 10, Len: 1}, {First: 12, Len: 5}, {First: 100, Len: 65536}}},
		{Header: h(KindNACK, FlagUnavailable), Ranges: []Range{{First: 1<<64 - 2, Len: 4}}},
		{Header: h(KindReport, 0), Report: Report{
			EchoTimestamp: 99, EchoHoldNanos: 1234, HighestSeq: 1000, Received: 990, Lost: 12,
			Unrecovered: 1, RecoveredRTX: 8, RecoveredFEC: 3, Duplicates: 2, Reordered: 4, Late: 1,
			NACKsSent: 5, Retransmits: 9, JitterNanos: 300_000, DelayP50Nanos: 1, DelayP90Nanos: 2,
			DelayP99Nanos: 3, DelayMaxNanos: 4, Malformed: 6, IntervalLossPPM: 20_000, BurstMeanMilli: 1500,
		}},
		{Header: h(KindHeartbeat, 0), Heartbeat: Heartbeat{Start: 5, Next: 77, Timestamp: 123456789}},
		{Header: h(KindData, FlagRetransmit|FlagProtected), Seq: 9, Timestamp: 3, Payload: []byte("protected")},
		{Header: h(KindNACK, FlagProof), Ranges: []Range{{First: 10, Len: 2}}, ProofSeq: 42, ProofTimestamp: 1_000_000_007},
		{Header: h(KindNACK, FlagProof|FlagHistory), Ranges: []Range{{First: 1, Len: 9}}, ProofSeq: 42, ProofTimestamp: 1_000_000_007},
		{Header: h(KindReport, FlagEarly|FlagChallenge), Report: Report{EchoTimestamp: 7, HighestSeq: 3, Received: 4}, Challenge: 0xfeedfacecafebeef},
		{Header: h(KindHeartbeat, FlagAnswer), Heartbeat: Heartbeat{Start: 5, Next: 77, Timestamp: 123456789, Answer: 0xfeedfacecafebeef, AnswerHoldNanos: 250_000}},
		{Header: h(KindHeartbeat, FlagGroup), Heartbeat: Heartbeat{Start: 5, Next: 77, Timestamp: 123456789, Receivers: 100}},
		{Header: h(KindHello, 0), Handshake: Handshake{Ephemeral: [32]byte{1, 2, 3, 31: 0xff}, Timestamp: 1_000_000_000}},
		{Header: h(KindWelcome, 0), Handshake: Handshake{Ephemeral: [32]byte{0: 0xee, 31: 9}, Timestamp: 1_000_000_000}},
		{Header: h(KindConfirm, 0)},
		{Header: h(KindRetry, 0), Handshake: Handshake{KeyTag: 0xdeadbeef, Counter: 1 << 40}},
		// Message maps (FlagMessages): one message; three packed, the
		// later two sent 1.5 µs and 40 µs after the first; a fragment.
		{Header: h(KindData, FlagMessages), Seq: 43, Timestamp: 1_000_000_008, Payload: AppendEntry(AppendMessagesHeader(nil, 1), 0, []byte("tick"))},
		{Header: h(KindData, FlagMessages|FlagProtected), Seq: 44, Timestamp: 1_000_000_009, Payload: AppendEntry(AppendEntry(AppendEntry(
			AppendMessagesHeader(nil, 3), 0, []byte("a")), 1500, []byte("bb")), 40_000, []byte{})},
		{Header: h(KindData, FlagMessages), Seq: 46, Timestamp: 1_000_000_010, Payload: AppendFragment(nil, &Fragment{Length: 3000, Offset: 1200, Index: 1, Data: []byte("0123456789")})},
		{Header: h(KindParity, FlagMessages), Parity: Parity{First: 44, K: 2, M: 1, Index: 0, Stride: 1}, Payload: bytes.Repeat([]byte{0x5a}, 40)},
		// Subscription: a first SUBSCRIBE, the TOKEN answering it, the
		// SUBSCRIBE echoing it, a subscriber's GOODBYE and a sender's.
		{Header: Header{Kind: KindSubscribe}, Subscription: Subscription{Nonce: 0x1122334455667788}},
		{Header: h(KindToken, FlagToken), Subscription: Subscription{Nonce: 0x1122334455667788, TokenTime: 5_000_000_000, TokenMAC: [16]byte{0: 0xab, 15: 0xcd}}},
		{Header: Header{Kind: KindSubscribe, Flags: FlagToken}, Subscription: Subscription{Nonce: 0x1122334455667788, TokenTime: 5_000_000_000, TokenMAC: [16]byte{0: 0xab, 15: 0xcd}}},
		{Header: Header{Kind: KindGoodbye, Flags: FlagToken}, Subscription: Subscription{Nonce: 0x1122334455667788, Reason: ReasonLeaving, TokenTime: 5_000_000_000, TokenMAC: [16]byte{0: 0xab, 15: 0xcd}}},
		{Header: h(KindGoodbye, 0), Subscription: Subscription{Nonce: 0x1122334455667788, Reason: ReasonSlow}},
		// With a key: the echo and the subscriber's GOODBYE carry a MAC
		// under the pre-shared key (FlagAuth, after the token).
		{Header: Header{Kind: KindSubscribe, Flags: FlagToken | FlagAuth}, Subscription: Subscription{Nonce: 0x1122334455667788, TokenTime: 5_000_000_000, TokenMAC: [16]byte{0: 0xab, 15: 0xcd}, Auth: [16]byte{0: 0x11, 15: 0x22}}},
		{Header: Header{Kind: KindGoodbye, Flags: FlagToken | FlagAuth}, Subscription: Subscription{Nonce: 0x1122334455667788, TokenTime: 5_000_000_000, TokenMAC: [16]byte{0: 0xab, 15: 0xcd}, Auth: [16]byte{0: 0x33, 15: 0x44}}},
	}
}

func encode(t testing.TB, p *Packet) []byte {
	t.Helper()
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatalf("AppendTo(%v): %v", p.Kind, err)
	}
	return b
}

// equalPackets compares the fields that matter for the packet's kind.
func equalPackets(a, b *Packet) bool {
	if a.Header != b.Header {
		return false
	}
	switch a.Kind {
	case KindData:
		return a.Seq == b.Seq && a.Timestamp == b.Timestamp && bytes.Equal(a.Payload, b.Payload)
	case KindParity:
		return a.Parity == b.Parity && bytes.Equal(a.Payload, b.Payload)
	case KindNACK:
		return reflect.DeepEqual(a.Ranges, b.Ranges) && a.ProofSeq == b.ProofSeq && a.ProofTimestamp == b.ProofTimestamp
	case KindReport:
		return a.Report == b.Report && a.Challenge == b.Challenge
	case KindHeartbeat:
		return a.Heartbeat == b.Heartbeat
	case KindHello, KindWelcome, KindConfirm, KindRetry:
		return a.Handshake == b.Handshake
	case KindSubscribe, KindToken, KindGoodbye:
		return a.Subscription == b.Subscription
	}
	return false
}

func TestRoundTrip(t *testing.T) {
	for _, want := range samples() {
		b := encode(t, want)
		if len(b) != want.EncodedLen() {
			t.Errorf("%v: encoded %d bytes, EncodedLen says %d", want.Kind, len(b), want.EncodedLen())
		}
		var got Packet
		if err := got.Parse(b); err != nil {
			t.Fatalf("%v: Parse: %v", want.Kind, err)
		}
		if !equalPackets(want, &got) {
			t.Errorf("%v: round trip mismatch\nwant %+v\n got %+v", want.Kind, want, &got)
		}
	}
}

// TestAppendKeepsPrefix checks that AppendTo appends and leaves what the
// buffer held alone, as the append convention promises.
func TestAppendKeepsPrefix(t *testing.T) {
	p := samples()[0]
	b, err := p.AppendTo([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) {
		t.Fatalf("prefix overwritten: %q", b[:6])
	}
	var q Packet
	if err := q.Parse(b[6:]); err != nil || !equalPackets(p, &q) {
		t.Fatalf("parse after prefix: %v", err)
	}
}

// TestTruncatedPrefixes feeds every proper prefix of every kind to Parse:
// each must fail cleanly with a sentinel error.
func TestTruncatedPrefixes(t *testing.T) {
	for _, p := range samples() {
		b := encode(t, p)
		for i := range len(b) {
			var q Packet
			err := q.Parse(b[:i])
			if err == nil {
				t.Fatalf("%v: prefix of %d/%d bytes parsed", p.Kind, i, len(b))
			}
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrLength) {
				t.Fatalf("%v: prefix of %d bytes: unexpected error %v", p.Kind, i, err)
			}
		}
	}
}

func TestRejects(t *testing.T) {
	data := encode(t, samples()[0])
	mut := func(f func(b []byte) []byte) []byte {
		return f(bytes.Clone(data))
	}
	// reseal recomputes length and checksum so that a test reaches the check
	// after them.
	reseal := func(b []byte) []byte {
		binary.BigEndian.PutUint16(b[offLength:], uint16(len(b)))
		binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
		return b
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"foreign", []byte("GET / HTTP/1.1\r\nHost: example\r\n\r\n"), ErrBadMagic},
		{"bad version", mut(func(b []byte) []byte { b[offVersion] = 2; return b }), ErrBadVersion},
		{"kind zero", mut(func(b []byte) []byte { b[offKind] = 0; return b }), ErrUnknownKind},
		{"kind reserved", mut(func(b []byte) []byte { b[offKind] = 13; return b }), ErrUnknownKind},
		{"undefined flag", mut(func(b []byte) []byte { b[offFlags] = 0x80; return reseal(b) }), ErrBadFlags},
		{"sealed envelope", mut(func(b []byte) []byte { b[offEnvelope] = 1; return reseal(b) }), ErrSealed},
		{"length too small", mut(func(b []byte) []byte { b[offLength+1]--; return b }), ErrLength},
		{"trailing garbage", mut(func(b []byte) []byte { return append(b, 0) }), ErrLength},
		{"payload bit flip", mut(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrChecksum},
		{"session bit flip", mut(func(b []byte) []byte { b[offSession] ^= 0x10; return b }), ErrChecksum},
		{"oversized", make([]byte, MaxPacketLen+1), ErrTooLarge},
	}
	for _, c := range cases {
		var p Packet
		if err := p.Parse(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

// TestRejectsBadBodies builds packets with invalid bodies by hand (AppendTo
// refuses to) and checks Parse rejects each.
func TestRejectsBadBodies(t *testing.T) {
	raw := func(k Kind, body []byte) []byte {
		b := appendHeader(nil, &Header{Kind: k, Session: 1}, HeaderLen+len(body))
		b = append(b, body...)
		binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
		return b
	}
	nack := func(rs ...Range) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(len(rs)))
		b = append(b, 0, 0)
		for _, r := range rs {
			b = binary.BigEndian.AppendUint64(b, r.First)
			b = binary.BigEndian.AppendUint32(b, r.Len)
		}
		return b
	}
	parity := func(k, m, idx, stride byte, shard int) []byte {
		b := binary.BigEndian.AppendUint64(nil, 100)
		b = append(b, k, m, idx, stride)
		return append(b, make([]byte, shard)...)
	}
	sub := func(reason, reserved byte) []byte {
		b := make([]byte, SubscriptionLen)
		b[11], b[15] = reason, reserved
		return b
	}
	hb := func(start, next uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, start)
		b = binary.BigEndian.AppendUint64(b, next)
		return binary.BigEndian.AppendUint64(b, 0)
	}
	badReport := make([]byte, ReportLen)
	binary.BigEndian.PutUint32(badReport[152:], MaxLossPPM+1)
	negHold := make([]byte, ReportLen)
	binary.BigEndian.PutUint64(negHold[8:], 1<<63)

	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"data short", raw(KindData, make([]byte, DataHeaderLen-1)), ErrShort},
		{"parity no shard", raw(KindParity, parity(10, 3, 0, 1, 0)), ErrShort},
		{"parity K=0", raw(KindParity, parity(0, 3, 0, 1, 8)), ErrBadField},
		{"parity M=0", raw(KindParity, parity(10, 0, 0, 1, 8)), ErrBadField},
		{"parity K+M>256", raw(KindParity, parity(200, 57, 0, 1, 8)), ErrBadField},
		{"parity index>=M", raw(KindParity, parity(10, 3, 3, 1, 8)), ErrBadField},
		{"parity stride 0", raw(KindParity, parity(10, 3, 0, 0, 8)), ErrBadField},
		{"nack zero ranges", raw(KindNACK, nack()), ErrBadRanges},
		{"nack count beyond body", raw(KindNACK, nack(Range{1, 1})[:NACKHeaderLen+RangeLen-1]), ErrShort},
		{"nack extra bytes", raw(KindNACK, append(nack(Range{1, 1}), 0)), ErrLength},
		{"nack empty range", raw(KindNACK, nack(Range{1, 0})), ErrBadRanges},
		{"nack range too long", raw(KindNACK, nack(Range{1, MaxRangeLen + 1})), ErrBadRanges},
		{"nack inverted", raw(KindNACK, nack(Range{100, 1}, Range{10, 1})), ErrBadRanges},
		{"nack overlapping", raw(KindNACK, nack(Range{10, 5}, Range{12, 1})), ErrBadRanges},
		{"nack touching", raw(KindNACK, nack(Range{10, 5}, Range{15, 1})), ErrBadRanges},
		{"nack span 2^31", raw(KindNACK, nack(Range{0, 1}, Range{1 << 31, 1})), ErrBadRanges},
		{"nack too many", raw(KindNACK, append(binary.BigEndian.AppendUint16(nil, MaxRanges+1), 0, 0)), ErrBadRanges},
		{"nack reserved", raw(KindNACK, append([]byte{0, 1, 0, 1}, make([]byte, RangeLen)...)), ErrBadField},
		{"report short", raw(KindReport, make([]byte, ReportLen-1)), ErrShort},
		{"report long", raw(KindReport, make([]byte, ReportLen+1)), ErrLength},
		{"report loss > 100%", raw(KindReport, badReport), ErrBadField},
		{"report negative hold", raw(KindReport, negHold), ErrBadField},
		{"heartbeat short", raw(KindHeartbeat, make([]byte, HeartbeatLen-1)), ErrShort},
		{"heartbeat next before start", raw(KindHeartbeat, hb(10, 9)), ErrBadField},
		{"heartbeat group size 0", framed(KindHeartbeat, byte(FlagGroup), binary.BigEndian.AppendUint32(hb(1, 2), 0)), ErrBadField},
		{"heartbeat group size too big", framed(KindHeartbeat, byte(FlagGroup), binary.BigEndian.AppendUint32(hb(1, 2), MaxGroupReceivers+1)), ErrBadField},
		{"heartbeat group size missing", framed(KindHeartbeat, byte(FlagGroup), hb(1, 2)), ErrShort},
		{"heartbeat answer and group", framed(KindHeartbeat, byte(FlagAnswer|FlagGroup), binary.BigEndian.AppendUint32(append(hb(1, 2), make([]byte, AnswerLen)...), 3)), ErrBadFlags},
		{"hello short", raw(KindHello, make([]byte, HelloLen-1)), ErrShort},
		{"hello long", raw(KindHello, make([]byte, HelloLen+1)), ErrLength},
		{"welcome short", raw(KindWelcome, make([]byte, EphemeralLen)), ErrShort},
		{"confirm not empty", raw(KindConfirm, []byte{0}), ErrLength},
		{"retry short", raw(KindRetry, make([]byte, RetryLen-1)), ErrShort},
		{"retry reserved", raw(KindRetry, []byte{0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}), ErrBadField},
		{"subscribe short", raw(KindSubscribe, make([]byte, SubscriptionLen-1)), ErrShort},
		{"subscribe long", raw(KindSubscribe, make([]byte, SubscriptionLen+1)), ErrLength},
		{"subscribe reason", raw(KindSubscribe, sub(1, 0)), ErrBadField},
		{"subscribe reserved", raw(KindSubscribe, sub(0, 9)), ErrBadField},
		{"goodbye unknown reason", raw(KindGoodbye, sub(4, 0)), ErrBadField},
		{"goodbye reserved", raw(KindGoodbye, sub(1, 15)), ErrBadField},
	}
	for _, c := range cases {
		var p Packet
		if err := p.Parse(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestAppendToValidates(t *testing.T) {
	cases := []struct {
		name string
		p    Packet
		want error
	}{
		{"no kind", Packet{}, ErrUnknownKind},
		{"undefined flag on report", Packet{Header: Header{Kind: KindReport, Flags: 4}}, ErrBadFlags},
		{"payload too large", Packet{Header: Header{Kind: KindData}, Payload: make([]byte, MaxPayload+1)}, ErrTooLarge},
		{"empty nack", Packet{Header: Header{Kind: KindNACK}}, ErrBadRanges},
		{"bad parity", Packet{Header: Header{Kind: KindParity}, Payload: []byte{1}}, ErrBadField},
		{"bad report", Packet{Header: Header{Kind: KindReport}, Report: Report{IntervalLossPPM: 2e6}}, ErrBadField},
		{"reason on subscribe", Packet{Header: Header{Kind: KindSubscribe}, Subscription: Subscription{Reason: ReasonSlow}}, ErrBadField},
		{"token fields without flag", Packet{Header: Header{Kind: KindGoodbye}, Subscription: Subscription{TokenTime: 1}}, ErrBadField},
		{"auth without token", Packet{Header: Header{Kind: KindSubscribe, Flags: FlagAuth}}, ErrBadFlags},
		{"auth field without flag", Packet{Header: Header{Kind: KindSubscribe, Flags: FlagToken}, Subscription: Subscription{Auth: [16]byte{1}}}, ErrBadField},
		{"auth on a token", Packet{Header: Header{Kind: KindToken, Flags: FlagToken | FlagAuth}}, ErrBadFlags},
	}
	for _, c := range cases {
		b, err := c.p.AppendTo([]byte("x"))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
		if string(b) != "x" {
			t.Errorf("%s: buffer changed on error: %q", c.name, b)
		}
	}
	// The largest payload fits exactly.
	p := Packet{Header: Header{Kind: KindData}, Payload: make([]byte, MaxPayload)}
	b, err := p.AppendTo(nil)
	if err != nil || len(b) != MaxPacketLen {
		t.Fatalf("max payload: len %d, err %v", len(b), err)
	}
	var q Packet
	if err := q.Parse(b); err != nil {
		t.Fatalf("max payload parse: %v", err)
	}
}

func TestPeekHeader(t *testing.T) {
	b := encode(t, samples()[3])
	h, err := PeekHeader(b)
	if err != nil || h.Kind != KindNACK || h.Stream != 7 || h.Session != 0x0123456789abcdef {
		t.Fatalf("PeekHeader = %+v, %v", h, err)
	}
	if _, err := PeekHeader(b[:HeaderLen-1]); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
}

func TestKindString(t *testing.T) {
	if KindData.String() != "DATA" || KindRetry.String() != "RETRY" || KindGoodbye.String() != "GOODBYE" || Kind(13).String() != "KIND(13)" {
		t.Fatalf("got %q %q %q %q", KindData, KindRetry, KindGoodbye, Kind(13))
	}
	for k := Kind(0); k < 16; k++ {
		if want := k >= 6 && k <= 9; k.IsHandshake() != want {
			t.Errorf("%v.IsHandshake() = %v", k, !want)
		}
		if want := k >= 10 && k <= 12; k.IsSubscription() != want {
			t.Errorf("%v.IsSubscription() = %v", k, !want)
		}
	}
}

// TestZeroAllocs proves encode and decode of every kind allocate nothing
// when the caller's buffer has room.
func TestZeroAllocs(t *testing.T) {
	buf := make([]byte, 0, MaxPacketLen)
	var q Packet
	for _, p := range samples() {
		enc := encode(t, p)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := p.AppendTo(buf[:0]); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%v: AppendTo allocates %.1f times", p.Kind, n)
		}
		if n := testing.AllocsPerRun(100, func() {
			if err := q.Parse(enc); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%v: Parse allocates %.1f times", p.Kind, n)
		}
	}
	junk := []byte("definitely not a telewire packet at all")
	if n := testing.AllocsPerRun(100, func() { _ = q.Parse(junk) }); n != 0 {
		t.Errorf("rejecting a datagram allocates %.1f times", n)
	}
}

func TestMarkRetransmit(t *testing.T) {
	p := samples()[0]
	b := encode(t, p)
	if err := MarkRetransmit(b); err != nil {
		t.Fatal(err)
	}
	var q Packet
	if err := q.Parse(b); err != nil {
		t.Fatalf("marked packet does not parse: %v", err)
	}
	if q.Flags != FlagRetransmit || q.Seq != p.Seq || q.Timestamp != p.Timestamp || !bytes.Equal(q.Payload, p.Payload) {
		t.Fatalf("marked packet %+v", q)
	}
	if err := MarkRetransmit(encode(t, samples()[3])); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("NACK marked: %v", err)
	}
	if err := MarkRetransmit(b[:10]); !errors.Is(err, ErrShort) {
		t.Fatalf("short: %v", err)
	}
}

func TestParseBodyRejectsBadHeader(t *testing.T) {
	var p Packet
	body := make([]byte, HeartbeatLen)
	cases := []struct {
		name string
		h    Header
		body []byte
		want error
	}{
		{"kind zero", Header{}, body, ErrUnknownKind},
		{"kind reserved", Header{Kind: 13}, body, ErrUnknownKind},
		{"flag not of kind", Header{Kind: KindHeartbeat, Flags: 4}, body, ErrBadFlags},
		{"body too large", Header{Kind: KindData}, make([]byte, MaxPacketLen), ErrTooLarge},
		{"body short", Header{Kind: KindHeartbeat}, body[:3], ErrShort},
	}
	for _, c := range cases {
		if err := p.ParseBody(c.h, c.body); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if err := p.ParseBody(Header{Kind: KindHeartbeat, Session: 7, Stream: 2}, body); err != nil {
		t.Fatalf("valid heartbeat body: %v", err)
	}
	if p.Kind != KindHeartbeat || p.Session != 7 || p.Stream != 2 {
		t.Fatalf("header not taken from the argument: %+v", p.Header)
	}
}
