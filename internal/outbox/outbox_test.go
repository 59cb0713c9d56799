package outbox

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
)

var dst = netip.MustParseAddrPort("127.0.0.1:9")

func data(n int) *packet.Packet {
	return &packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Seq: 7, Payload: make([]byte, n)}
}

func TestBatchBounds(t *testing.T) {
	b := New(3, 200)
	for i := range 2 {
		if err := b.Append(data(50), dst); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	// 2*90 bytes used; a third 90-byte packet does not fit in 200 bytes.
	if err := b.Append(data(50), dst); !errors.Is(err, ErrFull) {
		t.Fatalf("byte bound: %v", err)
	}
	if err := b.AppendRaw([]byte{1, 2, 3}, dst); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendRaw([]byte{1}, dst); !errors.Is(err, ErrFull) {
		t.Fatalf("count bound: %v", err)
	}
	if b.Len() != 3 || b.Bytes() != 183 {
		t.Fatalf("len %d bytes %d", b.Len(), b.Bytes())
	}
	// Every datagram decodes and points at its own bytes.
	var p packet.Packet
	for i, d := range b.Datagrams()[:2] {
		if err := p.Parse(d.Data); err != nil || d.Addr != dst {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	if bad := (&packet.Packet{}); b.Append(bad, dst) == nil {
		t.Fatal("invalid packet accepted")
	}
	b.Reset()
	if b.Len() != 0 || b.Bytes() != 0 || !b.Room(200) {
		t.Fatal("reset did not empty the batch")
	}
}

func TestPair(t *testing.T) {
	p := NewPair(4, 1<<12)
	if p.Take() != nil {
		t.Fatal("took an empty batch")
	}
	first := p.Current()
	if err := first.Append(data(1), dst); err != nil {
		t.Fatal(err)
	}
	b := p.Take()
	if b != first || p.Current() == first {
		t.Fatal("Take did not switch batches")
	}
	if err := p.Current().Append(data(1), dst); err != nil {
		t.Fatal(err)
	}
	if p.Take() != nil {
		t.Fatal("second Take before Give")
	}
	p.Give(b)
	if b.Len() != 0 {
		t.Fatal("Give did not reset")
	}
	if p.Take() == nil {
		t.Fatal("Take after Give returned nothing")
	}
}

func TestAppendAllocatesNothing(t *testing.T) {
	b := New(1024, 1<<20)
	pkt := data(200)
	if n := testing.AllocsPerRun(500, func() {
		if b.Append(pkt, dst) != nil {
			b.Reset()
		}
	}); n != 0 {
		t.Fatalf("Append allocates %.1f times", n)
	}
}

// growSealer appends tag bytes in place, or fails with err.
type growSealer struct {
	tag []byte
	err error
}

func (g growSealer) SealInPlace(pkt []byte) ([]byte, error) {
	if g.err != nil {
		return pkt, g.err
	}
	return append(pkt, g.tag...), nil
}

var _ InPlaceSealer = (*seal.Sealer)(nil)

func TestSealLast(t *testing.T) {
	b := New(4, 300)
	if err := b.SealLast(growSealer{}, 0); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty batch: %v", err)
	}
	if err := b.Append(data(50), dst); err != nil { // 90 bytes
		t.Fatal(err)
	}
	if err := b.SealLast(growSealer{tag: []byte{0xee, 0xee}}, 2); err != nil {
		t.Fatal(err)
	}
	if d := b.Datagrams()[0].Data; len(d) != 92 || d[90] != 0xee || cap(d) != 92 {
		t.Fatalf("sealed datagram len %d cap %d", len(d), cap(d))
	}
	if b.Bytes() != 92 {
		t.Fatalf("slab holds %d bytes, want 92", b.Bytes())
	}
	// A failing sealer removes the datagram it could not seal.
	if err := b.Append(data(50), dst); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := b.SealLast(growSealer{err: boom}, 2); !errors.Is(err, boom) {
		t.Fatalf("sealer error: %v", err)
	}
	if b.Len() != 1 || b.Bytes() != 92 {
		t.Fatalf("after failed seal: %d datagrams, %d bytes", b.Len(), b.Bytes())
	}
	// No room to grow: the datagram is removed and ErrFull returned.
	if err := b.Append(data(160), dst); err != nil { // 200 bytes: 292 used
		t.Fatal(err)
	}
	if err := b.SealLast(growSealer{tag: make([]byte, 16)}, 16); !errors.Is(err, ErrFull) {
		t.Fatalf("no room: %v", err)
	}
	if b.Len() != 1 || b.Bytes() != 92 {
		t.Fatalf("after full: %d datagrams, %d bytes", b.Len(), b.Bytes())
	}
}

// SealLast seals a trailing datagram too, and the one queued last whichever
// list it is in.
func TestSealLastTrailing(t *testing.T) {
	b := New(8, 1000)
	tag := growSealer{tag: []byte{0xee}}
	if err := b.Append(data(10), dst); err != nil { // 50 bytes
		t.Fatal(err)
	}
	if err := b.AppendTrailing(data(20), dst); err != nil { // 60 bytes
		t.Fatal(err)
	}
	if err := b.SealLast(tag, 1); err != nil {
		t.Fatal(err)
	}
	if err := b.Append(data(30), dst); err != nil { // 70 bytes
		t.Fatal(err)
	}
	if err := b.SealLast(tag, 1); err != nil {
		t.Fatal(err)
	}
	b.Settle()
	var lens []int
	for _, d := range b.Datagrams() {
		lens = append(lens, len(d.Data))
	}
	if len(lens) != 3 || lens[0] != 50 || lens[1] != 71 || lens[2] != 61 || b.Bytes() != 182 {
		t.Fatalf("datagram lengths %v, %d bytes", lens, b.Bytes())
	}
	if d := b.Datagrams()[2].Data; d[60] != 0xee {
		t.Fatal("trailing datagram not sealed in place")
	}
	// A failed seal of a trailing datagram removes it.
	if err := b.AppendTrailing(data(20), dst); err != nil {
		t.Fatal(err)
	}
	if err := b.SealLast(growSealer{err: errors.New("boom")}, 1); err == nil {
		t.Fatal("sealer error lost")
	}
	if b.Trailing() != 0 || b.Bytes() != 182 {
		t.Fatalf("after a failed seal: %d trailing, %d bytes", b.Trailing(), b.Bytes())
	}
}

func TestPairIdle(t *testing.T) {
	p := NewPair(4, 1<<12)
	if !p.Idle() {
		t.Fatal("a new pair is not idle")
	}
	if err := p.Current().Append(data(1), dst); err != nil {
		t.Fatal(err)
	}
	if p.Idle() {
		t.Fatal("idle with a datagram queued")
	}
	b := p.Take()
	if p.Idle() {
		t.Fatal("idle with a batch out with the writer")
	}
	p.Give(b)
	if !p.Idle() {
		t.Fatal("not idle after everything was given back")
	}
}
