package sender

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestFlushWritesEverythingQueued: once Flush returns, every DATA packet
// queued before it has been written to the socket.
func TestFlushWritesEverythingQueued(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := New(context.Background(), Config{To: pc.LocalAddr().String(), DisableCongestionControl: true,
		FEC: FECConfig{Mode: FECOff}, HeartbeatInterval: time.Hour, MaxHeartbeatInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	payload := make([]byte, 100)
	for round := 1; round <= 20; round++ {
		for i := 0; i < 500; i++ {
			if err := s.Send(payload); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		// The only datagrams are the DATA and the one HEARTBEAT that
		// announces the stream.
		if st := s.Stats(); st.DatagramsSent < st.Packets+1 {
			t.Fatalf("round %d: %d datagrams written after Flush, %d packets queued", round, st.DatagramsSent, st.Packets)
		}
	}
	s.Close()
	if err := s.Flush(); err != nil && err != ErrClosed {
		t.Errorf("Flush after Close: %v", err)
	}
}
