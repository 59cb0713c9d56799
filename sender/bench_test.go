package sender

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkSend measures the sender's per-message cost without the socket:
// stamping, encoding into the outbox, keeping a copy for retransmission,
// FEC (off, or 10,3 with the parity encoded into the outbox too), and
// sealing (AES-256-GCM) when a key is set.
// 200-byte messages; the outbox is emptied whenever it fills, as the
// writer goroutine would.
func BenchmarkSend(b *testing.B) {
	for _, c := range []struct {
		name string
		fec  FECConfig
		rtx  bool
		key  []byte
	}{
		{"fec=off/rtx=off", FECConfig{Mode: FECOff}, false, nil},
		{"fec=off", FECConfig{Mode: FECOff}, true, nil},
		{"fec=10,3", FECConfig{Mode: FECFixed, K: 10, M: 3}, true, nil},
		{"fec=off/sealed", FECConfig{Mode: FECOff}, true, testPSK},
	} {
		b.Run(c.name, func(b *testing.B) {
			core, err := NewCore(Config{FEC: c.fec, DisableRetransmit: !c.rtx, Key: c.key, QueuePackets: 4096, QueueBytes: 4 << 20}, 0xabc, rcvAddr)
			if err != nil {
				b.Fatal(err)
			}
			if c.key != nil {
				newReceiverSide(b, core, c.key) // the handshake first
			}
			payload := make([]byte, 200)
			now := int64(1)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				now += 1000
				if err := core.Send(0, payload, now); err != nil {
					if bt := core.Outbox().Take(); bt != nil {
						core.Outbox().Give(bt)
					}
					if err := core.Send(0, payload, now); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkFanoutSend measures a message's cost in the core with 1, 10
// and 50 unicast destinations: one encoding, one retransmit copy, one
// FEC pass, and one outbox place per destination (no copy of the bytes).
func BenchmarkFanoutSend(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("destinations=%d", n), func(b *testing.B) {
			var to []netip.AddrPort
			for i := range n {
				to = append(to, addrN(i+1))
			}
			core, err := NewFanoutCore(Config{FEC: FECConfig{Mode: FECFixed, K: 10, M: 3}, QueuePackets: 4096, QueueBytes: 4 << 20, DisablePacking: true}, 0xabc, to)
			if err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 200)
			now := int64(1)
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				now += 1000
				if err := core.Send(0, payload, now); err != nil {
					if bt := core.Outbox().Take(); bt != nil {
						core.Outbox().Give(bt)
					}
					if err := core.Send(0, payload, now); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
