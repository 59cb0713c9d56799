package main

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// TestSizesEachFraming: messages of 0 B, 1 B, one less than a 1280-byte
// MTU's datagram carries, exactly that, one more, 64 KiB and 1 MiB, in
// each framing, from `telewire send --mtu 1280` through `telewire netem`
// losing 2% each way to `telewire recv`: the output is the input, byte for
// byte.
func TestSizesEachFraming(t *testing.T) {
	// 1280 - 48 (IPv6+UDP) - 40 (telewire+DATA headers) - 3 (message
	// map) - 2 (entry length) = 1187 bytes: the largest message one
	// datagram carries.
	const single = 1187
	sizes := []int{0, 1, single - 1, single, single + 1, 64 << 10, 1 << 20}
	rng := rand.New(rand.NewPCG(3, 4))
	letters := []byte("abcdefghijklmnopqrstuvwxyz0123456789")
	for _, framing := range []string{"line", "len32"} {
		t.Run(framing, func(t *testing.T) {
			var in bytes.Buffer
			for _, n := range sizes {
				msg := make([]byte, n)
				for i := range msg {
					msg[i] = letters[rng.IntN(len(letters))] // no newline: line framing carries it
				}
				if framing == "len32" {
					in.Write(binary.BigEndian.AppendUint32(nil, uint32(n)))
					in.Write(msg)
				} else {
					in.Write(msg)
					in.WriteByte('\n')
				}
			}
			var out bytes.Buffer
			recv, recvAddr, rerr := startRecv(t, &out, "--framing", framing, "--count", "7", "--latency", "2s")
			relay, relayAddr, nerr := startNetem(t, recvAddr, "--fwd", "loss random 2%", "--rev", "loss random 2%", "--seed", "5")
			code, serr := runSendCmd(t, in.Bytes(), "--to", relayAddr, "--framing", framing, "--mtu", "1280", "--linger", "500ms")
			if code != 0 {
				t.Fatalf("send exit %d:\n%s", code, serr)
			}
			wait(t, recv, rerr, 60*time.Second)
			if err := relay.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			wait(t, relay, nerr, 10*time.Second)
			if !bytes.Equal(out.Bytes(), in.Bytes()) {
				t.Fatalf("output (%d bytes) differs from input (%d bytes)\nsend: %s\nrecv: %s", out.Len(), in.Len(), serr, rerr)
			}
			// Exactly single+1, 64 KiB and 1 MiB went in fragments: the
			// boundary is where the test puts it.
			if !bytes.Contains([]byte(serr), []byte(" 3 fragmented")) {
				t.Fatalf("not 3 messages fragmented:\n%s", serr)
			}
			t.Logf("%s\n%s", serr, nerr)
		})
	}
}
