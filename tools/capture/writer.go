package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// Errors returned by the Writer, wrapped with context; test with errors.Is.
var (
	// ErrAddressFamily: a datagram's source and destination are not both
	// valid IPv4 or both valid IPv6 addresses.
	ErrAddressFamily = errors.New("capture: source and destination address families differ or are invalid")
	// ErrPayloadTooLarge: the payload does not fit one IP datagram.
	ErrPayloadTooLarge = errors.New("capture: payload too large for one IP datagram")
	// ErrTimeRange: a timestamp outside what the pcap format can hold
	// (1970-01-01 to 2106-02-07 UTC).
	ErrTimeRange = errors.New("capture: timestamp outside the pcap range")
	// ErrWriterLinkType: the Writer does not write that link type.
	ErrWriterLinkType = errors.New("capture: link type not supported by the writer")
)

// Sizes of the headers the Writer builds, in bytes.
const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16
	ethernetHeaderLen   = 14
	vlanTagLen          = 4
	sllHeaderLen        = 16
	sll2HeaderLen       = 20
	nullHeaderLen       = 4
	ipv4HeaderLen       = 20
	ipv6HeaderLen       = 40
	// MaxPayloadIPv4 is the largest UDP payload of one IPv4 datagram.
	MaxPayloadIPv4 = math.MaxUint16 - ipv4HeaderLen - udpHeaderLen
	// MaxPayloadIPv6 is the largest UDP payload of one IPv6 datagram
	// (jumbograms are not written).
	MaxPayloadIPv6 = math.MaxUint16 - udpHeaderLen
	// writerSnaplen is the snap length declared in files the Writer makes;
	// records are never cut.
	writerSnaplen = 262144
	// minMTU is the smallest WriterOptions.MTU: IPv4's minimum (RFC 791).
	minMTU = 68
	// maxVLANTags bounds WriterOptions.VLANs.
	maxVLANTags = 4
)

// Values written into link-layer and IP headers.
const (
	defaultTTL    = 64
	ipv4VersionIH = 0x45 // version 4, 5-word header
	ipv4FlagMF    = 0x2000
	ipv6VersionTC = 0x60
	afInet        = 2  // BSD AF_INET, for the NULL link type
	afInet6BSD    = 24 // NetBSD/OpenBSD AF_INET6, understood by every reader
	arphrdEther   = 1
	macLen        = 6
	sllAddrField  = 8
)

// WriterOptions configure a Writer. The zero value writes Ethernet frames
// with microsecond timestamps in little-endian order, without fragmentation.
type WriterOptions struct {
	// LinkType is the file's link type: layers.LinkTypeEthernet,
	// LinkTypeRaw (101), LinkTypeLinuxSLL, LinkTypeLinuxSLL2, or 228 / 229
	// (raw IPv4 / raw IPv6, which take datagrams of that family only). The zero
	// value selects Ethernet; since 0 is also LinkTypeNull's number, the
	// NULL link type is selected with Null instead.
	LinkType layers.LinkType
	// Null selects the BSD loopback (NULL, 0) link type; LinkType is ignored.
	Null bool
	// VLANs, Ethernet only, are 802.1Q tag VLAN ids (0-4095) written
	// outermost first; with more than one, the outer tags use the 802.1ad
	// TPID 0x88a8 (QinQ). At most 4.
	VLANs []uint16
	// Nanosecond writes nanosecond-resolution timestamps (magic a1b23c4d)
	// instead of microseconds.
	Nanosecond bool
	// BigEndian writes the file in big-endian byte order, as a big-endian
	// host's libpcap does. Readers handle both.
	BigEndian bool
	// MTU, when not 0, fragments IP packets longer than MTU bytes (IPv4
	// fragments or IPv6 fragment headers), as a host would send them. At
	// least 68. Default 0: never fragment.
	MTU int
}

// Writer writes UDP datagrams as a classic pcap file. It is not safe for
// concurrent use. Each record is passed to the underlying io.Writer in one
// Write call; wrap it in a bufio.Writer for speed. Writing does not allocate
// once its buffers have grown to the largest datagram.
type Writer struct {
	w      io.Writer
	opts   WriterOptions
	order  byteOrder
	linkFn func(b []byte, src, dst []byte, ipv6 bool) []byte
	lt     layers.LinkType
	ipID   uint32 // IPv4 / IPv6 fragment identification counter
	srcIP  [16]byte
	dstIP  [16]byte
	buf    []byte // record being written
	udp    []byte // UDP header and payload of the datagram being written
}

