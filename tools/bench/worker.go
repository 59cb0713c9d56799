package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/telewire/telewire/tools/netem"
)

// Worker roles. The parent starts one worker process per role and keeps
// it for the whole bench, sending it one case after another.
const (
	RoleRecv  = "recv"  // receiving end: ops listen, drain
	RoleSend  = "send"  // sending end: ops send, close
	RoleRelay = "relay" // userspace impairment: ops relay, relay-stop
)

// Operations of the worker protocol (Request.Op).
const (
	OpListen    = "listen"     // recv: open Transport's receiver, start counting; reply Addr
	OpDrain     = "drain"      // recv: wait for Sent messages (or idleness), close; reply Recv
	OpOpen      = "open"       // send: open a Subscribe transport's sender, listening; reply Addr (the sender's)
	OpSend      = "send"       // send: open Transport's sender to Addr (or take the one opened), send for Duration at Rate; reply Send (sender stays open)
	OpClose     = "close"      // send: close the sender; reply Send with CPU and wire figures
	OpRelay     = "relay"      // relay: start a netem Relay to Addr with Fwd/Rev; reply Addr
	OpRelayStop = "relay-stop" // relay: stop it; reply Relay
)

// Request is one line of JSON the parent writes to a worker's stdin. Each
// request is answered by exactly one Reply line on the worker's stdout.
type Request struct {
	Op        string `json:"op"`
	Transport string `json:"transport,omitempty"`
	// Addr is where to send (send), or where the relay forwards to (relay).
	Addr string `json:"addr,omitempty"`
	// Rate is the offered load in messages per second; 0 = as fast as the
	// transport takes them.
	Rate          float64 `json:"rate,omitempty"`
	DurationNanos int64   `json:"duration_ns,omitempty"`
	// WarmupNanos is sent at Rate before the measured messages, with
	// WarmupBit set in their sequence numbers.
	WarmupNanos int64 `json:"warmup_ns,omitempty"`
	// MaxMessages bounds the sequence numbers of a case: the sender stops
	// there and the receiver's SeqSet is this large.
	MaxMessages uint64 `json:"max_messages,omitempty"`
	// Sent is the number of messages the receiver should expect (drain).
	Sent uint64 `json:"sent,omitempty"`
	// IdleNanos ends a drain after this long without a delivery;
	// MaxWaitNanos ends it regardless.
	IdleNanos    int64 `json:"idle_ns,omitempty"`
	MaxWaitNanos int64 `json:"max_wait_ns,omitempty"`
	// Fwd and Rev are netem specs of the relay's two directions.
	Fwd  string `json:"fwd,omitempty"`
	Rev  string `json:"rev,omitempty"`
	Seed int64  `json:"seed,omitempty"`
	// Size is the message size in bytes (send, and listen to size the
	// receiver); 0 = MessageSize.
	Size int `json:"size,omitempty"`
}

// Reply is a worker's answer to one Request. Err is set when the request
// failed; the worker keeps serving.
type Reply struct {
	Err   string       `json:"err,omitempty"`
	Addr  string       `json:"addr,omitempty"`
	Send  *SendResult  `json:"send,omitempty"`
	Recv  *RecvResult  `json:"recv,omitempty"`
	Relay *RelayResult `json:"relay,omitempty"`
}

// SendResult is what the sending worker measured. Times are Nanotime
// readings (CLOCK_MONOTONIC, comparable with the receiver's).
type SendResult struct {
	Sent       uint64 `json:"sent"`
	StartNanos int64  `json:"start_ns"` // first message stamped
	EndNanos   int64  `json:"end_ns"`   // last message handed to the transport
	SendErrors uint64 `json:"send_errors"`
	FirstError string `json:"first_error,omitempty"`
	// Filled by close: CPU time of the worker process from the end of
	// the warm-up to after the sender was closed, and what it wrote.
	CPUNanos      int64             `json:"cpu_ns"` // from the end of the warm-up to the close
	WireBytes     uint64            `json:"wire_bytes"`
	WireDatagrams uint64            `json:"wire_datagrams"`
	Counters      map[string]uint64 `json:"counters,omitempty"`
	// HalfRTT is set by a RoundTripper transport (raw-pingpong): half of
	// each measured message's round trip, which is then the case's
	// latency.
	HalfRTT *LatencySummary `json:"half_rtt,omitempty"`
	// Mem is the sending process's memory from the end of the warm-up to
	// just before the sender was closed.
	Mem MemSummary `json:"mem"`
}

