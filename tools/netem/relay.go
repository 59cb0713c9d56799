package netem

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/internal/clock"
	"github.com/telewire/telewire/internal/udpio"
)

// Relay defaults.
const (
	DefaultMaxClients    = 16
	DefaultIdleTimeout   = 30 * time.Second
	DefaultMaxQueueBytes = 4 << 20
	maxDatagram          = 64 << 10
)

// ErrRelayConfig is wrapped by NewRelay's errors for an unusable config.
var ErrRelayConfig = errors.New("netem: bad relay config")

// RelayConfig configures a Relay. The zero value of each optional field is
// its default.
type RelayConfig struct {
	// Listen is the UDP address clients send to, e.g. "127.0.0.1:0".
	Listen string
	// To is the UDP address datagrams are forwarded to.
	To string
	// Fwd impairs client → To; Rev impairs replies To → client.
	Fwd, Rev Spec
	// Seed seeds every client's links (mixed with the client's number and
	// the direction), so a run with the same clients in the same order
	// makes the same decisions.
	Seed int64
	// MaxClients bounds the clients served at once (default 16);
	// datagrams from further clients are dropped and counted.
	MaxClients int
	// IdleTimeout expires a client with no traffic either way for that
	// long (default 30s).
	IdleTimeout time.Duration
	// MaxQueueBytes caps the bytes queued per client and direction
	// (default 4 MiB), on top of the specs' packet limits.
	MaxQueueBytes int
	// NoGSO makes the relay write every datagram with a send of its own
	// (in sendmmsg batches). By default runs of equal-sized datagrams to
	// one address leave as one UDP GSO send where the kernel supports it
	// (detected at run time, with a fallback): loss, delay and reordering
	// are decided per datagram before the write, so this changes no
	// impairment, and the kernel splits the run again for a receiver
	// without GRO. It lets the relay carry several times the datagrams
	// per second on the same CPU, so that at full speed the link, not
	// the relay's syscalls, is what a transport is measured against.
	NoGSO bool
	// Logger receives rare events (client added/expired, socket errors);
	// default zerolog.Nop().
	Logger *zerolog.Logger
}

// DirStats counts one direction of a Relay, summed over its clients.
type DirStats struct {
	Received   uint64 // datagrams read from the socket
	Forwarded  uint64 // datagrams written out after impairment
	Dropped    uint64 // lost by the loss model, or dropped by a full queue
	Delayed    uint64
	Reordered  uint64
	Duplicated uint64
	Corrupted  uint64
	WriteErrs  uint64 // datagrams whose write failed

	// LimitDropped counts the datagrams of Dropped that a full queue
	// dropped (the spec's limit or rate, or MaxQueueBytes) rather than the
	// loss model: with a spec that has no rate, a sign that the relay's
	// deliveries fell behind what arrived.
	LimitDropped uint64

	// KernelDrops counts datagrams the kernel dropped because the relay's
	// receive socket for this direction was full (Linux SO_RXQ_OVFL; 0
	// elsewhere): for Fwd the listen socket, shared by every client; for
	// Rev the clients' upstream sockets. Such drops are the relay failing
	// to keep up, not part of the emulated link. It is as fresh as the
	// last datagram read on that socket.
	KernelDrops uint64
}

// RelayStats is a snapshot of a Relay's counters.
type RelayStats struct {
	Fwd, Rev DirStats
	Clients  int    // clients currently served
	Rejected uint64 // datagrams dropped because MaxClients were served
	// Stray counts datagrams dropped on an upstream socket because they
	// came from an address other than To.
	Stray uint64
}