// byteOrder is what binary.LittleEndian and binary.BigEndian both are.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// NewWriter validates opts and writes the pcap file header to w.
func NewWriter(w io.Writer, opts WriterOptions) (*Writer, error) {
	wr := &Writer{w: w, opts: opts, order: binary.LittleEndian}
	if opts.BigEndian {
		wr.order = binary.BigEndian
	}
	lt := opts.LinkType
	if opts.Null {
		lt = layers.LinkTypeNull
	} else if lt == layers.LinkTypeNull {
		lt = layers.LinkTypeEthernet
	}
	if len(opts.VLANs) > 0 && lt != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("%w: VLAN tags need Ethernet, not %v", ErrWriterLinkType, lt)
	}
	if len(opts.VLANs) > maxVLANTags {
		return nil, fmt.Errorf("capture: %d VLAN tags, at most %d", len(opts.VLANs), maxVLANTags)
	}
	for _, id := range opts.VLANs {
		if id > 0x0fff {
			return nil, fmt.Errorf("capture: VLAN id %d above 4095", id)
		}
	}
	if opts.MTU != 0 && opts.MTU < minMTU {
		return nil, fmt.Errorf("capture: MTU %d below %d", opts.MTU, minMTU)
	}
	wr.lt = lt
	switch lt {
	case layers.LinkTypeEthernet:
		wr.linkFn = wr.appendEthernet
	case layers.LinkTypeRaw, linkTypeIPv4, linkTypeIPv6:
		wr.linkFn = func(b, _, _ []byte, _ bool) []byte { return b }
	case layers.LinkTypeLinuxSLL:
		wr.linkFn = appendSLL
	case layers.LinkTypeLinuxSLL2:
		wr.linkFn = appendSLL2
	case layers.LinkTypeNull:
		wr.linkFn = wr.appendNull
	default:
		return nil, fmt.Errorf("%w: %v", ErrWriterLinkType, lt)
	}
	var hdr [pcapFileHeaderLen]byte
	magic := uint32(magicPcapMicro)
	if opts.Nanosecond {
		magic = magicPcapNano
	}
	wr.order.PutUint32(hdr[0:], magic)
	wr.order.PutUint16(hdr[4:], 2) // version 2.4
	wr.order.PutUint16(hdr[6:], 4)
	wr.order.PutUint32(hdr[16:], writerSnaplen)
	wr.order.PutUint32(hdr[20:], uint32(lt))
	if _, err := w.Write(hdr[:]); err != nil {
		return nil, err
	}
	return wr, nil
}

// WriteDatagram writes d as one record, or as several when it is fragmented
// (see WriterOptions.MTU). d.Interface is not written.
func (w *Writer) WriteDatagram(d Datagram) error {
	src, dst := d.Src.Addr().Unmap(), d.Dst.Addr().Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return fmt.Errorf("%w: %v -> %v", ErrAddressFamily, d.Src, d.Dst)
	}
	v6 := src.Is6()
	if (w.lt == linkTypeIPv4 && v6) || (w.lt == linkTypeIPv6 && !v6) {
		return fmt.Errorf("%w: %v -> %v on link type %d", ErrAddressFamily, d.Src, d.Dst, w.lt)
	}
	limit := MaxPayloadIPv4
	if v6 {
		limit = MaxPayloadIPv6
	}
	if len(d.Payload) > limit {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrPayloadTooLarge, len(d.Payload), limit)
	}
	sec, frac, err := w.timestamp(d.Time)
	if err != nil {
		return err
	}
	// Kept in the Writer: slices of locals would escape through linkFn.
	w.srcIP, w.dstIP = src.As16(), dst.As16()
	sa, da := w.srcIP[:], w.dstIP[:]
	if !v6 {
		sa, da = sa[12:], da[12:]
	}

	// The UDP datagram, checksummed over the pseudo-header.
	udpLen := udpHeaderLen + len(d.Payload)
	u := w.udp[:0]
	u = binary.BigEndian.AppendUint16(u, d.Src.Port())
	u = binary.BigEndian.AppendUint16(u, d.Dst.Port())
	u = binary.BigEndian.AppendUint16(u, uint16(udpLen))
	u = append(u, 0, 0)
	u = append(u, d.Payload...)
	sum := pseudoHeaderSum(sa, da, udpLen)
	ck := ^fold(checksumAdd(sum, u))
	if ck == 0 {
		ck = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(u[6:], ck)
	w.udp = u

	ipHdr := ipv4HeaderLen
	if v6 {
		ipHdr = ipv6HeaderLen
	}
	if w.opts.MTU == 0 || ipHdr+udpLen <= w.opts.MTU {
		return w.writeIP(sec, frac, sa, da, v6, u, 0, false, false)
	}
	w.ipID++
	chunk := (w.opts.MTU - ipHdr) &^ (fragmentUnit - 1)
	if v6 {
		chunk = (w.opts.MTU - ipHdr - ipv6FragHdrLen) &^ (fragmentUnit - 1)
	}
	for off := 0; off < len(u); off += chunk {
		end := min(off+chunk, len(u))
		if err := w.writeIP(sec, frac, sa, da, v6, u[off:end], off, end < len(u), true); err != nil {
			return err
		}
	}
	return nil
}