// RecvResult is what the receiving worker measured.
type RecvResult struct {
	Delivered  uint64 `json:"delivered"`  // distinct messages
	Duplicates uint64 `json:"duplicates"` // repeated sequence numbers
	Invalid    uint64 `json:"invalid"`    // not bench messages, or beyond MaxMessages
	Warmup     uint64 `json:"warmup"`     // warm-up messages delivered (not counted elsewhere)
	FirstNanos int64  `json:"first_ns"`   // first delivery
	LastNanos  int64  `json:"last_ns"`    // last delivery
	// Latency is the one-way delivery latency, from the sender's stamp
	// just before Send to the receiver's clock reading just after Next.
	Latency  LatencySummary    `json:"latency"`
	CPUNanos int64             `json:"cpu_ns"` // worker CPU from the first measured delivery to the end of drain
	Counters map[string]uint64 `json:"counters,omitempty"`
	// Mem is the receiving process's memory from the first measured
	// delivery to the end of the drain, before the receiver was closed.
	Mem MemSummary `json:"mem"`
	// Receivers is how many receiving ends the case had (fan-out). With
	// more than one, Delivered, FirstNanos, LastNanos, Latency and
	// Counters are those of the median receiver (by delivered messages
	// per second), and PerReceiver lists every one.
	Receivers   int                `json:"receivers,omitempty"`
	PerReceiver []ReceiverDelivery `json:"per_receiver,omitempty"`
}

// ReceiverDelivery is what one receiving end of a fan-out case delivered.
type ReceiverDelivery struct {
	Delivered  uint64 `json:"delivered"`
	FirstNanos int64  `json:"first_ns"`
	LastNanos  int64  `json:"last_ns"`
}

// RelayResult is the impairment relay's count of each direction.
type RelayResult struct {
	Fwd netem.DirStats `json:"fwd"`
	Rev netem.DirStats `json:"rev"`
	// Mem is the relay process's memory from the start to the stop of
	// the relay.
	Mem MemSummary `json:"mem"`
}

// ErrProtocol reports a request a worker cannot serve: an unknown op or
// transport, an op of another role, or one out of order.
var ErrProtocol = errors.New("bench: worker protocol")

// maxRequestLine bounds a request line; real ones are a few hundred bytes.
const maxRequestLine = 64 << 10

// Serve runs a worker of the given role: it reads Requests line by line
// from in and writes one Reply per request to out, until in ends or ctx is
// done. It returns nil at the end of in. transports are the transports it
// can open, looked up by name.
func Serve(ctx context.Context, role string, transports []Transport, in io.Reader, out io.Writer) error {
	w := &worker{ctx: ctx, role: role, transports: transports}
	switch role {
	case RoleRecv, RoleSend, RoleRelay:
	default:
		return fmt.Errorf("%w: unknown role %q", ErrProtocol, role)
	}
	defer w.shutdown()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 4096), maxRequestLine)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var req Request
		var rep Reply
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			rep.Err = fmt.Sprintf("%v: bad request: %v", ErrProtocol, err)
		} else if err := w.handle(&req, &rep); err != nil {
			rep = Reply{Err: err.Error()}
		}
		if err := enc.Encode(&rep); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return sc.Err()
}

type worker struct {
	ctx        context.Context
	role       string
	transports []Transport

	colls  []*collector // recv: one per receiving end
	cpu0   int64
	snd    Sender // send
	opened string // send: the transport whose sender open opened and send has not taken yet
	sndRes SendResult
	sndMem *memWatch
	relay  *relayRun // relay
}

