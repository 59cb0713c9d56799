// Package sim runs a real sender core and a real receiver core against
// each other through two simulated links (tools/netem), on a fake clock,
// in one goroutine. Everything is decided by the seed, so a run replays
// exactly, and simulated seconds take milliseconds.
//
// This is the test bed for loss, delay and reordering scenarios: the same
// sender.Core and receiver.Core that run over sockets in production run
// here over netem.Link queues, and every delivered message is checked
// against what was sent.
package sim

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/netem"
)

// Addresses the simulated hosts use. No datagram leaves the process.
var (
	SenderAddr   = netip.MustParseAddrPort("127.0.0.1:40001")
	ReceiverAddr = netip.MustParseAddrPort("127.0.0.1:40002")
)

// Config describes one simulated run. The zero value of each field is its
// default.
type Config struct {
	Fwd, Rev netem.Spec // impairment of sender→receiver and receiver→sender
	Seed     int64      // seeds both links

	Messages int           // messages to send; default 10 000
	Rate     float64       // messages per second; default 1000
	Size     int           // payload bytes, at least 8; default 200
	Drain    time.Duration // simulated time to run after the last send; default 2 s
	Start    int64         // fake clock reading at the start; default 1 s
	FirstSeq uint64        // first sequence number of the stream
	// TailDrop drops the DATA of the last TailDrop messages on the forward
	// link: a loss that no later DATA reveals, only a HEARTBEAT.
	TailDrop int
	// Drop, if set, is asked about every packet the sender puts on the
	// forward link (after decoding it) and drops those it returns true
	// for, before the link's own impairment: exact loss patterns.
	Drop func(p *packet.Packet) bool
	// FwdChanges replaces the forward link's impairment at the given
	// times after the start: packets sent from then on take the new
	// spec (packets already on the link are delivered as scheduled).
	FwdChanges []Change
	// RevChanges does the same for the reverse (feedback) link. A change
	// on both links at the same time, to "loss 100%" and back, is a
	// blackhole.
	RevChanges []Change
	// Observe, if set, is called every ObserveEvery of simulated time with
	// the time since the start and both cores, to sample their state.
	Observe      func(elapsed time.Duration, snd *sender.Core, rcv *receiver.Core)
	ObserveEvery time.Duration
	// Delivered, if set, is called at the first delivery of each message
	// with its index, the delivered message (valid only during the call)
	// and its latency from the send call, ns: per-message checks that the
	// percentiles in Result cannot make.
	Delivered func(index int, m *receiver.Message, latencyNanos int64)
	// RestartSenderAt, if positive, replaces the sender with a new one (new
	// session id, sequences from FirstSeq again) before message
	// RestartSenderAt is sent. RestartReceiverAt likewise replaces the
	// receiver. Messages keep their index, so delivery is still checked.
	RestartSenderAt   int
	RestartReceiverAt int
	// TimerGranularity, if positive, models a runtime whose timers fire
	// late: a core's Tick runs when it has just handled input (as the
	// real loops' reader wakes the writer) or when its timer fires, and a
	// timer armed for a delay d fires after d rounded up to a multiple of
	// TimerGranularity. Go's timers behave so with 1 ms in a process
	// that is otherwise idle (the runtime's poller sleeps in whole
	// milliseconds), which is what a receiver of a slow stream is. Zero
	// ticks both cores at every event, as exact timers would.
	TimerGranularity time.Duration

	Sender   sender.Config   // sender settings (To, Clock and sockets unused)
	Receiver receiver.Config // receiver settings (Listen, Clock and sockets unused)
}

// Change is a new impairment from time At (after the start) on.
type Change struct {
	At   time.Duration
	Spec netem.Spec
}

// Result is what a run measured. Latencies are from the send call to the
// moment the receiver hands the message to the application (so the time
// ordered delivery holds a message behind a gap counts), in simulated
// nanoseconds.
type Result struct {
	Sent            uint64
	Delivered       uint64 // messages handed to the application, duplicates included
	Unique          uint64 // distinct messages delivered
	Duplicates      uint64 // deliveries of a message already delivered
	OutOfOrder      uint64 // deliveries of a message older than one delivered before
	Corrupt         uint64 // deliveries whose payload differs from what was sent (must be 0)
	Missed          []int  // indexes of the messages never delivered
	LatencyP50      int64
	LatencyP99      int64
	LatencyP999     int64
	LatencyMax      int64
	SenderWireBytes uint64         // bytes the sender put on the link, all kinds
	PayloadBytes    uint64         // application bytes sent
	Sender          sender.Stats   // the last sender's
	Receiver        receiver.Stats // the last receiver's
	FwdLink         netem.LinkStats
	RevLink         netem.LinkStats
	// FwdQueued and RevQueued are the copies still on the links when the
	// run ended (sent in its last instants, or held by a long delay).
	FwdQueued, RevQueued int
	SimulatedNanos       int64
}

// Residual returns the fraction of sent messages never delivered.
func (r Result) Residual() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 1 - float64(r.Unique)/float64(r.Sent)
}

// Overhead returns wire bytes per payload byte, minus one.
func (r Result) Overhead() float64 {
	if r.PayloadBytes == 0 {
		return 0
	}
	return float64(r.SenderWireBytes)/float64(r.PayloadBytes) - 1
}

