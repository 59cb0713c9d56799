package main

import (
	"bytes"
	"encoding/binary"
	"os/exec"
	"testing"
	"time"
)

// TestSendGSO: `send --gso` (UDP GSO on the sender, off by default) into
// a default recv (GRO on) delivers every message whole and in order.
func TestSendGSO(t *testing.T) {
	const n = 20000
	var out bytes.Buffer
	recv, addr, rerr := startRecv(t, &out, "--count", "20000", "--framing", "len32")
	serr := new(lockedBuffer)
	send := exec.Command(telewireBin, "send", "--to", addr, "--gso", "--gen", "market", "--count", "20000",
		"--size", "200", "--linger", "200ms")
	send.Stderr = serr
	if err := send.Run(); err != nil {
		t.Fatalf("send --gso: %v\n%s", err, serr)
	}
	wait(t, recv, rerr, 60*time.Second)
	b, frames := out.Bytes(), 0
	for len(b) >= 4 {
		l := int(binary.BigEndian.Uint32(b))
		if l != 200 || len(b) < 4+l {
			t.Fatalf("frame %d: length %d with %d bytes left", frames, l, len(b)-4)
		}
		b = b[4+l:]
		frames++
	}
	if frames != n || len(b) != 0 {
		t.Fatalf("%d frames (%d stray bytes), want %d\n%s", frames, len(b), n, rerr)
	}
}
