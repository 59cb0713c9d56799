package capture

import (
	"errors"
	"net/netip"
	"testing"
)

func dgram(src, dst string) Datagram {
	return Datagram{Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
}

// filterProbes are the datagrams filters are tried on.
var filterProbes = []Datagram{
	dgram("10.0.0.1:40000", "233.54.12.7:5000"),
	dgram("10.0.0.2:53", "10.0.0.1:33000"),
	dgram("10.0.0.1:33000", "10.0.0.2:53"),
	dgram("192.168.1.1:123", "192.168.1.2:123"),
	dgram("[fd00::1]:5005", "[ff15::1]:5000"),
	dgram("[2001:db8::1]:5000", "[2001:db8::2]:5000"),
}

func TestParseFilterMatches(t *testing.T) {
	tests := []struct {
		expr string
		want []bool // per filterProbes
	}{
		{"", []bool{true, true, true, true, true, true}},
		{"udp", []bool{true, true, true, true, true, true}},
		{"udp port 5000 and dst 233.54.12.0/24", []bool{true, false, false, false, false, false}},
		{"src host 10.0.0.1", []bool{true, false, true, false, false, false}},
		{"dst port 53 or src port 53", []bool{false, true, true, false, false, false}},
		{"not port 123", []bool{true, true, true, false, true, true}},
		{"! port 123", []bool{true, true, true, false, true, true}},
		{"ip6", []bool{false, false, false, false, true, true}},
		{"ip and not net 192.168.0.0/16", []bool{true, true, true, false, false, false}},
		{"src and dst port 5000", []bool{false, false, false, false, false, true}},
		{"src or dst port 5000", []bool{true, false, false, false, true, true}},
		{"portrange 5000-5005", []bool{true, false, false, false, true, true}},
		{"dst net ff00::/8 || (src port 123 && dst port 123)", []bool{false, false, false, true, true, false}},
		{"flow 10.0.0.2:53 10.0.0.1:33000", []bool{false, true, true, false, false, false}},
		{"dst fd00::/8 or src fd00::1", []bool{false, false, false, false, true, false}},
		{"not (port 53 or ip6) and udp", []bool{true, false, false, true, false, false}},
		{"port 53 or port 123 and src host 10.0.0.1", []bool{false, true, true, false, false, false}},
		{"not udp", []bool{false, false, false, false, false, false}},
		{"host ::ffff:10.0.0.1", []bool{true, true, true, false, false, false}},
	}
	for _, tt := range tests {
		f, err := ParseFilter(tt.expr)
		if err != nil {
			t.Errorf("%q: %v", tt.expr, err)
			continue
		}
		for i := range filterProbes {
			if got := f.Match(&filterProbes[i]); got != tt.want[i] {
				t.Errorf("%q on %v -> %v: %v, want %v", tt.expr, filterProbes[i].Src, filterProbes[i].Dst, got, tt.want[i])
			}
		}
		// The canonical form parses back to the same filter.
		g, err := ParseFilter(f.String())
		if err != nil || g.String() != f.String() {
			t.Errorf("%q: String %q reparses to %q, %v", tt.expr, f.String(), g.String(), err)
		}
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct {
		expr, token string
	}{
		{"port", ""},
		{"port 70000", "70000"},
		{"port 53 and", ""},
		{"src foo", "foo"},
		{"host 10.0.0", "10.0.0"},
		{"net 10.0.0.1/8", "10.0.0.1/8"},
		{"net 10.0.0.0", "10.0.0.0"},
		{"(port 53", "("},
		{"port 53)", ")"},
		{"port 53 port 54", "port"},
		{"tcp port 80", "tcp"},
		{"portrange 9-3", "9-3"},
		{"flow 10.0.0.1:1", ""},
		{"flow 10.0.0.1 10.0.0.2:2", "10.0.0.1"},
		{"and port 53", "and"},
	}
	for _, tt := range tests {
		_, err := ParseFilter(tt.expr)
		var fe *FilterError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFilterSyntax) {
			t.Errorf("%q: error %v, want a *FilterError", tt.expr, err)
			continue
		}
		if fe.Token != tt.token {
			t.Errorf("%q: bad token %q, want %q (%v)", tt.expr, fe.Token, tt.token, err)
		}
		if tt.token != "" && tt.expr[fe.Offset:fe.Offset+len(fe.Token)] != fe.Token {
			t.Errorf("%q: offset %d does not point at %q", tt.expr, fe.Offset, fe.Token)
		}
	}
	deep := ""
	for range maxFilterDepth + 1 {
		deep += "("
	}
	if _, err := ParseFilter(deep + "port 1"); !errors.Is(err, ErrFilterSyntax) {
		t.Errorf("deep nesting: %v", err)
	}
	long := make([]byte, MaxFilterLen+1)
	for i := range long {
		long[i] = ' '
	}
	if _, err := ParseFilter(string(long)); !errors.Is(err, ErrFilterSyntax) {
		t.Errorf("long expression: %v", err)
	}
}

func TestFilterConstructors(t *testing.T) {
	a, b := netip.MustParseAddrPort("10.0.0.2:53"), netip.MustParseAddrPort("10.0.0.1:33000")
	f := And(Flow(a, b), Not(Port(Src, 33000)))
	if f.Match(&filterProbes[2]) || !f.Match(&filterProbes[1]) {
		t.Fatalf("%v: wrong matches", f)
	}
	if !Or(Port(Dst, 1), Filter{}).IsZero() {
		t.Fatal("Or with the zero Filter should match everything")
	}
	if !And().IsZero() || And(Filter{}, Filter{}).String() != "udp" {
		t.Fatal("empty And should be the zero Filter")
	}
	if got := PortRange(SrcAndDst, 9, 3).String(); got != "src and dst portrange 3-9" {
		t.Fatalf("PortRange string %q", got)
	}
}

func TestFilterMatchNoAllocs(t *testing.T) {
	f := MustFilter(t, "(udp port 5000 and dst 233.54.12.0/24) or not src host 10.0.0.1 or flow [::1]:1 [::1]:2")
	if a := testing.AllocsPerRun(1000, func() {
		for i := range filterProbes {
			f.Match(&filterProbes[i])
		}
	}); a != 0 {
		t.Fatalf("%.1f allocations per Match round", a)
	}
}
