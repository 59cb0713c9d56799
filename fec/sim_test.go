package fec

import (
	"math/rand/v2"
	"testing"

	"github.com/telewire/telewire/packet"
)

// TestSimulationRandomLoss sends 100 000 DATA packets with FEC 10+3 over a
// link that loses 5% of all packets (DATA and PARITY) independently, seeded.
// At least 97% of the lost DATA must be rebuilt; the binomial model says
// 98.0%. Beyond the rate, every loss in a block that lost at most M of its
// K+M packets must be rebuilt, and nothing else.
func TestSimulationRandomLoss(t *testing.T) {
	const (
		n    = 100_000
		k, m = 10, 3
		p    = 0.05
		dt   = 100_000 // 10 000 packets per second
	)
	rng := rand.New(rand.NewPCG(2024, 5))
	enc := mustEncoder(t, EncoderConfig{K: k, M: m})
	dec := mustDecoder(t, DecoderConfig{})
	payload := make([]byte, 200)
	var lost, recovered, parityLost, repairable int
	var blockLost, blockLostData int // losses in the block being filled
	for i := 0; i < n; i++ {
		now := int64(i) * dt
		seq := uint64(i) + 1<<40
		payload[0], payload[1] = byte(i), byte(i>>8)
		if rng.Float64() < p {
			lost++
			blockLost++
			blockLostData++
		} else {
			dec.AddData(seq, now, payload, now)
		}
		if enc.Add(seq, now, payload, now) {
			enc.TakeParity(func(par packet.Parity, shard []byte) {
				if rng.Float64() < p {
					parityLost++
					blockLost++
					return
				}
				if err := dec.AddParity(par, shard, now); err != nil {
					t.Fatal(err)
				}
			})
			if blockLost <= m {
				repairable += blockLostData
			}
			blockLost, blockLostData = 0, 0
		}
		recovered += dec.TakeRecovered(func(seq uint64, ts int64, got []byte) {
			j := int(seq - 1<<40)
			if ts != int64(j)*dt || got[0] != byte(j) || got[1] != byte(j>>8) {
				t.Fatalf("seq %d rebuilt wrong", seq)
			}
		})
		if i%1000 == 0 {
			dec.Expire(now)
		}
	}
	residual := ResidualLoss(k, m, p)
	frac := float64(recovered) / float64(lost)
	t.Logf("FEC %d+%d, %.0f%% random loss, %d packets: %d DATA lost, %d PARITY lost, %d rebuilt: %.2f%% of losses (analytical %.2f%%, residual loss %.2e)",
		k, m, p*100, n, lost, parityLost, recovered, 100*frac, 100*(1-residual/p), residual)
	if recovered != repairable {
		t.Fatalf("rebuilt %d, but %d losses were in repairable blocks", recovered, repairable)
	}
	if frac < 0.97 {
		t.Fatalf("rebuilt %.2f%% of losses, want >= 97%%", 100*frac)
	}
	s := dec.Stats()
	if s.Recovered != uint64(recovered) || s.RecoveryRejected != 0 || s.ParityRejected != 0 {
		t.Fatalf("stats %+v", s)
	}
}