// writeIP writes one record: link header, an IP header and data, which is the
// UDP datagram or, when frag is set, the piece of it at byte offset off.
func (w *Writer) writeIP(sec, frac uint32, src, dst []byte, v6 bool, data []byte, off int, more, frag bool) error {
	b := w.recordStart(sec, frac)
	b = w.linkFn(b, src, dst, v6)
	if v6 {
		plen := len(data)
		nh := byte(ipProtoUDP)
		if frag {
			plen += ipv6FragHdrLen
			nh = ipv6ExtFragment
		}
		b = append(b, ipv6VersionTC, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(plen))
		b = append(b, nh, defaultTTL)
		b = append(b, src...)
		b = append(b, dst...)
		if frag {
			word := uint16(off)
			if more {
				word |= 1
			}
			b = append(b, ipProtoUDP, 0)
			b = binary.BigEndian.AppendUint16(b, word)
			b = binary.BigEndian.AppendUint32(b, w.ipID)
		}
	} else {
		start := len(b)
		flags := uint16(off / fragmentUnit)
		if more {
			flags |= ipv4FlagMF
		}
		id := uint16(w.ipID)
		if !frag {
			w.ipID++
			id = uint16(w.ipID)
		}
		b = append(b, ipv4VersionIH, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(ipv4HeaderLen+len(data)))
		b = binary.BigEndian.AppendUint16(b, id)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = append(b, defaultTTL, ipProtoUDP, 0, 0)
		b = append(b, src...)
		b = append(b, dst...)
		binary.BigEndian.PutUint16(b[start+10:], ^fold(checksumAdd(0, b[start:])))
	}
	b = append(b, data...)
	return w.recordEnd(b, 0)
}

// WriteRecord writes frame as one record with timestamp ts, as it is: the
// caller builds the link-layer frame of the Writer's link type. origLen is
// the frame's length on the wire; 0 means len(frame), and a larger value
// marks the record as cut by a snap length.
func (w *Writer) WriteRecord(ts time.Time, frame []byte, origLen int) error {
	if origLen != 0 && origLen < len(frame) {
		return fmt.Errorf("capture: original length %d below captured length %d", origLen, len(frame))
	}
	if len(frame) > writerSnaplen || origLen > math.MaxUint32 {
		return fmt.Errorf("%w: record of %d bytes", ErrPayloadTooLarge, len(frame))
	}
	sec, frac, err := w.timestamp(ts)
	if err != nil {
		return err
	}
	b := w.recordStart(sec, frac)
	b = append(b, frame...)
	return w.recordEnd(b, origLen)
}

func (w *Writer) timestamp(t time.Time) (sec, frac uint32, err error) {
	s := t.Unix()
	if s < 0 || s > math.MaxUint32 {
		return 0, 0, fmt.Errorf("%w: %v", ErrTimeRange, t)
	}
	ns := uint32(t.Nanosecond())
	if !w.opts.Nanosecond {
		ns /= 1000
	}
	return uint32(s), ns, nil
}