func (c Config) withDefaults() Config {
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

// Run executes the scenario and checks every delivery: the engine of
// RunGroup with one receiver, at ReceiverAddr, which the sender sends to.
func Run(c Config) (Result, error) {
	c = c.withDefaults()
	if c.Size < 8 || c.Messages < 0 || c.Rate <= 0 {
		return Result{}, errors.New("sim: Size must be >= 8, Messages >= 0 and Rate > 0")
	}
	t, err := run(c, topology{n: 1, remote: ReceiverAddr, addr: func(int) netip.AddrPort { return ReceiverAddr }})
	return t.res, err
}

type timed interface{ NextTimer() (int64, bool) }

// coarseTimer is one core's timer under Config.TimerGranularity: when the
// core's Tick next runs. With a zero granularity it is exact: every event
// ticks the core and the core's own NextTimer schedules it.
type coarseTimer struct {
	g     int64 // granularity, ns; 0 = exact
	at    int64 // when the armed timer fires
	armed bool
	woken bool // handled input since the last Tick: tick at once
}

// due reports whether the core should Tick at now: always with exact
// timers, else when it was active (sent, or handled a datagram) at this
// instant or since its last Tick, or when its timer has fired.
func (t *coarseTimer) due(now int64, active bool) bool {
	return t.g == 0 || active || t.woken || (t.armed && now >= t.at)
}

// dueFor is due for a receiver core c: with exact timers it ticks when it
// handled input at this instant or its own timer is due, not at every
// event of the run (a group's receivers would each tick at every event of
// every other).
func (t *coarseTimer) dueFor(now int64, active bool, c timed) bool {
	if t.g != 0 {
		return t.due(now, active)
	}
	at, ok := c.NextTimer()
	return active || ok && at <= now
}

// wake records input handled after this instant's Tick: the core ticks at
// the next step, as a real loop's writer does when the reader wakes it.
func (t *coarseTimer) wake(int64) { t.woken = true }

// arm sets the timer after a Tick at now from the core's next timer: the
// delay is rounded up to a whole number of granules.
func (t *coarseTimer) arm(now int64, c timed) {
	t.woken = false
	at, ok := c.NextTimer()
	t.armed = ok
	if !ok || t.g == 0 {
		t.at = at
		return
	}
	d := max(at-now, 0)
	t.at = now + (d+t.g-1)/t.g*t.g
}

// of returns what nextEvent should consider for the core: its own
// NextTimer with exact timers, else the armed timer (or now, when input
// is waiting for a Tick).
func (t *coarseTimer) of(c timed) timed {
	if t.g == 0 {
		return c
	}
	return coarseTimed{t}
}

type coarseTimed struct{ t *coarseTimer }

func (c coarseTimed) NextTimer() (int64, bool) {
	if c.t.woken {
		return 0, true // nextEvent moves on by one nanosecond
	}
	return c.t.at, c.t.armed
}

// nextEvent returns the earliest time anything has work after now, or
// end+1 when nothing does.
func nextEvent(now, end int64, sending bool, nextSend, nextChange int64, cores []timed, links ...[]*netem.Link) int64 {
	t := end + 1
	consider := func(at int64, ok bool) {
		if ok && at < t {
			t = at
		}
	}
	consider(nextSend, sending)
	consider(nextChange, nextChange >= 0)
	for _, c := range cores {
		consider(c.NextTimer())
	}
	for _, set := range links {
		for _, l := range set {
			consider(l.Next())
		}
	}
	if t <= now {
		t = now + 1 // a timer reported as due must not stall simulated time
	}
	return t
}

// fill writes message i's payload: its index, then bytes derived from it.
func fill(b []byte, i uint64) {
	binary.BigEndian.PutUint64(b, i)
	x := i*0x9e3779b97f4a7c15 + 1
	for j := 8; j < len(b); j++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[j] = byte(x)
	}
}

// linkSet is one direction of the simulated path: the link packets are
// sent on now and the links earlier Changes replaced, which still deliver
// what they hold.
type linkSet struct {
	cur     *netem.Link
	all     []*netem.Link
	changes []Change // not yet applied, in time order
}

func newLinkSet(spec netem.Spec, seed int64, changes []Change) (*linkSet, error) {
	l, err := netem.NewLink(spec, seed)
	if err != nil {
		return nil, err
	}
	return &linkSet{cur: l, all: []*netem.Link{l}, changes: changes}, nil
}

// apply starts a new link for every change due at now (start is the
// simulation's start time). Each new link gets its own seed.
func (s *linkSet) apply(start, now, seed int64) error {
	for len(s.changes) > 0 && start+int64(s.changes[0].At) <= now {
		l, err := netem.NewLink(s.changes[0].Spec, seed+int64(len(s.all)))
		if err != nil {
			return err
		}
		s.cur, s.all, s.changes = l, append(s.all, l), s.changes[1:]
	}
	return nil
}

// stats sums the counters of every link the direction has used, and the
// copies they still hold.
func (s *linkSet) stats() (sum netem.LinkStats, queued int) {
	for _, l := range s.all {
		sum = addLinkStats(sum, l.Stats())
		queued += l.Len()
	}
	return sum, queued
}

// addLinkStats sums two links' counters.
func addLinkStats(a, b netem.LinkStats) netem.LinkStats {
	return netem.LinkStats{
		Enqueued:      a.Enqueued + b.Enqueued,
		Dropped:       a.Dropped + b.Dropped,
		LimitDropped:  a.LimitDropped + b.LimitDropped,
		Duplicated:    a.Duplicated + b.Duplicated,
		Corrupted:     a.Corrupted + b.Corrupted,
		Reordered:     a.Reordered + b.Reordered,
		Delayed:       a.Delayed + b.Delayed,
		Dequeued:      a.Dequeued + b.Dequeued,
		DequeuedBytes: a.DequeuedBytes + b.DequeuedBytes,
	}
}
