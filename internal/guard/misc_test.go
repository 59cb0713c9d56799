package guard

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	tk, err := NewTokens([]byte("0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewTokens([]byte("0123456789abcdeF"))
	a := netip.MustParseAddrPort("192.0.2.7:4000")
	tok := tk.Token(1, a)
	if !tk.Check(1, a, tok) || tk.Token(1, a) != tok {
		t.Fatal("token does not check")
	}
	mapped := netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	if !tk.Check(1, mapped, tok) {
		t.Fatal("IPv4-mapped form of the same address refused")
	}
	for _, c := range []struct {
		session uint64
		addr    netip.AddrPort
	}{
		{2, a},
		{1, netip.MustParseAddrPort("192.0.2.7:4001")},
		{1, netip.MustParseAddrPort("192.0.2.8:4000")},
		{1, netip.MustParseAddrPort("[2001:db8::7]:4000")},
	} {
		if tk.Check(c.session, c.addr, tok) {
			t.Errorf("token valid for %d %v", c.session, c.addr)
		}
	}
	if other.Check(1, a, tok) {
		t.Error("token valid under another secret")
	}
	if tk.Check(1, a, tok^1) {
		t.Error("altered token accepted")
	}
	_ = tk.Token(0, netip.AddrPort{}) // the zero address does not panic
	if _, err := NewTokens(make([]byte, 15)); !errors.Is(err, ErrConfig) {
		t.Errorf("short secret: %v", err)
	}
	if a := testing.AllocsPerRun(1000, func() { tk.Check(1, a, tok) }); a != 0 {
		t.Errorf("Check: %v allocs", a)
	}
}

func TestBucket(t *testing.T) {
	b := Bucket{Depth: 10, PeriodNanos: int64(time.Second)}
	now := int64(5e9)
	for i := range 10 {
		if !b.Allow(1, now) {
			t.Fatalf("full bucket refused token %d", i)
		}
	}
	if b.Allow(1, now) {
		t.Fatal("empty bucket allowed")
	}
	if b.Allow(1, now+int64(99*time.Millisecond)) || !b.Allow(1, now+int64(100*time.Millisecond)) {
		t.Fatal("refill is not Depth per period")
	}
	if b.Allow(1, now) { // the clock went back: no refill
		t.Fatal("refilled from a backwards clock")
	}
	if l := b.Level(now + int64(time.Hour)); l != 10 {
		t.Fatalf("level %v after an hour, want the depth", l)
	}
	b.Depth = 4
	if l := b.Level(now + int64(time.Hour)); l != 4 {
		t.Fatalf("level %v after shrinking the depth", l)
	}
	var z Bucket
	if z.Allow(1, 0) || z.Allow(1, 1e12) {
		t.Fatal("zero Bucket allowed")
	}
}
