package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// writerVariants are the Writer configurations round-tripped.
var writerVariants = []WriterOptions{
	{},
	{LinkType: layers.LinkTypeRaw},
	{LinkType: layers.LinkTypeLinuxSLL},
	{LinkType: layers.LinkTypeLinuxSLL2},
	{Null: true},
	{VLANs: []uint16{10}},
	{VLANs: []uint16{10, 20, 30}},
	{Nanosecond: true},
	{BigEndian: true},
	{BigEndian: true, Nanosecond: true, Null: true},
	{MTU: 576},
	{MTU: 1280, LinkType: layers.LinkTypeLinuxSLL2},
}

// roundTripDatagrams covers both families, empty and maximum payloads.
func roundTripDatagrams() []Datagram {
	dgs := mixedDatagrams(30, 8)
	dgs = append(dgs,
		Datagram{Time: genBase.Add(time.Second), Src: mustAddrPort("10.9.0.1:1"), Dst: mustAddrPort("10.9.0.2:2")},
		Datagram{Time: genBase.Add(2 * time.Second), Src: mustAddrPort("10.9.0.1:1"), Dst: mustAddrPort("255.255.255.255:67"), Payload: make([]byte, MaxPayloadIPv4)},
		Datagram{Time: genBase.Add(3 * time.Second), Src: mustAddrPort("[fd09::1]:1"), Dst: mustAddrPort("[fd09::2]:2"), Payload: bytes.Repeat([]byte{0xa5}, MaxPayloadIPv6)},
	)
	return dgs
}

func variantName(o WriterOptions) string {
	return strings.NewReplacer(" ", "_", "{", "", "}", "", ":", "").Replace(fmt.Sprintf("%+v", o))
}

// TestWriterRoundTrip writes datagrams in every variant and reads them back.
func TestWriterRoundTrip(t *testing.T) {
	want := roundTripDatagrams()
	for _, o := range writerVariants {
		t.Run(variantName(o), func(t *testing.T) {
			file := writeCapture(t, o, want)
			r, err := NewReader(bytes.NewReader(file), Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, r)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d datagrams back, wrote %d (stats %+v)", len(got), len(want), r.Stats())
			}
			for i := range want {
				w := want[i].Time
				if !o.Nanosecond {
					w = w.Truncate(time.Microsecond)
				}
				if !got[i].Time.Equal(w) || got[i].Src != want[i].Src || got[i].Dst != want[i].Dst || !bytes.Equal(got[i].Payload, want[i].Payload) {
					t.Fatalf("datagram %d: got %v %v->%v %d bytes, want %v %v->%v %d bytes", i,
						got[i].Time, got[i].Src, got[i].Dst, len(got[i].Payload), w, want[i].Src, want[i].Dst, len(want[i].Payload))
				}
			}
		})
	}
}

// TestWriterChecksumsMatchGopacket compares the IP and UDP headers the Writer
// makes with gopacket's serialization of the same datagram.
func TestWriterChecksumsMatchGopacket(t *testing.T) {
	for _, d := range mixedDatagrams(31, 8) {
		frame := frameOf(t, WriterOptions{LinkType: layers.LinkTypeRaw}, d)
		udp := &layers.UDP{SrcPort: layers.UDPPort(d.Src.Port()), DstPort: layers.UDPPort(d.Dst.Port())}
		var ip gopacket.SerializableLayer
		if d.Src.Addr().Is4() {
			ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: defaultTTL, Protocol: layers.IPProtocolUDP, Id: 1,
				SrcIP: net.IP(d.Src.Addr().AsSlice()), DstIP: net.IP(d.Dst.Addr().AsSlice())}
			udp.SetNetworkLayerForChecksum(ip4)
			ip = ip4
		} else {
			ip6 := &layers.IPv6{Version: 6, HopLimit: defaultTTL, NextHeader: layers.IPProtocolUDP,
				SrcIP: net.IP(d.Src.Addr().AsSlice()), DstIP: net.IP(d.Dst.Addr().AsSlice())}
			udp.SetNetworkLayerForChecksum(ip6)
			ip = ip6
		}
		buf := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, udp, gopacket.Payload(d.Payload))
		if err != nil {
			t.Fatal(err)
		}
		ref := buf.Bytes()
		if d.Src.Addr().Is4() {
			// The Writer numbers IPv4 datagrams from 1, as the reference does.
			if !bytes.Equal(frame, ref) {
				t.Fatalf("IPv4 packet differs from gopacket's:\n%x\n%x", frame, ref)
			}
		} else if !bytes.Equal(frame, ref) {
			t.Fatalf("IPv6 packet differs from gopacket's:\n%x\n%x", frame, ref)
		}
	}
}

