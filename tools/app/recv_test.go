package app

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/tools/framing"
)

// TestRecvSummaryListsEveryRefusal: every counter of receiver.Stats that
// records something refused, dropped, skipped or otherwise worth a
// reader's attention appears in recv's human summary, not only in the
// --stats JSON. The counters that only measure traffic are listed here by
// name; a new counter fails the test until it is placed.
func TestRecvSummaryListsEveryRefusal(t *testing.T) {
	traffic := map[string]bool{
		"Datagrams": true, "ReadSyscalls": true, "Heartbeats": true, "Delivered": true, "Reports": true,
		"NACKs": true, "Parity": true, "Sessions": true, "BytesRead": true,
		// the state budget's gauges and the plain-mode challenge's progress
		"Retries": true, "Welcomes": true, "HelloRepeats": true, "Handshakes": true,
		"StateBytes": true, "UnvalidatedStateBytes": true, "SessionsValidated": true, "Challenges": true, "Answers": true,
		// per stream
		"HighestSeq": true, "Received": true, "Lost": true, "RecoveredRTX": true, "RecoveredFEC": true,
		"Duplicates": true, "Reordered": true, "Retransmits": true, "ParityReceived": true, "DelaySamples": true,
		"JitterNanos": true, "Reassembled": true, "ReassemblyBytes": true,
	}
	var st receiver.Stats
	st.Streams = []receiver.StreamStats{{Source: "127.0.0.1:1", Stream: 1}}
	want := map[string]uint64{}
	next := uint64(1000)
	set := func(v reflect.Value) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if f.Type.Kind() != reflect.Uint64 || traffic[f.Name] {
				continue
			}
			v.Field(i).SetUint(next)
			want[v.Type().Name()+"."+f.Name] = next
			next += 7
		}
	}
	set(reflect.ValueOf(&st).Elem())
	set(reflect.ValueOf(&st.Streams[0]).Elem())
	rw := recvWriter{messages: 50, refused: 3, gaps: 2, skipped: 9}
	s := recvSummary(st, &rw, 0)
	for name, v := range want {
		if !strings.Contains(s, fmt.Sprint(v)+" ") {
			t.Errorf("%s (%d) is not in the summary", name, v)
		}
	}
	for _, x := range []string{"47 messages written", "3 messages refused by line framing", "2 gap records written (9 sequences)"} {
		if !strings.Contains(s, x) {
			t.Errorf("summary lacks %q", x)
		}
	}
	if t.Failed() {
		t.Log(s)
	}
	// Nothing to report: it says so.
	if s := recvSummary(receiver.Stats{}, &recvWriter{}, 0); !strings.Contains(s, "nothing refused, dropped or skipped") {
		t.Errorf("empty summary: %s", s)
	}
}

// TestRecvWriteAllocatesNothing: recv's per-message path (metadata,
// framing, gap records, the flush) does not allocate, in every framing.
func TestRecvWriteAllocatesNothing(t *testing.T) {
	m := receiver.Message{
		Source: netip.MustParseAddrPort("127.0.0.1:4000"), Session: 9, Stream: 1, Seq: 5,
		SentNanos: 10, ReceiveNanos: 20, Origin: receiver.OriginFEC, Payload: []byte("a sample line"),
	}
	gap := receiver.Message{Source: m.Source, Session: 9, Stream: 1, Seq: 6, GapLast: 8, Gap: receiver.GapDeadline}
	clk := newWallClock()
	for _, f := range []framing.Framing{framing.Line, framing.Len32, framing.JSON} {
		var sink bytes.Buffer
		sink.Grow(1 << 20)
		rw := recvWriter{w: framing.NewWriter(&sink, f), wall: clk.Wall, stderr: io.Discard}
		n := testing.AllocsPerRun(1000, func() {
			m.Seq++
			if err := rw.write(&m); err != nil {
				t.Fatal(err)
			}
			if err := rw.write(&gap); err != nil {
				t.Fatal(err)
			}
			if err := rw.flush(); err != nil {
				t.Fatal(err)
			}
			sink.Reset()
		})
		if n != 0 {
			t.Errorf("%s: %.1f allocations per message", f, n)
		}
	}
}

// BenchmarkRecvBatch measures recv's output path into a real pipe, per
// message, by how many messages each flush carries: 1 is a slow stream
// (a write per message), larger batches are what the receiver has ready
// under load.
func BenchmarkRecvBatch(b *testing.B) {
	for _, f := range []framing.Framing{framing.Line, framing.JSON} {
		for _, batch := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("%s/batch%d", f, batch), func(b *testing.B) {
				rd, wr, err := os.Pipe()
				if err != nil {
					b.Fatal(err)
				}
				drained := make(chan struct{})
				go func() { io.Copy(io.Discard, rd); close(drained) }()
				m := receiver.Message{
					Source: netip.MustParseAddrPort("127.0.0.1:4000"), Session: 9, Stream: 1,
					Origin: receiver.OriginFirst, Payload: []byte("AAPL 187.25 1765000000123456789"),
				}
				clk := newWallClock()
				rw := recvWriter{w: framing.NewWriter(wr, f), wall: clk.Wall, stderr: io.Discard}
				b.ReportAllocs()
				b.SetBytes(int64(len(m.Payload)))
				i := 0
				for b.Loop() {
					m.Seq++
					if err := rw.write(&m); err != nil {
						b.Fatal(err)
					}
					if i++; i%batch == 0 {
						if err := rw.flush(); err != nil {
							b.Fatal(err)
						}
					}
				}
				rw.flush()
				wr.Close()
				<-drained
				rd.Close()
			})
		}
	}
}
