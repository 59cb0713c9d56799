// Package netns builds a lossy link in the kernel for tests: two network
// namespaces joined by a veth pair, with loss applied by nftables (and,
// where the kernel has sch_netem, by a "tc qdisc ... netem"), so that
// telewire's real sender and receiver, batched sockets and all, can be
// run across a link that drops packets the way a network does, rather
// than through the userspace emulation of tools/netem.
//
//	p := netns.NewPair(t, netns.Options{LossPercent: 10})
//	var r *receiver.Receiver
//	err := p.Run(netns.B, func() (err error) {
//		r, err = receiver.Listen(ctx, receiver.Config{Listen: p.Addr(netns.B).String() + ":9000"})
//		return err
//	})
//
// # The link
//
// Side A is the namespace holding 10.203.0.1/30 on its veth end, side B
// holds 10.203.0.2/30; both have their loopback up. The addresses exist
// only inside the namespaces, so nothing is ever sent beyond them. Loss
// is applied where datagrams arrive: A→B by an nftables rule on B's input
// hook, "meta l4proto udp numgen random mod 10000 < N counter drop" (N =
// 100 × LossPercent, so the resolution is 0.01 %), B→A by the same rule on
// A's input hook. (A drop on the output path would make sendto fail with
// EPERM, which a real network never does.) Only UDP is dropped, and each
// side's counter says how many datagrams were ([Pair.Dropped]);
// [Pair.SetLoss] changes the loss on a live link. Options.Netem and
// RevNetem
// add a netem qdisc to A's and B's veth (egress), for delay, jitter,
// reordering and the other impairments nftables cannot make; kernels
// without sch_netem return [ErrNoNetem] (NewPair skips the test).
//
// # A LAN
//
// [NewBridge] builds a LAN instead: a hub namespace holding a Linux bridge
// (IGMP and MLD snooping off) and up to [MaxBridgeMembers] member
// namespaces on it, each with its own nftables loss, and a shared loss on
// the bridge for what member 0 sends: one multicast sender and several
// receivers with losses of their own. Each member has an IPv4 address
// ([Bridge.Addr]), a unique local IPv6 address ([Bridge.Addr6]) and a
// link-local one ([Bridge.LinkLocal], zone [Bridge.Zone]), duplicate
// address detection off so that they are usable at once; LANOptions.Prefix
// starts the namespaces' names.
//
// # Running code inside
//
// [Pair.Run] runs a function on an OS thread moved into one side's
// namespace (runtime.LockOSThread and setns(2)), and moves it back after.
// Sockets created during the function stay in that namespace for their
// whole life, whichever goroutine uses them later; goroutines the
// function starts do not run in the namespace, so anything that opens a
// socket later (a lazily dialled connection) must do it inside Run too.
// [Pair.Command] runs a program inside a side with "ip netns exec".
//
// # Requirements and cleanup
//
// Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the
// ip (iproute2) and nft (nftables) programs; tc (iproute2) for netem.
// [NewPair] skips the test, naming what is missing, when the process is
// not root or a program is absent, and fails it on any other error.
// Namespace names are unique per pair ("twns-PID-N-RANDOM-a"), so tests
// may run in parallel and across processes; cleanup deletes the nft
// tables, the qdiscs and both namespaces (the veth pair goes with them).
//
// The script lossy-link.sh in this directory builds the same link from a
// shell, for trying telewire by hand:
//
//	sudo tools/netns/lossy-link.sh up --loss 10
//	sudo ip netns exec telewire-b telewire recv --listen 10.203.0.2:9000 &
//	sudo ip netns exec telewire-a telewire send --to 10.203.0.2:9000 --gen market --count 10000
//	sudo tools/netns/lossy-link.sh down
package netns
