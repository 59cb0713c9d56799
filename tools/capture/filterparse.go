package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrFilterSyntax is wrapped by every *FilterError.
var ErrFilterSyntax = errors.New("capture: bad filter expression")

// Limits on filter expressions, so that a hostile expression cannot exhaust
// the stack or memory.
const (
	// MaxFilterLen is the longest expression ParseFilter accepts, in bytes.
	MaxFilterLen = 4096
	// maxFilterDepth bounds the nesting of parentheses and "not".
	maxFilterDepth = 64
)

// FilterError describes a syntax error in a filter expression.
type FilterError struct {
	// Expr is the whole expression.
	Expr string
	// Offset is the byte offset of Token in Expr (len(Expr) at the end).
	Offset int
	// Token is the offending token; empty at the end of the expression.
	Token string
	// Msg says what was wrong or expected.
	Msg string
}

// Error names the bad token and its offset.
func (e *FilterError) Error() string {
	if e.Token == "" {
		return fmt.Sprintf("capture: filter %q: %s at end of expression", e.Expr, e.Msg)
	}
	return fmt.Sprintf("capture: filter %q: %s: bad token %q at offset %d", e.Expr, e.Msg, e.Token, e.Offset)
}

// Unwrap returns ErrFilterSyntax.
func (e *FilterError) Unwrap() error { return ErrFilterSyntax }

// ParseFilter compiles a filter expression, a small subset of the tcpdump
// language restricted to UDP:
//
//	expr      = term { ("or" | "||") term }
//	term      = factor { ("and" | "&&") factor }
//	factor    = ("not" | "!") factor | "(" expr ")" | primitive
//	primitive = "udp" [ qualified ] | qualified | "ip" | "ip6"
//	          | "flow" ADDRPORT ADDRPORT
//	qualified = [ dir ] "host" ADDR | [ dir ] "net" PREFIX
//	          | [ dir ] "port" PORT | [ dir ] "portrange" PORT "-" PORT
//	          | dir ADDR | dir PREFIX
//	dir       = "src" | "dst" | "src or dst" | "src and dst"
//
// "and" binds tighter than "or"; "not" tighter than both. Keywords are
// lower case. Without a dir a qualifier matches either end. The "udp"
// keyword is accepted and implied: every datagram is UDP, so "udp" alone
// matches everything and "udp port 53" is "port 53". After a dir, a bare
// address means host and a prefix means net ("dst 233.54.12.0/24"). A net
// prefix must have no host bits set. "flow A B" matches datagrams between the
// two address:port endpoints in either direction ("[::1]:53" for IPv6). An
// empty expression is the zero Filter.
//
// Examples:
//
//	udp port 5000 and dst 233.54.12.0/24
//	src host 10.0.0.1
//	dst port 53 or src port 53
//	not port 123
//	ip6 and (portrange 5000-5010 or net fd00::/8)
//
// Errors are *FilterError values wrapping ErrFilterSyntax and naming the bad
// token.
func ParseFilter(expr string) (Filter, error) {
	p := &filterParser{expr: expr}
	if len(expr) > MaxFilterLen {
		return Filter{}, p.errAt(MaxFilterLen, expr[MaxFilterLen:min(len(expr), MaxFilterLen+16)],
			fmt.Sprintf("expression longer than %d bytes", MaxFilterLen))
	}
	p.toks = tokenize(expr)
	if len(p.toks) == 0 {
		return Filter{}, nil
	}
	f, err := p.parseOr(0)
	if err != nil {
		return Filter{}, err
	}
	if !p.done() {
		return Filter{}, p.errTok("expected and, or or end of expression")
	}
	return f, nil
}

// token is one word or punctuation mark of an expression.
type token struct {
	text string
	off  int
}

// tokenize splits an expression at spaces; "(", ")" are tokens of their own,
// and so is "!" at the start of a word.
func tokenize(s string) []token {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')' || (c == '!' && !strings.HasPrefix(s[i:], "!=")):
			toks = append(toks, token{s[i : i+1], i})
			i++
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\r()", rune(s[j])) {
				j++
			}
			toks = append(toks, token{s[i:j], i})
			i = j
		}
	}
	return toks
}

type filterParser struct {
	expr string
	toks []token
	pos  int
}

func (p *filterParser) done() bool { return p.pos >= len(p.toks) }

func (p *filterParser) peek() string {
	if p.done() {
		return ""
	}
	return p.toks[p.pos].text
}

func (p *filterParser) peekAt(k int) string {
	if p.pos+k >= len(p.toks) {
		return ""
	}
	return p.toks[p.pos+k].text
}

func (p *filterParser) next() token {
	t := p.toks[p.pos]
	p.pos++
	return t
}

func (p *filterParser) errAt(off int, tok, msg string) error {
	return &FilterError{Expr: p.expr, Offset: off, Token: tok, Msg: msg}
}

// errTok reports an error at the current token.
func (p *filterParser) errTok(msg string) error {
	if p.done() {
		return p.errAt(len(p.expr), "", msg)
	}
	t := p.toks[p.pos]
	return p.errAt(t.off, t.text, msg)
}

func (p *filterParser) parseOr(depth int) (Filter, error) {
	f, err := p.parseAnd(depth)
	if err != nil {
		return Filter{}, err
	}
	for w := p.peek(); w == "or" || w == "||"; w = p.peek() {
		p.pos++
		g, err := p.parseAnd(depth)
		if err != nil {
			return Filter{}, err
		}
		f = Or(f, g)
	}
	return f, nil
}

