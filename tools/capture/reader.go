package capture

import (
	"bufio"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Errors returned by the reader. They are wrapped with context; test them with
// errors.Is.
var (
	// ErrUnknownFormat: the input starts with neither a pcap, a pcapng nor a
	// gzip magic number.
	ErrUnknownFormat = errors.New("capture: not a pcap or pcapng file")
	// ErrMalformedFile: the file structure (not a packet inside it) is
	// damaged: a bad header, block or record length. The datagrams before it
	// were returned.
	ErrMalformedFile = errors.New("capture: malformed capture file")
	// ErrFileTruncated: the file ends in the middle of a record, as a capture
	// that was cut short does. The datagrams before it were returned; callers
	// that want to replay what there is may treat it like io.EOF.
	ErrFileTruncated = errors.New("capture: capture file cut short")
)

// Default option values.
const (
	// DefaultMaxPendingDatagrams is the default number of fragmented
	// datagrams reassembled at once.
	DefaultMaxPendingDatagrams = 64
	// DefaultFragmentTimeout is the default time, in capture time, after
	// which an incomplete fragmented datagram is dropped.
	DefaultFragmentTimeout = 60 * time.Second
	// maxPendingDatagramsLimit caps Options.MaxPendingDatagrams, bounding
	// reassembly memory to about 64 MiB.
	maxPendingDatagramsLimit = 1024
)

// maxLinkHops bounds the number of link-layer headers (VLAN tags, PPPoE)
// walked before the IP header.
const maxLinkHops = 8

// maxIPv6ExtHeaders bounds the IPv6 extension headers walked per packet.
const maxIPv6ExtHeaders = 16

// sniffBufferSize is the read buffer put in front of the input.
const sniffBufferSize = 64 << 10

// File magic numbers, as the first four bytes read in little-endian order.
const (
	magicPcapMicro     = 0xa1b2c3d4
	magicPcapNano      = 0xa1b23c4d
	magicPcapMicroSwap = 0xd4c3b2a1
	magicPcapNanoSwap  = 0x4d3cb2a1
	magicPcapng        = 0x0a0d0d0a
)

// Link types accepted besides those named in gopacket's layers package.
const (
	linkTypeRawAlt layers.LinkType = 12 // DLT_RAW on most BSDs, as written by some tools
	linkTypeIPv4   layers.LinkType = 228
	linkTypeIPv6   layers.LinkType = 229
)

// Datagram is one UDP datagram taken from a capture.
type Datagram struct {
	// Time is the capture timestamp of the frame that carried the datagram
	// (for a reassembled datagram, of the fragment that completed it).
	Time time.Time
	// Src and Dst are the IP addresses and UDP ports. IPv4 addresses are
	// plain 4-byte addresses, never IPv4-mapped IPv6.
	Src, Dst netip.AddrPort
	// Payload is the UDP payload. It aliases the Reader's buffers and is
	// valid until the next call to Next.
	Payload []byte
	// Interface is the capture interface index: the pcapng interface id
	// within its section, 0 for classic pcap.
	Interface int
}

// Options configure a Reader. The zero value is ready to use and selects
// the defaults stated on each field.
type Options struct {
	// Filter selects the datagrams returned; the zero Filter returns all.
	// Rejected datagrams are counted in Stats.Filtered.
	Filter Filter
	// MaxPendingDatagrams is the number of fragmented datagrams reassembled
	// at once; when all are in use the oldest is dropped. Default
	// DefaultMaxPendingDatagrams, at most 1024. Each takes up to 64 KiB.
	MaxPendingDatagrams int
	// FragmentTimeout drops an incomplete fragmented datagram whose first
	// fragment is older than this, measured in capture time. Default
	// DefaultFragmentTimeout.
	FragmentTimeout time.Duration
}

// Stats counts what the reader did with the records of the file. Every record
// is counted once under Datagrams, FragmentsHeld, Filtered or one of the
// skip reasons.
type Stats struct {
	// Records is the number of packet records read from the file.
	Records uint64 `json:"records"`
	// Datagrams is the number of datagrams returned by Next.
	Datagrams uint64 `json:"datagrams"`
	// Reassembled is how many of the datagrams were rebuilt from fragments.
	Reassembled uint64 `json:"reassembled"`
	// FragmentsHeld counts fragments stored for reassembly (the fragment
	// completing a datagram is counted under Datagrams or Filtered instead).
	FragmentsHeld uint64 `json:"fragments_held"`
	// Filtered counts UDP datagrams the filter rejected.
	Filtered uint64 `json:"filtered"`

	// NotIP counts frames carrying something other than IPv4 or IPv6 (ARP,
	// LLDP, PPPoE discovery, ...).
	NotIP uint64 `json:"not_ip"`
	// NotUDP counts IP packets whose outermost transport is not UDP (TCP,
	// ICMP, tunnels, ESP, ...), including fragments of such packets.
	NotUDP uint64 `json:"not_udp"`
	// Truncated counts UDP datagrams and fragments with fewer bytes captured
	// than their headers announce.
	Truncated uint64 `json:"truncated"`
	// Malformed counts frames whose headers cannot be decoded.
	Malformed uint64 `json:"malformed"`
	// UnsupportedLinkType counts frames on interfaces of a link type the
	// reader does not decode.
	UnsupportedLinkType uint64 `json:"unsupported_link_type"`
	// FragmentsInvalid counts fragments dropped because they contradict
	// their datagram (overlap, beyond its end, too large): the datagram is
	// dropped with them.
	FragmentsInvalid uint64 `json:"fragments_invalid"`
	// FragmentsDuplicate counts fragments whose bytes were all held already.
	FragmentsDuplicate uint64 `json:"fragments_duplicate"`
	// FragmentsExpired counts datagrams dropped incomplete: timed out,
	// evicted because MaxPendingDatagrams were in progress, or still
	// incomplete at the end of the file.
	FragmentsExpired uint64 `json:"fragments_expired"`
}

// Skipped returns the number of records that yielded no datagram for a reason
// other than the filter or pending reassembly.
func (s Stats) Skipped() uint64 {
	return s.NotIP + s.NotUDP + s.Truncated + s.Malformed + s.UnsupportedLinkType +
		s.FragmentsInvalid + s.FragmentsDuplicate
}

// packetSource is the part of pcapgo's readers used here.
type packetSource interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Reader streams the UDP datagrams of a capture. It is not safe for
// concurrent use.
type Reader struct {
	src      packetSource
	ng       *pcapgo.NgReader // nil for classic pcap
	linkType layers.LinkType  // classic pcap's link type
	closer   io.Closer
	filter   Filter
	defrag   *reassembler
	dec      decoder
	stats    Stats
	err      error // sticky terminal error, io.EOF at the end
}

// Open opens the capture file at path; see NewReader. Close the Reader to
// close the file.
func Open(path string, opts Options) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := NewReader(f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.closer = f
	return r, nil
}

// NewReader returns a Reader over a pcap or pcapng stream, gzip-compressed or
// not, sniffed from its first bytes. It reads the file header (and, for
// pcapng, the first section header) before returning.
func NewReader(in io.Reader, opts Options) (*Reader, error) {
	if opts.MaxPendingDatagrams < 0 || opts.MaxPendingDatagrams > maxPendingDatagramsLimit {
		return nil, fmt.Errorf("capture: MaxPendingDatagrams %d outside [0, %d]", opts.MaxPendingDatagrams, maxPendingDatagramsLimit)
	}
	if opts.FragmentTimeout < 0 {
		return nil, fmt.Errorf("capture: negative FragmentTimeout %v", opts.FragmentTimeout)
	}
	if opts.MaxPendingDatagrams == 0 {
		opts.MaxPendingDatagrams = DefaultMaxPendingDatagrams
	}
	if opts.FragmentTimeout == 0 {
		opts.FragmentTimeout = DefaultFragmentTimeout
	}
	br := bufio.NewReaderSize(in, sniffBufferSize)
	magic, err := br.Peek(4)
	if err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: %d bytes", ErrUnknownFormat, len(magic))
		}
		return nil, err
	}
	if magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrMalformedFile, err)
		}
		br = bufio.NewReaderSize(zr, sniffBufferSize)
		if magic, err = br.Peek(4); err != nil {
			return nil, fmt.Errorf("%w: gzip: %w", ErrUnknownFormat, err)
		}
	}
	r := &Reader{
		filter: opts.Filter,
		defrag: newReassembler(opts.MaxPendingDatagrams, int64(opts.FragmentTimeout)),
	}
	switch binary.LittleEndian.Uint32(magic) {
	case magicPcapng:
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{
			// Without this pcapgo silently drops packets of every interface
			// whose link type differs from the first interface's.
			WantMixedLinkType:  true,
			SkipUnknownVersion: true,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: pcapng: %w", ErrMalformedFile, err)
		}
		r.src, r.ng = ng, ng
	case magicPcapMicro, magicPcapNano, magicPcapMicroSwap, magicPcapNanoSwap:
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: pcap: %w", ErrMalformedFile, err)
		}
		r.src, r.linkType = pr, pr.LinkType()
	default:
		return nil, fmt.Errorf("%w: magic % x", ErrUnknownFormat, magic)
	}
	return r, nil
}