// Relay is a UDP impairment proxy: datagrams sent to its listen address
// are forwarded to To through an emulated link (Fwd), from one upstream
// socket per client, and replies arriving on that socket from To are
// returned to the client through a second link (Rev); datagrams from
// other addresses are dropped and counted in RelayStats.Stray. Delivery
// is driven by one timer per link direction, so a packet leaves at its
// scheduled time without a sleep per packet.
//
// So that the relay itself is not the bottleneck of what it emulates,
// every socket asks for RelaySocketBuffer bytes of kernel buffer each way,
// reads with recvmmsg (splitting GRO-coalesced reads) and writes with
// sendmmsg, through internal/udpio: a deliverer that wakes takes every
// datagram then due, 32 at a time, and writes each 32 with one call.
// Runs of equal-sized datagrams to one address leave as one UDP GSO send
// (unless RelayConfig.NoGSO); the receiving kernel splits them again, so
// every datagram arrives as a datagram of its own, as it was sent.
// Forwarding allocates nothing per datagram. When
// deliveries still fall behind, the links' queues fill and drop (counted
// in DirStats.LimitDropped), and past them the kernel buffers
// (DirStats.KernelDrops).
//
// Memory: the listen socket holds 2 MiB of receive batches (32 buffers of
// 64 KiB, the size a GRO read needs), and each client as much again for
// its upstream socket plus 256 KiB for its two deliverers, besides what
// its links queue (bounded by the Specs' limits and MaxQueueBytes);
// MaxClients bounds the clients.
//
// Methods are safe for concurrent use.
type Relay struct {
	cfg  RelayConfig
	log  zerolog.Logger
	conn *udpio.Conn
	to   netip.AddrPort // unmapped, as udpio reports sources
	clk  *clock.Mono

	// wmu serialises the writes on conn, which every client's Rev
	// deliverer makes (a udpio.Conn takes one writer at a time). It is
	// held across the send call; only those deliverers take it.
	wmu sync.Mutex

	mu       sync.Mutex
	clients  map[netip.AddrPort]*relayClient
	nextID   int64
	retired  [2]DirStats // counts of expired clients
	rejected atomic.Uint64
	stray    atomic.Uint64
	running  atomic.Bool
	wg       sync.WaitGroup

	lateMu sync.Mutex
	late   []int64 // |actual - scheduled| samples in ns, ring buffer
	lateN  int
}

const lateSamples = 4096

// RelaySocketBuffer is the kernel buffer size, in bytes, that a Relay
// requests for receiving and for sending on each of its sockets (the
// listen socket and every upstream socket). Where net.core.rmem_max or
// wmem_max is lower the kernel grants that instead, unless the process
// may override it (CAP_NET_ADMIN).
const RelaySocketBuffer = 4 << 20

// relayBatch is the most datagrams a deliverer writes with one WriteBatch,
// and the batch size of every relay socket. relayArena is the bytes a
// deliverer copies one batch into: at least one largest datagram, so a
// batch always takes its first datagram.
const (
	relayBatch = 32
	relayArena = 2 * maxDatagram
)

// relaySocket wraps uc as a relay socket: large buffers, batched I/O,
// GSO on writes unless noGSO.
func relaySocket(uc *net.UDPConn, noGSO bool) (*udpio.Conn, error) {
	return udpio.New(uc, udpio.Config{
		BatchSize:        relayBatch,
		ReadBufferBytes:  RelaySocketBuffer,
		WriteBufferBytes: RelaySocketBuffer,
		NoGSO:            noGSO,
	})
}

// NewRelay binds the listen socket and resolves To. Run starts the relay.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if err := cfg.Fwd.Validate(); err != nil {
		return nil, fmt.Errorf("%w: Fwd: %w", ErrRelayConfig, err)
	}
	if err := cfg.Rev.Validate(); err != nil {
		return nil, fmt.Errorf("%w: Rev: %w", ErrRelayConfig, err)
	}
	if cfg.MaxClients < 0 || cfg.IdleTimeout < 0 || cfg.MaxQueueBytes < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrRelayConfig)
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxQueueBytes == 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	log := zerolog.Nop()
	if cfg.Logger != nil {
		log = *cfg.Logger
	}
	to, err := net.ResolveUDPAddr("udp", cfg.To)
	if err != nil {
		return nil, fmt.Errorf("%w: To: %w", ErrRelayConfig, err)
	}
	toAP := to.AddrPort()
	toIP := toAP.Addr().Unmap()
	switch {
	case !toIP.IsValid() || toIP == netip.IPv4Unspecified():
		// no host: this host, as net.DialUDP takes it
		toIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case toIP.IsUnspecified():
		toIP = netip.IPv6Loopback()
	}
	if toAP.Port() == 0 {
		return nil, fmt.Errorf("%w: To %q: no port", ErrRelayConfig, cfg.To)
	}
	toAP = netip.AddrPortFrom(toIP, toAP.Port())
	la, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: Listen: %w", ErrRelayConfig, err)
	}
	uc, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, err
	}
	conn, err := relaySocket(uc, cfg.NoGSO)
	if err != nil {
		return nil, err
	}
	return &Relay{
		cfg: cfg, log: log, conn: conn, to: toAP, clk: clock.NewMono(),
		clients: make(map[netip.AddrPort]*relayClient),
		late:    make([]int64, lateSamples),
	}, nil
}

