package sim

import (
	"errors"
	"net/netip"
	"time"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
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

	// Late makes receiver i (i < len(Late)) a late joiner: see Join.
	Late []Join

	// Fanout makes the run a unicast fan-out instead of a group: the
	// sender sends every datagram to each receiver's address in turn
	// (sender.NewFanoutCore with all of them), a repair to the receiver
	// that asked alone. SharedLoss must then be 0 and Late empty, and the
	// receivers are not told they are in a group.
	Fanout bool

	Sender sender.Config // sender settings (To, Clock and sockets unused)
	// Receiver is each receiver's configuration. Rand is set per receiver
	// from Seed, and NACKGroupSize, if 0, to Receivers.
	Receiver receiver.Config
}

// Join is a late joiner: it hears the group from message At on (datagrams
// sent to the group before are lost to it; those sent to it alone are
// not) and asks for History sequences sent before
// (receiver.Config.JoinHistory).
type Join struct {
	At, History int
}

// GroupReceiverResult is what one receiver of a group run got.
type GroupReceiverResult struct {
	First                                   int    // the lowest message index delivered
	Unicast                                 uint64 // datagrams the sender sent to this receiver alone
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
	// LostTotal is the number of first transmissions lost, summed over
	// the receivers (a sequence two receivers lost counts twice; a late
	// joiner's counts those sent before it joined): what a unicast
	// fan-out, repairing each receiver on its own, had to repair.
	LostTotal uint64
	// NACKPackets counts the NACK datagrams that reached the sender and
	// NACKedSeqs the sequences they asked for, repeats included.
	NACKPackets, NACKedSeqs uint64
	// Retransmits counts the DATA the sender resent (each went to the
	// whole group once; in a fan-out, to the receiver that asked).
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

// RetransmitsPerLostEach is Retransmits / LostTotal: for a unicast
// fan-out, the retransmissions per first transmission a receiver lost.
func (r GroupResult) RetransmitsPerLostEach() float64 {
	if r.LostTotal == 0 {
		return 0
	}
	return float64(r.Retransmits) / float64(r.LostTotal)
}

// NACKPacketsPerLost is NACKPackets / LostUnion: the NACK datagrams the
// sender got per sequence some receiver lost.
func (r GroupResult) NACKPacketsPerLost() float64 {
	if r.LostUnion == 0 {
		return 0
	}
	return float64(r.NACKPackets) / float64(r.LostUnion)
}

// NACKsPerLost is NACKedSeqs / LostUnion: the sequences requested of the
// sender (one per sequence a NACK names, repeats included) per sequence
// some receiver lost. A NACK packet may name several, so this is at least
// NACKPacketsPerLost when losses come in runs.
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

// RunGroup runs one sender and c.Receivers receivers of a multicast
// group and checks every delivery of every receiver: the engine of Run
// with c.Receivers receivers, each behind links of its own (c.Loss,
// c.Delay; feedback c.RevLoss), past a loss shared by all (c.SharedLoss).
func RunGroup(c GroupConfig) (GroupResult, error) {
	if c.Receivers == 0 {
		c.Receivers = 1
	}
	if c.Receivers < 1 || c.Receivers > 1<<16 || !(c.SharedLoss >= 0 && c.SharedLoss <= 1) ||
		!(c.Loss >= 0 && c.Loss <= 1) || !(c.RevLoss >= 0 && c.RevLoss <= 1) {
		return GroupResult{}, errors.New("sim: Receivers must be in 1..65536 and SharedLoss, Loss and RevLoss in [0, 1]")
	}
	if c.Fanout && (c.SharedLoss != 0 || len(c.Late) > 0) {
		return GroupResult{}, errors.New("sim: a fan-out has no shared loss and no late joiners")
	}
	rc := c.Receiver
	rc.Group = !c.Fanout // the back-off follows the size the sender advertises
	sc := Config{
		Fwd:      netem.Spec{Delay: c.Delay, Loss: netem.LossRandom, LossPercent: 100 * c.Loss},
		Rev:      netem.Spec{Delay: c.Delay, Loss: netem.LossRandom, LossPercent: 100 * c.RevLoss},
		Seed:     int64(c.Seed),
		Messages: c.Messages, Rate: c.Rate, Size: c.Size, Drain: c.Drain, Start: c.Start,
		Sender: c.Sender, Receiver: rc,
	}.withDefaults()
	if sc.Size < 8 || sc.Messages < 0 || sc.Rate <= 0 {
		return GroupResult{}, errors.New("sim: Size must be >= 8, Messages >= 0 and Rate > 0")
	}
	if len(c.Late) > c.Receivers {
		return GroupResult{}, errors.New("sim: more late joiners than receivers")
	}
	top := topology{n: c.Receivers, remote: GroupAddr, addr: GroupReceiverAddr, sharedLoss: c.SharedLoss, shareSeed: c.Seed, late: c.Late}
	if c.Fanout {
		top.remote, top.fanout = netip.AddrPort{}, true
	}
	t, err := run(sc, top)
	res := GroupResult{Sent: t.res.Sent, NACKPackets: t.nackPkts, NACKedSeqs: t.nackedSeqs,
		Sender: t.res.Sender, Retransmits: t.res.Sender.Retransmits, SimulatedNanos: t.res.SimulatedNanos}
	for _, nd := range t.nodes {
		res.Receivers = append(res.Receivers, nd.tally)
	}
	for _, got := range t.originals {
		if got < c.Receivers {
			res.LostUnion++
			res.LostTotal += uint64(c.Receivers - got)
		}
	}
	return res, err
}
