package sim

import (
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// GroupAddr is the multicast group the simulated sender of RunGroup sends
// to. No datagram leaves the process.
var GroupAddr = netip.MustParseAddrPort("239.1.2.3:9000")

// GroupReceiverAddr returns the address of receiver i of RunGroup.
func GroupReceiverAddr(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 7, byte(i >> 8), byte(i)}), 9000)
}

// GroupConfig describes a run of one sender and Receivers receivers of a
// multicast group: every datagram the sender sends to the group is lost
// for all receivers at once with probability SharedLoss (the path to the
// group), and then for each receiver on its own with probability Loss
// (its own last hop). Every datagram takes Delay one way, feedback too;
// feedback is lost with probability RevLoss. Everything is decided by the
// seed. The zero value of each field is its default.
type GroupConfig struct {
	Receivers  int     // default 1
	SharedLoss float64 // probability a group datagram is lost for every receiver
	Loss       float64 // probability it is lost for one receiver, independently
	RevLoss    float64 // probability a feedback datagram is lost
	Delay      time.Duration
	Seed       uint64

	Messages int           // default 10 000
	Rate     float64       // messages per second; default 1000
	Size     int           // payload bytes, at least 8; default 200
	Drain    time.Duration // simulated time after the last send; default 2 s
	Start    int64         // fake clock at the start; default 1 s

	Sender sender.Config // sender settings (To, Clock and sockets unused)
	// Receiver is each receiver's configuration. Rand is set per receiver
	// from Seed, and NACKGroupSize, if 0, to Receivers.
	Receiver receiver.Config
}

// GroupReceiverResult is what one receiver of a group run got.
type GroupReceiverResult struct {
	Unique, Duplicates, OutOfOrder, Corrupt uint64
	Missed                                  int   // messages never delivered
	LatencyMax                              int64 // send call to delivery, ns
	Stats                                   receiver.Stats
}

// GroupResult is what a group run measured.
type GroupResult struct {
	Sent      uint64
	Receivers []GroupReceiverResult
	// LostUnion is the number of distinct DATA sequences whose first
	// transmission some receiver lost: what had to be repaired for
	// someone (by parity or retransmission).
	LostUnion uint64
	// NACKPackets counts the NACK datagrams that reached the sender and
	// NACKedSeqs the sequences they asked for, repeats included.
	NACKPackets, NACKedSeqs uint64
	// Retransmits counts the DATA the sender resent (each went to the
	// whole group once).
	Retransmits    uint64
	Sender         sender.Stats
	SimulatedNanos int64
}

// RetransmitsPerLost is Retransmits / LostUnion.
func (r GroupResult) RetransmitsPerLost() float64 {
	if r.LostUnion == 0 {
		return 0
	}
	return float64(r.Retransmits) / float64(r.LostUnion)
}

// NACKsPerLost is NACKedSeqs / LostUnion: the requests the sender got per
// sequence some receiver lost.
func (r GroupResult) NACKsPerLost() float64 {
	if r.LostUnion == 0 {
		return 0
	}
	return float64(r.NACKedSeqs) / float64(r.LostUnion)
}

// Complete reports whether every receiver got every message once, in
// order and intact.
func (r GroupResult) Complete() bool {
	for _, x := range r.Receivers {
		if x.Unique != r.Sent || x.Duplicates != 0 || x.OutOfOrder != 0 || x.Corrupt != 0 {
			return false
		}
	}
	return true
}

func (c GroupConfig) withDefaults() GroupConfig {
	if c.Receivers == 0 {
		c.Receivers = 1
	}
	if c.Messages == 0 {
		c.Messages = 10_000
	}
	if c.Rate == 0 {
		c.Rate = 1000
	}
	if c.Size == 0 {
		c.Size = 200
	}
	if c.Drain == 0 {
		c.Drain = 2 * time.Second
	}
	if c.Start == 0 {
		c.Start = int64(time.Second)
	}
	return c
}

