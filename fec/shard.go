package fec

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/telewire/telewire/packet"
)

// Data shard layout, in bytes; see the package documentation.
const (
	// ShardHeaderLen is the size of the header that precedes the payload in
	// every data shard.
	ShardHeaderLen = 14
	// MaxProtectedPayload is the largest DATA payload FEC can protect: its
	// shard, header included, must fit in one PARITY packet.
	MaxProtectedPayload = packet.MaxShard - ShardHeaderLen

	offShardTS  = 0  // 8 bytes: sender timestamp, nanoseconds
	offShardLen = 8  // 2 bytes: payload length
	offShardCRC = 10 // 4 bytes: CRC-32C of seq, timestamp, length and payload
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcPrefixLen is the length of what the shard checksum covers before the
// payload: sequence (8 bytes), timestamp (8) and payload length (2).
const crcPrefixLen = 18

// crcScratch is room for that prefix. It lives inside an Encoder or
// Decoder, already on the heap, so handing it to crc32.Update (which may
// retain its argument as far as escape analysis can tell) costs no
// allocation, and the prefix goes through the CRC instruction eight bytes
// at a time instead of a byte at a time through a table.
type crcScratch [crcPrefixLen]byte

// shardCRC is the check a data shard carries: CRC-32C over the sequence
// number (8 bytes), the timestamp (8), the payload length (2), all
// big-endian, and the payload. The sequence number is not in the shard; it
// is covered so that a shard rebuilt into the wrong position fails the check.
func (b *crcScratch) shardCRC(seq uint64, ts int64, payload []byte) uint32 {
	binary.BigEndian.PutUint64(b[0:], seq)
	binary.BigEndian.PutUint64(b[8:], uint64(ts))
	binary.BigEndian.PutUint16(b[16:], uint16(len(payload)))
	return crc32.Update(crc32.Update(0, castagnoli, b[:]), castagnoli, payload)
}

// putShardHeader writes the shard header for (seq, ts, payload) into
// dst[:ShardHeaderLen]. len(payload) must be at most MaxProtectedPayload.
func (b *crcScratch) putShardHeader(dst []byte, seq uint64, ts int64, payload []byte) {
	binary.BigEndian.PutUint64(dst[offShardTS:], uint64(ts))
	binary.BigEndian.PutUint16(dst[offShardLen:], uint16(len(payload)))
	binary.BigEndian.PutUint32(dst[offShardCRC:], b.shardCRC(seq, ts, payload))
}

// checkShard validates a rebuilt data shard for sequence seq and returns its
// timestamp and payload (aliasing shard). It trusts nothing: the embedded
// length must fit the shard, the padding must be zero and the checksum must
// match.
func (b *crcScratch) checkShard(seq uint64, shard []byte) (ts int64, payload []byte, ok bool) {
	if len(shard) < ShardHeaderLen {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint16(shard[offShardLen:]))
	end := ShardHeaderLen + n
	if end > len(shard) {
		return 0, nil, false
	}
	for _, c := range shard[end:] {
		if c != 0 {
			return 0, nil, false
		}
	}
	ts = int64(binary.BigEndian.Uint64(shard[offShardTS:]))
	payload = shard[ShardHeaderLen:end]
	if binary.BigEndian.Uint32(shard[offShardCRC:]) != b.shardCRC(seq, ts, payload) {
		return 0, nil, false
	}
	return ts, payload, true
}

// grow returns b resized to n bytes, reusing its storage when large enough.
// Bytes beyond the old length are not cleared.
func grow(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n)
	copy(nb, b)
	return nb
}