func (w *worker) transport(name string) (Transport, error) {
	for _, t := range w.transports {
		if t.Name == name {
			return t, nil
		}
	}
	return Transport{}, fmt.Errorf("%w: unknown transport %q", ErrProtocol, name)
}

func (w *worker) handle(req *Request, rep *Reply) error {
	roleOf := map[string]string{
		OpListen: RoleRecv, OpDrain: RoleRecv, OpOpen: RoleSend, OpSend: RoleSend, OpClose: RoleSend,
		OpRelay: RoleRelay, OpRelayStop: RoleRelay,
	}
	if r, ok := roleOf[req.Op]; !ok || r != w.role {
		return fmt.Errorf("%w: op %q on a %s worker", ErrProtocol, req.Op, w.role)
	}
	switch req.Op {
	case OpListen:
		return w.listen(req, rep)
	case OpDrain:
		return w.drain(req, rep)
	case OpOpen:
		return w.open(req, rep)
	case OpSend:
		return w.send(req, rep)
	case OpClose:
		return w.closeSender(rep)
	case OpRelay:
		return w.startRelay(req, rep)
	default: // OpRelayStop
		return w.stopRelay(rep)
	}
}

// shutdown releases whatever a case left open (the parent went away).
func (w *worker) shutdown() {
	for i, c := range w.colls {
		if i == 0 {
			c.mem.finish()
		}
		c.r.Close()
		<-c.done
	}
	if w.sndMem != nil {
		w.sndMem.finish()
	}
	if w.snd != nil {
		w.snd.Close()
	}
	if w.relay != nil {
		w.relay.stop()
	}
}

// ---- recv ----

// collector counts what a Receiver delivers, on its own goroutine.
type collector struct {
	r    Receiver
	set  *SeqSet
	hist Histogram // owned by the goroutine until done is closed
	mem  *memWatch

	delivered, duplicates, invalid, warmup atomic.Uint64
	first, last, cpu0                      atomic.Int64
	done                                   chan struct{}
}

// runBare is the receive loop of a Bare transport: it counts datagrams,
// batch by batch, until the Receiver is closed.
func (c *collector) runBare(bc BatchCounter) {
	defer close(c.done)
	for {
		n, err := bc.NextBatch()
		if err != nil {
			return
		}
		now := Nanotime()
		if c.delivered.Add(uint64(n)) == uint64(n) {
			c.first.Store(now)
			cpu, _ := ProcessCPUNanos()
			c.cpu0.Store(cpu)
		}
		c.last.Store(now)
	}
}

// run is the receive loop: it hands every message to take until the
// Receiver is closed.
func (c *collector) run() {
	defer close(c.done)
	for {
		msg, err := c.r.Next()
		if err != nil {
			return
		}
		c.take(msg, Nanotime())
	}
}

// take accounts for one delivered message read at now. It does not
// allocate.
func (c *collector) take(msg []byte, now int64) {
	seq, sent, err := ParseStamp(msg)
	switch {
	case err != nil:
		c.invalid.Add(1)
		return
	case seq&WarmupBit != 0:
		c.warmup.Add(1)
		return
	}
	isNew, ok := c.set.Add(seq)
	switch {
	case !ok:
		c.invalid.Add(1)
	case !isNew:
		c.duplicates.Add(1)
	default:
		c.hist.Record(now - sent)
		if c.delivered.Add(1) == 1 {
			c.first.Store(now)
			cpu, _ := ProcessCPUNanos()
			c.cpu0.Store(cpu)
		}
		c.last.Store(now)
	}
}

