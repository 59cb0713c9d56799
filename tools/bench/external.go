package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ExternalCase is what a Transport's External function gets for one run
// of a case.
type ExternalCase struct {
	// Size is the message size in bytes.
	Size int
	// Duration is the run's sending time (ref-iperf3 rounds it up to
	// whole seconds, as iperf3 takes them).
	Duration time.Duration
	// Count is the number of messages the command cases send
	// (Options.CommandCount).
	Count int
	// Exec returns the command that runs the telewire binary with args
	// (Options.Exec); nil when the caller cannot run it.
	Exec func(ctx context.Context, args ...string) *exec.Cmd
	// TempDir is a directory for the run's files, removed afterwards.
	TempDir string
}

// ErrExternal reports an external case that could not run: the tool is
// not installed, or it failed or printed nothing usable.
var ErrExternal = errors.New("bench: external case")

// externalSlack is how long an external case may run beyond its own time.
const externalSlack = 30 * time.Second

// childCPU is the CPU time a finished process used, user and system.
func childCPU(c *exec.Cmd) int64 {
	if c.ProcessState == nil {
		return 0
	}
	return int64(c.ProcessState.UserTime() + c.ProcessState.SystemTime())
}

// waitLine reads r line by line until a line contains marker and returns
// that line; the rest of r is then drained in the background (so the
// writer never blocks on a full pipe) into tail, which keeps the last
// lines for error messages.
func waitLine(r io.Reader, marker string, tail *tailBuffer) (string, error) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		tail.Write([]byte(line))
		if strings.Contains(line, marker) {
			go io.Copy(tail, br)
			return strings.TrimSpace(line), nil
		}
		if err != nil {
			return "", err
		}
	}
}

