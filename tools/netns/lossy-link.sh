#!/usr/bin/env bash
# lossy-link.sh: a lossy link in the kernel for trying telewire by hand.
#
# Builds two network namespaces, NAME-a and NAME-b, joined by a veth pair:
#
#   NAME-a  tw-a 10.203.0.1/30  <== veth ==>  tw-b 10.203.0.2/30  NAME-b
#
# and drops a share of the UDP datagrams arriving at each side with
# nftables ("numgen random mod 10000 < N" on the input hook, counted), and
# optionally adds a netem qdisc (delay, jitter, reordering...) on each
# side's veth where the kernel has sch_netem. The addresses exist only
# inside the two namespaces: nothing reaches any other network.
# It is the shell twin of the Go package in this directory (tools/netns).
#
# Usage (as root; needs ip and tc from iproute2, nft from nftables):
#
#   lossy-link.sh up [--name NAME] [--loss PCT] [--rev-loss PCT]
#                    [--netem "SPEC"] [--rev-netem "SPEC"]
#   lossy-link.sh status [--name NAME]
#   lossy-link.sh down [--name NAME]
#
#   --name NAME       namespace prefix (default: telewire)
#   --loss PCT        % of UDP datagrams A→B dropped on arrival at B (default 0; 0.01 steps)
#   --rev-loss PCT    % of UDP datagrams B→A dropped on arrival at A (default 0)
#   --netem SPEC      tc-netem options on A's veth, impairing A→B (e.g. "delay 10ms 2ms")
#   --rev-netem SPEC  tc-netem options on B's veth, impairing B→A
#
# Example:
#
#   sudo tools/netns/lossy-link.sh up --loss 10
#   sudo ip netns exec telewire-b telewire recv --listen 10.203.0.2:9000 --idle 2s > out &
#   sudo ip netns exec telewire-a telewire send --to 10.203.0.2:9000 --gen market --count 20000 --rate 5000
#   sudo tools/netns/lossy-link.sh status     # datagrams dropped so far
#   sudo tools/netns/lossy-link.sh down
#
# Exit status: 0 on success, 1 on a failed command, 2 on bad usage, 3 when
# --netem is asked for and the kernel has no sch_netem (the link is then
# taken down again).

set -euo pipefail

readonly VETH_A=tw-a VETH_B=tw-b
readonly ADDR_A=10.203.0.1 ADDR_B=10.203.0.2 PREFIX_LEN=30
readonly MAC_A=02:74:77:00:00:01 MAC_B=02:74:77:00:00:02
readonly TABLE=telewire_loss

prog=${0##*/}

usage() {
	sed -n 's/^# \{0,1\}//; /^Usage/,/^Exit status/p' "$0" | sed '$d'
}

die_usage() {
	echo "$prog: $*" >&2
	echo "Run \"$prog help\" for usage." >&2
	exit 2
}

# threshold PCT: the N of "mod 10000 < N" for PCT percent, or exit 2.
threshold() {
	awk -v p="$1" 'BEGIN {
		if (p !~ /^[0-9]+(\.[0-9]+)?$/ || p + 0 > 100) exit 1
		printf "%d\n", p * 100 + 0.5
	}' || die_usage "loss must be a percentage from 0 to 100, not \"$1\""
}

# nft_rules N: the nft script of one side's table, dropping N/10000 of
# arriving UDP datagrams.
nft_rules() {
	cat <<EOF
table inet $TABLE {
	counter dropped {
	}
	chain input {
		type filter hook input priority filter; policy accept;
	}
}
flush chain inet $TABLE input
EOF
	if [ "$1" -ge 10000 ]; then # nft rejects "< 10000" for mod 10000
		echo "add rule inet $TABLE input meta l4proto udp counter name \"dropped\" drop"
	elif [ "$1" -gt 0 ]; then
		echo "add rule inet $TABLE input meta l4proto udp numgen random mod 10000 < $1 counter name \"dropped\" drop"
	fi
}

need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "$prog: $1 not found (install the Debian package $2)" >&2
		exit 1
	fi
}

exists() { [ -e "/var/run/netns/$1" ]; }

link_down() {
	local ns gone=0
	for ns in "$NAME-a" "$NAME-b"; do
		if exists "$ns"; then
			ip netns exec "$ns" nft delete table inet "$TABLE" 2>/dev/null || true
			ip netns del "$ns"
			gone=1
		fi
	done
	if [ "$gone" = 1 ]; then
		echo "$prog: removed $NAME-a and $NAME-b"
	else
		echo "$prog: $NAME-a and $NAME-b do not exist; nothing to do"
	fi
}

# add_netem NS DEV SPEC
add_netem() {
	local out
	# shellcheck disable=SC2086 # SPEC is a list of tc options
	if ! out=$(ip netns exec "$1" tc qdisc add dev "$2" root netem $3 2>&1); then
		echo "$prog: tc qdisc add dev $2 root netem $3: $out" >&2
		link_down >/dev/null
		case $out in
		*"qdisc kind is unknown"* | *"Unknown qdisc"*)
			echo "$prog: this kernel has no sch_netem; use --loss (nftables) or telewire netem (userspace)" >&2
			exit 3
			;;
		esac
		exit 1
	fi
}

