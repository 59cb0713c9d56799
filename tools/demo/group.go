package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/gen"
	"github.com/telewire/telewire/tools/netem"
)

// MaxReceivers bounds Options.Receivers.
const MaxReceivers = 16

// GroupSummary is the outcome of a run with several receivers.
type GroupSummary struct {
	Sent      uint64
	Group     string                 // the multicast group the sender sent to
	Delivered []uint64               // per receiver
	Receivers []receiver.StreamStats // per receiver
	Links     []netem.PacketConnStats
	Sender    sender.Stats
}

// A group demo: the sender sends each datagram once to a multicast group
// on the loopback interface; each receiver hears it through a relay of its
// own that joins the group, impairs what it reads with that receiver's
// forward link (the receiver's own loss: every relay draws its own), and
// forwards it to the receiver's unicast address; the receiver's feedback
// goes back through the relay, impaired by the reverse link, to the
// sender's address, from a socket of the relay's own, so the sender holds
// a view per receiver. A repair is sent to the group once and reaches
// every relay. The receivers are group receivers (receiver.Config.Group:
// NACK back-off, the advertised group size) on unicast sockets: loopback
// multicast loses nothing, so the loss must be made in the process, and a
// relay per receiver is where one can be put without a hook in the
// receiver's own socket loop.

// groupRelay is one receiver's last hop.
type groupRelay struct {
	group net.PacketConn // the group, read through the forward link
	down  *net.UDPConn   // to the receiver; its feedback arrives here
	up    net.PacketConn // to the sender, through the reverse link; its unicast answers arrive here
	rcv   netip.AddrPort
	view  string                         // the address the sender sees the receiver's feedback come from
	snd   atomic.Pointer[netip.AddrPort] // learned from the group's datagrams
	wg    sync.WaitGroup
}

func newGroupRelay(group *net.UDPAddr, lo *net.Interface, rcv netip.AddrPort, fwd, rev netem.Spec, seed int64) (*groupRelay, error) {
	g, err := net.ListenMulticastUDP("udp4", lo, group)
	if err != nil {
		return nil, fmt.Errorf("demo: relay: join %v: %w", group, err)
	}
	down, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		g.Close()
		return nil, fmt.Errorf("demo: relay: %w", err)
	}
	up, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		g.Close()
		down.Close()
		return nil, fmt.Errorf("demo: relay: %w", err)
	}
	r := &groupRelay{
		group: netem.Wrap(g, netem.Spec{}, fwd, seed),
		down:  down,
		up:    netem.Wrap(up, rev, netem.Spec{}, seed+7919),
		rcv:   rcv,
		view:  up.LocalAddr().String(),
	}
	r.wg.Add(3)
	go r.pump(r.group, func(b []byte, from netip.AddrPort) {
		r.snd.Store(&from)
		_, _ = r.down.WriteToUDPAddrPort(b, r.rcv)
	})
	go r.pump(r.down, func(b []byte, from netip.AddrPort) {
		if from != r.rcv {
			return
		}
		if s := r.snd.Load(); s != nil {
			_, _ = r.up.WriteTo(b, net.UDPAddrFromAddrPort(*s))
		}
	})
	go r.pump(r.up, func(b []byte, _ netip.AddrPort) {
		_, _ = r.down.WriteToUDPAddrPort(b, r.rcv) // the sender's answers to this receiver alone
	})
	return r, nil
}

// pump reads c until it is closed, handing each datagram to fn.
func (r *groupRelay) pump(c net.PacketConn, fn func(b []byte, from netip.AddrPort)) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if ua, ok := addr.(*net.UDPAddr); ok {
			fn(buf[:n], ua.AddrPort())
		}
	}
}

// stats returns the forward link's counters (what the receiver lost).
func (r *groupRelay) stats() netem.PacketConnStats {
	return r.group.(*netem.PacketConn).Stats()
}

func (r *groupRelay) close() {
	r.group.Close()
	r.down.Close()
	r.up.Close()
	r.wg.Wait()
}

// freeGroup returns a multicast group on a port no socket on this host
// uses now, so that two demos on one host do not hear each other.
func freeGroup() (*net.UDPAddr, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return &net.UDPAddr{IP: net.IPv4(239, 255, byte(port>>8), byte(port)), Port: port}, nil
}