// iperf3Case runs iperf3 -u -b 0 -l Size for Duration (whole seconds, at
// least 1) between a server and a client on 127.0.0.1, both started here,
// and returns the client's sending count and the server's receiving count
// (iperf3 sends one datagram per sendto and reads one per recv; its
// receiver loses what it cannot keep up with). Their CPU is the two
// processes' rusage.
func iperf3Case(ctx context.Context, x ExternalCase) (*SendResult, *RecvResult, error) {
	bin, err := exec.LookPath("iperf3")
	if err != nil {
		return nil, nil, fmt.Errorf("%w: iperf3 is not installed (Debian: apt-get install iperf3): %v", ErrExternal, err)
	}
	secs := max(1, int(math.Ceil(x.Duration.Seconds())))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+externalSlack)
	defer cancel()
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	p := strconv.Itoa(port)
	srv := exec.CommandContext(ctx, bin, "-s", "-1", "-B", "127.0.0.1", "-p", p, "--forceflush") // flushed: its stdout is a pipe
	srv.WaitDelay = time.Second
	out, err := srv.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	srvTail := &tailBuffer{max: 4096}
	srv.Stderr = srvTail
	if err := srv.Start(); err != nil {
		return nil, nil, fmt.Errorf("%w: iperf3 -s: %v", ErrExternal, err)
	}
	defer func() {
		srv.Process.Kill()
		srv.Wait()
	}()
	if _, err := waitLine(out, "Server listening", srvTail); err != nil {
		return nil, nil, fmt.Errorf("%w: iperf3 -s did not start (%v): %s", ErrExternal, err, srvTail.String())
	}
	cli := exec.CommandContext(ctx, bin, "-c", "127.0.0.1", "-p", p, "-u", "-b", "0", "-l", strconv.Itoa(x.Size),
		"-t", strconv.Itoa(secs), "--json")
	cli.WaitDelay = time.Second
	var cliOut bytes.Buffer
	cliErr := &tailBuffer{max: 4096}
	cli.Stdout, cli.Stderr = &cliOut, cliErr
	start := Nanotime()
	if err := cli.Run(); err != nil {
		return nil, nil, fmt.Errorf("%w: iperf3 -c: %v: %s%s", ErrExternal, err, cliErr.String(), tailOf(cliOut.Bytes()))
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	select { // -1: the server exits after its one test
	case <-srvDone:
	case <-time.After(5 * time.Second):
		srv.Process.Kill()
		<-srvDone
	}
	var rep struct {
		End struct {
			Sum struct {
				Packets     uint64  `json:"packets"`
				LostPackets uint64  `json:"lost_packets"`
				Seconds     float64 `json:"seconds"`
			} `json:"sum"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(cliOut.Bytes(), &rep); err != nil {
		return nil, nil, fmt.Errorf("%w: iperf3 -c printed no report: %v%s", ErrExternal, err, tailOf(cliOut.Bytes()))
	}
	s := rep.End.Sum
	if rep.Error != "" || s.Packets == 0 || s.Seconds <= 0 || s.LostPackets > s.Packets {
		return nil, nil, fmt.Errorf("%w: iperf3: %q, %d packets, %d lost, %.3f s", ErrExternal, rep.Error, s.Packets, s.LostPackets, s.Seconds)
	}
	span := int64(s.Seconds * 1e9)
	sr := &SendResult{Sent: s.Packets, StartNanos: start, EndNanos: start + span, CPUNanos: childCPU(cli),
		WireBytes: s.Packets * uint64(x.Size), WireDatagrams: s.Packets}
	rr := &RecvResult{Delivered: s.Packets - s.LostPackets, FirstNanos: start, LastNanos: start + span,
		CPUNanos: childCPU(srv), Counters: map[string]uint64{"lost": s.LostPackets}}
	return sr, rr, nil
}

// freePort returns a TCP and UDP port on 127.0.0.1 that was free a moment
// ago (iperf3 needs both).
func freePort() (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("%w: no free port", ErrExternal)
}

// tailOf returns the end of b for an error message.
func tailOf(b []byte) string {
	if len(b) > 512 {
		b = b[len(b)-512:]
	}
	if len(b) == 0 {
		return ""
	}
	return "\n" + string(b)
}

// commandCase returns the External function of a cmd-* case: the
// telewire commands a user runs, end to end,
//
//	telewire recv --listen 127.0.0.1:0 --count N --framing len32 --idle 2s > /dev/null
//	telewire send --to ADDR --gen market --count N --size SIZE [extra...]
//
// recv is started first; the run's span is from just before send is
// started to recv's exit after its Nth message (or after 2 s without
// data, when messages are missing), so it includes starting the sending
// process. Delivered is what recv's --stats counted; CPU is each
// process's rusage; there are no latency figures.
func commandCase(extra ...string) func(context.Context, ExternalCase) (*SendResult, *RecvResult, error) {
	return func(ctx context.Context, x ExternalCase) (*SendResult, *RecvResult, error) {
		if x.Exec == nil {
			return nil, nil, fmt.Errorf("%w: no telewire binary to run (Options.Exec)", ErrExternal)
		}
		if x.Count <= 0 {
			return nil, nil, fmt.Errorf("%w: no message count", ErrExternal)
		}
		ctx, cancel := context.WithTimeout(ctx, 2*externalSlack)
		defer cancel()
		n := strconv.Itoa(x.Count)
		stats := filepath.Join(x.TempDir, "recv-stats.json")
		recv := x.Exec(ctx, "recv", "--listen", "127.0.0.1:0", "--count", n, "--framing", "len32", "--idle", "2s",
			"--stats", stats, "--progress=false")
		recv.Stdout = nil // /dev/null
		errPipe, err := recv.StderrPipe()
		if err != nil {
			return nil, nil, err
		}
		recvTail := &tailBuffer{max: 4096}
		recv.WaitDelay = time.Second
		if err := recv.Start(); err != nil {
			return nil, nil, fmt.Errorf("%w: telewire recv: %v", ErrExternal, err)
		}
		defer func() {
			if recv.ProcessState == nil {
				recv.Process.Kill()
				recv.Wait()
			}
		}()
		line, err := waitLine(errPipe, "listening on ", recvTail)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: telewire recv did not start (%v): %s", ErrExternal, err, recvTail.String())
		}
		addr := strings.TrimSpace(line[strings.Index(line, "listening on ")+len("listening on "):])
		args := append([]string{"send", "--to", addr, "--gen", "market", "--count", n, "--size", strconv.Itoa(x.Size)}, extra...)
		send := x.Exec(ctx, args...)
		sendTail := &tailBuffer{max: 4096}
		send.Stdout, send.Stderr = sendTail, sendTail
		send.WaitDelay = time.Second
		start := Nanotime()
		if err := send.Start(); err != nil {
			return nil, nil, fmt.Errorf("%w: telewire send: %v", ErrExternal, err)
		}
		recvErr := recv.Wait()
		end := Nanotime()
		sendErr := send.Wait()
		if recvErr != nil || sendErr != nil {
			return nil, nil, fmt.Errorf("%w: telewire recv: %v: %s; telewire send: %v: %s", ErrExternal,
				recvErr, recvTail.String(), sendErr, sendTail.String())
		}
		delivered, err := statsMessages(stats)
		if err != nil {
			return nil, nil, err
		}
		sr := &SendResult{Sent: uint64(x.Count), StartNanos: start, EndNanos: end, CPUNanos: childCPU(send)}
		rr := &RecvResult{Delivered: delivered, FirstNanos: start, LastNanos: end, CPUNanos: childCPU(recv)}
		return sr, rr, nil
	}
}

// statsMessages reads the messages delivered from the final object of a
// `telewire recv --stats` file (one object, or JSON lines whose last is
// the final one).
func statsMessages(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%w: recv --stats: %v", ErrExternal, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var n uint64
	for objects := 0; ; objects++ {
		var rec struct {
			Totals struct {
				Messages uint64 `json:"messages"`
			} `json:"totals"`
		}
		if err := dec.Decode(&rec); err == io.EOF && objects > 0 {
			return n, nil
		} else if err != nil {
			return 0, fmt.Errorf("%w: recv --stats: %v%s", ErrExternal, err, tailOf(b))
		}
		n = rec.Totals.Messages
	}
}
