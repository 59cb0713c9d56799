package wireshark

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"

	"github.com/telewire/telewire/packet"
)

// Field is one field of a layout as the dissector shows it.
type Field struct {
	// Abbrev is the display filter name after "telewire.", e.g.
	// "data.seq".
	Abbrev string
	// Name is the label shown in the packet tree.
	Name string
	// Doc is how the byte table in packet/doc.go (or internal/seal/doc.go)
	// names the field: the start of its "field" column. Empty for fields
	// the docs describe in prose (REPORT's) or not at all.
	Doc string
	// Offset is from the start of the datagram (for a Range field, from
	// the start of the range; for an Optional field, from the end of the
	// fixed body and any ranges).
	Offset int
	// Size is the field's length in bytes; 0 means up to the end of the
	// body.
	Size int
	// Type is the ProtoField type: uint8, uint16, uint32, uint64, int64
	// or bytes.
	Type string
	// Hex shows the value in hexadecimal.
	Hex bool
	// Zero says the field is reserved: anything but zero is malformed.
	Zero bool
	// Go is the path of the packet.Packet field the value comes from (e.g.
	// "Parity.K"), for the test that reads encoded packets back; empty
	// for fields the encoder fills in itself (magic, length, checksum,
	// reserved bytes).
	Go string
	// Flag, on an Optional field, is the flag bit whose presence adds the
	// field.
	Flag uint8
}

// Flag is one flag bit of a packet kind.
type Flag struct {
	Abbrev string // after "telewire.", e.g. "data.flags.retransmit"
	Name   string
	Mask   uint8
	Go     string // the packet constant, as the docs cite it: "FlagProof"
}

// Info is one value a kind shows in the info column: "label=value"; an
// optional field's only when its flag is set.
type Info struct {
	Label  string
	Abbrev string // a field of the layout
}

// Direction values of the envelope byte (see internal/seal).
const (
	ToReceiver = 1 // sender to receiver
	ToSender   = 2 // receiver to sender
)

// Layout is one packet kind's body.
type Layout struct {
	Kind uint8
	Name string // as packet.Kind.String() says it
	// Doc is the heading of the kind's section in packet/doc.go, or the
	// line introducing its byte table. For a kind with no fields, the
	// sentence that says its body is empty.
	Doc string
	// Fields follow the header, in order.
	Fields []Field
	// BodyLen is the size of the body before any variable part.
	BodyLen int
	// Exact says the body is exactly BodyLen bytes (plus the Optional
	// fields whose flags are set).
	Exact bool
	// MinTail is the least number of bytes the variable part (the Size 0
	// field) must have.
	MinTail int
	// Range, if not nil, is the repeated part: Count ranges of RangeLen
	// bytes after BodyLen, Count read from the field named CountAbbrev.
	Range       []Field
	RangeLen    int
	CountAbbrev string
	MaxCount    int
	// Optional fields end the body when their flag is set, and are absent
	// otherwise; their offsets count from the end of the fixed body and
	// the ranges. All of a kind's optional fields hang on one flag (the
	// tests enforce it: with two, their order would need a rule), unless
	// the kind's flags are Exclusive.
	Optional []Field
	// Exclusive says the flags that add optional fields never come
	// together (the encoder refuses it), so each flag's fields start at
	// the end of the fixed body.
	Exclusive bool
	Flags     []Flag
	// Dirs are the directions (envelope bytes) the kind travels in
	// seal's envelope.
	Dirs []uint8
	// MAC says that in seal's envelope the body travels in clear,
	// followed by a MAC, with the pre-shared key's id in the header (the
	// handshake's HELLO, WELCOME, RETRY). Every other kind is sealed:
	// counter, encrypted body, GCM tag, with the traffic key tag in the
	// header.
	MAC bool
	// Info are the fields shown in the info column.
	Info []Info
}

