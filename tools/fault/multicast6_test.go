package fault

import (
	"context"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netns"
)

// TestMulticastIPv6Bridge: IPv6 multicast through the real kernel. A
// sender and three receivers, each in a network namespace of its own on
// a Linux bridge (tools/netns.Bridge, MLD snooping off), the sender
// sending to an IPv6 group out of the bridge interface. Two receivers
// join the group from any source, the third source-specifically (MLDv2)
// with the sender's address; a fourth socket, beside the third, joins
// source-specifically with another member's address and must hear
// nothing. Each receiver drops 5% of the UDP arriving at it (nftables,
// ip6 as ip), the bridge 2% of what the sender sends (shared), the
// sender 1% of the feedback. Every receiver gets every message,
// byte-identical and in order, and repairs its own losses by NACKs sent
// unicast over IPv6 and retransmissions sent to the group; the sender
// holds a view of each receiver at its IPv6 address.
//
// Two groups: a site-scoped one (ff15::), which the sender sends from
// its unique local address, and a link-scoped one (ff12::), which it
// sends from its link-local address, so the receivers' feedback goes to
// a link-local address and must carry its zone: every member has a
// second interface whose routes to fe80::/64 and to multicast are
// preferred, so a link-local address without its zone goes out of the
// wrong one. The link-scoped group once more as "ff12::…%tw-m" with no
// interface configured: the zone alone must pick the bridge for the
// joins and the sends. Needs root, ip and nft (skipped otherwise).
func TestMulticastIPv6Bridge(t *testing.T) {
	for _, tc := range []struct {
		name, group string
		linkLocal   bool // the sender's source, and so its receivers' feedback, is link-local
	}{
		{"site", "[ff15::7477:6d63]:9000", false},
		{"link", "[ff12::7477:6d63]:9000", true},
		{"zone", "[ff12::7477:6d63%" + netns.BridgeIface + "]:9000", true},
	} {
		t.Run(tc.name, func(t *testing.T) { multicastIPv6(t, tc.group, tc.linkLocal) })
	}
}

