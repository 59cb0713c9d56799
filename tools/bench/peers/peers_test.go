package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/telewire/telewire/tools/bench"
)

// workerEnv makes the test binary a worker process (see TestMain).
const workerEnv = "TELEWIRE_PEERS_TEST_WORKER"

func TestMain(m *testing.M) {
	if role := os.Getenv(workerEnv); role != "" {
		os.Exit(run(context.Background(), []string{"--worker", role}, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestKCPThroughBench runs kcp-go with and without FEC through the bench
// at 5k msgs/s, clean and at 5% loss each way, in worker processes, and
// checks the report: kcp is reliable, so every message arrives.
func TestKCPThroughBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts worker processes")
	}
	rep, err := bench.Run(context.Background(), bench.Options{
		Transports: Transports(), Rates: []float64{5000}, Losses: []float64{0, 5}, Runs: 1,
		Duration: 300 * time.Millisecond, Warmup: 50 * time.Millisecond, Idle: 300 * time.Millisecond,
		Worker: func(ctx context.Context, role string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), workerEnv+"="+role)
			return cmd
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Cases {
		if c.Median == nil {
			t.Fatalf("%s failed: %v", c.Key(), c.Errors)
		}
		m := c.Median
		if m.MsgsPerSec <= 0 || m.P50Nanos <= 0 || m.P99Nanos < m.P50Nanos || m.CPUNanos <= 0 {
			t.Errorf("%s: %+v", c.Key(), m)
		}
		if strings.HasPrefix(c.Transport, "kcp") {
			if m.Completeness != 1 {
				t.Errorf("%s: completeness %v, want 1", c.Key(), m.Completeness)
			}
			if c.VsRaw == nil {
				t.Errorf("%s: no ratio to raw-batch", c.Key())
			}
		}
	}
	// The report has the shape telewire bench reads.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Cases) != 6 {
		t.Fatalf("report round trip: %v, %d cases", err, len(back.Cases))
	}
	var table bytes.Buffer
	if err := bench.WriteTable(&table, rep); err != nil || !strings.Contains(table.String(), "kcp-fec") {
		t.Errorf("table: %v\n%s", err, table.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--only", "bogus-term"}, nil, &out, &errOut); code != 2 {
		t.Errorf("bad --only: exit %d, want 2 (%s)", code, errOut.String())
	}
	if code := run(context.Background(), []string{"--help"}, nil, &out, &errOut); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
}

// BenchmarkKCP is an in-process closed loop through kcp-go (no FEC), for
// comparison with tools/bench's BenchmarkLoopback: 200-byte messages, at
// most 2048 in flight.
func BenchmarkKCP(b *testing.B) {
	for _, t := range Transports()[1:] {
		b.Run(t.Name, func(b *testing.B) {
			ctx := context.Background()
			r, err := t.Listen(ctx, "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			s, err := t.Dial(ctx, r.Addr())
			if err != nil {
				b.Fatal(err)
			}
			var got atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := r.Next(); err != nil {
						return
					}
					got.Add(1)
				}
			}()
			msg := make([]byte, bench.MessageSize)
			b.SetBytes(bench.MessageSize)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				for int64(i)-got.Load() > 2048 {
					time.Sleep(20 * time.Microsecond)
				}
				bench.PutStamp(msg, uint64(i), bench.Nanotime())
				if err := s.Send(msg); err != nil {
					b.Fatal(err)
				}
			}
			for got.Load() < int64(b.N) {
				time.Sleep(20 * time.Microsecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			b.StopTimer()
			s.Close()
			r.Close()
			<-done
		})
	}
}
