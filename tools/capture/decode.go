package capture

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// skipReason says why a frame yielded no datagram.
type skipReason uint8

const (
	reasonNone skipReason = iota
	reasonNotIP
	reasonNotUDP
	reasonTruncated
	reasonMalformed
	reasonLinkType
	reasonFragHeld
	reasonFragInvalid
	reasonFragDuplicate
)

// EtherTypes walked besides those layers names.
const (
	etherTypeVLANLegacy layers.EthernetType = 0x9100 // pre-802.1ad QinQ outer tag
	etherTypeMinValue   layers.EthernetType = 0x0600 // below: an 802.3 length, LLC follows
)

// PPPoE session framing (RFC 2516) and the PPP protocol numbers of IP.
const (
	pppoeHeaderLen   = 6
	pppoeVerType     = 0x11
	pppProtocolIPv4  = 0x0021
	pppProtocolIPv6  = 0x0057
	ipVersionIPv4    = 4
	ipVersionIPv6    = 6
	udpHeaderLen     = 8
	ipv6FragHdrLen   = 8
	ipv4LengthOffset = 2 // offset of the total length
)

// IPv6 next-header values of extension headers skipped on the way to UDP.
const (
	ipv6ExtHopByHop    = 0
	ipv6ExtRouting     = 43
	ipv6ExtFragment    = 44
	ipv6ExtAH          = 51
	ipv6ExtDestination = 60
	ipv6ExtMobility    = 135
	ipv6ExtHIP         = 139
	ipv6ExtShim6       = 140
	ipProtoUDP         = 17
)

// feedback is the gopacket.DecodeFeedback the layers report truncation to:
// a header announcing more bytes than were captured.
type feedback struct{ truncated bool }

// SetTruncated implements gopacket.DecodeFeedback.
func (f *feedback) SetTruncated() { f.truncated = true }

// decoder walks one frame from its link layer to the outermost UDP header.
// Its layer structs are reused from frame to frame, so decoding a plain UDP
// frame does not allocate.
type decoder struct {
	eth  layers.Ethernet
	vlan layers.Dot1Q
	sll  layers.LinuxSLL
	sll2 layers.LinuxSLL2
	loop layers.Loopback
	ip4  layers.IPv4
	ip6  layers.IPv6
	udp  layers.UDP
	fb   feedback

	// lengthZero: the IPv4 total length was 0 (TCP segmentation offload),
	// so the datagram's extent came from the captured bytes.
	lengthZero bool
	// reassembled: the datagram was rebuilt from fragments.
	reassembled bool
}

// decode returns the UDP datagram in frame, or why there is none.
func (d *decoder) decode(lt layers.LinkType, frame []byte, ts time.Time, defrag *reassembler) (Datagram, skipReason) {
	d.lengthZero, d.reassembled, d.fb.truncated = false, false, false
	var et layers.EthernetType
	var payload []byte
	switch lt {
	case layers.LinkTypeEthernet:
		if err := d.eth.DecodeFromBytes(frame, &d.fb); err != nil {
			return Datagram{}, reasonMalformed
		}
		et, payload = d.eth.EthernetType, d.eth.Payload
	case layers.LinkTypeLinuxSLL:
		if err := d.sll.DecodeFromBytes(frame, &d.fb); err != nil {
			return Datagram{}, reasonMalformed
		}
		et, payload = d.sll.EthernetType, d.sll.Payload
	case layers.LinkTypeLinuxSLL2:
		if err := d.sll2.DecodeFromBytes(frame, &d.fb); err != nil {
			return Datagram{}, reasonMalformed
		}
		et, payload = d.sll2.ProtocolType, d.sll2.Payload
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if err := d.loop.DecodeFromBytes(frame, &d.fb); err != nil {
			return Datagram{}, reasonMalformed
		}
		payload = d.loop.Payload
		switch d.loop.Family {
		case layers.ProtocolFamilyIPv4:
			et = layers.EthernetTypeIPv4
		case layers.ProtocolFamilyIPv6BSD, layers.ProtocolFamilyIPv6FreeBSD,
			layers.ProtocolFamilyIPv6Darwin, layers.ProtocolFamilyIPv6Linux:
			et = layers.EthernetTypeIPv6
		default:
			return Datagram{}, reasonNotIP
		}
	case layers.LinkTypeRaw, linkTypeRawAlt:
		if len(frame) == 0 {
			return Datagram{}, reasonMalformed
		}
		switch frame[0] >> 4 {
		case ipVersionIPv4:
			et = layers.EthernetTypeIPv4
		case ipVersionIPv6:
			et = layers.EthernetTypeIPv6
		default:
			return Datagram{}, reasonMalformed
		}
		payload = frame
	case linkTypeIPv4:
		et, payload = layers.EthernetTypeIPv4, frame
	case linkTypeIPv6:
		et, payload = layers.EthernetTypeIPv6, frame
	default:
		return Datagram{}, reasonLinkType
	}
	return d.link(et, payload, ts, defrag)
}

