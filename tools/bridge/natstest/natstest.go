// Package natstest runs real NATS servers with JetStream for tests, on
// loopback only: embedded in the test process (github.com/nats-io/nats-server
// /v2/server) for unit tests, and the nats-server binary as a separate
// process for tests that kill and restart the server.
package natstest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds a server's start; generous for a loaded machine.
const readyTimeout = 30 * time.Second

// Embedded is a NATS server with JetStream inside the test process.
type Embedded struct {
	*server.Server
	// URL is the client URL ("nats://127.0.0.1:PORT").
	URL string
	// Dir is the JetStream store directory.
	Dir string
	// Port is the client port.
	Port int
}

// Start runs an embedded server with JetStream stored under a fresh
// t.TempDir() on 127.0.0.1 and a random port; it is shut down at the end of
// the test.
func Start(t testing.TB) *Embedded {
	t.Helper()
	return StartOn(t, -1, t.TempDir())
}

// StartOn runs an embedded server on port (-1: random) storing under dir;
// it is shut down at the end of the test (or earlier by Shutdown).
func StartOn(t testing.TB, port int, dir string) *Embedded {
	t.Helper()
	return StartWith(t, port, dir, nil)
}

// StartWith is StartOn with the server's options changed by configure
// (authentication, TLS) before it starts, if configure is not nil.
func StartWith(t testing.TB, port int, dir string, configure func(*server.Options)) *Embedded {
	t.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	}
	if configure != nil {
		configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(readyTimeout) {
		s.Shutdown()
		t.Fatalf("nats server not ready after %v", readyTimeout)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	addr := s.Addr().(*net.TCPAddr)
	return &Embedded{Server: s, URL: s.ClientURL(), Dir: dir, Port: addr.Port}
}

// Stop shuts the server down and waits until it is gone.
func (e *Embedded) Stop() {
	e.Shutdown()
	e.WaitForShutdown()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Binary returns the path of the nats-server binary, from PATH or
// $(go env GOPATH)/bin, or skips the test saying how to install it.
func Binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	var dirs []string
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(strings.TrimSpace(string(gp))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "nats-server")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Skip("nats-server binary not found in PATH or $(go env GOPATH)/bin; install it with: go install github.com/nats-io/nats-server/v2@latest")
	return ""
}

// Process is the nats-server binary running as a child process with
// JetStream, on a fixed loopback port and store directory, so that it can
// be killed and started again as the same server.
type Process struct {
	t    testing.TB
	bin  string
	cmd  *exec.Cmd
	Port int
	Dir  string
	URL  string
	log  string
}

// StartProcess starts nats-server (see Binary) on a free port with a fresh
// store directory; it is killed at the end of the test.
func StartProcess(t testing.TB) *Process {
	t.Helper()
	p := &Process{t: t, bin: Binary(t), Port: FreePort(t), Dir: t.TempDir()}
	p.URL = "nats://127.0.0.1:" + strconv.Itoa(p.Port)
	p.log = filepath.Join(p.Dir, "server.log")
	p.Start()
	t.Cleanup(func() {
		if p.cmd != nil {
			p.Kill()
		}
	})
	return p
}

// Start starts the server (again) and waits until it takes connections.
func (p *Process) Start() {
	p.t.Helper()
	if p.cmd != nil {
		p.t.Fatal("natstest: Start on a running server")
	}
	cmd := exec.Command(p.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(p.Port),
		"-js", "-sd", filepath.Join(p.Dir, "store"), "-l", p.log, "--http_port", "0")
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("nats-server: %v", err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(readyTimeout)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			p.Kill()
			log, _ := os.ReadFile(p.log)
			p.t.Fatalf("nats-server not listening after %v: %v\n%s", readyTimeout, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the server with SIGKILL and waits for it.
func (p *Process) Kill() {
	p.t.Helper()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	err := p.cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		p.t.Errorf("nats-server: %v", err)
	}
	p.cmd = nil
}