func (w *worker) listen(req *Request, rep *Reply) error {
	if w.colls != nil {
		return fmt.Errorf("%w: listen while a receiver is open", ErrProtocol)
	}
	t, err := w.transport(req.Transport)
	if err != nil {
		return err
	}
	n := max(t.Receivers, 1)
	if req.MaxMessages == 0 || req.MaxMessages > maxMessagesCap || req.MaxMessages*uint64(n) > 8*maxMessagesCap {
		return fmt.Errorf("%w: max_messages %d (× %d receivers) outside 1..%d", ErrProtocol, req.MaxMessages, n, uint64(maxMessagesCap))
	}
	if t.External != nil || t.Listen == nil {
		return fmt.Errorf("%w: %s has no worker receiver", ErrProtocol, t.Name)
	}
	debug.FreeOSMemory() // the last case's garbage (and RSS) is not this case's cost
	addr := t.ListenAddr
	switch {
	case t.Subscribe && req.Addr == "":
		return fmt.Errorf("%w: %s needs the sender's address to subscribe to", ErrProtocol, t.Name)
	case t.Subscribe:
		addr = req.Addr
	case addr == "":
		addr = "127.0.0.1:0"
	}
	var addrs []string
	for i := range n {
		r, err := t.Listen(withSize(w.ctx, req.Size), addr)
		if err != nil {
			w.closeColls()
			return err
		}
		bc, ok := r.(BatchCounter)
		if t.Bare && !ok {
			r.Close()
			w.closeColls()
			return fmt.Errorf("%w: %s cannot count batches on this platform", ErrProtocol, t.Name)
		}
		c := &collector{r: r, done: make(chan struct{})}
		if i == 0 { // the process's memory, sampled once
			c.mem = watchMem(memInterval, func() bool { return c.delivered.Load() > 0 })
		}
		w.colls = append(w.colls, c)
		if t.Bare {
			go c.runBare(bc)
		} else {
			c.set = NewSeqSet(req.MaxMessages)
			go c.run()
		}
		ra := r.Addr()
		if t.SharedAddr {
			// A group member reports the port it bound on the wildcard
			// address: the others join the same group and port.
			host, _, err1 := net.SplitHostPort(addr)
			_, port, err2 := net.SplitHostPort(ra)
			if err := errors.Join(err1, err2); err != nil {
				w.closeColls()
				return fmt.Errorf("%w: shared address of %s: %v", ErrProtocol, t.Name, err)
			}
			ra = net.JoinHostPort(host, port)
			addr = ra
		}
		addrs = append(addrs, ra)
	}
	rep.Addr = strings.Join(addrs, ",")
	if t.SharedAddr {
		rep.Addr = addrs[0]
	}
	return nil
}

// closeColls closes the receivers a failed listen opened.
func (w *worker) closeColls() {
	for i, c := range w.colls {
		if i == 0 {
			c.mem.finish()
		}
		c.r.Close()
		<-c.done
	}
	w.colls = nil
}

// maxMessagesCap bounds a case's SeqSet (16 MiB of bits).
const maxMessagesCap = 1 << 27