// link walks VLAN tags and PPPoE session headers to the IP header.
func (d *decoder) link(et layers.EthernetType, payload []byte, ts time.Time, defrag *reassembler) (Datagram, skipReason) {
	for range maxLinkHops {
		switch et {
		case layers.EthernetTypeIPv4:
			return d.ipv4(payload, ts, defrag)
		case layers.EthernetTypeIPv6:
			return d.ipv6(payload, ts, defrag)
		case layers.EthernetTypeDot1Q, layers.EthernetTypeQinQ, etherTypeVLANLegacy:
			if err := d.vlan.DecodeFromBytes(payload, &d.fb); err != nil {
				return Datagram{}, reasonMalformed
			}
			if d.vlan.Type < etherTypeMinValue {
				return Datagram{}, reasonNotIP
			}
			et, payload = d.vlan.Type, d.vlan.Payload
		case layers.EthernetTypePPPoESession:
			var r skipReason
			if et, payload, r = pppoeSession(payload); r != reasonNone {
				return Datagram{}, r
			}
		default:
			return Datagram{}, reasonNotIP
		}
	}
	return Datagram{}, reasonMalformed
}

// pppoeSession returns the EtherType equivalent and payload of a PPPoE
// session frame carrying IP.
func pppoeSession(b []byte) (layers.EthernetType, []byte, skipReason) {
	const lenOffset = 4
	if len(b) < pppoeHeaderLen+1 || b[0] != pppoeVerType || b[1] != 0 {
		return 0, nil, reasonMalformed
	}
	n := int(binary.BigEndian.Uint16(b[lenOffset:pppoeHeaderLen]))
	ppp := b[pppoeHeaderLen:]
	if n > len(ppp) {
		return 0, nil, reasonTruncated
	}
	ppp = ppp[:n]
	// The PPP protocol field is 2 bytes, or 1 when compressed (odd first byte).
	var proto uint16
	switch {
	case len(ppp) >= 1 && ppp[0]&1 == 1:
		proto, ppp = uint16(ppp[0]), ppp[1:]
	case len(ppp) >= 2:
		proto, ppp = binary.BigEndian.Uint16(ppp), ppp[2:]
	default:
		return 0, nil, reasonMalformed
	}
	switch proto {
	case pppProtocolIPv4:
		return layers.EthernetTypeIPv4, ppp, reasonNone
	case pppProtocolIPv6:
		return layers.EthernetTypeIPv6, ppp, reasonNone
	}
	return 0, nil, reasonNotIP
}

// layerFailure classifies a layer decoding error: a header cut by the snap
// length is truncation, anything else is malformed.
func (d *decoder) layerFailure() skipReason {
	if d.fb.truncated {
		return reasonTruncated
	}
	return reasonMalformed
}

func (d *decoder) ipv4(b []byte, ts time.Time, defrag *reassembler) (Datagram, skipReason) {
	ip := &d.ip4
	if err := ip.DecodeFromBytes(b, &d.fb); err != nil {
		return Datagram{}, d.layerFailure()
	}
	if ip.Version != ipVersionIPv4 {
		return Datagram{}, reasonMalformed
	}
	if ip.Protocol != layers.IPProtocolUDP {
		return Datagram{}, reasonNotUDP
	}
	if d.fb.truncated {
		return Datagram{}, reasonTruncated
	}
	d.lengthZero = binary.BigEndian.Uint16(b[ipv4LengthOffset:]) == 0
	src := netip.AddrFrom4([4]byte(ip.SrcIP))
	dst := netip.AddrFrom4([4]byte(ip.DstIP))
	payload := ip.Payload
	more := ip.Flags&layers.IPv4MoreFragments != 0
	if more || ip.FragOffset != 0 {
		key := fragKey{src: src, dst: dst, id: uint32(ip.Id), proto: ipProtoUDP}
		out, _, res := defrag.add(key, int(ip.FragOffset)*fragmentUnit, more, payload, ipProtoUDP, ts.UnixNano())
		if r := fragReason(res); r != reasonNone {
			return Datagram{}, r
		}
		payload = out
		d.reassembled = true
	}
	return d.udpDatagram(src, dst, payload, ts)
}

