package netns

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv6"
)

func TestLANOptionsPrefix(t *testing.T) {
	for _, p := range []string{"bad name", "a/b", "x.y", strings.Repeat("a", maxPrefixLen+1)} {
		if _, err := NewLAN(LANOptions{LossPercent: []float64{0, 0}, Prefix: p}); !errors.Is(err, ErrOptions) {
			t.Errorf("Prefix %q: err = %v, want ErrOptions before anything is created", p, err)
		}
	}
	for _, p := range []string{"twbr", "v6mc", "A-1", strings.Repeat("a", maxPrefixLen)} {
		if !validPrefix(p) {
			t.Errorf("Prefix %q refused", p)
		}
	}
}

// TestBridgeIPv6: a Bridge's members are named with its prefix, hold the
// ULA and link-local addresses the Bridge says, usable at once (not
// tentative), and pass IPv6 multicast: a datagram sent to a group by
// member 0 arrives at a member that joined it. Closing deletes every
// namespace. Needs root, ip and nft (skipped otherwise).
func TestBridgeIPv6(t *testing.T) {
	b := NewBridge(t, LANOptions{LossPercent: []float64{0, 0, 0}, Prefix: "v6mctest"})
	for i := range b.Members() {
		if !strings.HasPrefix(b.Name(i), "v6mctest-") {
			t.Errorf("member %d is named %q", i, b.Name(i))
		}
		out, err := exec.Command("ip", "-n", b.Name(i), "-6", "addr", "show", "dev", BridgeIface).CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr: %v: %s", err, out)
		}
		for _, a := range []netip.Addr{b.Addr6(i), b.LinkLocal(i)} {
			if !strings.Contains(string(out), a.String()+"/64") {
				t.Errorf("member %d lacks %v:\n%s", i, a, out)
			}
		}
		if strings.Contains(string(out), "tentative") {
			t.Errorf("member %d has a tentative address (DAD on):\n%s", i, out)
		}
	}
	group := netip.MustParseAddrPort("[ff15::7477:99]:9999")
	var rx *net.UDPConn
	err := b.Run(2, func() error {
		ifi, err := net.InterfaceByName(BridgeIface)
		if err != nil {
			return err
		}
		rx, err = net.ListenMulticastUDP("udp6", ifi, net.UDPAddrFromAddrPort(group))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	var tx *net.UDPConn
	if err := b.Run(0, func() (err error) {
		tx, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.Addr6(0), 0)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	zone, _ := strconv.Atoi(b.Zone(0))
	if err := ipv6.NewPacketConn(tx).SetMulticastInterface(&net.Interface{Index: zone}); err != nil {
		t.Fatal(err)
	}
	// A datagram can be lost (a multicast to a group whose membership
	// the kernel is still reporting is not), so send until one arrives,
	// as NewLAN's probe does for unicast.
	buf := make([]byte, 64)
	for try := 0; ; try++ {
		if try == 50 {
			t.Fatal("no datagram to the IPv6 group crossed the bridge in 50 tries")
		}
		if _, err := tx.WriteToUDPAddrPort([]byte("v6 probe"), group); err != nil {
			t.Fatal(err)
		}
		if err := rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, from, err := rx.ReadFromUDPAddrPort(buf)
		if err == nil {
			if string(buf[:n]) != "v6 probe" || from.Addr() != b.Addr6(0) {
				t.Fatalf("got %q from %v, want \"v6 probe\" from %v", buf[:n], from, b.Addr6(0))
			}
			break
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	for i := range b.Members() {
		if strings.Contains(string(out), b.Name(i)) {
			t.Errorf("namespace %s left behind", b.Name(i))
		}
	}
}