// Header is the common header of every packet, plain or sealed.
var Header = []Field{
	{Abbrev: "magic", Name: "Magic", Doc: "magic", Offset: 0, Size: 2, Type: "uint16", Hex: true},
	{Abbrev: "version", Name: "Version", Doc: "version", Offset: 2, Size: 1, Type: "uint8"},
	{Abbrev: "kind", Name: "Kind", Doc: "kind", Offset: 3, Size: 1, Type: "uint8", Go: "Kind"},
	{Abbrev: "flags", Name: "Flags", Doc: "flags", Offset: 4, Size: 1, Type: "uint8", Hex: true, Go: "Flags"},
	{Abbrev: "envelope", Name: "Envelope", Doc: "envelope", Offset: 5, Size: 1, Type: "uint8"},
	{Abbrev: "length", Name: "Length", Doc: "length", Offset: 6, Size: 2, Type: "uint16"},
	{Abbrev: "session", Name: "Session", Doc: "session id", Offset: 8, Size: 8, Type: "uint64", Hex: true, Go: "Session"},
	{Abbrev: "stream", Name: "Stream", Doc: "stream id", Offset: 16, Size: 4, Type: "uint32", Go: "Stream"},
	{Abbrev: "crc", Name: "CRC-32C", Doc: "CRC-32C", Offset: 20, Size: 4, Type: "uint32", Hex: true},
}