func (p *filterParser) parseAnd(depth int) (Filter, error) {
	f, err := p.parseFactor(depth)
	if err != nil {
		return Filter{}, err
	}
	for w := p.peek(); w == "and" || w == "&&"; w = p.peek() {
		p.pos++
		g, err := p.parseFactor(depth)
		if err != nil {
			return Filter{}, err
		}
		f = And(f, g)
	}
	return f, nil
}

func (p *filterParser) parseFactor(depth int) (Filter, error) {
	if depth >= maxFilterDepth {
		return Filter{}, p.errTok(fmt.Sprintf("nesting deeper than %d", maxFilterDepth))
	}
	switch p.peek() {
	case "":
		return Filter{}, p.errTok("expected a primitive")
	case "not", "!":
		p.pos++
		f, err := p.parseFactor(depth + 1)
		if err != nil {
			return Filter{}, err
		}
		return Not(f), nil
	case "(":
		open := p.next()
		f, err := p.parseOr(depth + 1)
		if err != nil {
			return Filter{}, err
		}
		if p.peek() != ")" {
			if p.done() {
				return Filter{}, p.errAt(open.off, open.text, "unclosed parenthesis")
			}
			return Filter{}, p.errTok("expected )")
		}
		p.pos++
		return f, nil
	}
	return p.parsePrimitive()
}

func (p *filterParser) parsePrimitive() (Filter, error) {
	switch p.peek() {
	case "udp":
		p.pos++
		switch p.peek() {
		case "src", "dst", "host", "net", "port", "portrange":
			return p.parseQualified()
		}
		return Filter{}, nil
	case "ip":
		p.pos++
		return IPv4(), nil
	case "ip6":
		p.pos++
		return IPv6(), nil
	case "flow":
		p.pos++
		a, err := p.parseAddrPort()
		if err != nil {
			return Filter{}, err
		}
		b, err := p.parseAddrPort()
		if err != nil {
			return Filter{}, err
		}
		return Flow(a, b), nil
	}
	return p.parseQualified()
}

func (p *filterParser) parseAddrPort() (netip.AddrPort, error) {
	if p.done() {
		return netip.AddrPort{}, p.errTok("expected address:port")
	}
	ap, err := netip.ParseAddrPort(p.peek())
	if err != nil {
		return netip.AddrPort{}, p.errTok("expected address:port")
	}
	p.pos++
	return ap, nil
}

// parseDir consumes a direction qualifier, if any.
func (p *filterParser) parseDir() (Dir, bool) {
	switch p.peek() {
	case "src", "dst":
		first := p.peek()
		other := "dst"
		if first == "dst" {
			other = "src"
		}
		if conj := p.peekAt(1); (conj == "or" || conj == "and") && p.peekAt(2) == other {
			p.pos += 3
			if conj == "or" {
				return SrcOrDst, true
			}
			return SrcAndDst, true
		}
		p.pos++
		if first == "src" {
			return Src, true
		}
		return Dst, true
	}
	return SrcOrDst, false
}

func (p *filterParser) parseQualified() (Filter, error) {
	dir, hasDir := p.parseDir()
	switch p.peek() {
	case "host":
		p.pos++
		a, err := netip.ParseAddr(p.peek())
		if err != nil {
			return Filter{}, p.errTok("expected an IP address after host")
		}
		p.pos++
		return Host(dir, a), nil
	case "net":
		p.pos++
		return p.parseNet(dir)
	case "port":
		p.pos++
		n, err := p.parsePort()
		if err != nil {
			return Filter{}, err
		}
		return Port(dir, n), nil
	case "portrange":
		p.pos++
		lo, hi, ok := strings.Cut(p.peek(), "-")
		l, err1 := strconv.ParseUint(lo, 10, 16)
		h, err2 := strconv.ParseUint(hi, 10, 16)
		if !ok || err1 != nil || err2 != nil || l > h {
			return Filter{}, p.errTok("expected a port range LOW-HIGH")
		}
		p.pos++
		return PortRange(dir, uint16(l), uint16(h)), nil
	}
	if hasDir && !p.done() {
		w := p.peek()
		if strings.Contains(w, "/") {
			return p.parseNet(dir)
		}
		if a, err := netip.ParseAddr(w); err == nil {
			p.pos++
			return Host(dir, a), nil
		}
		return Filter{}, p.errTok("expected host, net, port, portrange, an address or a prefix")
	}
	return Filter{}, p.errTok("expected a primitive (udp, ip, ip6, flow, src, dst, host, net, port, portrange, not or ()")
}

func (p *filterParser) parseNet(dir Dir) (Filter, error) {
	pfx, err := netip.ParsePrefix(p.peek())
	if err != nil {
		return Filter{}, p.errTok("expected a prefix such as 10.0.0.0/8")
	}
	if pfx.Masked() != pfx {
		return Filter{}, p.errTok("prefix has host bits set")
	}
	p.pos++
	return Net(dir, pfx), nil
}

func (p *filterParser) parsePort() (uint16, error) {
	n, err := strconv.ParseUint(p.peek(), 10, 16)
	if err != nil {
		return 0, p.errTok("expected a port number 0-65535")
	}
	p.pos++
	return uint16(n), nil
}