func (w *worker) drain(req *Request, rep *Reply) error {
	cs := w.colls
	if cs == nil {
		return fmt.Errorf("%w: drain without listen", ErrProtocol)
	}
	w.colls = nil
	idle := max(req.IdleNanos, int64(10*time.Millisecond))
	maxWait := max(req.MaxWaitNanos, idle)
	start := Nanotime()
	tick := time.NewTicker(2 * time.Millisecond)
	// The drain ends when every receiving end has everything, or none has
	// delivered anything for idle, or after maxWait.
	for running := true; running; {
		select {
		case <-w.ctx.Done():
			running = false
		case <-cs[0].done:
			running = false
		case <-tick.C:
			now := Nanotime()
			last, all := start, true
			for _, c := range cs {
				last = max(last, c.last.Load())
				all = all && c.delivered.Load() >= req.Sent
			}
			running = !all && now-last < idle && now-start < maxWait
		}
	}
	tick.Stop()
	mem := cs[0].mem.finish()
	var closeErr error
	for _, c := range cs {
		closeErr = errors.Join(closeErr, c.r.Close())
	}
	for _, c := range cs {
		<-c.done
	}
	cpu1, _ := ProcessCPUNanos()
	// The median receiver by delivered messages per second (over the span
	// from the first delivery of any of them to its own last) stands for
	// the case; with one receiver that is the one.
	var first int64
	for _, c := range cs {
		if f := c.first.Load(); f != 0 && (first == 0 || f < first) {
			first = f
		}
	}
	rate := func(c *collector) float64 {
		d := c.delivered.Load()
		if d == 0 {
			return 0
		}
		return float64(d) / float64(max(c.last.Load()-first, 1))
	}
	order := slices.Clone(cs)
	slices.SortStableFunc(order, func(a, b *collector) int { return cmp.Compare(rate(a), rate(b)) })
	c := order[len(order)/2]
	rep.Recv = &RecvResult{
		Delivered: c.delivered.Load(), Duplicates: c.duplicates.Load(), Invalid: c.invalid.Load(), Warmup: c.warmup.Load(),
		FirstNanos: c.first.Load(), LastNanos: c.last.Load(),
		Latency: c.hist.Summary(), Counters: c.r.Counters(), Mem: mem,
	}
	var cpu0 int64
	for _, c := range cs {
		if c0 := c.cpu0.Load(); c0 != 0 && (cpu0 == 0 || c0 < cpu0) {
			cpu0 = c0
		}
	}
	if rep.Recv.Delivered > 0 && cpu0 != 0 {
		rep.Recv.CPUNanos = cpu1 - cpu0
	}
	if len(cs) > 1 {
		rep.Recv.Receivers = len(cs)
		for _, c := range cs {
			rep.Recv.PerReceiver = append(rep.Recv.PerReceiver,
				ReceiverDelivery{Delivered: c.delivered.Load(), FirstNanos: c.first.Load(), LastNanos: c.last.Load()})
		}
	}
	if closeErr != nil && !errors.Is(closeErr, context.Canceled) {
		rep.Err = fmt.Sprintf("closing receiver: %v", closeErr)
	}
	return nil
}

// ---- send ----

// Subscribable is the Sender of a Subscribe transport: it listens for
// subscribers instead of sending to a given address.
type Subscribable interface {
	// Addr is the address receivers subscribe to.
	Addr() string
	// Subscribed returns how many receivers are subscribed now.
	Subscribed() int
}

// JoinWait bounds how long the sending worker waits for a Subscribe
// transport's receivers to join before it gives the case up. A
// subscriber that misses its first answer asks again after 100 ms,
// doubling, so a second is several retries.
const JoinWait = 5 * time.Second

// open opens a Subscribe transport's sender ahead of its receivers, for
// send to take.
func (w *worker) open(req *Request, rep *Reply) error {
	if w.snd != nil {
		return fmt.Errorf("%w: open while a sender is open", ErrProtocol)
	}
	t, err := w.transport(req.Transport)
	if err != nil {
		return err
	}
	if !t.Subscribe || t.Dial == nil {
		return fmt.Errorf("%w: %s takes no subscribers", ErrProtocol, t.Name)
	}
	addr := t.ListenAddr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	runtime.GC()
	s, err := t.Dial(withSize(w.ctx, req.Size), addr)
	if err != nil {
		return err
	}
	sub, ok := s.(Subscribable)
	if !ok {
		s.Close()
		return fmt.Errorf("%w: %s's sender takes no subscribers", ErrProtocol, t.Name)
	}
	w.snd, w.opened = s, t.Name
	rep.Addr = sub.Addr()
	return nil
}

// awaitJoins waits until n receivers have subscribed to s, up to
// JoinWait.
func (w *worker) awaitJoins(s Subscribable, n int) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(JoinWait)
	for s.Subscribed() < n {
		select {
		case <-w.ctx.Done():
			return w.ctx.Err()
		case now := <-tick.C:
			if now.After(deadline) {
				return fmt.Errorf("bench: %d of %d receivers subscribed after %v", s.Subscribed(), n, JoinWait)
			}
		}
	}
	return nil
}