// Layouts are the packet kinds, by kind number order.
var Layouts = []Layout{
	{
		Kind: 1, Name: "DATA", Doc: "DATA (kind 1)", BodyLen: packet.DataHeaderLen,
		Fields: []Field{
			{Abbrev: "data.seq", Name: "Sequence", Doc: "sequence number", Offset: 24, Size: 8, Type: "uint64", Go: "Seq"},
			{Abbrev: "data.timestamp", Name: "Sender timestamp (ns)", Doc: "sender timestamp", Offset: 32, Size: 8, Type: "int64", Go: "Timestamp"},
			{Abbrev: "data.payload", Name: "Payload", Doc: "payload", Offset: 40, Type: "bytes", Go: "Payload"},
		},
		Flags: []Flag{
			{Abbrev: "data.flags.retransmit", Name: "Retransmission", Mask: uint8(packet.FlagRetransmit), Go: "FlagRetransmit"},
			{Abbrev: "data.flags.protected", Name: "Protected by FEC", Mask: uint8(packet.FlagProtected), Go: "FlagProtected"},
			{Abbrev: "data.flags.messages", Name: "Message map (packed messages or a fragment)", Mask: uint8(packet.FlagMessages), Go: "FlagMessages"},
		},
		Dirs: []uint8{ToReceiver},
		Info: []Info{{"seq", "data.seq"}},
	},
	{
		Kind: 2, Name: "PARITY", Doc: "PARITY (kind 2)", BodyLen: packet.ParityHeaderLen, MinTail: 1,
		Fields: []Field{
			{Abbrev: "parity.first", Name: "First sequence of block", Doc: "first sequence number", Offset: 24, Size: 8, Type: "uint64", Go: "Parity.First"},
			{Abbrev: "parity.k", Name: "K (data shards)", Doc: "K", Offset: 32, Size: 1, Type: "uint8", Go: "Parity.K"},
			{Abbrev: "parity.m", Name: "M (parity shards)", Doc: "M", Offset: 33, Size: 1, Type: "uint8", Go: "Parity.M"},
			{Abbrev: "parity.index", Name: "Parity index", Doc: "index", Offset: 34, Size: 1, Type: "uint8", Go: "Parity.Index"},
			{Abbrev: "parity.stride", Name: "Stride", Doc: "stride", Offset: 35, Size: 1, Type: "uint8", Go: "Parity.Stride"},
			{Abbrev: "parity.shard", Name: "Parity shard", Doc: "parity shard", Offset: 36, Type: "bytes", Go: "Payload"},
		},
		Dirs:  []uint8{ToReceiver},
		Info:  []Info{{"first", "parity.first"}, {"k", "parity.k"}, {"m", "parity.m"}, {"index", "parity.index"}},
		Flags: []Flag{{Abbrev: "parity.flags.messages", Name: "Block's DATA carry message maps", Mask: uint8(packet.FlagMessages), Go: "FlagMessages"}},
	},
	{
		Kind: 3, Name: "NACK", Doc: "NACK (kind 3)", BodyLen: packet.NACKHeaderLen,
		Fields: []Field{
			{Abbrev: "nack.count", Name: "Ranges", Doc: "count of ranges", Offset: 24, Size: 2, Type: "uint16"},
			{Abbrev: "nack.reserved", Name: "Reserved", Doc: "reserved", Offset: 26, Size: 2, Type: "uint16", Hex: true, Zero: true},
		},
		Range: []Field{
			{Abbrev: "nack.range.first", Name: "First sequence", Doc: "first sequence", Offset: 0, Size: 8, Type: "uint64", Go: "First"},
			{Abbrev: "nack.range.len", Name: "Sequences", Doc: "number of sequences", Offset: 8, Size: 4, Type: "uint32", Go: "Len"},
		},
		RangeLen: packet.RangeLen, CountAbbrev: "nack.count", MaxCount: packet.MaxRanges,
		Optional: []Field{
			{Abbrev: "nack.proof_seq", Name: "Proof: newest sequence received", Doc: "with [FlagProof] only: sequence", Offset: 0, Size: 8, Type: "uint64", Go: "ProofSeq", Flag: uint8(packet.FlagProof)},
			{Abbrev: "nack.proof_timestamp", Name: "Proof: its sender timestamp (ns)", Doc: "with [FlagProof] only: that DATA's send timestamp", Offset: 8, Size: 8, Type: "int64", Go: "ProofTimestamp", Flag: uint8(packet.FlagProof)},
		},
		Flags: []Flag{
			{Abbrev: "nack.flags.unavailable", Name: "Unavailable (sender: no longer buffered)", Mask: uint8(packet.FlagUnavailable), Go: "FlagUnavailable"},
			{Abbrev: "nack.flags.proof", Name: "Proof (newest DATA received follows the ranges)", Mask: uint8(packet.FlagProof), Go: "FlagProof"},
			{Abbrev: "nack.flags.history", Name: "History (a late joiner's request: answer it alone)", Mask: uint8(packet.FlagHistory), Go: "FlagHistory"},
		},
		Dirs: []uint8{ToReceiver, ToSender},
		Info: []Info{{"proof", "nack.proof_seq"}},
	},
	{
		Kind: 4, Name: "REPORT", Doc: "REPORT (kind 4)", BodyLen: packet.ReportLen, Exact: true,
		Fields: reportFields(),
		Optional: []Field{
			{Abbrev: "report.challenge", Name: "Challenge", Offset: 0, Size: 8, Type: "uint64", Hex: true, Go: "Challenge", Flag: uint8(packet.FlagChallenge)},
		},
		Flags: []Flag{
			{Abbrev: "report.flags.early", Name: "Early (interval figures repeat the last interval)", Mask: uint8(packet.FlagEarly), Go: "FlagEarly"},
			{Abbrev: "report.flags.challenge", Name: "Challenge (answer with a HEARTBEAT)", Mask: uint8(packet.FlagChallenge), Go: "FlagChallenge"},
		},
		Dirs: []uint8{ToSender},
		Info: []Info{{"challenge", "report.challenge"}},
	},
	{
		Kind: 5, Name: "HEARTBEAT", Doc: "HEARTBEAT (kind 5)", BodyLen: packet.HeartbeatLen, Exact: true,
		Fields: []Field{
			{Abbrev: "heartbeat.start", Name: "First sequence sent", Doc: "start", Offset: 24, Size: 8, Type: "uint64", Go: "Heartbeat.Start"},
			{Abbrev: "heartbeat.next", Name: "Next sequence", Doc: "next", Offset: 32, Size: 8, Type: "uint64", Go: "Heartbeat.Next"},
			{Abbrev: "heartbeat.timestamp", Name: "Sender timestamp (ns)", Doc: "sender timestamp", Offset: 40, Size: 8, Type: "int64", Go: "Heartbeat.Timestamp"},
		},
		Optional: []Field{
			{Abbrev: "heartbeat.answer", Name: "Answer (the REPORT's challenge)", Doc: "with [FlagAnswer] only: the challenge", Offset: 0, Size: 8, Type: "uint64", Hex: true, Go: "Heartbeat.Answer", Flag: uint8(packet.FlagAnswer)},
			{Abbrev: "heartbeat.answer_hold", Name: "Answer hold (ns)", Doc: "with [FlagAnswer] only: ns between", Offset: 8, Size: 8, Type: "int64", Go: "Heartbeat.AnswerHoldNanos", Flag: uint8(packet.FlagAnswer)},
			{Abbrev: "heartbeat.receivers", Name: "Receivers in the group", Doc: "with [FlagGroup] only: receivers", Offset: 0, Size: 4, Type: "uint32", Go: "Heartbeat.Receivers", Flag: uint8(packet.FlagGroup)},
		},
		Exclusive: true,
		Flags: []Flag{
			{Abbrev: "heartbeat.flags.answer", Name: "Answer (to a REPORT's challenge)", Mask: uint8(packet.FlagAnswer), Go: "FlagAnswer"},
			{Abbrev: "heartbeat.flags.group", Name: "Group (the multicast group's size follows)", Mask: uint8(packet.FlagGroup), Go: "FlagGroup"},
		},
		Dirs: []uint8{ToReceiver},
		Info: []Info{{"next", "heartbeat.next"}, {"answer", "heartbeat.answer"}, {"receivers", "heartbeat.receivers"}},
	},
	{
		Kind: 6, Name: "HELLO", Doc: "HELLO (kind 6)", BodyLen: packet.HelloLen, Exact: true, MAC: true,
		Fields: []Field{
			{Abbrev: "hello.ephemeral", Name: "Sender's ephemeral X25519 key", Doc: "ephemeral X25519 public key", Offset: 24, Size: packet.EphemeralLen, Type: "bytes", Go: "Handshake.Ephemeral"},
			{Abbrev: "hello.timestamp", Name: "Sender timestamp (ns)", Doc: "timestamp", Offset: 56, Size: 8, Type: "int64", Go: "Handshake.Timestamp"},
		},
		Dirs: []uint8{ToReceiver},
		Info: []Info{{"ts", "hello.timestamp"}},
	},
	{
		Kind: 7, Name: "WELCOME", Doc: "HELLO (kind 6)", BodyLen: packet.HelloLen, Exact: true, MAC: true,
		Fields: []Field{
			{Abbrev: "welcome.ephemeral", Name: "Receiver's ephemeral X25519 key", Doc: "ephemeral X25519 public key", Offset: 24, Size: packet.EphemeralLen, Type: "bytes", Go: "Handshake.Ephemeral"},
			{Abbrev: "welcome.timestamp", Name: "HELLO's timestamp, echoed (ns)", Doc: "timestamp", Offset: 56, Size: 8, Type: "int64", Go: "Handshake.Timestamp"},
		},
		Dirs: []uint8{ToSender},
		Info: []Info{{"ts", "welcome.timestamp"}},
	},
	{
		Kind: 8, Name: "CONFIRM", Doc: "CONFIRM (kind 8), sender to receiver: an empty body.", Exact: true,
		Dirs: []uint8{ToReceiver},
	},
	{
		Kind: 9, Name: "RETRY", Doc: "RETRY (kind 9)", BodyLen: packet.RetryLen, Exact: true, MAC: true,
		Fields: []Field{
			{Abbrev: "retry.key_tag", Name: "Key tag not held", Doc: "key tag", Offset: 24, Size: 4, Type: "uint32", Hex: true, Go: "Handshake.KeyTag"},
			{Abbrev: "retry.reserved", Name: "Reserved", Doc: "reserved", Offset: 28, Size: 4, Type: "uint32", Hex: true, Zero: true},
			{Abbrev: "retry.counter", Name: "Counter of that packet", Doc: "counter", Offset: 32, Size: 8, Type: "uint64", Go: "Handshake.Counter"},
		},
		Dirs: []uint8{ToSender},
		Info: []Info{{"key_tag", "retry.key_tag"}, {"counter", "retry.counter"}},
	},
	withAuth(subscriptionLayout(10, "SUBSCRIBE", "subscribe", "Token echoed (proves the address receives)", ToSender)),
	subscriptionLayout(11, "TOKEN", "token", "Token (a sender always sets it)", ToReceiver),
	withAuth(subscriptionLayout(12, "GOODBYE", "goodbye", "Token the subscriber was admitted with", ToReceiver, ToSender)),
}

