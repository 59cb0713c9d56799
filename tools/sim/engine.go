package sim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// One engine runs every simulation: a sender core and n receiver cores on
// one fake clock. Run is the engine with one receiver at ReceiverAddr;
// RunGroup the engine with n receivers of a multicast group. Each
// receiver has a link set of its own in each direction (netem links, as
// Config.Fwd and Config.Rev describe); a group adds a shared loss before
// the receivers' own links: the path to the group.

// topology is what distinguishes a group run from a one-receiver run.
type topology struct {
	n          int                        // receivers, >= 1
	remote     netip.AddrPort             // the sender's destination
	addr       func(i int) netip.AddrPort // receiver i's address
	sharedLoss float64                    // probability a datagram to remote is lost for every receiver
	shareSeed  uint64                     // seeds the shared loss
	late       []Join                     // late joiners: receiver i < len(late) joins at late[i]
	// fanout: the sender sends to each receiver's address in turn
	// (sender.NewFanoutCore), not to remote, which is then unset.
	fanout bool
}

// newSender returns the run's sender core.
func (t topology) newSender(cfg sender.Config, session uint64) (*sender.Core, error) {
	if !t.fanout {
		return sender.NewCore(cfg, session, t.remote)
	}
	to := make([]netip.AddrPort, t.n)
	for i := range to {
		to[i] = t.addr(i)
	}
	return sender.NewFanoutCore(cfg, session, to)
}

// node is one simulated receiver and its links.
type node struct {
	rcv        *receiver.Core
	addr       netip.AddrPort
	fwd, rev   *linkSet
	fwdSeed    int64
	revSeed    int64
	timer      coarseTimer
	delivered  []bool
	newest     int64
	latencies  []int64
	tally      GroupReceiverResult
	delivered0 uint64 // deliveries, duplicates included
	// The core's next timer as the run sees it (timer.of), cached while
	// the core is not touched: a group's receivers are many, and most
	// have nothing to do at most instants.
	at           int64
	armed, fresh bool
}

// nextTimer returns the node's next timer, from the cache when the core
// was not touched since.
func (nd *node) nextTimer() (int64, bool) {
	if !nd.fresh {
		nd.at, nd.armed = nd.timer.of(nd.rcv).NextTimer()
		nd.fresh = true
	}
	return nd.at, nd.armed
}

// NextTimer makes a node a timed for nextEvent.
func (nd *node) NextTimer() (int64, bool) { return nd.nextTimer() }

// idle reports whether the node has nothing to do at now: no datagram due
// on its links either way, no timer due, nothing queued to send.
func (nd *node) idle(now int64) bool {
	if at, ok := nd.nextTimer(); ok && at <= now {
		return false
	}
	for _, set := range [][]*netem.Link{nd.fwd.all, nd.rev.all} {
		for _, l := range set {
			if at, ok := l.Next(); ok && at <= now {
				return false
			}
		}
	}
	return nd.rcv.Outbox().Current().Len() == 0
}

// tally is what the engine measured beyond the per-receiver results.
type tally struct {
	res        Result // receiver 0's view, the sender's figures
	nodes      []*node
	originals  map[uint64]int // DATA sequence → receivers its first transmission reached
	nackPkts   uint64
	nackedSeqs uint64
}

// receiverSeeds returns the seeds of receiver i's links: receiver 0's are
// the seed itself and seed^0x5eed, as a one-receiver run has always used.
func receiverSeeds(seed int64, i int) (fwd, rev int64) {
	off := int64(i) * 0x3c6ef372
	return seed + off, (seed ^ 0x5eed) + off
}

// receiverRand is receiver i's randomness (its NACK back-off).
func receiverRand(seed int64, i int) rand.Source {
	return rand.NewPCG(uint64(seed), uint64(i)+1)
}

func (c Config) newReceiver(i int, t topology) (*receiver.Core, error) {
	rc := c.Receiver
	if rc.Rand == nil {
		rc.Rand = receiverRand(c.Seed, i)
	}
	if i < len(t.late) {
		rc.JoinHistory = t.late[i].History
	}
	return receiver.NewCore(rc)
}

// hears reports whether receiver i hears the group once next messages
// were sent: a late joiner from its Join.At on.
func (t topology) hears(i, next int) bool {
	return i >= len(t.late) || next > t.late[i].At
}