// Addr returns the bound listen address.
func (r *Relay) Addr() netip.AddrPort { return r.conn.LocalAddr() }

// Run serves until ctx is cancelled, then closes every socket, waits for
// all its goroutines and returns nil (or the listen socket's error if it
// failed first). Packets still queued are discarded. Run may be called
// once.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("netem: Relay.Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readErr := make(chan error, 1)
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		readErr <- r.readClients(ctx)
		cancel()
	}()
	go func() {
		defer r.wg.Done()
		r.expireLoop(ctx)
	}()
	<-ctx.Done()
	r.conn.Close()
	r.mu.Lock()
	for _, c := range r.clients {
		c.stop()
	}
	r.mu.Unlock()
	r.wg.Wait()
	if err := <-readErr; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// readClients reads datagrams from clients and feeds their Fwd links, each
// run of consecutive datagrams from one client with one lock of its link.
func (r *Relay) readClients(ctx context.Context) error {
	var last *relayClient // the client of the previous run, if still served
	for {
		dgs, err := r.conn.Read()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		now := r.clk.Now()
		for len(dgs) > 0 {
			from := dgs[0].Addr
			n := 1
			for n < len(dgs) && dgs[n].Addr == from {
				n++
			}
			c := last
			if c == nil || c.addr != from || c.stopped.Load() {
				c = r.client(ctx, from)
				last = c
			}
			if c == nil {
				r.rejected.Add(uint64(n))
			} else {
				c.dir[0].enqueue(now, dgs[:n])
			}
			dgs = dgs[n:]
		}
	}
}

// client returns the client for addr (as udpio reports it: unmapped),
// creating it when there is room.
func (r *Relay) client(ctx context.Context, addr netip.AddrPort) *relayClient {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.clients[addr]; c != nil {
		return c
	}
	if len(r.clients) >= r.cfg.MaxClients || ctx.Err() != nil {
		return nil
	}
	up, err := r.upstreamSocket()
	if err != nil {
		r.log.Warn().Err(err).Msg("netem relay: upstream socket")
		return nil
	}
	id := r.nextID
	r.nextID++
	c := &relayClient{r: r, addr: addr, up: up}
	c.ctx, c.cancel = context.WithCancel(ctx)
	for d := range 2 {
		spec := r.cfg.Fwd
		if d == 1 {
			spec = r.cfg.Rev
		}
		// distinct, reproducible streams per client and direction
		link, err := NewLink(spec, r.cfg.Seed+id*2+int64(d)+1)
		if err != nil { // unreachable: specs validated in NewRelay
			up.Close()
			return nil
		}
		link.SetByteLimit(r.cfg.MaxQueueBytes)
		c.dir[d] = &relayDir{
			c: c, rev: d == 1, link: link, kick: make(chan struct{}, 1),
			batch: make([]udpio.Datagram, 0, relayBatch),
			arena: make([]byte, relayArena),
			lates: make([]int64, 0, relayBatch),
		}
	}
	c.touch()
	r.clients[addr] = c
	r.wg.Add(3)
	go c.readUpstream()
	go c.dir[0].deliver()
	go c.dir[1].deliver()
	r.log.Debug().Stringer("client", addr).Int64("id", id).Msg("netem relay: client added")
	return c
}

// upstreamSocket opens a client's socket towards To. It is not connected
// (udpio writes with an explicit destination, which a connected socket
// refuses on the portable path), so readUpstream filters replies by their
// source instead; it is bound to the local address the routing table
// picks for To, as a connected socket would be.
func (r *Relay) upstreamSocket() (*udpio.Conn, error) {
	to := net.UDPAddrFromAddrPort(r.to)
	probe, err := net.DialUDP("udp", nil, to) // no packet is sent
	if err != nil {
		return nil, err
	}
	local := probe.LocalAddr().(*net.UDPAddr).IP
	probe.Close()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local})
	if err != nil {
		return nil, err
	}
	return relaySocket(uc, r.cfg.NoGSO)
}

