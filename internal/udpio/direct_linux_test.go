package udpio

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// TestDirectSocket: a batching Conn on Linux owns its socket outside Go's
// netpoller unless Netpoll, BusyPoll or NoBatch keeps it there, and both
// kinds carry the same datagrams.
func TestDirectSocket(t *testing.T) {
	for _, c := range []struct {
		name   string
		cfg    Config
		direct bool
	}{
		{"default", Config{}, true},
		{"netpoll", Config{Netpoll: true}, false},
		{"busypoll", Config{BusyPoll: time.Millisecond}, false},
		{"nobatch", Config{NoBatch: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.cfg.MaxDatagram = 64
			rx := listen(t, "127.0.0.1:0", c.cfg)
			tx := listen(t, "127.0.0.1:0", c.cfg)
			if got := rx.d != nil; got != c.direct {
				t.Fatalf("direct socket: %v, want %v", got, c.direct)
			}
			want := [][]byte{[]byte("a"), {}, []byte("ccc")}
			if n, err := tx.WriteBatch(datagrams(want, rx.LocalAddr())); n != len(want) || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			if err := tx.WriteTo([]byte("dddd"), rx.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			checkSame(t, readN(t, rx, 4), append(want, []byte("dddd")), tx.LocalAddr())
			if r, w := rx.BufferSizes(); r <= 0 || w <= 0 {
				t.Errorf("BufferSizes = %d, %d", r, w)
			}
		})
	}
}

// TestDirectDeadlineWhileBlocked: a deadline set while a Read is already
// waiting (in ppoll, on the direct socket) ends that Read when it passes.
func TestDirectDeadlineWhileBlocked(t *testing.T) {
	rx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
	if rx.d == nil {
		t.Skip("no direct socket")
	}
	done := make(chan error, 1)
	go func() {
		_, err := rx.Read()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the Read block without a deadline
	if err := rx.SetReadDeadline(time.Now().Add(30 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline set during a blocked Read did not end it")
	}
}

// TestDirectWithUDPConn: an option set through withUDPConn (here x/net's
// multicast TTL) is the direct socket's, and the socket keeps working.
func TestDirectWithUDPConn(t *testing.T) {
	rx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
	tx := listen(t, "127.0.0.1:0", Config{MaxDatagram: 64})
	if tx.d == nil {
		t.Skip("no direct socket")
	}
	if err := tx.withUDPConn(func(uc *net.UDPConn) error {
		return ipv4.NewPacketConn(uc).SetMulticastTTL(7)
	}); err != nil {
		t.Fatal(err)
	}
	if ttl, err := unix.GetsockoptInt(tx.d.fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL); err != nil || ttl != 7 {
		t.Fatalf("IP_MULTICAST_TTL = %d, %v; want 7", ttl, err)
	}
	if err := tx.WriteTo([]byte("after"), rx.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	checkSame(t, readN(t, rx, 1), [][]byte{[]byte("after")}, tx.LocalAddr())
	tx.Close()
	if err := tx.withUDPConn(func(*net.UDPConn) error { return nil }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("withUDPConn after Close = %v, want net.ErrClosed", err)
	}
}
