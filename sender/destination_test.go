package sender

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/packet"
)

func TestCheckDestination(t *testing.T) {
	// 10.1.2.255 stands for the broadcast of a local /24; the host's own
	// interfaces play no part.
	local := func(a netip.Addr) bool { return a == netip.MustParseAddr("10.1.2.255") }
	cases := []struct {
		addr      string
		broadcast bool
		want      error // nil: allowed
	}{
		{"127.0.0.1:9000", false, nil},
		{"[::1]:9000", false, nil},
		{"192.0.2.7:1", false, nil},
		{"10.1.3.255:9000", false, nil}, // not a local subnet's broadcast: a host address as far as we know
		{"127.0.0.1:0", false, ErrZeroPort},
		{"[::1]:0", false, ErrZeroPort},
		{"0.0.0.0:9000", false, ErrUnspecified},
		{"[::]:9000", false, ErrUnspecified},
		{"[::ffff:0.0.0.0]:9000", false, ErrUnspecified},
		{"0.0.0.0:0", false, ErrUnspecified},
		{"255.255.255.255:9000", false, ErrBroadcast},
		{"[::ffff:255.255.255.255]:9000", false, ErrBroadcast},
		{"10.1.2.255:9000", false, ErrBroadcast},
		{"255.255.255.255:9000", true, nil},
		{"10.1.2.255:9000", true, nil},
		{"255.255.255.255:0", true, ErrZeroPort},
		{"239.1.2.3:9000", false, nil}, // multicast groups are destinations
		{"224.0.0.1:9000", true, nil},
		{"[ff02::1]:9000", false, nil},
		{"[ff0e::1234]:9000", false, nil},
		{"239.1.2.3:0", false, ErrZeroPort},
	}
	for _, c := range cases {
		err := checkDestination(netip.MustParseAddrPort(c.addr), c.broadcast, local)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s (broadcast %v): %v", c.addr, c.broadcast, err)
			}
			continue
		}
		var de *DestinationError
		if !errors.Is(err, c.want) || !errors.Is(err, ErrConfig) || !errors.As(err, &de) {
			t.Errorf("%s (broadcast %v): %v, want %v wrapped with ErrConfig", c.addr, c.broadcast, err, c.want)
			continue
		}
		if de.Reason != c.want || de.Addr.Addr().Is4In6() {
			t.Errorf("%s: DestinationError %+v", c.addr, de)
		}
	}
}