// event is a datagram in flight: to receiver i, or to the sender (-1).
type event struct {
	at   int64
	n    uint64 // insertion order: equal times keep it
	to   int
	data []byte
}

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].n < h[j].n
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// RunGroup runs one sender and c.Receivers receivers of a multicast
// group and checks every delivery of every receiver.
func RunGroup(c GroupConfig) (GroupResult, error) {
	c = c.withDefaults()
	if c.Size < 8 || c.Messages < 0 || c.Rate <= 0 || c.Receivers < 1 || c.Receivers > 1<<16 {
		return GroupResult{}, errors.New("sim: Size must be >= 8, Messages >= 0, Rate > 0 and Receivers in 1..65536")
	}
	snd, err := sender.NewCore(c.Sender, 0x6161, GroupAddr)
	if err != nil {
		return GroupResult{}, err
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0x9e3779b97f4a7c15))
	n := c.Receivers
	rcvs := make([]*receiver.Core, n)
	for i := range rcvs {
		rc := c.Receiver
		rc.Rand = rand.NewPCG(c.Seed, uint64(i)+1)
		if rc.NACKGroupSize == 0 {
			rc.NACKGroupSize = n // the group's size, as a receiver configured for it knows
		}
		if rcvs[i], err = receiver.NewCore(rc); err != nil {
			return GroupResult{}, err
		}
	}
	res := GroupResult{Receivers: make([]GroupReceiverResult, n)}
	interval := int64(float64(time.Second) / c.Rate)
	sendAt := func(i int) int64 { return c.Start + int64(i)*interval }
	end := sendAt(c.Messages) + int64(c.Drain)
	delay := int64(c.Delay)

	delivered := make([][]bool, n)
	newest := make([]int64, n)
	for i := range delivered {
		delivered[i] = make([]bool, c.Messages)
		newest[i] = -1
	}
	lost := make(map[uint64]bool) // sequences whose first transmission someone lost
	var events eventHeap
	var seqN uint64
	push := func(at int64, to int, b []byte) {
		seqN++
		heap.Push(&events, event{at: at, n: seqN, to: to, data: append([]byte(nil), b...)})
	}
	var peek packet.Packet
	// fromSender puts the sender's queued datagrams on the links.
	fromSender := func(now int64) {
		b := snd.Outbox().Take()
		if b == nil {
			return
		}
		for _, d := range b.Datagrams() {
			original := peek.Parse(d.Data) == nil && peek.Kind == packet.KindData && peek.Flags&packet.FlagRetransmit == 0
			if d.Addr != GroupAddr {
				// Unicast (not used by a group's sender): to that receiver.
				for i := range n {
					if GroupReceiverAddr(i) == d.Addr {
						push(now+delay, i, d.Data)
					}
				}
				continue
			}
			if rng.Float64() < c.SharedLoss {
				if original {
					lost[peek.Seq] = true
				}
				continue
			}
			for i := range n {
				if rng.Float64() < c.Loss {
					if original {
						lost[peek.Seq] = true
					}
					continue
				}
				push(now+delay, i, d.Data)
			}
		}
		snd.Outbox().Give(b)
	}
	payload := make([]byte, c.Size)
	want := make([]byte, c.Size)
	drainDeliveries := func(i int, now int64) {
		r := &res.Receivers[i]
		for m, ok := rcvs[i].Pop(); ok; m, ok = rcvs[i].Pop() {
			if len(m.Payload) < 8 {
				r.Corrupt++
				continue
			}
			k := binary.BigEndian.Uint64(m.Payload)
			if k >= uint64(c.Messages) {
				r.Corrupt++
				continue
			}
			fill(want, k)
			if string(want) != string(m.Payload) {
				r.Corrupt++
				continue
			}
			if delivered[i][k] {
				r.Duplicates++
				continue
			}
			delivered[i][k] = true
			r.Unique++
			if int64(k) < newest[i] {
				r.OutOfOrder++
			}
			newest[i] = max(newest[i], int64(k))
			r.LatencyMax = max(r.LatencyMax, now-sendAt(int(k)))
		}
	}
	timers := make([]int64, n) // each receiver's next Tick; -1 for none
	arm := func(i int) {
		if at, ok := rcvs[i].NextTimer(); ok {
			timers[i] = at
		} else {
			timers[i] = -1
		}
	}
	for i := range n {
		arm(i)
	}
	var nack packet.Packet
	now := c.Start
	next := 0
	for now <= end {
		for next < c.Messages && sendAt(next) <= now {
			fill(payload, uint64(next))
			err := snd.Send(0, payload, now)
			if errors.Is(err, sender.ErrQueueFull) {
				fromSender(now)
				err = snd.Send(0, payload, now)
			}
			if err != nil {
				return res, fmt.Errorf("sim: send %d: %w", next, err)
			}
			res.Sent++
			next++
		}
		snd.Tick(now)
		fromSender(now)
		for len(events) > 0 && events[0].at <= now {
			e := heap.Pop(&events).(event)
			if e.to < 0 {
				if nack.Parse(e.data[2:]) == nil && nack.Kind == packet.KindNACK {
					res.NACKPackets++
					for _, r := range nack.Ranges {
						res.NACKedSeqs += uint64(r.Len)
					}
				}
				// Feedback carries its receiver's index in two leading
				// bytes (fromReceiverTagged): its source address.
				snd.Handle(e.data[2:], GroupReceiverAddr(int(binary.BigEndian.Uint16(e.data))), now)
				fromSender(now)
				continue
			}
			rcvs[e.to].Handle(e.data, SenderAddr, now)
			rcvs[e.to].Tick(now)
			drainDeliveries(e.to, now)
			fromReceiverTagged(rcvs, e.to, now, delay, c.RevLoss, rng, push)
			arm(e.to)
		}
		for i := range n {
			if timers[i] >= 0 && timers[i] <= now {
				rcvs[i].Tick(now)
				drainDeliveries(i, now)
				fromReceiverTagged(rcvs, i, now, delay, c.RevLoss, rng, push)
				arm(i)
			}
		}
		// The next instant anything has work.
		t := end + 1
		if next < c.Messages {
			t = min(t, sendAt(next))
		}
		if len(events) > 0 {
			t = min(t, events[0].at)
		}
		if at, ok := snd.NextTimer(); ok {
			t = min(t, at)
		}
		for _, at := range timers {
			if at >= 0 {
				t = min(t, at)
			}
		}
		now = max(t, now+1)
	}
	res.SimulatedNanos = now - c.Start
	for i := range n {
		r := &res.Receivers[i]
		for _, ok := range delivered[i] {
			if !ok {
				r.Missed++
			}
		}
		r.Stats = rcvs[i].Stats()
	}
	res.LostUnion = uint64(len(lost))
	res.Sender = snd.Stats()
	res.Retransmits = res.Sender.Retransmits
	return res, nil
}

// fromReceiverTagged puts receiver i's queued feedback on its link to the
// sender, each datagram prefixed with i (two bytes) so that the sender
// sees it come from receiver i's address.
func fromReceiverTagged(rcvs []*receiver.Core, i int, now, delay int64, revLoss float64, rng *rand.Rand, push func(int64, int, []byte)) {
	b := rcvs[i].Outbox().Take()
	if b == nil {
		return
	}
	var tagged []byte
	for _, d := range b.Datagrams() {
		if d.Addr != SenderAddr || rng.Float64() < revLoss {
			continue
		}
		tagged = binary.BigEndian.AppendUint16(tagged[:0], uint16(i))
		tagged = append(tagged, d.Data...)
		push(now+delay, -1, tagged)
	}
	rcvs[i].Outbox().Give(b)
}
