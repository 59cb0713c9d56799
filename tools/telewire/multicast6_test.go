package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/tools/netns"
)

// TestSendRecvIPv6Multicast: the commands of docs/fanout.md with an IPv6
// group, each in a network namespace of its own on a bridge
// (tools/netns.Bridge): `send --to '[ff15::…]:9000' --iface tw-m --fec
// off --no-pack` reading stdin (a datagram per line), one `recv --listen '[ff15::…]:9000' --iface tw-m`
// and one with `--source` the sender's address (a source-specific join).
// Once both have the first messages, each receiver's input drops 5% of
// UDP (nftables), so the rest arrives only through NACKs sent over IPv6
// unicast and repairs sent to the group. Both write every line,
// byte-identical and in order, and exit 0; so does send, whose summary
// shows a group of two receivers. Needs root, ip
// and nft (skipped otherwise).
func TestSendRecvIPv6Multicast(t *testing.T) {
	const n, head = 3000, 50
	lan := netns.NewBridge(t, netns.LANOptions{LossPercent: []float64{0, 0, 0}, Prefix: "v6mc"})
	group := "[ff15::7477:636c]:9000"
	recvArgs := [][]string{
		{"--listen", group, "--iface", netns.BridgeIface},
		{"--listen", group, "--iface", netns.BridgeIface, "--source", lan.Addr6(0).String()},
	}
	outs := make([]*lockedBuffer, len(recvArgs))
	errs := make([]*lockedBuffer, len(recvArgs))
	cmds := make([]*exec.Cmd, len(recvArgs))
	for i, args := range recvArgs {
		outs[i], errs[i] = new(lockedBuffer), new(lockedBuffer)
		// --latency 1s: on a machine short of CPU a repair can miss the
		// default 200 ms budget, and the line would be skipped.
		cmds[i] = exec.Command("ip", append([]string{"netns", "exec", lan.Name(i + 1), telewireBin, "recv",
			"--count", fmt.Sprint(n), "--latency", "1s", "--log-level", "info"}, args...)...)
		cmds[i].Stdout, cmds[i].Stderr = outs[i], errs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmds[i].Process.Kill() })
	}
	for i := range cmds {
		waitFor(t, func() bool { return strings.Contains(errs[i].String(), "receiver listening") }, "recv %d to start: %s", i, errs[i])
	}
	send := exec.Command("ip", "netns", "exec", lan.Name(0), telewireBin, "send",
		"--to", group, "--iface", netns.BridgeIface, "--fec", "off", "--no-pack", "--linger", "1s")
	sendErr := new(lockedBuffer)
	send.Stderr = sendErr
	stdin, err := send.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := send.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { send.Process.Kill() })
	all := lines(n)
	cut := bytes.Index(all, []byte(fmt.Sprintf("\n%d\n", head))) + 1
	if _, err := stdin.Write(all[:cut]); err != nil {
		t.Fatal(err)
	}
	// Clean while the stream begins: a receiver that lost its first
	// datagram would start after it (at the live edge).
	for i := range outs {
		waitFor(t, func() bool { return strings.Count(outs[i].String(), "\n") >= head }, "recv %d to write the first %d lines: %s", i, head, errs[i])
	}
	if err := lan.SetLoss(netns.LANOptions{LossPercent: []float64{0, 5, 5}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write(all[cut:]); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	for i, cmd := range cmds {
		if code, _ := exitWithin(t, cmd, errs[i], 60*time.Second); code != 0 {
			t.Fatalf("recv %d (%v) exit %d\n%s", i, recvArgs[i], code, errs[i])
		}
		if !bytes.Equal([]byte(outs[i].String()), all) {
			t.Fatalf("recv %d (%v) wrote %d bytes, not the %d lines in order", i, recvArgs[i], len(outs[i].String()), n)
		}
		dropped, err := lan.Dropped(i + 1)
		if err != nil {
			t.Fatal(err)
		}
		if dropped == 0 {
			t.Fatalf("recv %d: its input dropped nothing: no repair was needed", i)
		}
		t.Logf("recv %d (%v): dropped %d datagrams, wrote all %d lines", i, recvArgs[i], dropped, n)
	}
	if code, _ := exitWithin(t, send, sendErr, 60*time.Second); code != 0 {
		t.Fatalf("send exit %d\n%s", code, sendErr)
	}
	if !strings.Contains(sendErr.String(), "group: 2 receivers") {
		t.Fatalf("send's summary does not show the 2 receivers' feedback:\n%s", sendErr)
	}
	t.Logf("send:\n%s", sendErr)
}

// waitFor polls cond until it holds, failing the test after 10 s with
// the message.
func waitFor(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