func TestDirectedBroadcast(t *testing.T) {
	cases := []struct {
		cidr string
		want string // "" for none
	}{
		{"192.0.2.10/24", "192.0.2.255"},
		{"10.0.0.1/8", "10.255.255.255"},
		{"172.16.5.4/20", "172.16.15.255"},
		{"192.0.2.1/30", "192.0.2.3"},
		{"192.0.2.1/31", ""},
		{"192.0.2.1/32", ""},
		{"2001:db8::1/64", ""},
	}
	for _, c := range cases {
		ip, n, err := net.ParseCIDR(c.cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		forms := []*net.IPNet{n}
		if len(n.Mask) == net.IPv4len {
			// The same subnet with its mask in 16-byte form.
			forms = append(forms, &net.IPNet{IP: ip.To16(), Mask: append(net.IPMask(bytes.Repeat([]byte{0xff}, 12)), n.Mask...)})
		}
		for _, form := range forms {
			got, ok := directedBroadcast(form)
			if (c.want == "") == ok || (ok && got.String() != c.want) {
				t.Errorf("%s (mask %d bytes): %v %v, want %q", c.cidr, len(form.Mask), got, ok, c.want)
			}
		}
	}
}

// TestNewRefusesBadDestinations: New checks the resolved address before
// it binds anything.
func TestNewRefusesBadDestinations(t *testing.T) {
	key := make([]byte, 32)
	for _, tc := range []struct {
		to  string
		key []byte
	}{{"127.0.0.1:0", nil}, {"0.0.0.0:9000", nil}, {"[::]:9000", nil}, {"255.255.255.255:9000", nil}, {"239.0.0.1:9000", key}} {
		to := tc.to
		s, err := New(context.Background(), Config{To: to, Key: tc.key})
		var de *DestinationError
		if err == nil {
			s.Close()
		}
		if !errors.As(err, &de) || !errors.Is(err, ErrConfig) {
			t.Errorf("New(To %q): %v, want a DestinationError", to, err)
		}
	}
}

// TestNewBroadcast: the directed broadcast of loopback's 127.0.0.0/8
// is refused without Broadcast; with it the datagrams reach a socket bound
// to the wildcard address, which needs SO_BROADCAST on the sender's
// socket (without it Linux refuses the send with EACCES). Nothing leaves
// the loopback interface.
func TestNewBroadcast(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	to := netip.AddrPortFrom(netip.MustParseAddr("127.255.255.255"), uint16(port)).String()
	if !localBroadcast(netip.MustParseAddr("127.255.255.255")) {
		t.Skip("loopback has no 127.0.0.0/8 subnet here")
	}
	if _, err := New(context.Background(), Config{To: to}); !errors.Is(err, ErrBroadcast) {
		t.Fatalf("New(To %s) without Broadcast: %v", to, err)
	}
	s, err := New(context.Background(), Config{To: to, Broadcast: true, DisableCongestionControl: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Send([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no datagram arrived: %v (stats %+v)", err, s.Stats())
		}
		var p packet.Packet
		if p.Parse(buf[:n]) == nil && p.Kind == packet.KindData && string(msgOf(&p)) == "hello" {
			break
		}
	}
	if st := s.Stats(); st.WriteErrors != 0 {
		t.Fatalf("write errors: %+v", st)
	}
}

func TestFeedbackSilence(t *testing.T) {
	const ms = int64(time.Millisecond)
	c := newCore(t, Config{})
	if got := c.FeedbackSilence(5 * ms); got != 0 {
		t.Fatalf("silence before any DATA = %d, want 0", got)
	}
	c.Send(0, []byte("a"), 10*ms)
	c.Send(0, []byte("b"), 20*ms)
	drain(t, c)
	// Counted from the first DATA, not the latest.
	if got := c.FeedbackSilence(1010 * ms); got != 1000*ms {
		t.Fatalf("silence = %d, want 1s since the first DATA", got)
	}
	// Feedback that is not from this session, or does not decode, is no
	// sign of a receiver.
	foreign := packet.Packet{Header: packet.Header{Kind: packet.KindReport, Session: 0xdef}}
	c.Handle(encode(t, &foreign), rcvAddr, 1100*ms)
	c.Handle([]byte("garbage"), rcvAddr, 1100*ms)
	if got := c.FeedbackSilence(1200 * ms); got != 1190*ms {
		t.Fatalf("silence after refused feedback = %d, want 1190ms", got)
	}
	rep := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc, Stream: 0},
		Report: packet.Report{Received: 2, HighestSeq: 1},
	}
	c.Handle(encode(t, &rep), rcvAddr, 1300*ms)
	if got := c.FeedbackSilence(1350 * ms); got != 50*ms {
		t.Fatalf("silence after a REPORT = %d, want 50ms", got)
	}
	// A NACK is feedback too.
	c.Handle(nackFor(t, packet.Range{First: 0, Len: 1}), rcvAddr, 2000*ms)
	if got := c.FeedbackSilence(2001 * ms); got != ms {
		t.Fatalf("silence after a NACK = %d, want 1ms", got)
	}
	// A clock read before the latest feedback gives 0, never negative.
	if got := c.FeedbackSilence(1500 * ms); got != 0 {
		t.Fatalf("silence with an earlier now = %d", got)
	}
}

// TestFeedbackSilenceWithKey: with a key, feedback that is not sealed
// under it leaves the sender as deaf as none would.
func TestFeedbackSilenceWithKey(t *testing.T) {
	c := newCore(t, Config{Key: testPSK})
	c.Send(0, []byte("a"), 1)
	c.Outbox().Give(c.Outbox().Take())
	plain := packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Session: 0xabc, Stream: 0},
		Report: packet.Report{Received: 1},
	}
	c.Handle(encode(t, &plain), rcvAddr, 500)
	if got, st := c.FeedbackSilence(1001), c.Stats(); got != 1000 || st.Reports != 0 || st.Unsealed != 1 {
		t.Fatalf("silence %d, stats %+v", got, st)
	}
}

// TestSenderStatsFeedbackSilence: Sender.Stats fills the silence in from
// its clock; with nothing listening at To it only grows.
func TestSenderStatsFeedbackSilence(t *testing.T) {
	// A bound socket that never answers stands for a receiver that is
	// not there (or behind a firewall).
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	clk := clock.NewFake(1_000)
	s, err := New(context.Background(), Config{To: pc.LocalAddr().String(), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.FeedbackSilenceNanos != 0 {
		t.Fatalf("silence before sending: %d", st.FeedbackSilenceNanos)
	}
	if err := s.Send([]byte("x")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(1500 * time.Millisecond)
	if st := s.Stats(); st.FeedbackSilenceNanos != int64(1500*time.Millisecond) || st.Reports != 0 {
		t.Fatalf("silence %d, reports %d", st.FeedbackSilenceNanos, st.Reports)
	}
}
