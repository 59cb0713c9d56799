package capture

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// benchPackets is the size of the generated capture read by
// BenchmarkReadMillion.
const benchPackets = 1_000_000

// writeBenchCapture writes n datagrams (IPv4 and IPv6, 64-byte payloads, a
// 1 ms apart) to path and returns the file size.
func writeBenchCapture(tb testing.TB, path string, n int) int64 {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := NewWriter(bw, WriterOptions{VLANs: []uint16{42}})
	if err != nil {
		tb.Fatal(err)
	}
	dgs := mixedDatagrams(40, 4)
	for i := range dgs {
		dgs[i].Payload = dgs[i].Payload[:min(64, len(dgs[i].Payload))]
	}
	for i := range n {
		d := dgs[i%len(dgs)]
		d.Time = genBase.Add(time.Duration(i) * time.Millisecond)
		if err := w.WriteDatagram(d); err != nil {
			tb.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return st.Size()
}

// BenchmarkReadMillion reads a generated capture of 10^6 packets per
// iteration and reports the heap in use (sampled every 100 000 packets, the
// largest value) and bytes allocated per packet: both stay flat however long
// the file is.
func BenchmarkReadMillion(b *testing.B) {
	path := filepath.Join(b.TempDir(), "million.pcap")
	size := writeBenchCapture(b, path, benchPackets)
	b.SetBytes(size)
	b.ReportAllocs()
	runtime.GC()
	var before, ms runtime.MemStats
	runtime.ReadMemStats(&before)
	var peakHeap uint64
	b.ResetTimer()
	for range b.N {
		r, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			_, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			n++
			if n%100_000 == 0 {
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
			}
		}
		r.Close()
		if n != benchPackets {
			b.Fatalf("read %d datagrams, wrote %d", n, benchPackets)
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms)
	packets := float64(b.N) * benchPackets
	b.ReportMetric(float64(peakHeap)/(1<<20), "heap-inuse-MiB")
	b.ReportMetric(float64(ms.TotalAlloc-before.TotalAlloc)/packets, "alloc-B/packet")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/packets, "ns/packet")
}

// BenchmarkNext reads in-memory captures of common shapes.
func BenchmarkNext(b *testing.B) {
	for _, bc := range []struct {
		name string
		o    WriterOptions
	}{{"ethernet", WriterOptions{}}, {"qinq", WriterOptions{VLANs: []uint16{1, 2}}}, {"sll2", WriterOptions{LinkType: 276}}, {"fragmented", WriterOptions{MTU: 576}}} {
		o := bc.o
		b.Run(bc.name, func(b *testing.B) {
			var dgs []Datagram
			for range 256 {
				dgs = append(dgs, mixedDatagrams(41, 4)...)
			}
			if o.MTU != 0 {
				for i := range dgs {
					dgs[i].Payload = bytes.Repeat([]byte{1}, 1400)
				}
			}
			var buf bytes.Buffer
			w, _ := NewWriter(&buf, o)
			for _, d := range dgs {
				w.WriteDatagram(d)
			}
			file := buf.Bytes()
			b.SetBytes(int64(len(file)) / int64(len(dgs)))
			b.ReportAllocs()
			br := bytes.NewReader(file)
			r, _ := NewReader(br, Options{})
			b.ResetTimer()
			for range b.N {
				if _, err := r.Next(); err != nil {
					b.StopTimer()
					br.Reset(file)
					r, _ = NewReader(br, Options{})
					b.StartTimer()
				}
			}
		})
	}
}

func BenchmarkWriteDatagram(b *testing.B) {
	w, _ := NewWriter(discard{}, WriterOptions{})
	d := mixedDatagrams(42, 1)[0]
	d.Payload = make([]byte, 1200)
	b.SetBytes(int64(len(d.Payload)))
	b.ReportAllocs()
	for range b.N {
		if err := w.WriteDatagram(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFilterMatch(b *testing.B) {
	f := MustFilter(b, "udp port 5000 and dst 233.54.12.0/24 or not src host 10.0.0.1")
	b.ReportAllocs()
	for i := range b.N {
		f.Match(&filterProbes[i%len(filterProbes)])
	}
}