// subscriptionLayout is the layout SUBSCRIBE, TOKEN and GOODBYE share (one
// table in packet/doc.go). They travel in clear, a sender's GOODBYE to a
// subscriber with keys excepted: sealed, it takes the envelope of its
// direction, which the dissector reads as for any kind.
func subscriptionLayout(kind uint8, name, abbrev, flagName string, dirs ...uint8) Layout {
	return Layout{
		Kind: kind, Name: name, Doc: "One layout for the three:", Dirs: dirs, BodyLen: packet.SubscriptionLen, Exact: true,
		Fields: []Field{
			{Abbrev: abbrev + ".nonce", Name: "Subscriber's nonce", Doc: "nonce", Offset: 24, Size: 8, Type: "uint64", Hex: true, Go: "Subscription.Nonce"},
			{Abbrev: abbrev + ".reason", Name: "Reason (GOODBYE: 0 leaving, 1 too slow, 2 sender closing, 3 no room)", Doc: "reason", Offset: 32, Size: 4, Type: "uint32", Go: "Subscription.Reason"},
			{Abbrev: abbrev + ".reserved", Name: "Reserved", Doc: "reserved", Offset: 36, Size: 4, Type: "uint32", Hex: true, Zero: true},
		},
		Optional: []Field{
			{Abbrev: abbrev + ".token_time", Name: "Token: issued at (sender clock, ns)", Doc: "with [FlagToken] only: token, the sender's clock", Offset: 0, Size: 8, Type: "int64", Go: "Subscription.TokenTime", Flag: uint8(packet.FlagToken)},
			{Abbrev: abbrev + ".token_mac", Name: "Token: MAC", Doc: "with [FlagToken] only: token, its MAC", Offset: 8, Size: packet.TokenMACLen, Type: "bytes", Go: "Subscription.TokenMAC", Flag: uint8(packet.FlagToken)},
		},
		Flags: []Flag{{Abbrev: abbrev + ".flags.token", Name: flagName, Mask: uint8(packet.FlagToken), Go: "FlagToken"}},
		Info:  []Info{{"nonce", abbrev + ".nonce"}, {"reason", abbrev + ".reason"}},
	}
}

