package capture

import (
	"net/netip"
	"strconv"
	"strings"
)

// Dir says which end of a datagram an address or port qualifier applies to.
type Dir uint8

const (
	// SrcOrDst matches when either end matches (tcpdump's default).
	SrcOrDst Dir = iota
	// Src matches the source.
	Src
	// Dst matches the destination.
	Dst
	// SrcAndDst matches when both ends match.
	SrcAndDst
)

// String returns the qualifier as written in a filter expression: "" for
// SrcOrDst, else "src", "dst" or "src and dst".
func (d Dir) String() string {
	switch d {
	case Src:
		return "src"
	case Dst:
		return "dst"
	case SrcAndDst:
		return "src and dst"
	}
	return ""
}

// filterOp is the kind of a filter node.
type filterOp uint8

const (
	opAnd filterOp = iota + 1
	opOr
	opNot
	opPortRange
	opHost
	opNet
	opIPv4
	opIPv6
	opFlow
	opAll // matches everything; only ever under a not
)

// filterNode is one node of a compiled filter. Nodes are immutable once
// built, so Filters can share them.
type filterNode struct {
	op       filterOp
	dir      Dir
	lo, hi   uint16 // port range, inclusive
	addr     netip.Addr
	prefix   netip.Prefix
	single   bool           // a port range written as one port
	a, b     netip.AddrPort // flow ends
	children []*filterNode  // and, or: two or more; not: one
}

// Filter selects datagrams. The zero Filter matches every datagram. Filters
// are immutable and safe for concurrent use; Match does not allocate.
type Filter struct {
	root *filterNode
}

// IsZero reports whether f is the zero Filter, which matches everything.
func (f Filter) IsZero() bool { return f.root == nil }

// Match reports whether d passes the filter.
func (f Filter) Match(d *Datagram) bool {
	if f.root == nil {
		return true
	}
	return f.root.match(d)
}

func (n *filterNode) match(d *Datagram) bool {
	switch n.op {
	case opAnd:
		for _, c := range n.children {
			if !c.match(d) {
				return false
			}
		}
		return true
	case opOr:
		for _, c := range n.children {
			if c.match(d) {
				return true
			}
		}
		return false
	case opNot:
		return !n.children[0].match(d)
	case opPortRange:
		return n.dir.test(d, func(ap netip.AddrPort) bool { return ap.Port() >= n.lo && ap.Port() <= n.hi })
	case opHost:
		return n.dir.test(d, func(ap netip.AddrPort) bool { return ap.Addr() == n.addr })
	case opNet:
		return n.dir.test(d, func(ap netip.AddrPort) bool { return n.prefix.Contains(ap.Addr()) })
	case opIPv4:
		return d.Src.Addr().Is4()
	case opIPv6:
		return d.Src.Addr().Is6()
	case opAll:
		return true
	case opFlow:
		return (d.Src == n.a && d.Dst == n.b) || (d.Src == n.b && d.Dst == n.a)
	}
	return false
}

// test applies pred to the ends of d that dir names.
func (d Dir) test(dg *Datagram, pred func(netip.AddrPort) bool) bool {
	switch d {
	case Src:
		return pred(dg.Src)
	case Dst:
		return pred(dg.Dst)
	case SrcAndDst:
		return pred(dg.Src) && pred(dg.Dst)
	}
	return pred(dg.Src) || pred(dg.Dst)
}

// Port matches datagrams whose port at dir is port.
func Port(dir Dir, port uint16) Filter {
	return Filter{&filterNode{op: opPortRange, dir: dir, lo: port, hi: port, single: true}}
}

// PortRange matches datagrams whose port at dir is in [lo, hi]; lo and hi
// are swapped if given in the wrong order.
func PortRange(dir Dir, lo, hi uint16) Filter {
	if lo > hi {
		lo, hi = hi, lo
	}
	return Filter{&filterNode{op: opPortRange, dir: dir, lo: lo, hi: hi}}
}

// Host matches datagrams whose address at dir is addr. An IPv4-mapped IPv6
// addr is unmapped, as the Reader returns IPv4 addresses.
func Host(dir Dir, addr netip.Addr) Filter {
	return Filter{&filterNode{op: opHost, dir: dir, addr: addr.Unmap()}}
}

