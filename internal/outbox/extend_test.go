package outbox

import (
	"testing"

	"github.com/telewire/telewire/packet"
)

// TestExtendLast: the datagram queued last in order grows in place while
// it ends the slab and the batch has room; a trailing datagram queued
// after it, or a full slab, stops that.
func TestExtendLast(t *testing.T) {
	b := New(8, 400)
	if _, ok := b.ExtendLast(1); ok {
		t.Fatal("extended an empty batch")
	}
	if err := b.Append(data(10), dst); err != nil {
		t.Fatal(err)
	}
	d, ok := b.ExtendLast(5)
	if !ok || len(d) != packet.HeaderLen+packet.DataHeaderLen+15 || b.Bytes() != len(d) || &b.Datagrams()[0].Data[0] != &d[0] {
		t.Fatalf("extend: ok %v, %d bytes, batch %d bytes", ok, len(d), b.Bytes())
	}
	if err := packet.Refinish(d); err != nil {
		t.Fatal(err)
	}
	var p packet.Packet
	if err := p.Parse(b.Datagrams()[0].Data); err != nil || len(p.Payload) != 15 {
		t.Fatalf("refinished datagram: %v, payload %d", err, len(p.Payload))
	}
	if _, ok := b.ExtendLast(400); ok {
		t.Fatal("extended past the slab")
	}
	if err := b.AppendTrailing(data(1), dst); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.ExtendLast(1); ok {
		t.Fatal("extended a datagram a trailing one was queued after")
	}
}

// TestBeforeTake: Take calls the hook only when it takes the batch, not
// while the other one is out being written.
func TestBeforeTake(t *testing.T) {
	p := NewPair(4, 1000)
	calls := 0
	p.BeforeTake = func() { calls++ }
	if err := p.Current().Append(data(1), dst); err != nil {
		t.Fatal(err)
	}
	b := p.Take()
	if b == nil || calls != 1 {
		t.Fatalf("take: %v, hook called %d times", b, calls)
	}
	if err := p.Current().Append(data(1), dst); err != nil {
		t.Fatal(err)
	}
	if p.Take() != nil || calls != 1 {
		t.Fatalf("took while the other batch was out; hook called %d times", calls)
	}
	p.Give(b)
	if p.Take() == nil || calls != 2 {
		t.Fatalf("hook called %d times", calls)
	}
}