func (d *decoder) ipv6(b []byte, ts time.Time, defrag *reassembler) (Datagram, skipReason) {
	ip := &d.ip6
	if err := ip.DecodeFromBytes(b, &d.fb); err != nil {
		return Datagram{}, d.layerFailure()
	}
	if ip.Version != ipVersionIPv6 {
		return Datagram{}, reasonMalformed
	}
	nh := uint8(ip.NextHeader)
	if ip.HopByHop != nil {
		nh = uint8(ip.HopByHop.NextHeader)
	}
	truncated := d.fb.truncated
	src := netip.AddrFrom16([16]byte(ip.SrcIP))
	dst := netip.AddrFrom16([16]byte(ip.DstIP))
	p := ip.Payload
	fragmented := false
	for range maxIPv6ExtHeaders {
		var n int
		switch nh {
		case ipProtoUDP:
			if truncated {
				return Datagram{}, reasonTruncated
			}
			return d.udpDatagram(src, dst, p, ts)
		case ipv6ExtHopByHop, ipv6ExtRouting, ipv6ExtDestination, ipv6ExtMobility, ipv6ExtHIP, ipv6ExtShim6:
			if len(p) < 2 {
				return Datagram{}, truncOr(truncated)
			}
			n = (int(p[1]) + 1) * 8
		case ipv6ExtAH:
			if len(p) < 2 {
				return Datagram{}, truncOr(truncated)
			}
			n = (int(p[1]) + 2) * 4
		case ipv6ExtFragment:
			if fragmented {
				return Datagram{}, reasonMalformed
			}
			fragmented = true
			if len(p) < ipv6FragHdrLen {
				return Datagram{}, truncOr(truncated)
			}
			fnh := p[0]
			word := binary.BigEndian.Uint16(p[2:4])
			off, more := int(word>>3)*fragmentUnit, word&1 != 0
			id := binary.BigEndian.Uint32(p[4:8])
			p = p[ipv6FragHdrLen:]
			if off == 0 && !more {
				// An atomic fragment (RFC 6946): the whole packet.
				nh = fnh
				continue
			}
			if !mayLeadToUDP(fnh) {
				return Datagram{}, reasonNotUDP
			}
			if truncated {
				return Datagram{}, reasonTruncated
			}
			key := fragKey{src: src, dst: dst, id: id}
			out, onh, res := defrag.add(key, off, more, p, fnh, ts.UnixNano())
			if r := fragReason(res); r != reasonNone {
				return Datagram{}, r
			}
			nh, p = onh, out
			d.reassembled = true
			continue
		default:
			return Datagram{}, reasonNotUDP
		}
		if n > len(p) {
			return Datagram{}, truncOr(truncated)
		}
		nh, p = p[0], p[n:]
	}
	return Datagram{}, reasonMalformed
}

// truncOr returns reasonTruncated when the packet was cut by the snap length,
// else reasonMalformed: a header that does not fit the captured bytes.
func truncOr(truncated bool) skipReason {
	if truncated {
		return reasonTruncated
	}
	return reasonMalformed
}

// mayLeadToUDP reports whether an IPv6 header chain starting with next header
// nh can reach UDP, so that fragments of other protocols are not reassembled.
func mayLeadToUDP(nh uint8) bool {
	switch nh {
	case ipProtoUDP, ipv6ExtHopByHop, ipv6ExtRouting, ipv6ExtDestination, ipv6ExtAH,
		ipv6ExtMobility, ipv6ExtHIP, ipv6ExtShim6:
		return true
	}
	return false
}

func fragReason(res fragOutcome) skipReason {
	switch res {
	case fragHeld:
		return reasonFragHeld
	case fragDuplicate:
		return reasonFragDuplicate
	case fragInvalid:
		return reasonFragInvalid
	}
	return reasonNone
}

// udpDatagram decodes the UDP header at the start of b, whose IP layer is
// known to be complete.
func (d *decoder) udpDatagram(src, dst netip.Addr, b []byte, ts time.Time) (Datagram, skipReason) {
	u := &d.udp
	if len(b) < udpHeaderLen {
		return Datagram{}, reasonMalformed
	}
	d.fb.truncated = false
	if err := u.DecodeFromBytes(b, &d.fb); err != nil {
		return Datagram{}, reasonMalformed
	}
	if u.Length == 0 {
		// A jumbogram length; telewire never sends those.
		return Datagram{}, reasonMalformed
	}
	if d.fb.truncated {
		// The UDP length exceeds the IP payload. That is a cut datagram when
		// the IP length itself came from the captured bytes (see
		// lengthZero); otherwise the headers disagree.
		if d.lengthZero {
			return Datagram{}, reasonTruncated
		}
		return Datagram{}, reasonMalformed
	}
	return Datagram{
		Time:    ts,
		Src:     netip.AddrPortFrom(src, uint16(u.SrcPort)),
		Dst:     netip.AddrPortFrom(dst, uint16(u.DstPort)),
		Payload: u.Payload,
	}, reasonNone
}
