#!/bin/sh
# Regenerates testdata/pcap/*.golden from the captures beside this script with
# tshark, the ground truth the capture package's golden test compares against.
# Needs tshark (4.0 or later: display filter arithmetic); the Go test does not.
#
# One line per UDP datagram, tab-separated:
#   epoch-time  interface-id  src-addr  src-port  dst-addr  dst-port  payload-hex
#
# The display filter makes tshark report what telewire's capture reader
# returns:
#   - only the outermost UDP of a frame: frames with ICMP (UDP quoted in an
#     error), with two IP layers (6in4, IP-in-IP, GRE) are left out, and
#     -E occurrence=f takes the first (outer) UDP of UDP-in-UDP tunnels;
#   - IP reassembly is on (tshark's default, forced here): a fragmented
#     datagram appears once, on the frame that completes it;
#   - only whole datagrams: the UDP length must equal 8 + the captured
#     payload, so a datagram cut by the snap length is left out (the reader
#     counts it as Truncated).
# Deliberate difference: tshark keeps fragments forever, the reader drops an
# incomplete datagram after Options.FragmentTimeout of capture time; no
# capture here has fragments that far apart.
set -eu
cd "$(dirname "$0")"
filter='udp && !icmp && !icmpv6 && !(ip && ipv6) && not (count(ip) > 1) && not (count(ipv6) > 1) && ((udp.length == len(udp.payload) + 8) || (udp.length == 8))'
for f in *.pcap *.pcapng; do
	tshark -r "$f" -n -o ip.defragment:TRUE -o ipv6.defragment:TRUE \
		-Y "$filter" -T fields -E separator=/t -E occurrence=f \
		-e frame.time_epoch -e frame.interface_id \
		-e ip.src -e ipv6.src -e udp.srcport \
		-e ip.dst -e ipv6.dst -e udp.dstport -e udp.payload 2>/dev/null |
		awk -F'\t' 'BEGIN { OFS = "\t" } {
			iface = ($2 == "") ? 0 : $2
			print $1, iface, $3 $4, $5, $6 $7, $8, $9
		}' >"$f.golden"
done