// expireLoop removes clients idle for longer than IdleTimeout.
func (r *Relay) expireLoop(ctx context.Context) {
	t := time.NewTicker(max(r.cfg.IdleTimeout/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := r.clk.Now()
		r.mu.Lock()
		for addr, c := range r.clients {
			if now-c.lastSeen.Load() > int64(r.cfg.IdleTimeout) {
				c.stop()
				delete(r.clients, addr)
				for d := range 2 {
					s := c.dir[d].stats()
					addDir(&r.retired[d], &s)
				}
				r.retired[1].KernelDrops += c.up.Stats().KernelDrops
				r.log.Debug().Stringer("client", addr).Msg("netem relay: client expired")
			}
		}
		r.mu.Unlock()
	}
}

func addDir(dst, s *DirStats) {
	dst.Received += s.Received
	dst.Forwarded += s.Forwarded
	dst.Dropped += s.Dropped
	dst.LimitDropped += s.LimitDropped
	dst.Delayed += s.Delayed
	dst.Reordered += s.Reordered
	dst.Duplicated += s.Duplicated
	dst.Corrupted += s.Corrupted
	dst.WriteErrs += s.WriteErrs
}

// Stats returns the counters summed over current and expired clients.
func (r *Relay) Stats() RelayStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := RelayStats{
		Fwd: r.retired[0], Rev: r.retired[1], Clients: len(r.clients),
		Rejected: r.rejected.Load(), Stray: r.stray.Load(),
	}
	st.Fwd.KernelDrops = r.conn.Stats().KernelDrops
	for _, c := range r.clients {
		f, v := c.dir[0].stats(), c.dir[1].stats()
		addDir(&st.Fwd, &f)
		addDir(&st.Rev, &v)
		st.Rev.KernelDrops += c.up.Stats().KernelDrops
	}
	return st
}

// DeliveryLateness returns the median and the maximum of |actual −
// scheduled| delivery time over the most recent (up to 4096) datagrams
// the relay wrote: how precisely the timers keep the model's schedule.
func (r *Relay) DeliveryLateness() (median, maximum time.Duration) {
	r.lateMu.Lock()
	n := min(r.lateN, lateSamples)
	s := append([]int64(nil), r.late[:n]...)
	r.lateMu.Unlock()
	if n == 0 {
		return 0, 0
	}
	sortInt64(s)
	return time.Duration(s[n/2]), time.Duration(s[n-1])
}

func sortInt64(s []int64) {
	// insertion sort is plenty for 4096 samples read rarely
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// recordLateness records the |actual − scheduled| of a batch's datagrams
// (their actual − scheduled, which is not negative) with one lock.
func (r *Relay) recordLateness(lates []int64) {
	r.lateMu.Lock()
	for _, d := range lates {
		r.late[r.lateN%lateSamples] = max(d, -d)
		r.lateN++
	}
	r.lateMu.Unlock()
}

type relayClient struct {
	r        *Relay
	addr     netip.AddrPort
	up       *udpio.Conn
	ctx      context.Context
	cancel   context.CancelFunc
	lastSeen atomic.Int64
	stopped  atomic.Bool
	dir      [2]*relayDir
	stopOnce sync.Once
}

func (c *relayClient) touch() { c.lastSeen.Store(c.r.clk.Now()) }

// stop ends the client's goroutines: the context stops the deliverers and
// closing the socket unblocks the reader.
func (c *relayClient) stop() {
	c.stopOnce.Do(func() {
		c.stopped.Store(true)
		c.cancel()
		c.up.Close()
	})
}

// readUpstream reads replies on the client's upstream socket and feeds
// the Rev link with those from To.
func (c *relayClient) readUpstream() {
	defer c.r.wg.Done()
	to := c.r.to
	for {
		dgs, err := c.up.Read()
		if err != nil {
			if c.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				c.r.log.Debug().Err(err).Msg("netem relay: upstream read")
				continue
			}
			return
		}
		now := c.r.clk.Now()
		for len(dgs) > 0 {
			n := 1
			for n < len(dgs) && (dgs[n].Addr == to) == (dgs[0].Addr == to) {
				n++
			}
			if dgs[0].Addr == to {
				c.dir[1].enqueue(now, dgs[:n])
			} else {
				c.r.stray.Add(uint64(n))
			}
			dgs = dgs[n:]
		}
	}
}

