package netem

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sysctlInt reads an integer from /proc/sys.
func sysctlInt(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		t.Skipf("sysctl %s: %v", name, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("sysctl %s: %v", name, err)
	}
	return n
}

// TestRelaySocketBuffers checks that the listen socket and an upstream
// socket got RelaySocketBuffer each way, or at least what the system caps
// allow (Linux reports twice the effective size).
func TestRelaySocketBuffers(t *testing.T) {
	wantR := 2 * min(RelaySocketBuffer, sysctlInt(t, "net.core.rmem_max"))
	wantW := 2 * min(RelaySocketBuffer, sysctlInt(t, "net.core.wmem_max"))
	echo, stopEcho := echoServer(t)
	defer stopEcho()
	r, stop := startRelay(t, RelayConfig{Listen: "127.0.0.1:0", To: echo})
	defer stop()
	c := dialRelay(t, r)
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) // failure guard only
	if _, err := c.Read(make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	socks := map[string]interface{ BufferSizes() (int, int) }{"listen": r.conn}
	for _, cl := range r.clients {
		socks["upstream"] = cl.up
	}
	r.mu.Unlock()
	if len(socks) != 2 {
		t.Fatalf("no upstream socket")
	}
	for name, s := range socks {
		if rd, wr := s.BufferSizes(); rd < wantR || wr < wantW {
			t.Errorf("%s socket buffers: read %d, write %d; want at least %d, %d", name, rd, wr, wantR, wantW)
		}
	}
}