// reportFields lays out packet.Report's fields in declaration order: the
// REPORT body, as packet/doc.go says.
func reportFields() []Field {
	t := reflect.TypeFor[packet.Report]()
	off := packet.HeaderLen
	var fs []Field
	for i := range t.NumField() {
		sf := t.Field(i)
		f := Field{Abbrev: "report." + snake(sf.Name), Name: words(sf.Name), Offset: off, Go: "Report." + sf.Name}
		switch sf.Type.Kind() {
		case reflect.Int64:
			f.Size, f.Type = 8, "int64"
		case reflect.Uint64:
			f.Size, f.Type = 8, "uint64"
		case reflect.Uint32:
			f.Size, f.Type = 4, "uint32"
		default:
			panic(fmt.Sprintf("wireshark: packet.Report.%s has type %s, which the REPORT layout does not define", sf.Name, sf.Type))
		}
		off += f.Size
		fs = append(fs, f)
	}
	return fs
}

// snake turns "DelayP50Nanos" into "delay_p50_nanos".
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) && i > 0 && !unicode.IsUpper(rune(s[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return strings.ReplaceAll(b.String(), "nac_ks", "nacks")
}

// words turns "DelayP50Nanos" into "Delay p50 (ns)".
func words(s string) string {
	unit := ""
	for _, u := range []struct{ suffix, unit string }{{"Nanos", " (ns)"}, {"PPM", " (ppm)"}, {"Milli", " (1/1000 packet)"}} {
		if strings.HasSuffix(s, u.suffix) {
			s, unit = strings.TrimSuffix(s, u.suffix), u.unit
		}
	}
	w := snake(s)
	return strings.ToUpper(w[:1]) + strings.ReplaceAll(w[1:], "_", " ") + unit
}

// Envelope is one value of the header's envelope byte other than 0
// (plain): the direction seal's envelope was made for.
type Envelope struct {
	Value uint8
	Name  string
}

// Envelopes are the directions of seal's envelope.
var Envelopes = []Envelope{
	{ToReceiver, "sealed, sender to receiver"},
	{ToSender, "sealed, receiver to sender"},
}

// SealedLayout is what follows the header of a sealed datagram (any kind
// without MAC), in both directions.
type SealedLayout struct {
	// Doc is the line introducing the table in internal/seal/doc.go.
	Doc string
	// Fields after the header; the encrypted body runs from the end of
	// the last one to TagLen bytes before the end.
	Fields []Field
	Body   Field // the encrypted body (Size 0)
	Tag    Field // the GCM tag, the last TagLen bytes (Offset relative to the body's end)
}

// TagLen is the size of a sealed datagram's GCM tag.
const TagLen = 16

// MACLen is the size of the MAC that ends a HELLO, WELCOME or RETRY in
// seal's envelope.
const MACLen = 16

// KeyTag is the header field a sealed datagram carries in place of the
// CRC: the tag of the traffic keys it was sealed under.
var KeyTag = Field{Abbrev: "key_tag", Name: "Traffic key tag", Doc: "header", Offset: 20, Size: 4, Type: "uint32", Hex: true}

// KeyID is the header field a HELLO, WELCOME or RETRY carries in place
// of the CRC: the pre-shared key's id.
var KeyID = Field{Abbrev: "key_id", Name: "Pre-shared key id", Offset: 20, Size: 4, Type: "uint32", Hex: true}

// MAC is the field that ends a HELLO, WELCOME or RETRY in seal's
// envelope.
var MAC = Field{Abbrev: "mac", Name: "MAC (HMAC-SHA256, truncated)", Size: MACLen, Type: "bytes"}

// Sealed is the sealed envelope.
var Sealed = SealedLayout{
	Doc:    "Both directions, overhead 24 bytes:",
	Fields: []Field{{Abbrev: "sealed.counter", Name: "Counter", Doc: "counter", Offset: 24, Size: 8, Type: "uint64"}},
	Body:   Field{Abbrev: "sealed.body", Name: "Encrypted body", Doc: "body, encrypted", Offset: 32, Type: "bytes"},
	Tag:    Field{Abbrev: "sealed.tag", Name: "GCM tag", Doc: "GCM tag", Size: TagLen, Type: "bytes"},
}

// Versions are the wire versions the dissector accepts.
var Versions = []int{packet.Version}

// MessageMap is the message map that begins the payload of a DATA
// flagged FlagMessages (packet/doc.go, "Messages and datagrams"). Offsets
// are from the start of the payload. The dissector decodes it in plain
// datagrams only: a sealed one's payload is encrypted.
type MessageMap struct {
	// Flag is the DATA flag that says the payload begins with a map.
	Flag uint8
	// Byte is the map byte, the payload's first.
	Byte Field
	// Messages and Fragment are the two maps, by their map byte.
	Messages, Fragment MapLayout
	// Entry is one entry of a Messages map, in wire order: the varint of
	// length<<1|d, the zig-zag varint send-time delta (d = 1 only), the
	// message. Their Doc is how the docs' entry rows read after the size
	// column ("v" for a varint, "n" for the message).
	EntryLen, EntryDelta, EntryData Field
	// EntryIndex numbers the entries from 0; it is not on the wire.
	EntryIndex Field
	// PieceLen is a fragment's piece length; not on the wire either (the
	// payload's length less the fragment header).
	PieceLen Field
}

// MapLayout is one of the two message maps.
type MapLayout struct {
	Value uint8 // the map byte
	// Doc is the start of the paragraph introducing its byte table.
	Doc string
	// Fields follow the map byte; for a fragment the last, the piece,
	// runs to the end (Size 0).
	Fields []Field
	// HeaderLen is the size of the map before its entries or piece.
	HeaderLen int
	// Min and Max bound the Messages map's count.
	Min, Max int
}

// Map is telewire's message map.
var Map = MessageMap{
	Flag: uint8(packet.FlagMessages),
	Byte: Field{Abbrev: "data.map", Name: "Message map", Doc: "map", Offset: 0, Size: 1, Type: "uint8"},
	Messages: MapLayout{
		Value: packet.MapMessages, Doc: "Whole messages (map byte [MapMessages])", HeaderLen: packet.MessagesHeaderLen,
		Min: 1, Max: packet.MaxMessagesPerDatagram,
		Fields: []Field{
			{Abbrev: "data.msgs.count", Name: "Messages", Doc: "count of messages", Offset: 1, Size: 2, Type: "uint16"},
		},
	},
	Fragment: MapLayout{
		Value: packet.MapFragment, Doc: "A fragment (map byte [MapFragment])", HeaderLen: packet.FragmentHeaderLen,
		Fields: []Field{
			{Abbrev: "data.frag.length", Name: "Message length", Doc: "length of the whole message", Offset: 1, Size: 4, Type: "uint32"},
			{Abbrev: "data.frag.offset", Name: "Offset of this piece", Doc: "offset of this piece in the message", Offset: 5, Size: 4, Type: "uint32"},
			{Abbrev: "data.frag.index", Name: "Fragment index", Doc: "index: this fragment's sequence", Offset: 9, Size: 4, Type: "uint32"},
			{Abbrev: "data.frag.piece", Name: "Piece", Doc: "the piece", Offset: 13, Type: "bytes"},
		},
	},
	EntryLen:   Field{Abbrev: "data.msg.len", Name: "Length", Doc: "varint (LEB128) of length<<1 | d", Type: "uint32"},
	EntryDelta: Field{Abbrev: "data.msg.delta", Name: "Send time less DATA timestamp (ns)", Doc: "with d = 1 only: signed (zig-zag) varint", Type: "int64"},
	EntryData:  Field{Abbrev: "data.msg.data", Name: "Message", Doc: "the message (length bytes)", Type: "bytes"},
	EntryIndex: Field{Abbrev: "data.msg.index", Name: "Index", Type: "uint16"},
	PieceLen:   Field{Abbrev: "data.frag.piece_len", Name: "Piece length", Type: "uint32"},
}

// fields lists every field of the map.
func (m MessageMap) fields() []Field {
	fs := []Field{m.Byte}
	fs = append(fs, m.Messages.Fields...)
	fs = append(fs, m.EntryIndex, m.EntryLen, m.EntryDelta, m.EntryData)
	fs = append(fs, m.Fragment.Fields...)
	return append(fs, m.PieceLen)
}

// withAuth adds to a SUBSCRIBE or GOODBYE layout the MAC under the
// pre-shared key that packet.FlagAuth appends after the token (FlagAuth
// requires FlagToken, so the MAC's offset is fixed).
func withAuth(l Layout) Layout {
	abbrev := strings.ToLower(l.Name)
	l.Optional = append(l.Optional, Field{Abbrev: abbrev + ".auth", Name: "MAC under the pre-shared key", Doc: "with [FlagAuth] only", Offset: packet.TokenLen, Size: packet.AuthLen, Type: "bytes", Go: "Subscription.Auth", Flag: uint8(packet.FlagAuth)})
	l.Flags = append(l.Flags, Flag{Abbrev: abbrev + ".flags.auth", Name: "Authenticated under the pre-shared key", Mask: uint8(packet.FlagAuth), Go: "FlagAuth"})
	return l
}