// RunGroup streams for o.Duration to o.Receivers receivers of a multicast
// group on the loopback interface, each behind a link of its own, writing
// one live table (a row per receiver per interval) and a summary to out.
func RunGroup(ctx context.Context, o Options, out io.Writer) (GroupSummary, error) {
	o = o.withDefaults()
	n := o.Receivers
	switch {
	case o.Rate < 0 || o.Duration < 0:
		return GroupSummary{}, errors.New("demo: rate and duration must be positive")
	case n < 2 || n > MaxReceivers:
		return GroupSummary{}, fmt.Errorf("demo: %d receivers, want 2..%d", n, MaxReceivers)
	case o.KeyFile != "":
		return GroupSummary{}, errors.New("demo: sealed multicast is not supported yet")
	}
	fwd, err := netem.ParseSpec(o.Fwd)
	if err != nil {
		return GroupSummary{}, fmt.Errorf("demo: forward link: %w", err)
	}
	rev, err := netem.ParseSpec(o.Rev)
	if err != nil {
		return GroupSummary{}, fmt.Errorf("demo: reverse link: %w", err)
	}
	src, err := gen.New(o.Source, o.Size, uint64(o.Seed))
	if err != nil {
		return GroupSummary{}, err
	}
	lo, err := loopback()
	if err != nil {
		return GroupSummary{}, err
	}
	group, err := freeGroup()
	if err != nil {
		return GroupSummary{}, err
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	rcvs := make([]*receiver.Receiver, n)
	delivered := make([]atomic.Uint64, n)
	for i := range rcvs {
		r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", Group: true, Latency: o.Latency, Logger: o.Logger})
		if err != nil {
			return GroupSummary{}, err
		}
		defer r.Close()
		rcvs[i] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, err := r.Recv(ctx); err != nil {
					return
				}
				delivered[i].Add(1)
			}
		}()
	}
	relays := make([]*groupRelay, n)
	for i := range relays {
		rl, err := newGroupRelay(group, lo, rcvs[i].Addr(), fwd, rev, o.Seed+int64(i)*1_000_003)
		if err != nil {
			return GroupSummary{}, err
		}
		defer rl.close()
		relays[i] = rl
	}
	snd, err := sender.New(ctx, sender.Config{To: group.String(), Local: "127.0.0.1:0", MulticastInterface: lo.Name, Logger: o.Logger})
	if err != nil {
		return GroupSummary{}, err
	}
	defer snd.Close()

	fmt.Fprintf(out, "telewire demo: %s messages at %.0f/s for %s to %d receivers of %v on loopback\n", o.Source, o.Rate, o.Duration, n, group)
	fmt.Fprintf(out, "each receiver's own link (independent draws): %s; feedback: %s\n\n", o.Fwd, o.Rev)
	t := newTable(out)
	t.groupHeader()

	start := time.Now()
	interval := time.Duration(float64(time.Second) / o.Rate)
	nextRow := start.Add(o.Interval)
	buf := make([]byte, 0, 2048)
	var sent uint64
	rows := func() {
		st := snd.Stats()
		for i, r := range rcvs {
			t.groupRow(time.Since(start), i, sent, delivered[i].Load(), st, relays[i].view, streamOf(r.Stats()))
		}
	}
loop:
	for time.Since(start) < o.Duration {
		for due := start.Add(time.Duration(sent) * interval); !time.Now().Before(due) && time.Now().Before(nextRow); due = start.Add(time.Duration(sent) * interval) {
			buf = src.Next(buf[:0])
			if err := snd.Send(buf); err != nil {
				return GroupSummary{}, err
			}
			sent++
		}
		if !time.Now().Before(nextRow) {
			rows()
			nextRow = nextRow.Add(o.Interval)
		}
		wait := min(time.Until(start.Add(time.Duration(sent)*interval)), time.Until(nextRow))
		select {
		case <-ctx.Done():
			break loop
		case <-time.After(max(wait, 0)):
		}
	}
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	rows()
	sum := GroupSummary{Sent: sent, Group: group.String(), Sender: snd.Stats()}
	for i, r := range rcvs {
		sum.Delivered = append(sum.Delivered, delivered[i].Load())
		sum.Receivers = append(sum.Receivers, streamOf(r.Stats()))
		sum.Links = append(sum.Links, relays[i].stats())
	}
	t.groupSummary(sum, time.Since(start))
	return sum, nil
}

// loopback returns the loopback interface.
func loopback() (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for i := range ifs {
		if ifs[i].Flags&net.FlagLoopback != 0 && ifs[i].Flags&net.FlagUp != 0 {
			return &ifs[i], nil // Linux's lo carries IPv4 multicast without the flag
		}
	}
	return nil, errors.New("demo: no loopback interface")
}