link_up() {
	local fwd rev
	fwd=$(threshold "$LOSS")
	rev=$(threshold "$REV_LOSS")
	if [ -n "$NETEM$REV_NETEM" ]; then need tc iproute2; fi
	if exists "$NAME-a" || exists "$NAME-b"; then
		echo "$prog: $NAME-a or $NAME-b already exists; run \"$prog down --name $NAME\" first" >&2
		exit 1
	fi
	trap 'link_down >/dev/null 2>&1' ERR
	ip netns add "$NAME-a"
	ip netns add "$NAME-b"
	ip link add "$VETH_A" address "$MAC_A" netns "$NAME-a" type veth \
		peer name "$VETH_B" address "$MAC_B" netns "$NAME-b"
	ip -n "$NAME-a" addr add "$ADDR_A/$PREFIX_LEN" dev "$VETH_A"
	ip -n "$NAME-b" addr add "$ADDR_B/$PREFIX_LEN" dev "$VETH_B"
	# static neighbours: no ARP, so no datagram waits on (or is lost to) resolution
	ip -n "$NAME-a" neigh add "$ADDR_B" lladdr "$MAC_B" dev "$VETH_A" nud permanent
	ip -n "$NAME-b" neigh add "$ADDR_A" lladdr "$MAC_A" dev "$VETH_B" nud permanent
	ip -n "$NAME-a" link set lo up
	ip -n "$NAME-b" link set lo up
	ip -n "$NAME-a" link set "$VETH_A" up
	ip -n "$NAME-b" link set "$VETH_B" up
	# loss where datagrams arrive: a drop on the output path would make
	# the sender's sendto fail with EPERM, which no real network does
	nft_rules "$fwd" | ip netns exec "$NAME-b" nft -f -
	nft_rules "$rev" | ip netns exec "$NAME-a" nft -f -
	trap - ERR
	if [ -n "$NETEM" ]; then add_netem "$NAME-a" "$VETH_A" "$NETEM"; fi
	if [ -n "$REV_NETEM" ]; then add_netem "$NAME-b" "$VETH_B" "$REV_NETEM"; fi
	echo "$prog: $NAME-a ($ADDR_A) <-> $NAME-b ($ADDR_B) is up"
	echo "  A->B: ${LOSS}% loss${NETEM:+, netem $NETEM}"
	echo "  B->A: ${REV_LOSS}% loss${REV_NETEM:+, netem $REV_NETEM}"
	echo "  run programs inside with: ip netns exec $NAME-a ... / ip netns exec $NAME-b ..."
}

# dropped NS: the packet count of NS's counter.
dropped() {
	ip netns exec "$1" nft list counter inet "$TABLE" dropped |
		awk '$1 == "packets" { print $2 }'
}

link_status() {
	if ! exists "$NAME-a" || ! exists "$NAME-b"; then
		echo "$prog: $NAME-a and $NAME-b are not both up"
		exit 1
	fi
	echo "A->B datagrams dropped (at $NAME-b): $(dropped "$NAME-b")"
	echo "B->A datagrams dropped (at $NAME-a): $(dropped "$NAME-a")"
	ip -n "$NAME-a" -brief addr show dev "$VETH_A"
	ip -n "$NAME-b" -brief addr show dev "$VETH_B"
	ip netns exec "$NAME-a" tc qdisc show dev "$VETH_A" 2>/dev/null || true
	ip netns exec "$NAME-b" tc qdisc show dev "$VETH_B" 2>/dev/null || true
}

[ $# -ge 1 ] || die_usage "missing command (up, status, down or help)"
cmd=$1
shift
NAME=telewire LOSS=0 REV_LOSS=0 NETEM="" REV_NETEM=""
while [ $# -gt 0 ]; do
	[ $# -ge 2 ] || die_usage "$1 needs a value"
	case $1 in
	--name) NAME=$2 ;;
	--loss) LOSS=$2 ;;
	--rev-loss) REV_LOSS=$2 ;;
	--netem) NETEM=$2 ;;
	--rev-netem) REV_NETEM=$2 ;;
	*) die_usage "unknown option \"$1\"" ;;
	esac
	shift 2
done
case $NAME in
"" | *[!A-Za-z0-9_.-]*) die_usage "--name must be letters, digits, '.', '_' or '-', not \"$NAME\"" ;;
esac

case $cmd in
help | -h | --help)
	usage
	exit 0
	;;
up | down | status) ;;
*) die_usage "unknown command \"$cmd\"" ;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "$prog: must run as root (network namespaces)" >&2
	exit 1
fi
need ip iproute2
need nft nftables
case $cmd in
up) link_up ;;
down) link_down ;;
status) link_status ;;
esac