// Close closes the file opened by Open; for a Reader from NewReader it does
// nothing. Next returns io.EOF after Close.
func (r *Reader) Close() error {
	if r.err == nil {
		r.err = io.EOF
	}
	if r.closer == nil {
		return nil
	}
	c := r.closer
	r.closer = nil
	return c.Close()
}

// Stats returns the counters so far.
func (r *Reader) Stats() Stats {
	s := r.stats
	s.FragmentsExpired = r.defrag.expired
	return s
}

// Next returns the next UDP datagram that passes the filter. At the end of
// the file it returns io.EOF; a damaged file ends with an error wrapping
// ErrMalformedFile or ErrFileTruncated instead. Errors are sticky. The
// returned Payload is valid until the next call.
func (r *Reader) Next() (Datagram, error) {
	for r.err == nil {
		data, ci, err := r.src.ZeroCopyReadPacketData()
		if err != nil {
			r.fail(err)
			break
		}
		r.stats.Records++
		lt := r.linkType
		if r.ng != nil {
			lt = r.ngLinkType(ci)
		}
		d, reason := r.dec.decode(lt, data, ci.Timestamp, r.defrag)
		if reason != reasonNone {
			r.count(reason)
			continue
		}
		if r.dec.lengthZero && ci.CaptureLength < ci.Length {
			// An IPv4 total length of 0 (TSO) takes the length from the
			// captured bytes, which a short snap length cut.
			r.stats.Truncated++
			continue
		}
		d.Interface = ci.InterfaceIndex
		if !r.filter.Match(&d) {
			r.stats.Filtered++
			continue
		}
		r.stats.Datagrams++
		if r.dec.reassembled {
			r.stats.Reassembled++
		}
		return d, nil
	}
	return Datagram{}, r.err
}