// Net matches datagrams whose address at dir is inside prefix. The prefix is
// masked to its network bits.
func Net(dir Dir, prefix netip.Prefix) Filter {
	return Filter{&filterNode{op: opNet, dir: dir, prefix: prefix.Masked()}}
}

// IPv4 matches datagrams carried over IPv4.
func IPv4() Filter { return Filter{&filterNode{op: opIPv4}} }

// IPv6 matches datagrams carried over IPv6.
func IPv6() Filter { return Filter{&filterNode{op: opIPv6}} }

// Flow matches the datagrams between the endpoints a and b, in either
// direction. For one direction only, combine Host and Port with Src and Dst.
func Flow(a, b netip.AddrPort) Filter {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	b = netip.AddrPortFrom(b.Addr().Unmap(), b.Port())
	return Filter{&filterNode{op: opFlow, a: a, b: b}}
}

// And matches datagrams every one of fs matches. Zero Filters among fs are
// ignored; And() is the zero Filter.
func And(fs ...Filter) Filter { return combine(opAnd, fs) }

// Or matches datagrams any one of fs matches. A zero Filter among fs makes
// the result match everything.
func Or(fs ...Filter) Filter {
	for _, f := range fs {
		if f.IsZero() {
			return Filter{}
		}
	}
	return combine(opOr, fs)
}

// Not matches datagrams f does not match. Not of the zero Filter matches
// nothing.
func Not(f Filter) Filter {
	root := f.root
	if root == nil {
		root = &filterNode{op: opAll}
	}
	return Filter{&filterNode{op: opNot, children: []*filterNode{root}}}
}

// combine builds an n-ary and/or node, flattening children of the same op.
func combine(op filterOp, fs []Filter) Filter {
	var kids []*filterNode
	for _, f := range fs {
		switch {
		case f.root == nil:
		case f.root.op == op:
			kids = append(kids, f.root.children...)
		default:
			kids = append(kids, f.root)
		}
	}
	switch len(kids) {
	case 0:
		return Filter{}
	case 1:
		return Filter{kids[0]}
	}
	return Filter{&filterNode{op: op, children: kids}}
}

// String returns f as an expression that ParseFilter compiles back to an
// equivalent Filter; the zero Filter is "udp".
func (f Filter) String() string {
	if f.root == nil {
		return "udp"
	}
	var b strings.Builder
	f.root.format(&b)
	return b.String()
}

func (n *filterNode) format(b *strings.Builder) {
	switch n.op {
	case opAnd, opOr:
		word := " and "
		if n.op == opOr {
			word = " or "
		}
		for i, c := range n.children {
			if i > 0 {
				b.WriteString(word)
			}
			// "and" binds tighter than "or": only an or inside an and
			// needs parentheses.
			c.formatChild(b, n.op == opAnd && c.op == opOr)
		}
	case opNot:
		b.WriteString("not ")
		c := n.children[0]
		c.formatChild(b, c.op == opAnd || c.op == opOr)
	case opPortRange:
		n.writeDir(b)
		if n.single {
			b.WriteString("port ")
			b.WriteString(strconv.Itoa(int(n.lo)))
			return
		}
		b.WriteString("portrange ")
		b.WriteString(strconv.Itoa(int(n.lo)))
		b.WriteByte('-')
		b.WriteString(strconv.Itoa(int(n.hi)))
	case opHost:
		n.writeDir(b)
		b.WriteString("host ")
		b.WriteString(n.addr.String())
	case opNet:
		n.writeDir(b)
		b.WriteString("net ")
		b.WriteString(n.prefix.String())
	case opAll:
		b.WriteString("udp")
	case opIPv4:
		b.WriteString("ip")
	case opIPv6:
		b.WriteString("ip6")
	case opFlow:
		b.WriteString("flow ")
		b.WriteString(n.a.String())
		b.WriteByte(' ')
		b.WriteString(n.b.String())
	}
}

func (n *filterNode) formatChild(b *strings.Builder, parens bool) {
	if parens {
		b.WriteByte('(')
	}
	n.format(b)
	if parens {
		b.WriteByte(')')
	}
}

func (n *filterNode) writeDir(b *strings.Builder) {
	if s := n.dir.String(); s != "" {
		b.WriteString(s)
		b.WriteByte(' ')
	}
}
