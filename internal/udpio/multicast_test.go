package udpio

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
)

// TestGroupInterface: the interface a group is joined on or sent out of
// is the one named, else the one the group's zone names (by name or by
// index), else none (the kernel's route); a zone naming another
// interface than the one named is ErrZoneConflict, and one naming no
// interface an error.
func TestGroupInterface(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface: %v", err)
	}
	idx := strconv.Itoa(lo.Index)
	for _, c := range []struct {
		name, group string
		want        int // interface index, 0 for none
	}{
		{"", "ff02::1", 0},
		{"", "239.1.2.3", 0},
		{"lo", "ff02::1", lo.Index},
		{"lo", "239.1.2.3", lo.Index},
		{"", "ff02::1%lo", lo.Index},
		{"", "ff02::1%" + idx, lo.Index},
		{"lo", "ff12::1%" + idx, lo.Index},
	} {
		ifi, err := groupInterface(c.name, netip.MustParseAddr(c.group))
		got := 0
		if ifi != nil {
			got = ifi.Index
		}
		if err != nil || got != c.want {
			t.Errorf("groupInterface(%q, %s) = %v, %v; want index %d", c.name, c.group, ifi, err, c.want)
		}
	}
	for _, group := range []string{"ff02::1%no-such-if", "ff02::1%2147483646"} {
		if ifi, err := groupInterface("", netip.MustParseAddr(group)); err == nil {
			t.Errorf("groupInterface(%q) = %v, want an error", group, ifi)
		}
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range ifs {
		if other.Index == lo.Index {
			continue
		}
		group := netip.MustParseAddr("ff02::1").WithZone(strconv.Itoa(other.Index))
		if _, err := groupInterface("lo", group); !errors.Is(err, ErrZoneConflict) {
			t.Errorf("groupInterface(lo, %v) = %v, want ErrZoneConflict", group, err)
		}
		if _, err := ListenGroup(netip.AddrPortFrom(group, 0), GroupConfig{Interface: "lo"}, Config{}); !errors.Is(err, ErrZoneConflict) {
			t.Errorf("ListenGroup(%v, lo) = %v, want ErrZoneConflict", group, err)
		}
		break
	}
}
