package outbox

import (
	"testing"

	"github.com/telewire/telewire/internal/udpio"
	"github.com/telewire/telewire/packet"
)

// TestTrailingParityKeepsGSORuns writes over loopback the batch a sender
// with FEC 10,3 queues (ten 240-byte DATA, three 250-byte PARITY, …), once
// with the PARITY queued in order and once trailing, and counts the
// UDP_SEGMENT messages the kernel accepted. In order, every PARITY cuts the
// run of DATA (a longer segment cannot join it) and takes the next DATA
// into its own run: about two messages per block. Trailing, the DATA go in
// runs of up to 64 and the PARITY in runs of their own. (That coalesced
// messages arrive intact is udpio's to test.)
func TestTrailingParityKeepsGSORuns(t *testing.T) {
	rcv, err := udpio.Listen("127.0.0.1:0", udpio.Config{NoGRO: true}) // a destination; never read
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	const blocks, k, m = 40, 10, 3
	for _, c := range []struct {
		name        string
		trailing    bool
		minMessages uint64
		maxMessages uint64
	}{
		{"in-order", false, 2 * blocks, 2*blocks + 1},
		// The batch settles between whole runs of DATA: 400 DATA in 7
		// runs, 120 PARITY in 2, and one run cut where the batch ends
		// (the PARITY of the last blocks); 14 when it settled every 129.
		{"trailing", true, 1, (400+udpio.MaxGSOSegments-1)/udpio.MaxGSOSegments + (120+udpio.MaxGSOSegments-1)/udpio.MaxGSOSegments + 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			snd, err := udpio.Listen("127.0.0.1:0", udpio.Config{NoGRO: true, WriteBufferBytes: 4 << 20})
			if err != nil {
				t.Fatal(err)
			}
			defer snd.Close()
			if gso, _ := snd.Offload(); !gso {
				t.Skip("kernel lacks UDP GSO")
			}
			to := rcv.LocalAddr()
			p := NewPair(1024, 1<<20)
			b := p.Current()
			seq := uint64(1)
			for range blocks {
				first := seq
				for range k {
					d := packet.Packet{Header: packet.Header{Kind: packet.KindData, Session: 1}, Seq: seq, Payload: make([]byte, 200)}
					if err := b.Append(&d, to); err != nil {
						t.Fatal(err)
					}
					seq++
				}
				for i := range m {
					par := packet.Packet{Header: packet.Header{Kind: packet.KindParity, Session: 1},
						Parity:  packet.Parity{First: first, K: k, M: m, Index: uint8(i), Stride: 1},
						Payload: make([]byte, 200+14)}
					add := b.Append
					if c.trailing {
						add = b.AppendTrailing
					}
					if err := add(&par, to); err != nil {
						t.Fatal(err)
					}
				}
			}
			wb := p.Take()
			if n, err := snd.WriteBatch(wb.Datagrams()); err != nil || n != blocks*(k+m) {
				t.Fatalf("wrote %d of %d: %v", n, blocks*(k+m), err)
			}
			st := snd.Stats()
			t.Logf("%d datagrams in %d UDP_SEGMENT messages (%d datagrams) and %d single ones",
				st.DatagramsWritten, st.GSOMessages, st.GSODatagrams, st.DatagramsWritten-st.GSODatagrams)
			msgs := st.GSOMessages + (st.DatagramsWritten - st.GSODatagrams)
			if msgs < c.minMessages || msgs > c.maxMessages {
				t.Fatalf("%d messages, want %d..%d", msgs, c.minMessages, c.maxMessages)
			}
		})
	}
}