// recordStart begins a record in w.buf with room for its header.
func (w *Writer) recordStart(sec, frac uint32) []byte {
	b := w.buf[:0]
	b = w.order.AppendUint32(b, sec)
	b = w.order.AppendUint32(b, frac)
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0) // lengths, filled by recordEnd
}

// recordEnd fills in the record lengths and writes the record.
func (w *Writer) recordEnd(b []byte, origLen int) error {
	n := len(b) - pcapRecordHeaderLen
	if origLen == 0 {
		origLen = n
	}
	w.order.PutUint32(b[8:], uint32(n))
	w.order.PutUint32(b[12:], uint32(origLen))
	w.buf = b
	_, err := w.w.Write(b)
	return err
}

// appendEthernet writes an Ethernet header. The source MAC is a fixed
// locally administered address; the destination is the multicast MAC of a
// multicast group (RFC 1112, RFC 2464), broadcast for 255.255.255.255, else
// a second fixed local address.
func (w *Writer) appendEthernet(b, _, dst []byte, v6 bool) []byte {
	switch {
	case !v6 && dst[0]&0xf0 == 0xe0:
		b = append(b, 0x01, 0x00, 0x5e, dst[1]&0x7f, dst[2], dst[3])
	case !v6 && dst[0] == 0xff && dst[1] == 0xff && dst[2] == 0xff && dst[3] == 0xff:
		b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	case v6 && dst[0] == 0xff:
		b = append(b, 0x33, 0x33, dst[12], dst[13], dst[14], dst[15])
	default:
		b = append(b, 0x02, 0, 0, 0, 0, 0x02)
	}
	b = append(b, 0x02, 0, 0, 0, 0, 0x01)
	for i, id := range w.opts.VLANs {
		tpid := layers.EthernetTypeDot1Q
		if i < len(w.opts.VLANs)-1 {
			tpid = layers.EthernetTypeQinQ
		}
		b = binary.BigEndian.AppendUint16(b, uint16(tpid))
		b = binary.BigEndian.AppendUint16(b, id)
	}
	return binary.BigEndian.AppendUint16(b, uint16(etherType(v6)))
}

func etherType(v6 bool) layers.EthernetType {
	if v6 {
		return layers.EthernetTypeIPv6
	}
	return layers.EthernetTypeIPv4
}

// appendSLL writes a Linux cooked (SLL) header of an outgoing packet.
func appendSLL(b, _, _ []byte, v6 bool) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(layers.LinuxSLLPacketTypeOutgoing))
	b = binary.BigEndian.AppendUint16(b, arphrdEther)
	b = binary.BigEndian.AppendUint16(b, macLen)
	b = append(b, 0x02, 0, 0, 0, 0, 0x01, 0, 0)
	return binary.BigEndian.AppendUint16(b, uint16(etherType(v6)))
}

// appendSLL2 writes a Linux cooked v2 (SLL2) header of an outgoing packet on
// interface index 1.
func appendSLL2(b, _, _ []byte, v6 bool) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(etherType(v6)))
	b = append(b, 0, 0)                     // reserved
	b = binary.BigEndian.AppendUint32(b, 1) // interface index
	b = binary.BigEndian.AppendUint16(b, arphrdEther)
	b = append(b, byte(layers.LinuxSLL2PacketTypeOutgoing), macLen)
	return append(b, 0x02, 0, 0, 0, 0, 0x01, 0, 0)
}

// appendNull writes the BSD loopback header: the address family in the
// file's byte order.
func (w *Writer) appendNull(b, _, _ []byte, v6 bool) []byte {
	af := uint32(afInet)
	if v6 {
		af = afInet6BSD
	}
	return w.order.AppendUint32(b, af)
}

// pseudoHeaderSum is the unfolded one's-complement sum of the UDP
// pseudo-header (RFC 768, RFC 8200 section 8.1).
func pseudoHeaderSum(src, dst []byte, udpLen int) uint32 {
	s := checksumAdd(0, src)
	s = checksumAdd(s, dst)
	return s + ipProtoUDP + uint32(udpLen)
}

// checksumAdd adds b, as big-endian 16-bit words, to the unfolded sum s.
func checksumAdd(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
		if s >= 1<<31 {
			s = s&0xffff + s>>16
		}
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold reduces an unfolded sum to 16 bits.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