func TestWriterErrors(t *testing.T) {
	var buf bytes.Buffer
	for _, o := range []WriterOptions{
		{LinkType: layers.LinkTypeIEEE802_11},
		{LinkType: layers.LinkTypeRaw, VLANs: []uint16{1}},
		{VLANs: []uint16{4096}},
		{VLANs: []uint16{1, 2, 3, 4, 5}},
		{MTU: 40},
	} {
		if _, err := NewWriter(&buf, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	w, err := NewWriter(&buf, WriterOptions{LinkType: linkTypeIPv4})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		d    Datagram
		want error
	}{
		{Datagram{Time: genBase, Src: mustAddrPort("10.0.0.1:1"), Dst: mustAddrPort("[::1]:1")}, ErrAddressFamily},
		{Datagram{Time: genBase, Src: mustAddrPort("[::2]:1"), Dst: mustAddrPort("[::1]:1")}, ErrAddressFamily},
		{Datagram{Time: genBase, Dst: mustAddrPort("10.0.0.1:1")}, ErrAddressFamily},
		{Datagram{Time: genBase, Src: mustAddrPort("10.0.0.1:1"), Dst: mustAddrPort("10.0.0.2:1"), Payload: make([]byte, MaxPayloadIPv4+1)}, ErrPayloadTooLarge},
		{Datagram{Time: time.Unix(-1, 0), Src: mustAddrPort("10.0.0.1:1"), Dst: mustAddrPort("10.0.0.2:1")}, ErrTimeRange},
		{Datagram{Time: time.Unix(1<<33, 0), Src: mustAddrPort("10.0.0.1:1"), Dst: mustAddrPort("10.0.0.2:1")}, ErrTimeRange},
	}
	for i, c := range cases {
		if err := w.WriteDatagram(c.d); !errors.Is(err, c.want) {
			t.Errorf("case %d: %v, want %v", i, err, c.want)
		}
	}
	if err := w.WriteRecord(genBase, make([]byte, 10), 5); err == nil {
		t.Error("original length below captured length accepted")
	}
}

// TestWriterNoAllocs: writing a datagram does not allocate once warm.
func TestWriterNoAllocs(t *testing.T) {
	for _, o := range []WriterOptions{{}, {MTU: 576, VLANs: []uint16{5}}} {
		w, err := NewWriter(discard{}, o)
		if err != nil {
			t.Fatal(err)
		}
		dgs := mixedDatagrams(32, 4)
		dgs[0].Payload = make([]byte, 1500)
		for _, d := range dgs {
			w.WriteDatagram(d)
		}
		if a := testing.AllocsPerRun(200, func() {
			for _, d := range dgs {
				if err := w.WriteDatagram(d); err != nil {
					t.Fatal(err)
				}
			}
		}); a != 0 {
			t.Errorf("%+v: %.1f allocations per round", o, a)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestWriterTshark has tshark read the Writer's files, verify the IP and UDP
// checksums and report every datagram as written.
func TestWriterTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (apt-get install -y tshark): skipping the tshark round trip")
	}
	want := roundTripDatagrams()
	dir := t.TempDir()
	for _, o := range writerVariants {
		t.Run(variantName(o), func(t *testing.T) {
			path := filepath.Join(dir, "w.pcap")
			if err := os.WriteFile(path, writeCapture(t, o, want), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(tshark, "-r", path, "-n",
				"-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
				"-Y", "udp", "-T", "fields", "-E", "separator=/t",
				"-e", "ip.checksum.status", "-e", "udp.checksum.status",
				"-e", "ip.src", "-e", "ipv6.src", "-e", "udp.srcport",
				"-e", "ip.dst", "-e", "ipv6.dst", "-e", "udp.dstport", "-e", "udp.payload").Output()
			if err != nil {
				t.Fatalf("tshark: %v", err)
			}
			sc := bufio.NewScanner(bytes.NewReader(out))
			sc.Buffer(nil, 1<<20)
			i := 0
			for ; sc.Scan(); i++ {
				f := strings.Split(sc.Text(), "\t")
				if i >= len(want) || len(f) != 9 {
					t.Fatalf("line %d: %q", i, sc.Text())
				}
				d := want[i]
				v4 := d.Src.Addr().Is4()
				if (v4 && f[0] != "1") || f[1] != "1" {
					t.Errorf("datagram %d: checksum status ip %q udp %q, want 1 (good)", i, f[0], f[1])
				}
				src, dst := f[2]+f[3], f[5]+f[6]
				if src != d.Src.Addr().String() || dst != d.Dst.Addr().String() ||
					f[4] != fmt.Sprint(d.Src.Port()) || f[7] != fmt.Sprint(d.Dst.Port()) {
					t.Errorf("datagram %d: tshark %s:%s -> %s:%s, wrote %v -> %v", i, src, f[4], dst, f[7], d.Src, d.Dst)
				}
				if f[8] != hex.EncodeToString(d.Payload) {
					t.Errorf("datagram %d: payload differs (%d hex chars, want %d)", i, len(f[8]), 2*len(d.Payload))
				}
			}
			if i != len(want) {
				t.Fatalf("tshark saw %d datagrams, wrote %d", i, len(want))
			}
		})
	}
}

// TestWriterRecordOrder: records carry the byte order of the file.
func TestWriterRecordOrder(t *testing.T) {
	file := writeCapture(t, WriterOptions{BigEndian: true}, mixedDatagrams(33, 1))
	if binary.BigEndian.Uint32(file) != magicPcapMicro {
		t.Fatalf("magic %x", file[:4])
	}
	if sec := binary.BigEndian.Uint32(file[pcapFileHeaderLen:]); int64(sec) != genBase.Unix() {
		t.Fatalf("record seconds %d, want %d", sec, genBase.Unix())
	}
}
