// Package fec is telewire's forward error correction: systematic
// Reed-Solomon erasure coding over the DATA packets of one stream, so that a
// receiver rebuilds lost packets from PARITY packets without waiting a round
// trip for a retransmission.
//
// In the data path the sender's [Encoder] sits after packet encoding (step 3
// of the architecture): every original DATA packet goes through
// [Encoder.Add], and each completed block yields M PARITY shards
// ([Encoder.TakeParity]) that the sender wraps in PARITY packets. The
// receiver's [Decoder] sits after the reliability tracker (step 10): it sees
// every DATA and PARITY packet, rebuilds missing DATA ([Decoder.TakeRecovered])
// and tells the NACK scheduler whether a gap is still worth waiting for
// ([Decoder.CanRecover]). [Adaptive] turns the receiver's REPORTs into the
// encoder's K and M.
//
// The package is pure logic: no sockets, no goroutines, no clock — time comes in as now, int64 monotonic
// nanoseconds. Nothing is safe for concurrent use; each stream owns its
// Encoder or Decoder. After warm-up nothing allocates per packet or per
// block, reconstruction included.
//
// # Blocks
//
// Consecutive DATA sequences form a block of up to K data shards; the
// encoder adds M parity shards, and any K of the K+M shards rebuild the
// block. A PARITY packet names its block by the first data sequence
// (First), the data shard count K, the parity count M, its index and the
// stride between the block's data sequences (1 without interleaving). A
// block is closed early, with the shards it has, when its time limit
// (EncoderConfig.MaxDelayNanos, default 50 ms from its first packet) passes
// or the sequence does not continue it; the K it announces is the actual
// count, and the M stays as configured (a short block is protected more,
// at more overhead; Adaptive sizes K so that blocks normally fill in time).
//
// # Data shard layout
//
// The data shard of a DATA packet is what the receiver gets back when it is
// rebuilt: enough to restore the message, and a check that it was rebuilt
// right. Multi-byte integers are big-endian.
//
//	offset size field
//	     0    8 sender timestamp, nanoseconds (the DATA timestamp)
//	     8    2 payload length n (payloads are at most packet.MaxPayload < 2^16)
//	    10    4 CRC-32C over: sequence (8 bytes), timestamp (8), length (2), payload
//	    14    n payload
//	  14+n      zero padding up to the block's shard length
//
// The block's shard length, and so the length of its parity shards, is that
// of its longest data shard. The checksum covers the sequence number, which
// the shard does not carry, so a shard rebuilt into the wrong position is
// caught as surely as a corrupted one. Reed-Solomon cannot tell a bad shard
// from a good one; the decoder checks every rebuilt shard (length within the
// shard, zero padding, checksum) and hands out only those that pass. The
// fourteen header bytes limit protected payloads to [MaxProtectedPayload]
// (65 457 bytes); larger ones are sent unprotected.
//
// # Code
//
// Parity shard i (0 <= i < M) is Σ_j c(i,j)·D_j over the data shards D_j,
// in GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1, where
// c(i,j) = 1/((255-i) XOR j) is a Cauchy matrix. Every square submatrix of
// a Cauchy matrix is invertible, so any K shards rebuild the block, and
// c(i,j) does not depend on K, so a partial block encodes as a full one
// whose absent shards are zero (the encoder skips them). Both ends apply
// the coefficients with klauspost/reedsolomon's SIMD slice routines
// (reedsolomon.LowLevel), which allocate nothing: the encoder computes each
// parity shard as a sum of scaled data shards, zero-padded to a multiple of
// 64 bytes so that the kernels never finish a ragged end through their
// slow lookup tables (the padding's parity is zero and is not sent); the
// decoder inverts the small e×e system of the e missing shards itself. The
// library's own encoder is not used: without its AVX2 code generation,
// which allocates on every call, it ran several times slower than this on
// the short shards of telemetry (see BenchmarkCodec).
//
// # Interleaving
//
// With depth D > 1 (EncoderConfig.Interleave), sequences s, s+1, …, s+D·K-1
// are dealt round-robin to D blocks: block j holds s+j, s+j+D, …, with
// stride D. A burst of up to D·M consecutive losses costs each block at most
// M shards, so it is fully repaired; without interleaving a burst longer
// than M loses the block. The price is latency: a block's parity leaves only
// when its last data shard does, (K-1)·D+1 packets after its first instead
// of K, so repairing a loss can take up to D times longer (and the group's
// time limit closes all D blocks at once, partially filled). The receiver
// needs RingSize >= (K-1)·D+1.
//
// # Adaptive parity
//
// See [Adaptive] for the rule, [ResidualLoss] and [ResidualLossBurst] for
// the model it optimizes: the least overhead M/K whose modelled residual loss
// meets a target (default 0.1%) under an overhead ceiling (default 50%),
// raised at once when loss rises and lowered gradually after a hold time.
//
// # Memory
//
// Everything a peer can make the decoder hold is fixed by [DecoderConfig]:
// RingSize data shards, MaxBlocks block records, ParityBuffers parity
// shards, each at most MaxPayload+ShardHeaderLen bytes; parity that would
// exceed them is rejected or dropped and counted.
package fec