// ngLinkType returns the link type of the interface a pcapng packet came on.
func (r *Reader) ngLinkType(ci gopacket.CaptureInfo) layers.LinkType {
	if len(ci.AncillaryData) > 0 {
		if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok {
			return lt
		}
	}
	if iface, err := r.ng.Interface(ci.InterfaceIndex); err == nil {
		return iface.LinkType
	}
	return layers.LinkTypeNull
}

// fail records the terminal error for err from the packet source.
func (r *Reader) fail(err error) {
	r.defrag.flush()
	switch {
	case err == io.EOF:
		r.err = io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		r.err = fmt.Errorf("%w after record %d: %w", ErrFileTruncated, r.stats.Records, err)
	default:
		r.err = fmt.Errorf("%w after record %d: %w", ErrMalformedFile, r.stats.Records, err)
	}
}

func (r *Reader) count(reason skipReason) {
	switch reason {
	case reasonNotIP:
		r.stats.NotIP++
	case reasonNotUDP:
		r.stats.NotUDP++
	case reasonTruncated:
		r.stats.Truncated++
	case reasonMalformed:
		r.stats.Malformed++
	case reasonLinkType:
		r.stats.UnsupportedLinkType++
	case reasonFragHeld:
		r.stats.FragmentsHeld++
	case reasonFragInvalid:
		r.stats.FragmentsInvalid++
	case reasonFragDuplicate:
		r.stats.FragmentsDuplicate++
	}
}