// relayDir is one direction of one client: a Link guarded by a mutex and
// the goroutine that delivers from it.
type relayDir struct {
	c    *relayClient
	rev  bool
	kick chan struct{}

	// The deliverer's own: the batch it writes, the bytes its datagrams
	// are copied into, and their lateness samples.
	batch []udpio.Datagram
	arena []byte
	lates []int64

	mu        sync.Mutex
	link      *Link
	received  uint64
	forwarded uint64
	writeErrs uint64
}

func (d *relayDir) stats() DirStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.link.Stats()
	return DirStats{
		Received: d.received, Forwarded: d.forwarded,
		Dropped: s.Dropped + s.LimitDropped, LimitDropped: s.LimitDropped, Delayed: s.Delayed, Reordered: s.Reordered,
		Duplicated: s.Duplicated, Corrupted: s.Corrupted, WriteErrs: d.writeErrs,
	}
}

// enqueue offers datagrams that arrived at now to the link, and wakes the
// deliverer when the earliest due time moved earlier.
func (d *relayDir) enqueue(now int64, dgs []udpio.Datagram) {
	d.c.touch()
	d.mu.Lock()
	before, _ := d.link.Next()
	wasEmpty := d.link.Len() == 0
	d.received += uint64(len(dgs))
	for i := range dgs {
		d.link.Enqueue(now, dgs[i].Data)
	}
	after, ok := d.link.Next()
	d.mu.Unlock()
	if ok && (wasEmpty || after < before) {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// spinWindow: a timer wakes up to this long before a packet is due and the
// deliverer yields until the exact time, trading a little CPU for
// delivery precision well below the timer's wake-up latency.
const spinWindow = 200 * time.Microsecond

// deliver writes the link's packets at their scheduled times.
func (d *relayDir) deliver() {
	defer d.c.r.wg.Done()
	clk := d.c.r.clk
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		at, ok := d.link.Next()
		d.mu.Unlock()
		wait := time.Hour
		if ok {
			wait = time.Duration(at-clk.Now()) - spinWindow
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-d.c.ctx.Done():
				return
			case <-d.kick:
				continue
			case <-timer.C:
				continue
			}
		}
		for clk.Now() < at {
			if d.c.ctx.Err() != nil {
				return
			}
			runtime.Gosched()
		}
		if d.c.ctx.Err() != nil {
			return
		}
		for d.take(clk.Now()) > 0 {
			d.write()
		}
	}
}

// take moves the datagrams due at or before now into the batch, copying
// them (Dequeue's buffer is reused by the next Dequeue), until the batch
// or its arena is full, and returns how many it took.
func (d *relayDir) take(now int64) int {
	to := d.c.r.to
	if d.rev {
		to = d.c.addr
	}
	d.batch, d.lates = d.batch[:0], d.lates[:0]
	used := 0
	d.mu.Lock()
	for len(d.batch) < cap(d.batch) {
		next, ok := d.link.Next()
		if !ok || next > now || d.link.nextLen() > len(d.arena)-used {
			break
		}
		pkt, _ := d.link.Dequeue(now)
		n := copy(d.arena[used:], pkt)
		d.batch = append(d.batch, udpio.Datagram{Data: d.arena[used : used+n : used+n], Addr: to})
		d.lates = append(d.lates, now-next)
		used += n
	}
	d.mu.Unlock()
	return len(d.batch)
}

// write sends the batch with as few calls as it takes; a datagram whose
// write fails is counted and skipped, as a lost one would be.
func (d *relayDir) write() {
	r := d.c.r
	r.recordLateness(d.lates)
	conn := d.c.up
	if d.rev {
		conn = r.conn
		r.wmu.Lock()
	}
	var sent, failed uint64
	for rest := d.batch; len(rest) > 0; {
		n, err := conn.WriteBatch(rest)
		sent += uint64(n)
		if err == nil {
			break
		}
		failed++
		rest = rest[min(n+1, len(rest)):]
	}
	if d.rev {
		r.wmu.Unlock()
	}
	d.mu.Lock()
	d.forwarded += sent
	d.writeErrs += failed
	d.mu.Unlock()
}
