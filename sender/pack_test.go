package sender

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/telewire/telewire/packet"
)

// packCore is a Core that packs (newCore turns packing off).
func packCore(t *testing.T, cfg Config) *Core {
	t.Helper()
	c, err := NewCore(cfg, 0xabc, rcvAddr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// messagesOf returns the messages a mapped DATA packet carries, with
// their send times.
func messagesOf(t *testing.T, p *packet.Packet) (msgs [][]byte, ts []int64) {
	t.Helper()
	var it packet.Messages
	if err := it.Init(p.Payload, p.Timestamp); err != nil {
		t.Fatalf("DATA %d: %v", p.Seq, err)
	}
	for x, m, ok := it.Next(); ok; x, m, ok = it.Next() {
		msgs, ts = append(msgs, bytes.Clone(m)), append(ts, x)
	}
	return msgs, ts
}

// TestPackQueuedMessages: messages sent before the batch is taken share
// DATA datagrams, up to the MTU, in order, with their own send times; the
// batch's taking finishes the last one.
func TestPackQueuedMessages(t *testing.T) {
	c := packCore(t, Config{MTU: 1280, FEC: FECConfig{Mode: FECOff}})
	const n = 100
	for i := range n {
		if err := c.Send(0, fmt.Appendf(nil, "message %03d %s", i, bytes.Repeat([]byte{'x'}, 20)), int64(1000+i/10)); err != nil {
			t.Fatal(err)
		}
	}
	pkts := drain(t, c)
	var got [][]byte
	var data int
	for _, p := range pkts {
		if p.Kind != packet.KindData {
			continue
		}
		data++
		if p.Seq != uint64(data-1) || p.EncodedLen()+IPUDPOverhead > 1280 {
			t.Fatalf("DATA %d: seq %d, %d bytes on the wire", data, p.Seq, p.EncodedLen()+IPUDPOverhead)
		}
		msgs, ts := messagesOf(t, &p)
		for k, m := range msgs {
			i := len(got)
			if want := int64(1000 + i/10); ts[k] != want {
				t.Fatalf("message %d sent at %d, carried as %d", i, want, ts[k])
			}
			got = append(got, m)
		}
	}
	// 33 bytes and 1 to 3 of entry header each: 3 datagrams of 1 192.
	if len(got) != n || data != 3 {
		t.Fatalf("%d messages in %d datagrams", len(got), data)
	}
	for i, m := range got {
		if want := fmt.Sprintf("message %03d ", i); string(m[:len(want)]) != want {
			t.Fatalf("message %d is %q", i, m)
		}
	}
	st := c.Stats()
	if st.Messages != n || st.Packets != 3 || st.Packed != n-3 || st.Streams[0].Messages != n || st.Streams[0].Sent != 3 {
		t.Fatalf("stats: %d messages, %d packets, %d packed; stream %+v", st.Messages, st.Packets, st.Packed, st.Streams[0])
	}
}

// TestPackStopsAtOtherTraffic: a message of another stream, a Tick and a
// Handle each finish the open datagram; the next message starts a new one.
func TestPackStopsAtOtherTraffic(t *testing.T) {
	c := packCore(t, Config{FEC: FECConfig{Mode: FECOff}})
	send := func(stream uint32, now int64) {
		if err := c.Send(stream, []byte("m"), now); err != nil {
			t.Fatal(err)
		}
	}
	send(0, 10)
	send(0, 11) // packed with the first
	send(1, 12) // another stream: a new datagram
	send(0, 13) // and back: another
	c.Tick(14)
	send(0, 15) // after a Tick: another
	var per []int
	for _, p := range drain(t, c) {
		if p.Kind == packet.KindData {
			msgs, _ := messagesOf(t, &p)
			per = append(per, len(msgs))
		}
	}
	if fmt.Sprint(per) != "[2 1 1 1]" {
		t.Fatalf("messages per datagram %v, want [2 1 1 1]", per)
	}
}

// TestPackedDatagramRetransmittedWhole: a NACK for a packed datagram's
// sequence resends all its messages, as first sent.
func TestPackedDatagramRetransmittedWhole(t *testing.T) {
	c := packCore(t, Config{FEC: FECConfig{Mode: FECOff}})
	for i := range 3 {
		if err := c.Send(0, []byte{byte('a' + i)}, int64(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	first := drain(t, c)
	c.Handle(nackFor(t, packet.Range{First: 0, Len: 1}), rcvAddr, 5000)
	again := drain(t, c)
	if len(again) != 1 || again[0].Flags&packet.FlagRetransmit == 0 {
		t.Fatalf("answer %+v", again)
	}
	want, _ := messagesOf(t, &first[len(first)-1])
	got, _ := messagesOf(t, &again[0])
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 3 {
		t.Fatalf("retransmitted %q, sent %q", got, want)
	}
}

// TestPackSealed: with a key, a packed datagram is sealed when finished
// and opens to all its messages.
func TestPackSealed(t *testing.T) {
	c := packCore(t, Config{Key: testPSK, FEC: FECConfig{Mode: FECFixed, K: 2, M: 1}})
	r := newReceiverSide(t, c, testPSK)
	for i := range 5 {
		if err := c.Send(0, []byte{byte('a' + i)}, int64(1_000_000+i)); err != nil {
			t.Fatal(err)
		}
	}
	pkts, _ := r.open(t, c)
	var msgs [][]byte
	for _, p := range pkts {
		if p.Kind == packet.KindData {
			m, _ := messagesOf(t, &p)
			msgs = append(msgs, m...)
		}
	}
	if fmt.Sprintf("%s", msgs) != "[a b c d e]" {
		t.Fatalf("opened %q", msgs)
	}
}

// TestPackAllocatesNothing: packing, finishing and fragmenting messages
// allocate nothing once the stream is set up.
func TestPackAllocatesNothing(t *testing.T) {
	c := packCore(t, Config{FEC: FECConfig{Mode: FECFixed, K: 4, M: 1}, MTU: 1280})
	small, big := make([]byte, 40), make([]byte, 5000)
	now := int64(1000)
	round := func() {
		for range 20 {
			_ = c.Send(0, small, now)
		}
		_ = c.Send(0, big, now)
		if b := c.Outbox().Take(); b != nil {
			c.Outbox().Give(b)
		}
		now += 1000
	}
	for range 50 {
		round() // warm up: the retransmit buffer and FEC shards fill their pools
	}
	if n := testing.AllocsPerRun(100, round); n != 0 {
		t.Fatalf("%v allocations per round", n)
	}
}
