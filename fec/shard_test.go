package fec

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/telewire/telewire/packet"
)

func TestShardLayoutRoundTrip(t *testing.T) {
	var x crcScratch
	for _, n := range []int{0, 1, 13, 1200} {
		payload := bytes.Repeat([]byte{0xa5}, n)
		shard := make([]byte, ShardHeaderLen+n+7) // with padding
		x.putShardHeader(shard, 42, -5, payload)
		copy(shard[ShardHeaderLen:], payload)
		ts, p, ok := x.checkShard(42, shard)
		if !ok || ts != -5 || !bytes.Equal(p, payload) {
			t.Fatalf("n=%d: got ts=%d ok=%v", n, ts, ok)
		}
		if _, _, ok := x.checkShard(43, shard); ok {
			t.Fatalf("n=%d: shard accepted for another sequence", n)
		}
		// Any single flipped bit is caught: header, payload or padding.
		for bit := 0; bit < len(shard)*8; bit++ {
			shard[bit/8] ^= 1 << (bit % 8)
			if _, _, ok := x.checkShard(42, shard); ok {
				t.Fatalf("n=%d: bit %d flipped and accepted", n, bit)
			}
			shard[bit/8] ^= 1 << (bit % 8)
		}
		// Every truncation fails cleanly.
		for i := 0; i < ShardHeaderLen+n; i++ {
			if _, _, ok := x.checkShard(42, shard[:i]); ok {
				t.Fatalf("n=%d: truncated to %d accepted", n, i)
			}
		}
	}
}

// TestShardCRCDefinition holds shardCRC to the documented definition:
// CRC-32C of seq, ts, length (big-endian) and payload, concatenated.
func TestShardCRCDefinition(t *testing.T) {
	var x crcScratch
	for _, c := range []struct {
		seq uint64
		ts  int64
		p   []byte
	}{{0, 0, nil}, {1, -1, []byte{1}}, {^uint64(0), 1 << 62, bytes.Repeat([]byte{7}, 300)}} {
		var b []byte
		b = binary.BigEndian.AppendUint64(b, c.seq)
		b = binary.BigEndian.AppendUint64(b, uint64(c.ts))
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.p)))
		b = append(b, c.p...)
		if got, want := x.shardCRC(c.seq, c.ts, c.p), crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)); got != want {
			t.Errorf("seq %d: shardCRC %08x, want %08x", c.seq, got, want)
		}
	}
}

func TestShardLengthBeyondShard(t *testing.T) {
	var x crcScratch
	shard := make([]byte, ShardHeaderLen+4)
	x.putShardHeader(shard, 1, 1, []byte{1, 2, 3, 4})
	shard[offShardLen], shard[offShardLen+1] = 0xff, 0xff
	if _, _, ok := x.checkShard(1, shard); ok {
		t.Fatal("embedded length 65535 in an 18-byte shard accepted")
	}
}

func TestLargestProtectedPayloadFitsParity(t *testing.T) {
	if ShardHeaderLen+MaxProtectedPayload != packet.MaxShard {
		t.Fatalf("shard of the largest protected payload is %d bytes, PARITY holds %d",
			ShardHeaderLen+MaxProtectedPayload, packet.MaxShard)
	}
	enc := mustEncoder(t, EncoderConfig{K: 2, M: 1})
	big := make([]byte, MaxProtectedPayload)
	enc.Add(0, 0, big, 0)
	if !enc.Add(1, 0, nil, 0) {
		t.Fatal("block not completed")
	}
	var buf []byte
	enc.TakeParity(func(par packet.Parity, shard []byte) {
		p := packet.Packet{Header: packet.Header{Kind: packet.KindParity}, Parity: par, Payload: shard}
		var err error
		if buf, err = p.AppendTo(buf[:0]); err != nil {
			t.Fatalf("largest parity does not encode: %v", err)
		}
	})
	if len(buf) != packet.MaxPacketLen {
		t.Fatalf("largest parity packet is %d bytes, want %d", len(buf), packet.MaxPacketLen)
	}
}