// run executes the scenario with topology t and checks every delivery of
// every receiver.
func run(c Config, t topology) (tally, error) {
	var out tally
	c.Sender.FirstSeq = c.FirstSeq
	snd, err := t.newSender(c.Sender, 0x5151)
	if err != nil {
		return out, err
	}
	nodes := make([]*node, t.n)
	for i := range nodes {
		nd := &node{addr: t.addr(i), newest: -1, delivered: make([]bool, c.Messages)}
		nd.timer.g = int64(c.TimerGranularity)
		if nd.rcv, err = c.newReceiver(i, t); err != nil {
			return out, err
		}
		nd.fwdSeed, nd.revSeed = receiverSeeds(c.Seed, i)
		if nd.fwd, err = newLinkSet(c.Fwd, nd.fwdSeed, c.FwdChanges); err != nil {
			return out, fmt.Errorf("sim: forward link: %w", err)
		}
		if nd.rev, err = newLinkSet(c.Rev, nd.revSeed, c.RevChanges); err != nil {
			return out, fmt.Errorf("sim: reverse link: %w", err)
		}
		if t.n == 1 {
			nd.latencies = make([]int64, 0, c.Messages)
		}
		nodes[i] = nd
	}
	out.nodes = nodes
	out.originals = make(map[uint64]int)
	var shared *rand.Rand
	if t.sharedLoss > 0 {
		shared = rand.New(rand.NewPCG(t.shareSeed, 0x9e3779b97f4a7c15))
	}
	res := &out.res

	interval := int64(float64(time.Second) / c.Rate)
	sendAt := func(i int) int64 { return c.Start + int64(i)*interval }
	end := sendAt(c.Messages) + int64(c.Drain)
	payload := make([]byte, c.Size)
	want := make([]byte, c.Size)
	wantK := ^uint64(0) // the message want holds

	tailFrom := c.FirstSeq + uint64(c.Messages-c.TailDrop)
	var peek packet.Packet
	dropped := func(b []byte) bool {
		if c.TailDrop == 0 && c.Drop == nil || peek.Parse(b) != nil {
			return false
		}
		if c.TailDrop > 0 && peek.Kind == packet.KindData && !packet.SeqLess(peek.Seq, tailFrom) {
			return true
		}
		return c.Drop != nil && c.Drop(&peek)
	}
	// original reports whether b is the first transmission of a DATA,
	// and its sequence.
	var orig packet.Packet
	original := func(b []byte) (uint64, bool) {
		if orig.Parse(b) != nil || orig.Kind != packet.KindData || orig.Flags&packet.FlagRetransmit != 0 {
			return 0, false
		}
		return orig.Seq, true
	}
	// fromSender puts the sender's queued datagrams on the receivers'
	// forward links: a datagram to the destination goes to every
	// receiver (past the shared loss), one to a receiver's own address
	// to that receiver.
	next := 0 // messages sent so far
	fromSender := func(now int64) {
		p := snd.Outbox()
		b := p.Take()
		if b == nil {
			return
		}
		for _, d := range b.Datagrams() {
			res.SenderWireBytes += uint64(len(d.Data))
			if seq, ok := original(d.Data); ok {
				out.originals[seq] += 0 // sent: an entry even if nobody gets it
			}
			if dropped(d.Data) {
				continue
			}
			if d.Addr != t.remote {
				for i, nd := range nodes {
					if nd.addr == d.Addr {
						nd.tally.Unicast++
					}
					// A one-receiver run's path carries whatever the
					// sender sends.
					if nd.addr == d.Addr || t.n == 1 {
						nodes[i].fwd.cur.Enqueue(now, d.Data)
					}
				}
				continue
			}
			if shared != nil && shared.Float64() < t.sharedLoss {
				continue
			}
			for i, nd := range nodes {
				if t.hears(i, next) {
					nd.fwd.cur.Enqueue(now, d.Data)
				}
			}
		}
		p.Give(b)
	}
	toLink := func(p *outbox.Pair, l *netem.Link, now int64) {
		b := p.Take()
		if b == nil {
			return
		}
		for _, d := range b.Datagrams() {
			l.Enqueue(now, d.Data)
		}
		p.Give(b)
	}
	var nack packet.Packet
	countNACK := func(b []byte) {
		if nack.Parse(b) == nil && nack.Kind == packet.KindNACK && nack.Flags&packet.FlagUnavailable == 0 {
			out.nackPkts++
			for _, r := range nack.Ranges {
				out.nackedSeqs += uint64(r.Len)
			}
		}
	}
	drain := func(i int, now int64) {
		nd := nodes[i]
		r := &nd.tally
		for m, ok := nd.rcv.Pop(); ok; m, ok = nd.rcv.Pop() {
			nd.delivered0++
			if len(m.Payload) < 8 {
				r.Corrupt++
				continue
			}
			k := binary.BigEndian.Uint64(m.Payload)
			if k >= uint64(c.Messages) {
				r.Corrupt++
				continue
			}
			if k != wantK {
				fill(want, k) // the receivers of a group mostly deliver one message in turn
				wantK = k
			}
			if string(want) != string(m.Payload) {
				r.Corrupt++
				continue
			}
			if nd.delivered[k] {
				r.Duplicates++
				continue
			}
			nd.delivered[k] = true
			if r.Unique == 0 || int(k) < r.First {
				r.First = int(k)
			}
			r.Unique++
			if int64(k) < nd.newest {
				r.OutOfOrder++
			}
			nd.newest = max(nd.newest, int64(k))
			lat := now - sendAt(int(k)) // send call to delivery, holding included
			r.LatencyMax = max(r.LatencyMax, lat)
			if nd.latencies != nil {
				nd.latencies = append(nd.latencies, lat)
			}
			if i == 0 && c.Delivered != nil {
				c.Delivered(int(k), &m, lat)
			}
		}
	}

	now := c.Start
	sndTimer := coarseTimer{g: int64(c.TimerGranularity)}
	nextObserve := int64(-1)
	if c.Observe != nil && c.ObserveEvery > 0 {
		nextObserve = c.Start + int64(c.ObserveEvery)
	}
	timers := make([]timed, 0, t.n+1)
	var links [][]*netem.Link
	for now <= end {
		if nextObserve >= 0 && now >= nextObserve {
			c.Observe(time.Duration(nextObserve-c.Start), snd, nodes[0].rcv)
			nextObserve += int64(c.ObserveEvery)
		}
		for _, nd := range nodes {
			if err := nd.fwd.apply(c.Start, now, nd.fwdSeed); err != nil {
				return out, fmt.Errorf("sim: forward link change: %w", err)
			}
			if err := nd.rev.apply(c.Start, now, nd.revSeed); err != nil {
				return out, fmt.Errorf("sim: reverse link change: %w", err)
			}
		}
		sndActive := false
		for next < c.Messages && sendAt(next) <= now {
			if next > 0 && next == c.RestartSenderAt {
				if snd, err = t.newSender(c.Sender, 0x5152); err != nil {
					return out, err
				}
			}
			if next > 0 && next == c.RestartReceiverAt {
				for i, nd := range nodes {
					if nd.rcv, err = c.newReceiver(t.n+i, t); err != nil {
						return out, err
					}
					nd.fresh = false
				}
			}
			fill(payload, uint64(next))
			err := snd.Send(0, payload, now)
			if errors.Is(err, sender.ErrQueueFull) {
				fromSender(now)
				err = snd.Send(0, payload, now)
			}
			if err != nil {
				return out, fmt.Errorf("sim: send %d: %w", next, err)
			}
			res.Sent++
			res.PayloadBytes += uint64(c.Size)
			next++
			sndActive = true
		}
		if sndTimer.due(now, sndActive) {
			snd.Tick(now)
			sndTimer.arm(now, snd)
		}
		fromSender(now)
		for i, nd := range nodes {
			if nd.idle(now) {
				continue
			}
			nd.fresh = false // touched from here on
			active := false
			for _, l := range nd.fwd.all {
				for pkt, ok := l.Dequeue(now); ok; pkt, ok = l.Dequeue(now) {
					if seq, ok := original(pkt); ok {
						out.originals[seq]++
					}
					nd.rcv.Handle(pkt, SenderAddr, now)
					active = true
				}
			}
			if nd.timer.dueFor(now, active, nd.rcv) {
				nd.rcv.Tick(now)
				nd.timer.arm(now, nd.rcv)
			}
			drain(i, now)
			toLink(nd.rcv.Outbox(), nd.rev.cur, now)
			for _, l := range nd.rev.all {
				for pkt, ok := l.Dequeue(now); ok; pkt, ok = l.Dequeue(now) {
					countNACK(pkt)
					snd.Handle(pkt, nd.addr, now)
					sndTimer.wake(now)
				}
			}
		}
		if snd.Outbox().Current().Len() > 0 {
			continue // answers queued at this instant go out at this instant
		}
		busy := false
		for _, nd := range nodes {
			busy = busy || nd.rcv.Outbox().Current().Len() > 0
		}
		if busy {
			continue
		}
		nextChange := nextObserve
		for _, ch := range [][]Change{nodes[0].fwd.changes, nodes[0].rev.changes} {
			if len(ch) > 0 && (nextChange < 0 || c.Start+int64(ch[0].At) < nextChange) {
				nextChange = c.Start + int64(ch[0].At)
			}
		}
		timers = append(timers[:0], sndTimer.of(snd))
		links = links[:0]
		for _, nd := range nodes {
			timers = append(timers, nd)
			links = append(links, nd.fwd.all, nd.rev.all)
		}
		now = nextEvent(now, end, next < c.Messages, sendAt(next), nextChange, timers, links...)
	}
	res.SimulatedNanos = now - c.Start
	for _, nd := range nodes {
		for _, ok := range nd.delivered {
			if !ok {
				nd.tally.Missed++
			}
		}
		nd.tally.Stats = nd.rcv.Stats()
	}
	nd := nodes[0]
	for i, ok := range nd.delivered {
		if !ok {
			res.Missed = append(res.Missed, i)
		}
	}
	res.Delivered, res.Unique, res.Duplicates = nd.delivered0, nd.tally.Unique, nd.tally.Duplicates
	res.OutOfOrder, res.Corrupt = nd.tally.OutOfOrder, nd.tally.Corrupt
	res.Sender = snd.Stats()
	res.Receiver = nd.tally.Stats
	res.FwdLink, res.FwdQueued = nd.fwd.stats()
	res.RevLink, res.RevQueued = nd.rev.stats()
	if lat := nd.latencies; len(lat) > 0 {
		slices.Sort(lat)
		q := func(p float64) int64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		res.LatencyP50, res.LatencyP99, res.LatencyP999 = q(0.50), q(0.99), q(0.999)
		res.LatencyMax = lat[len(lat)-1]
	}
	return out, nil
}