func (w *worker) send(req *Request, rep *Reply) error {
	opened := w.opened
	w.opened = ""
	if w.snd != nil && opened != req.Transport {
		return fmt.Errorf("%w: send while a sender is open", ErrProtocol)
	}
	t, err := w.transport(req.Transport)
	if err != nil {
		return err
	}
	if req.DurationNanos <= 0 || req.WarmupNanos < 0 || req.MaxMessages == 0 || req.Rate < 0 {
		return fmt.Errorf("%w: send needs a positive duration and max_messages, warm-up and rate >= 0", ErrProtocol)
	}
	if t.Subscribe != (opened != "") {
		return fmt.Errorf("%w: %s: send without open, or open for a transport that takes no subscribers", ErrProtocol, t.Name)
	}
	s := w.snd
	if s == nil {
		runtime.GC()
		if s, err = t.Dial(withSize(w.ctx, req.Size), req.Addr); err != nil {
			return err
		}
		w.snd = s
	} else if err := w.awaitJoins(s.(Subscribable), max(t.Receivers, 1)); err != nil {
		return err
	}
	if req.Size != 0 && (req.Size < StampLen || req.Size > MaxSize) {
		return fmt.Errorf("%w: size %d outside %d..%d", ErrProtocol, req.Size, StampLen, MaxSize)
	}
	msg := newMessage(req.Size)
	if t.Bare {
		b, ok := s.(Blaster)
		if !ok {
			return fmt.Errorf("%w: %s cannot blast on this platform", ErrProtocol, t.Name)
		}
		if req.Rate != 0 {
			return fmt.Errorf("%w: %s runs at full speed only", ErrProtocol, t.Name)
		}
		// No warm-up: the receiver could not tell it from the measured part.
		w.cpu0, _ = ProcessCPUNanos()
		w.sndMem = watchMem(memInterval, nil)
		start := Nanotime()
		sent, err := b.Blast(w.ctx, msg, start+req.DurationNanos, req.MaxMessages)
		w.sndRes = SendResult{Sent: sent, StartNanos: start, EndNanos: Nanotime()}
		if err != nil {
			w.sndRes.SendErrors, w.sndRes.FirstError = 1, err.Error()
		}
		res := w.sndRes
		rep.Send = &res
		return nil
	}
	p := newPacer()
	defer p.stop()
	var stalled atomic.Bool
	if u, ok := s.(unblocker); ok {
		// A Send still blocked stallGrace after the case's end is
		// unblocked by closing the sender: the case fails, the bench
		// goes on.
		t := time.AfterFunc(time.Duration(req.WarmupNanos+req.DurationNanos)+stallGrace, func() {
			stalled.Store(true)
			u.unblockSend()
		})
		defer t.Stop()
	}
	if req.WarmupNanos > 0 {
		pump(w.ctx, s, p, msg, req.Rate, req.WarmupNanos, req.MaxMessages, WarmupBit)
	}
	w.cpu0, _ = ProcessCPUNanos()
	w.sndMem = watchMem(memInterval, nil)
	w.sndRes = pump(w.ctx, s, p, msg, req.Rate, req.DurationNanos, req.MaxMessages, 0)
	if stalled.Load() {
		return fmt.Errorf("%w: Send blocked more than %v past the case's end (%d messages sent); the sender was closed", ErrStalled, stallGrace, w.sndRes.Sent)
	}
	res := w.sndRes
	rep.Send = &res
	return nil
}

// stallGrace is how long past a case's end the sending worker lets a
// Send block before it closes the sender (see ErrStalled); tests shorten
// it.
var stallGrace = 10 * time.Second

// ErrStalled reports a case whose sender blocked in Send for 10 s past
// the case's end, so that the worker closed it. It fails that case
// only.
var ErrStalled = errors.New("bench: sender stalled")

// unblocker is a Sender whose Send, blocked in another goroutine, returns
// when unblockSend is called (telewire's, by closing).
type unblocker interface {
	unblockSend()
}

// maxBurst is how many messages the sending loop hands over between
// clock readings at full speed: one raw batch.
const maxBurst = RawBatchSize

// newMessage returns a message buffer of size bytes (0: MessageSize)
// with its filler written.
func newMessage(size int) []byte {
	if size == 0 {
		size = MessageSize
	}
	msg := make([]byte, size)
	for i := StampLen; i < len(msg); i++ {
		msg[i] = byte(i)
	}
	return msg
}

