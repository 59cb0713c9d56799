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
	WriteErrs  uint64 // writes that failed
}

// RelayStats is a snapshot of a Relay's counters.
type RelayStats struct {
	Fwd, Rev DirStats
	Clients  int    // clients currently served
	Rejected uint64 // datagrams dropped because MaxClients were served
}

// Relay is a UDP impairment proxy: datagrams sent to its listen address
// are forwarded to To through an emulated link (Fwd), from one upstream
// socket per client, and replies arriving on that socket are returned to
// the client through a second link (Rev). Delivery is driven by one timer
// per link direction, so a packet leaves at its scheduled time without a
// sleep per packet.
//
// Methods are safe for concurrent use.
type Relay struct {
	cfg  RelayConfig
	log  zerolog.Logger
	conn *net.UDPConn
	to   *net.UDPAddr
	clk  *clock.Mono

	mu       sync.Mutex
	clients  map[netip.AddrPort]*relayClient
	nextID   int64
	retired  [2]DirStats // counts of expired clients
	rejected atomic.Uint64
	running  atomic.Bool
	wg       sync.WaitGroup

	lateMu sync.Mutex
	late   []int64 // |actual - scheduled| samples in ns, ring buffer
	lateN  int
}

const lateSamples = 4096

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
	la, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("%w: Listen: %w", ErrRelayConfig, err)
	}
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, err
	}
	return &Relay{
		cfg: cfg, log: log, conn: conn, to: to, clk: clock.NewMono(),
		clients: make(map[netip.AddrPort]*relayClient),
		late:    make([]int64, lateSamples),
	}, nil
}

// Addr returns the bound listen address.
func (r *Relay) Addr() netip.AddrPort {
	return r.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

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

// readClients reads datagrams from clients and feeds their Fwd links.
func (r *Relay) readClients(ctx context.Context) error {
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c := r.client(ctx, from)
		if c == nil {
			r.rejected.Add(1)
			continue
		}
		c.dir[0].enqueue(r.clk.Now(), buf[:n])
	}
}

// client returns the client for addr, creating it when there is room.
func (r *Relay) client(ctx context.Context, addr netip.AddrPort) *relayClient {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.clients[addr]; c != nil {
		return c
	}
	if len(r.clients) >= r.cfg.MaxClients || ctx.Err() != nil {
		return nil
	}
	up, err := net.DialUDP("udp", nil, r.to)
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
		c.dir[d] = &relayDir{c: c, rev: d == 1, link: link, kick: make(chan struct{}, 1)}
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
	st := RelayStats{Fwd: r.retired[0], Rev: r.retired[1], Clients: len(r.clients), Rejected: r.rejected.Load()}
	for _, c := range r.clients {
		f, v := c.dir[0].stats(), c.dir[1].stats()
		addDir(&st.Fwd, &f)
		addDir(&st.Rev, &v)
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

func (r *Relay) recordLateness(d int64) {
	if d < 0 {
		d = -d
	}
	r.lateMu.Lock()
	r.late[r.lateN%lateSamples] = d
	r.lateN++
	r.lateMu.Unlock()
}

type relayClient struct {
	r        *Relay
	addr     netip.AddrPort
	up       *net.UDPConn
	ctx      context.Context
	cancel   context.CancelFunc
	lastSeen atomic.Int64
	dir      [2]*relayDir
	stopOnce sync.Once
}

func (c *relayClient) touch() { c.lastSeen.Store(c.r.clk.Now()) }

// stop ends the client's goroutines: the context stops the deliverers and
// closing the socket unblocks the reader.
func (c *relayClient) stop() {
	c.stopOnce.Do(func() {
		c.cancel()
		c.up.Close()
	})
}

func (c *relayClient) readUpstream() {
	defer c.r.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, err := c.up.Read(buf)
		if err != nil {
			if c.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				// e.g. ICMP port unreachable reported on a connected
				// socket: keep serving
				c.r.log.Debug().Err(err).Msg("netem relay: upstream read")
				continue
			}
			return
		}
		c.dir[1].enqueue(c.r.clk.Now(), buf[:n])
	}
}

// relayDir is one direction of one client: a Link guarded by a mutex and
// the goroutine that delivers from it.
type relayDir struct {
	c    *relayClient
	rev  bool
	kick chan struct{}

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
		Dropped: s.Dropped + s.LimitDropped, Delayed: s.Delayed, Reordered: s.Reordered,
		Duplicated: s.Duplicated, Corrupted: s.Corrupted, WriteErrs: d.writeErrs,
	}
}

func (d *relayDir) enqueue(now int64, pkt []byte) {
	d.c.touch()
	d.mu.Lock()
	before, _ := d.link.Next()
	wasEmpty := d.link.Len() == 0
	d.received++
	d.link.Enqueue(now, pkt)
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
	buf := make([]byte, maxDatagram)
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
		for {
			now := clk.Now()
			d.mu.Lock()
			next, ok := d.link.Next()
			var n int
			if ok && next <= now {
				pkt, _ := d.link.Dequeue(now)
				n = copy(buf, pkt)
			}
			d.mu.Unlock()
			if !ok || next > now {
				break
			}
			d.c.r.recordLateness(now - next)
			var err error
			if d.rev {
				_, err = d.c.r.conn.WriteToUDPAddrPort(buf[:n], d.c.addr)
			} else {
				_, err = d.c.up.Write(buf[:n])
			}
			d.mu.Lock()
			if err != nil {
				d.writeErrs++
			} else {
				d.forwarded++
			}
			d.mu.Unlock()
		}
	}
}