func multicastIPv6(t *testing.T, group string, linkLocal bool) {
	// With a zone, the group names its interface: no Interface is given,
	// and the decoy link is the kernel's choice for a group without one.
	iface := netns.BridgeIface
	if netip.MustParseAddrPort(group).Addr().Zone() != "" {
		iface = ""
	}
	const receivers, n = 3, 3000
	loss := []float64{1} // member 0, the sender: feedback loss
	for range receivers {
		loss = append(loss, 5)
	}
	// Clean while the stream begins (as TestMulticastBridgeOwnLoss).
	lan := netns.NewBridge(t, netns.LANOptions{LossPercent: make([]float64, len(loss)), Prefix: "v6mc"})
	if linkLocal {
		for i := range lan.Members() {
			decoyLinkLocalRoute(t, lan.Name(i))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// addr is member i's address the traffic of this group uses, as
	// member from sees it.
	addr := func(i, from int) netip.Addr {
		if linkLocal {
			return lan.LinkLocal(i).WithZone(lan.Zone(from))
		}
		return lan.Addr6(i)
	}
	rs := make([]*receiver.Receiver, receivers)
	for i := range rs {
		// The latency budget of the group tests (groupTestLatency): a
		// repair that misses 200 ms on a machine short of CPU is not what
		// this test is about.
		cfg := receiver.Config{Listen: group, Interface: iface, ReportInterval: 20 * time.Millisecond, Latency: groupTestLatency}
		if i == receivers-1 {
			cfg.Source = addr(0, i+1).String()
		}
		err := lan.Run(i+1, func() (err error) {
			rs[i], err = receiver.Listen(ctx, cfg)
			return err
		})
		if err != nil {
			t.Fatalf("receiver %d: %v", i, err)
		}
		t.Cleanup(func() { rs[i].Close() })
	}
	// Beside the source-specific receiver, on the same group and port: a
	// join for another source. The kernel filters per socket, so this one
	// hears nothing of the sender's though its neighbour hears everything.
	var other *receiver.Receiver
	if err := lan.Run(receivers, func() (err error) {
		other, err = receiver.Listen(ctx, receiver.Config{Listen: group, Interface: iface, Source: addr(1, receivers).String()})
		return err
	}); err != nil {
		t.Fatalf("receiver of another source: %v", err)
	}
	t.Cleanup(func() { other.Close() })
	var s *sender.Sender
	err := lan.Run(0, func() (err error) {
		s, err = sender.New(ctx, sender.Config{To: group, MulticastInterface: iface, DisablePacking: true,
			FEC: sender.FECConfig{Mode: sender.FECOff}}) // repair by retransmission alone
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	st, run := streamOverBridge(t, ctx, s, rs, lan, n, loss)
	union, sum, each, shared, dropped := run.union, run.sum, run.each, run.shared, run.dropped
	rtx, nacks := float64(st.Retransmits), float64(st.NACKs)
	t.Logf("%s: bridge dropped %d shared, receivers dropped %v; losses per receiver %v: union %d, sum %d; sender: %d NACKs (%.2f per lost), %d retransmissions (%.2f per lost; %.2f of the sum), %d suppressed",
		group, shared, dropped, each, len(union), sum, st.NACKs, nacks/float64(len(union)), st.Retransmits, rtx/float64(len(union)), rtx/float64(sum), st.Suppressed)
	if shared == 0 || slices.Contains(dropped, 0) {
		t.Fatal("no loss: the rules did not drop")
	}
	for k, r := range rs {
		x := r.Stats()
		if each[k] == 0 || x.NACKs == 0 {
			t.Errorf("receiver %d repaired %d messages with %d NACKs: its own losses were not repaired over IPv6", k, each[k], x.NACKs)
		}
		if x.WriteErrors != 0 {
			t.Errorf("receiver %d: %d feedback datagrams refused by the kernel", k, x.WriteErrors)
		}
	}
	// 1.13-1.38 retransmissions and 0.84-1.29 NACKs per sequence lost
	// by someone measured (24 runs, 9 of them under -race; 12 more beside
	// four busy loops, 1.15-1.32 and 0.76-0.90). With three
	// receivers the sum of the losses is only about 1.3 times their
	// union, so how far repairs are shared is TestMulticastBridgeOwnLoss's
	// to show (six receivers); here the bounds catch repairs or requests
	// that run away, as they would if feedback went astray and was
	// repeated, with room for a loaded machine (see
	// TestMulticastAcrossLossyLink).
	if rtx > 2*float64(len(union)) {
		t.Errorf("%d retransmissions for %d sequences lost by someone (%d losses in all)", st.Retransmits, len(union), sum)
	}
	if nacks > 2*float64(len(union)) {
		t.Errorf("%d NACKs for %d lost sequences: the back-off does not hold requests back", st.NACKs, len(union))
	}
	var views []string
	for _, v := range st.Receivers {
		views = append(views, v.Addr)
	}
	if len(views) != receivers {
		t.Errorf("the sender holds views of %v, want %d receivers", views, receivers)
	}
	for i := 1; i <= receivers; i++ {
		want := addr(i, 0)
		if !slices.ContainsFunc(views, func(v string) bool {
			ap, err := netip.ParseAddrPort(v)
			return err == nil && ap.Addr() == want
		}) {
			t.Errorf("no view of receiver %d at %v among %v", i-1, want, views)
		}
	}
	// Everything the others delivered went past this socket's
	// namespace; its filter kept all of it out.
	if x := other.Stats(); x.Datagrams != 0 || x.Delivered != 0 {
		t.Errorf("a receiver joined for source %v read %d datagrams, delivered %d: the source filter let the sender through", addr(1, receivers), x.Datagrams, x.Delivered)
	}
}

// decoyLinkLocalRoute gives namespace ns a second link, a veth pair whose
// both ends it holds, with routes to fe80::/64 and to multicast (ff00::/8)
// that come before the bridge's (a lower metric): a datagram to a
// link-local address that does not name its interface (scope id 0) goes
// out of it, to nobody, and a join that names no interface is made on
// it, as may happen on any host with two links.
func decoyLinkLocalRoute(t *testing.T, ns string) {
	t.Helper()
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "tw-decoy", "type", "veth", "peer", "name", "tw-decoy-peer"},
		{"-n", ns, "link", "set", "tw-decoy", "up"},
		{"-n", ns, "link", "set", "tw-decoy-peer", "up"},
		{"-n", ns, "-6", "route", "add", "fe80::/64", "dev", "tw-decoy", "metric", "1"},
		{"-n", ns, "-6", "route", "add", "multicast", "ff00::/8", "dev", "tw-decoy", "table", "local", "metric", "1"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
}
