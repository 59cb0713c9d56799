package packet

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestMessagesRoundTrip(t *testing.T) {
	type msg struct {
		delta int64
		b     []byte
	}
	msgs := []msg{{0, []byte("first")}, {0, nil}, {1, []byte("x")}, {-7, []byte("earlier clock")}, {1 << 40, bytes.Repeat([]byte{9}, 300)}}
	b := AppendMessagesHeader(nil, uint16(len(msgs)))
	for _, m := range msgs {
		before := len(b)
		b = AppendEntry(b, m.delta, m.b)
		if got := len(b) - before; got != EntryLen(len(m.b), m.delta) {
			t.Fatalf("entry of %d bytes, delta %d: %d encoded, EntryLen says %d", len(m.b), m.delta, got, EntryLen(len(m.b), m.delta))
		}
	}
	var it Messages
	if err := it.Init(b, 1000); err != nil {
		t.Fatal(err)
	}
	if it.Count() != len(msgs) {
		t.Fatalf("count %d", it.Count())
	}
	for i, m := range msgs {
		ts, got, ok := it.Next()
		if !ok || ts != 1000+m.delta || !bytes.Equal(got, m.b) {
			t.Fatalf("message %d: %d %q %v", i, ts, got, ok)
		}
	}
	if _, _, ok := it.Next(); ok {
		t.Fatal("a message past the count")
	}
	// Every strict prefix fails cleanly, and so does a byte too many.
	for i := range b {
		if err := it.Init(b[:i], 0); !errors.Is(err, ErrBadMap) {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
	}
	if err := it.Init(append(bytes.Clone(b), 0), 0); !errors.Is(err, ErrBadMap) {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestMessagesOneEncoding(t *testing.T) {
	bad := [][]byte{
		AppendMessagesHeader(nil, 0),               // no messages
		{MapMessages, 0, 1, 0x80, 0x00},            // overlong length varint
		{MapMessages, 0, 1, 0x01, 0x00},            // delta flagged but zero
		{MapMessages, 0, 1, 0x03, 0x80, 0x00, 'a'}, // overlong delta varint
		{MapMessages, 0, 1, 0x04, 'a'},             // length 2, one byte there
		{0x07, 0, 1, 0x00},                         // unknown map byte
		{MapMessages, 0, 2, 0x00},                  // count 2, one entry
		{MapMessages, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // huge length
	}
	for i, b := range bad {
		if err := ValidateMap(b, 0); !errors.Is(err, ErrBadMap) {
			t.Errorf("case %d (%x): %v", i, b, err)
		}
	}
}

func TestFragmentRules(t *testing.T) {
	ok := Fragment{Length: 100, Offset: 40, Index: 2, Data: make([]byte, 60)}
	b := AppendFragment(nil, &ok)
	var f Fragment
	if err := ParseFragment(b, &f); err != nil || f.Length != 100 || f.Offset != 40 || f.Index != 2 || len(f.Data) != 60 || !f.Last() || f.First() {
		t.Fatalf("%+v %v", f, err)
	}
	// A header without a byte of the piece fails; a longer prefix is a
	// shorter piece (the datagram's length, checksummed, says which).
	for i := range FragmentHeaderLen + 1 {
		if err := ParseFragment(b[:i], &f); !errors.Is(err, ErrBadMap) {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
	}
	bad := []Fragment{
		{Length: 0, Data: []byte{1}},                                         // empty message
		{Length: MaxMessageLimit + 1, Data: []byte{1}},                       // too large
		{Length: 10, Offset: 5, Index: 1, Data: make([]byte, 6)},             // past the end
		{Length: 10, Offset: 0, Index: 1, Data: []byte{1}},                   // index without offset
		{Length: 10, Offset: 3, Index: 0, Data: []byte{1}},                   // offset without index
		{Length: 10, Offset: 3, Index: 4, Data: []byte{1}},                   // more fragments before than bytes
		{Length: 1<<32 - 1, Offset: 1<<32 - 2, Index: 1, Data: []byte{1, 2}}, // overflows 32 bits
	}
	for i, x := range bad {
		if err := ValidateMap(AppendFragment(nil, &x), 0); !errors.Is(err, ErrBadMap) {
			t.Errorf("case %d (%+v): %v", i, x, err)
		}
	}
}

// TestOldReceiverRejectsMessageMaps: a receiver of the format before
// FlagMessages existed refuses the flag with ErrBadFlags, and so does this
// one for DATA flag bits not defined.
func TestOldReceiverRejectsMessageMaps(t *testing.T) {
	p := Packet{Header: Header{Kind: KindData, Flags: FlagMessages}, Payload: AppendEntry(AppendMessagesHeader(nil, 1), 0, []byte("x"))}
	b, err := p.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	old := allowedFlags[KindData] &^ FlagMessages // the v1 DATA flags before this change
	if Flags(b[offFlags])&^old == 0 {
		t.Fatal("a mapped DATA carries no flag an old receiver lacks")
	}
	b[offFlags] |= 1 << 7
	binary.BigEndian.PutUint32(b[offCRC:], checksum(b))
	var q Packet
	if err := q.Parse(b); !errors.Is(err, ErrBadFlags) {
		t.Fatalf("undefined DATA flag: %v", err)
	}
}

func TestMessagesAllocateNothing(t *testing.T) {
	b := AppendEntry(AppendEntry(AppendMessagesHeader(nil, 2), 0, []byte("abc")), 99, []byte("de"))
	var it Messages
	n := testing.AllocsPerRun(100, func() {
		_ = it.Init(b, 5)
		for _, _, ok := it.Next(); ok; _, _, ok = it.Next() {
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// FuzzMessages: whatever a MapMessages payload holds, Init either rejects
// it with ErrBadMap or walks exactly its count, and re-encoding the walk
// gives the payload back (one encoding).
func FuzzMessages(f *testing.F) {
	f.Add(AppendEntry(AppendEntry(AppendMessagesHeader(nil, 2), 0, []byte("abc")), 99, []byte("de")))
	f.Add(AppendFragment(nil, &Fragment{Length: 9, Offset: 4, Index: 1, Data: []byte("hello")}))
	f.Add([]byte{MapMessages, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var it Messages
		if err := it.Init(b, 1000); err != nil {
			if !errors.Is(err, ErrBadMap) {
				t.Fatalf("error %v", err)
			}
			return
		}
		out := AppendMessagesHeader(nil, uint16(it.Count()))
		for ts, m, ok := it.Next(); ok; ts, m, ok = it.Next() {
			out = AppendEntry(out, ts-1000, m)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs\n in  %x\n out %x", b, out)
		}
	})
}

// FuzzFragment: ParseFragment accepts only what re-encodes to itself.
func FuzzFragment(f *testing.F) {
	f.Add(AppendFragment(nil, &Fragment{Length: 9, Offset: 4, Index: 1, Data: []byte("hello")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Fragment
		if err := ParseFragment(b, &fr); err != nil {
			return
		}
		if out := AppendFragment(nil, &fr); !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs\n in  %x\n out %x", b, out)
		}
	})
}
