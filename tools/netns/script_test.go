package netns

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/internal/testutil"
)

// script runs lossy-link.sh and returns its exit status and output.
func script(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{"lossy-link.sh"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

func TestLossyLinkScriptUsage(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "missing command"},
		{[]string{"sideways"}, 2, `unknown command "sideways"`},
		{[]string{"up", "--loss"}, 2, "--loss needs a value"},
		{[]string{"up", "--speed", "1"}, 2, `unknown option "--speed"`},
		{[]string{"up", "--loss", "101"}, 2, `not "101"`},
		{[]string{"up", "--name", "a/b"}, 2, `not "a/b"`},
		{[]string{"help"}, 0, "lossy-link.sh up [--name NAME]"},
	} {
		code, out := script(t, c.args...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("lossy-link.sh %q: exit %d, want %d; output should contain %q:\n%s", c.args, code, c.code, c.want, out)
		}
	}
}

// TestLossyLinkScript brings a link up with the script, checks it with
// the package's own machinery (a Pair over the script's namespaces), and
// takes it down.
func TestLossyLinkScript(t *testing.T) {
	if err := Check(false); err != nil {
		t.Skipf("kernel-level loss test skipped: %v", err)
	}
	name := fmt.Sprintf("twsh-%d", os.Getpid())
	if code, out := script(t, "up", "--name", name, "--loss", "100"); code != 0 {
		t.Fatalf("up: exit %d\n%s", code, out)
	}
	t.Cleanup(func() { script(t, "down", "--name", name) })
	p := &Pair{names: [2]string{name + "-a", name + "-b"}}

	var ca, cb net.PacketConn
	if err := p.Run(A, func() (err error) { ca, err = net.ListenPacket("udp4", p.Addr(A).String()+":0"); return }); err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	if err := p.Run(B, func() (err error) { cb, err = net.ListenPacket("udp4", p.Addr(B).String()+":0"); return }); err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	// B→A is clean: the link works (the script's static neighbours mean
	// no ARP, so the first datagram may only be lost to a carrier still
	// coming up; retry until one arrives).
	buf := make([]byte, 16)
	testutil.Eventually(t, 5*time.Second, "a datagram crosses B→A", func() bool {
		cb.WriteTo([]byte("hello"), ca.LocalAddr())
		ca.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		n, _, err := ca.ReadFrom(buf)
		return err == nil && string(buf[:n]) == "hello"
	})
	// A→B loses everything, and the counter says so.
	for range 10 {
		if _, err := ca.WriteTo([]byte("lost"), cb.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 5*time.Second, "10 datagrams dropped", func() bool {
		fwd, _, err := p.Dropped()
		return err == nil && fwd == 10
	})
	cb.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := cb.ReadFrom(buf); err == nil {
		t.Fatalf("datagram %q crossed a link with 100%% loss", buf[:n])
	}
	if code, out := script(t, "status", "--name", name); code != 0 || !strings.Contains(out, "A->B datagrams dropped (at "+name+"-b): 10") {
		t.Fatalf("status: exit %d\n%s", code, out)
	}

	if code, out := script(t, "down", "--name", name); code != 0 {
		t.Fatalf("down: exit %d\n%s", code, out)
	}
	for _, s := range []Side{A, B} {
		if _, err := os.Stat(runDir + "/" + p.Name(s)); !os.IsNotExist(err) {
			t.Fatalf("%s survives down: %v", p.Name(s), err)
		}
	}
	if code, out := script(t, "down", "--name", name); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("second down: exit %d\n%s", code, out)
	}
}