// pump sends messages stamped with sequence numbers seqBase|0, 1, 2, …
// through s for durationNanos: as fast as s takes them when rate is 0,
// else paced at rate messages per second from the start (a late sender
// catches up, in bursts of at most maxBurst). It stops early after
// maxMessages. It does not allocate per message.
func pump(ctx context.Context, s Sender, p pacer, msg []byte, rate float64, durationNanos int64, maxMessages, seqBase uint64) SendResult {
	var res SendResult
	fail := func(err error) {
		if err != nil {
			if res.SendErrors == 0 {
				res.FirstError = err.Error()
			}
			res.SendErrors++
		}
	}
	start := Nanotime()
	end := start + durationNanos
	res.StartNanos = start
	for res.Sent < maxMessages && ctx.Err() == nil {
		now := Nanotime()
		if now >= end {
			break
		}
		due := uint64(maxBurst)
		if rate > 0 {
			target := uint64(float64(now-start)*rate/1e9) + 1 // message 0 is due at start
			if target <= res.Sent {
				next := start + int64(float64(res.Sent)*1e9/rate)
				p.sleep(min(next, end) - now)
				continue
			}
			due = min(target-res.Sent, maxBurst)
		}
		due = min(due, maxMessages-res.Sent)
		for range due {
			PutStamp(msg, seqBase|res.Sent, Nanotime())
			fail(s.Send(msg))
			res.Sent++
		}
		fail(s.Flush())
	}
	res.EndNanos = Nanotime()
	return res
}

func (w *worker) closeSender(rep *Reply) error {
	if w.snd == nil {
		return fmt.Errorf("%w: close without send", ErrProtocol)
	}
	s := w.snd
	w.snd, w.opened = nil, ""
	var mem MemSummary
	if w.sndMem != nil { // nil when send failed before the warm-up ended
		mem = w.sndMem.finish()
		w.sndMem = nil
	}
	err := s.Close()
	cpu1, _ := ProcessCPUNanos()
	res := w.sndRes
	res.CPUNanos = cpu1 - w.cpu0
	res.WireBytes, res.WireDatagrams, res.Counters = s.Wire()
	res.Mem = mem
	if rt, ok := s.(RoundTripper); ok {
		h := rt.HalfRTT()
		res.HalfRTT = &h
	}
	rep.Send = &res
	if err != nil {
		rep.Err = fmt.Sprintf("closing sender: %v", err)
	}
	return nil
}

// ---- relay ----

type relayRun struct {
	r      *netem.Relay
	cancel context.CancelFunc
	done   chan error
	mem    *memWatch
}

func (r *relayRun) stop() (MemSummary, error) {
	mem := r.mem.finish()
	r.cancel()
	return mem, <-r.done
}

func (w *worker) startRelay(req *Request, rep *Reply) error {
	if w.relay != nil {
		return fmt.Errorf("%w: relay already running", ErrProtocol)
	}
	fwd, err := netem.ParseSpec(req.Fwd)
	if err != nil {
		return fmt.Errorf("fwd: %w", err)
	}
	rev, err := netem.ParseSpec(req.Rev)
	if err != nil {
		return fmt.Errorf("rev: %w", err)
	}
	r, err := netem.NewRelay(netem.RelayConfig{Listen: "127.0.0.1:0", To: req.Addr, Fwd: fwd, Rev: rev, Seed: req.Seed})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(w.ctx)
	run := &relayRun{r: r, cancel: cancel, done: make(chan error, 1), mem: watchMem(memInterval, nil)}
	go func() { run.done <- r.Run(ctx) }()
	w.relay = run
	rep.Addr = r.Addr().String()
	return nil
}

func (w *worker) stopRelay(rep *Reply) error {
	if w.relay == nil {
		return fmt.Errorf("%w: relay-stop without relay", ErrProtocol)
	}
	run := w.relay
	w.relay = nil
	mem, err := run.stop()
	st := run.r.Stats()
	rep.Relay = &RelayResult{Fwd: st.Fwd, Rev: st.Rev, Mem: mem}
	return err
}
