package udpio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Defaults and limits for [Config]. Sizes are in bytes.
const (
	// DefaultBatchSize is the number of messages per recvmmsg/sendmmsg call
	// when Config.BatchSize is 0.
	//
	// Measured on Linux over loopback, 256-byte datagrams, 2 vCPUs shared
	// with other work (so ±20% noise), medians of 3 runs of
	// go test -bench 'Loopback|Write|Read' -benchtime 1s -count 3,
	// in datagrams/s:
	//
	//	                Loopback    Write     Read
	//	                (both)      (send)    (drain a full queue)
	//	single          131k        158k      567k
	//	batch   1       122k         83k      369k
	//	batch   8       159k        162k      656k
	//	batch  16       146k        226k      672k
	//	batch  32       126k        234k      736k
	//	batch  64       107k        237k      692k
	//	batch 128       134k        236k      726k
	//
	// End to end the sender is the bottleneck (the kernel does the loopback
	// receive work inside sendmmsg, about 4 µs per datagram here) and the
	// receiver keeps up with 1.5 to 6 datagrams per call, so batch sizes from
	// 8 to 128 are equal within the noise. Batching pays where a side is
	// loaded: sending plateaus from 32 on (+48% over single), and draining a
	// backlog, which is what prevents kernel drops after a burst, is best at
	// 32 (+30% over single). 32 is the smallest size at both plateaus and
	// keeps the receive memory at 2 MiB with the default MaxDatagram (64
	// would double it for nothing measurable).
	DefaultBatchSize = 32

	// MaxBatchSize is the largest accepted Config.BatchSize: Linux caps the
	// vector length of one recvmmsg/sendmmsg call at UIO_MAXIOV (1024).
	MaxBatchSize = 1024

	// DefaultMaxDatagram is the receive buffer size per message when
	// Config.MaxDatagram is 0: the largest UDP payload, so that nothing is
	// truncated.
	DefaultMaxDatagram = 65535

	// DefaultSocketBuffer is the SO_RCVBUF and SO_SNDBUF request (4 MiB)
	// when Config.ReadBufferBytes or Config.WriteBufferBytes is 0.
	DefaultSocketBuffer = 4 << 20

	// MaxSocketBuffer is the largest accepted socket buffer request (1 GiB).
	MaxSocketBuffer = 1 << 30

	// maxCachedAddrs bounds the writer's netip.AddrPort → *net.UDPAddr cache.
	// Past it, an arbitrary entry is evicted for each new destination.
	maxCachedAddrs = 1024

	// MaxGSOSegments is the most datagrams WriteBatch coalesces into one
	// UDP_SEGMENT message. It is the kernel's UDP_MAX_SEGMENTS as it has been
	// since UDP GSO appeared in Linux 4.18 (1<<6); newer kernels accept 128
	// (this package's tests measured 128 accepted and 129 refused with
	// EINVAL on Linux 6.18), but 64 already amortises the system call and
	// works on every kernel with GSO.
	MaxGSOSegments = 64

	// MaxGSOBytes4 and MaxGSOBytes6 are the most payload bytes, all segments
	// together, of one UDP_SEGMENT message to an IPv4 or IPv6 destination:
	// the whole message must fit one IP packet before it is segmented, so
	// 65535 less the IPv4 header (20) and the UDP header (8), or less only
	// the UDP header for IPv6, whose payload length excludes its fixed
	// header. A message one byte longer fails with EMSGSIZE (measured).
	MaxGSOBytes4 = 65535 - 20 - 8
	MaxGSOBytes6 = 65535 - 8

	// GROBufferSize is the size of each receive buffer when GRO is on, in
	// bytes: a coalesced read carries up to a whole IP packet's payload,
	// and a shorter buffer would make the kernel truncate it, losing every
	// segment past the end. It is one byte more than the largest UDP
	// payload, as the buffers without GRO are one byte more than
	// MaxDatagram.
	GROBufferSize = DefaultMaxDatagram + 1

	// MaxBusyPoll is the longest accepted Config.BusyPoll.
	MaxBusyPoll = time.Second

	// maxGSOFallbacks is how many refused UDP_SEGMENT messages a Conn
	// tolerates (each lowering the largest segment size it coalesces)
	// before it stops coalescing altogether.
	maxGSOFallbacks = 4
)

// Errors returned by this package, to be tested with errors.Is.
var (
	// ErrInvalidConfig reports a Config field out of range.
	ErrInvalidConfig = errors.New("udpio: invalid config")
	// ErrInvalidAddr reports a write to a zero or otherwise invalid
	// destination address; nothing was sent.
	ErrInvalidAddr = errors.New("udpio: invalid destination address")
)

// Config tunes a [Conn]. The zero value selects every default; each field's
// default is stated beside it. Memory held by a Conn for receiving is about
// BatchSize × (MaxDatagram+1) bytes (2 MiB with the defaults), or
// MaxDatagram+1 bytes with NoBatch; with GRO on it is BatchSize ×
// [GROBufferSize] bytes whatever MaxDatagram is (2 MiB with BatchSize 32).
// For writing, a Conn holds BatchSize message headers and, with GSO on,
// room for BatchSize × [MaxGSOSegments] buffer references (48 KiB with
// BatchSize 32, and x/net pools an iovec array of as many entries, 32 KiB);
// it never copies payloads.
type Config struct {
	// BatchSize is the number of messages per recvmmsg/sendmmsg call, and so
	// the most datagrams one Read returns. 0 means [DefaultBatchSize]; at
	// most [MaxBatchSize]. Ignored with NoBatch.
	BatchSize int

	// MaxDatagram is the largest datagram payload received, in bytes; longer
	// datagrams are dropped and counted in Stats.Truncated. 0 means
	// [DefaultMaxDatagram] (65535), the most UDP can carry. Each receive
	// buffer is one byte longer, to detect truncation portably.
	MaxDatagram int

	// ReadBufferBytes is the SO_RCVBUF size requested, in bytes. 0 means
	// [DefaultSocketBuffer]. On Linux, when net.core.rmem_max caps the
	// request, SO_RCVBUFFORCE is tried, which succeeds with CAP_NET_ADMIN
	// (root) and otherwise leaves the capped size. See [Conn.BufferSizes].
	ReadBufferBytes int

	// WriteBufferBytes is the SO_SNDBUF size requested, in bytes, under the
	// same rules as ReadBufferBytes (net.core.wmem_max, SO_SNDBUFFORCE).
	WriteBufferBytes int

	// NoBatch forces the portable path of one datagram per system call
	// (ReadMsgUDPAddrPort and WriteToUDPAddrPort), for comparison and for
	// platforms where x/net has no batch I/O. False (batching) by default;
	// on Windows batching is always off. NoBatch also turns GSO and GRO off.
	NoBatch bool

	// NoGSO turns off UDP generic segmentation offload on send. By default
	// (false) it is on wherever the kernel supports it (Linux 4.18 and
	// later: the socket answers getsockopt UDP_SEGMENT): WriteBatch then
	// coalesces each run of consecutive datagrams that go to the same
	// destination and have the same size (the last of a run may be
	// shorter) into one message carrying a UDP_SEGMENT control message,
	// which the kernel splits back into the original datagrams. Receivers
	// see ordinary datagrams. Runs are cut at [MaxGSOSegments] datagrams and
	// at [MaxGSOBytes4] or [MaxGSOBytes6] bytes; empty datagrams are never
	// coalesced. If the kernel refuses a coalesced message (EIO: the
	// device has no checksum offload; EINVAL: a segment larger than the
	// route's MTU), its datagrams are resent one by one and counted in
	// Stats.GSOFallbacks; EINVAL lowers the largest segment size
	// coalesced below the refused one, and EIO, or a fourth refusal,
	// turns GSO off for the Conn. [Conn.Offload] tells whether it is on.
	NoGSO bool

	// NoGRO turns off UDP generic receive offload. By default (false) it
	// is on wherever the kernel accepts setsockopt UDP_GRO (Linux 5.0 and
	// later): the kernel may then hand over several datagrams of one flow
	// as one coalesced read (a UDP GSO sender on the same host always
	// does, and so do NICs that aggregate), and Read splits it back into
	// the original datagrams without copying. It costs receive memory:
	// each of the BatchSize buffers is [GROBufferSize] bytes instead of
	// MaxDatagram+1. Set it on sockets that receive little (a sender's
	// feedback socket) to keep their buffers small. In return, coalesced
	// datagrams take much less of the kernel's socket buffer (SO_RCVBUF)
	// than separate ones: measured on loopback, 77 bytes per 64-byte
	// datagram instead of 832, 1226 per 1200-byte one instead of 2304, so
	// the same buffer absorbs a burst up to 10 times longer.
	NoGRO bool

	// BusyPoll, when positive, makes Read spin before it blocks: when it
	// has nothing left to hand out, it polls the socket (poll(2) with a
	// zero timeout) in a loop, yielding the processor to other goroutines
	// between polls (runtime.Gosched) but never parking, for up to
	// BusyPoll; as soon as a poll finds a datagram it reads the batch,
	// which then returns at once. Only when BusyPoll passes without one
	// does Read block in the Go netpoller as it does by default. This
	// saves the wake-up of a parked goroutine (netpoller, scheduler and
	// often a sleeping thread, tens of microseconds on a busy host) per
	// read after a quiet spell shorter than BusyPoll, and costs a CPU core
	// while traffic keeps coming at least that often. 0 (the default)
	// turns it off, and Read then costs exactly what it did without it. At
	// most [MaxBusyPoll]. Linux only; elsewhere it is accepted and Read
	// blocks at once. Stats.BusyPollHits, BusyPollEmpty and
	// BusyPollTimeouts tell how it fares.
	//
	// This is not the kernel's SO_BUSY_POLL, which makes blocking receives
	// poll the device's NAPI queue: the Go netpoller never blocks in
	// recvmsg, and loopback has no NAPI context to poll (datagrams sent on
	// loopback are delivered within the sender's system call), so that
	// option has no effect there; on a NIC with NAPI it can be set on the
	// socket beside this.
	BusyPoll time.Duration

	// Netpoll keeps the socket in Go's netpoller, as a net.UDPConn, on
	// Linux too. By default (false) a batching Conn on Linux without
	// BusyPoll takes its socket out of the netpoller and waits for it in
	// ppoll(2) on the reading or writing goroutine's own thread: the
	// netpoller's epoll entry is woken by every datagram the socket sends
	// (its buffer freed signals write space), which measured on loopback
	// cost 20–40% of a batched sender's throughput and 10–15 µs of
	// latency per quiet-spell wake-up. The cost of the default is one
	// thread blocked per Conn with a Read waiting. Elsewhere, with NoBatch
	// and with BusyPoll, the socket always stays in the netpoller.
	Netpoll bool
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %s = %d, want 0 or %d..%d", ErrInvalidConfig, name, v, lo, hi)
		}
		return nil
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.MaxDatagram == 0 {
		c.MaxDatagram = DefaultMaxDatagram
	}
	if c.ReadBufferBytes == 0 {
		c.ReadBufferBytes = DefaultSocketBuffer
	}
	if c.WriteBufferBytes == 0 {
		c.WriteBufferBytes = DefaultSocketBuffer
	}
	var busy error
	if c.BusyPoll < 0 || c.BusyPoll > MaxBusyPoll {
		busy = fmt.Errorf("%w: BusyPoll = %v, want 0..%v", ErrInvalidConfig, c.BusyPoll, MaxBusyPoll)
	}
	return c, errors.Join(
		busy,
		check("BatchSize", c.BatchSize, 1, MaxBatchSize),
		check("MaxDatagram", c.MaxDatagram, 1, DefaultMaxDatagram),
		check("ReadBufferBytes", c.ReadBufferBytes, 1, MaxSocketBuffer),
		check("WriteBufferBytes", c.WriteBufferBytes, 1, MaxSocketBuffer),
	)
}

// Datagram is one UDP datagram: its payload and the peer's address (the
// source when read, the destination when written). IPv4 peers seen on an
// IPv6 dual-stack socket are reported as plain IPv4 addresses, not
// IPv4-mapped IPv6 ones, so a peer has one identity whatever the socket.
type Datagram struct {
	Data []byte
	Addr netip.AddrPort
}

// Stats are a Conn's cumulative counters since [New]. Datagram and byte
// counts cover payloads only (no IP/UDP headers).
type Stats struct {
	DatagramsRead uint64 // datagrams returned by Read
	BytesRead     uint64 // payload bytes returned by Read
	ReadSyscalls  uint64 // receive calls (recvmmsg; recvmsg with NoBatch), including failed ones
	Truncated     uint64 // datagrams longer than MaxDatagram, dropped by Read

	// KernelDrops is the kernel's cumulative count of datagrams dropped
	// because this socket's receive queue was full (Linux SO_RXQ_OVFL). The
	// kernel attaches it to received datagrams, so it is as fresh as the
	// last datagram read. With GRO on, the kernel counts a coalesced
	// message it drops once, however many datagrams it held, so the
	// count is then a lower bound. Always 0 on other platforms.
	KernelDrops uint64

	DatagramsWritten uint64 // datagrams the kernel accepted for sending
	BytesWritten     uint64 // payload bytes of those datagrams
	WriteSyscalls    uint64 // send calls (sendmmsg; sendmsg for WriteTo and NoBatch), including failed ones
	WriteErrors      uint64 // send calls that failed

	// GSOMessages counts the UDP_SEGMENT messages the kernel accepted,
	// and GSODatagrams the datagrams they carried (also counted in
	// DatagramsWritten). A datagram sent alone counts in neither.
	GSOMessages  uint64
	GSODatagrams uint64
	// GSOFallbacks counts UDP_SEGMENT messages the kernel refused with EIO
	// or EINVAL whose datagrams then went out one by one (see
	// Config.NoGSO). The refused call also counts in WriteErrors.
	GSOFallbacks uint64

	// GROReads counts coalesced reads: received messages that held more
	// than one datagram. GRODatagrams counts the datagrams split out of
	// them (also counted in DatagramsRead, unless dropped as Truncated).
	GROReads     uint64
	GRODatagrams uint64

	// With Config.BusyPoll: BusyPollHits counts the spins that found a
	// datagram (each followed by a receive call that did not block),
	// BusyPollTimeouts the spins that ran out and blocked, and
	// BusyPollEmpty the polls that found nothing (the work spent
	// spinning). All 0 without BusyPoll.
	BusyPollHits     uint64
	BusyPollTimeouts uint64
	BusyPollEmpty    uint64
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn have in common
// (their Message types are the same type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

var (
	_ batchConn = (*ipv4.PacketConn)(nil)
	_ batchConn = (*ipv6.PacketConn)(nil)
)

// offloadProbe enables what it can of GSO and GRO on a new socket and
// reports what it got. Tests replace it to play a kernel without support.
var offloadProbe = probeOffload

// Conn is a UDP socket that reads and writes datagrams in batches.
//
// Concurrency: Read may be called from one goroutine while WriteBatch and
// WriteTo are called from one other goroutine; Read is not safe to call
// concurrently with itself, nor writes with writes. Stats, Offload,
// BufferSizes, LocalAddr, SetReadDeadline and Close are safe to call from
// any goroutine.
//
// Buffers: the slice returned by Read and every Datagram.Data in it point
// into the Conn's own buffers and are valid only until the next Read; copy
// what must outlive it. Writes do not keep the caller's slices after they
// return.
//
// The zero value is not usable; create a Conn with [Listen] or [New].
type Conn struct {
	uc          *net.UDPConn
	d           *direct     // the socket outside the netpoller (Linux); nil: uc does everything
	bc          batchConn   // nil on the one-datagram-per-call path
	mm          *mmsgReader // reads batches where it can (Linux), instead of bc
	local       netip.AddrPort
	maxDatagram int

	// Reader state, owned by the goroutine calling Read. One receive call
	// fills rmsgs[:rn]; Read hands their datagrams out, at most cap(rdgs)
	// at a time, resuming at message rnext, byte roff (a coalesced message
	// may span several Reads). The next receive call happens only once
	// every message has been handed out.
	rmsgs   []ipv4.Message   // len BatchSize (1 with NoBatch); Buffers and OOB set once
	rsrc    []netip.AddrPort // source address of each message of the batch
	rseg    []int            // GRO segment size of each message; 0: one datagram; -1: drop
	rdgs    []Datagram       // what Read returns; cap len(rmsgs)
	rn      int              // messages in the current batch
	rnext   int              // next message to hand out
	roff    int              // offset of the next segment in rmsgs[rnext]
	gro     bool             // the socket has UDP_GRO on
	oneAddr netip.AddrPort   // source of the last datagram on the NoBatch path

	// Busy polling (Config.BusyPoll), owned by the reader too.
	busyPoll  int64           // spin time in ns; 0 = off
	rc        syscall.RawConn // for polling the descriptor
	pollFn    func(fd uintptr)
	pollReady bool         // set by pollFn
	rdeadline atomic.Int64 // the read deadline in Unix ns, 0 if none; ends a spin
	now       func() int64 // monotonic ns for the spin deadline; tests replace it

	// Writer state, owned by the goroutine calling WriteBatch/WriteTo.
	wmsgs  []ipv4.Message // len BatchSize; Buffers carved out of wiov
	wiov   [][]byte       // the datagrams of one send call, in order
	wsegs  []int          // datagrams in each message of one send call
	woob   []byte         // one UDP_SEGMENT control message per wmsgs slot (GSO only)
	addrs  map[netip.AddrPort]*net.UDPAddr
	gso    bool // coalescing is on
	gsoMax int  // largest segment size coalesced, lowered by EINVAL refusals

	gsoActive, groActive atomic.Bool

	datagramsRead, bytesRead, readSyscalls, truncated, kernelDrops atomic.Uint64
	datagramsWritten, bytesWritten, writeSyscalls, writeErrors     atomic.Uint64
	gsoMessages, gsoDatagrams, gsoFallbacks                        atomic.Uint64
	groReads, groDatagrams                                         atomic.Uint64
	busyHits, busyTimeouts, busyEmpty                              atomic.Uint64
}

// Listen opens a UDP socket on addr ("127.0.0.1:0", "[::1]:0", ":9000";
// a host name is resolved) and wraps it with [New]. The IPv4 wildcard
// ("0.0.0.0:9000") opens an IPv4 socket, where Go's net package would
// open a dual-stack IPv6 one, through which every IPv4 datagram sent
// takes the IPv6 path first (udpv6_sendmsg, a few % of a saturating
// sender's CPU); an empty host (":9000") or "[::]" gets both families.
func Listen(addr string, cfg Config) (*Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udpio: listen %q: %w", addr, err)
	}
	network := "udp"
	if ua.IP != nil && ua.IP.Equal(net.IPv4zero) {
		network = "udp4"
	}
	uc, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("udpio: listen %q: %w", addr, err)
	}
	return New(uc, cfg)
}

// New wraps an unconnected UDP socket. It takes ownership of c: the Conn
// closes it, and so does New when it fails; on Linux a batching Conn
// closes c at once, keeping a duplicate of its descriptor outside Go's
// netpoller (see Config.Netpoll), so c must not be used after New. New sets the socket buffer sizes
// and, on Linux, enables the kernel drop counter and whichever of GSO and
// GRO the kernel supports and cfg allows, and allocates every buffer the
// Conn will use.
func New(c *net.UDPConn, cfg Config) (*Conn, error) {
	conn, err := newConn(c, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return conn, nil
}

func newConn(uc *net.UDPConn, cfg Config) (*Conn, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpio: %w", err)
	}
	if err := setBufferSizes(uc, cfg.ReadBufferBytes, cfg.WriteBufferBytes); err != nil {
		return nil, fmt.Errorf("udpio: socket buffers: %w", err)
	}
	// Best effort: without it KernelDrops stays 0, nothing else changes.
	enableDropCounter(rc)

	la, ok := uc.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("udpio: socket has no UDP local address")
	}
	c := &Conn{
		uc:          uc,
		local:       unmapAddrPort(la.AddrPort()),
		maxDatagram: cfg.MaxDatagram,
		gsoMax:      MaxGSOBytes6,
	}
	if cfg.BusyPoll > 0 && busyPollSupported {
		c.busyPoll = int64(cfg.BusyPoll)
		c.rc = rc
		c.pollFn = func(fd uintptr) { c.pollReady = pollReadable(fd) }
		epoch := time.Now()
		c.now = func() int64 { return int64(time.Since(epoch)) }
	}
	batching := !cfg.NoBatch && batchSupported
	// Without batching there is nothing to coalesce into or split from,
	// and GRO must be off: a coalesced read would look like one datagram.
	c.gso, c.gro = offloadProbe(rc, batching && !cfg.NoGSO, batching && !cfg.NoGRO)
	c.gsoActive.Store(c.gso)
	c.groActive.Store(c.gro)

	n := 1
	if batching {
		n = cfg.BatchSize
		// The net package gives an AF_INET socket's address as a 4-byte IP
		// and an AF_INET6 one's (dual-stack wildcard, IPv4-mapped) as 16.
		if len(la.IP) == net.IPv4len {
			c.bc = ipv4.NewPacketConn(uc)
		} else {
			c.bc = ipv6.NewPacketConn(uc)
		}
		perMsg := 1
		if c.gso {
			perMsg = MaxGSOSegments
			c.woob = make([]byte, n*gsoCmsgSpace)
			for i := range n {
				initSegmentCmsg(c.woob[i*gsoCmsgSpace : (i+1)*gsoCmsgSpace])
			}
		}
		c.wmsgs = make([]ipv4.Message, n)
		c.wiov = make([][]byte, n*perMsg)
		c.wsegs = make([]int, n)
		c.addrs = make(map[netip.AddrPort]*net.UDPAddr)
	}

	// One slab for the payload buffers and one for the control messages.
	bufLen := cfg.MaxDatagram + 1
	if c.gro {
		bufLen = GROBufferSize
	}
	bufs := make([]byte, n*bufLen)
	var oobs []byte
	if oobSize > 0 {
		oobs = make([]byte, n*oobSize)
	}
	bufSlices := make([][]byte, n)
	c.rmsgs = make([]ipv4.Message, n)
	for i := range c.rmsgs {
		bufSlices[i] = bufs[i*bufLen : (i+1)*bufLen : (i+1)*bufLen]
		c.rmsgs[i].Buffers = bufSlices[i : i+1 : i+1]
		if oobs != nil {
			c.rmsgs[i].OOB = oobs[i*oobSize : (i+1)*oobSize : (i+1)*oobSize]
		}
	}
	if c.bc != nil {
		c.mm = newMmsgReader(rc, c.rmsgs) // nil where only x/net can read
	}
	c.rsrc = make([]netip.AddrPort, n)
	c.rseg = make([]int, n)
	c.rdgs = make([]Datagram, 0, n)
	if directSupported && c.mm != nil && c.busyPoll == 0 && !cfg.Netpoll {
		// Best effort: where it fails, uc stays and serves as before.
		// The direct socket serves as the batchConn too: reads through
		// ReadBatch (tests only) and every WriteBatch.
		if d, err := newDirect(uc, len(c.wmsgs), len(c.wiov), &c.rdeadline); err == nil {
			c.d, c.bc = d, d
		}
	}
	return c, nil
}

// Read blocks until at least one datagram arrives and returns at most
// BatchSize datagrams (one with NoBatch, and one on platforms other than
// Linux, where x/net reads one message per call). One receive call gets up
// to BatchSize messages, and with GRO each may hold many datagrams; what
// does not fit in one Read's result is returned by the next Reads, in
// order, before the socket is read again. The slice and each Data alias
// the Conn's buffers and are valid until the next Read. Datagrams longer
// than MaxDatagram are dropped and counted in Stats.Truncated, never
// returned; if all of them are dropped, Read waits for more.
//
// With Config.BusyPoll, Read first spins for up to BusyPoll (see there),
// or until the read deadline passes.
//
// After Close, Read returns an error matching net.ErrClosed; after the read
// deadline passes, one matching os.ErrDeadlineExceeded.
func (c *Conn) Read() ([]Datagram, error) {
	for {
		if c.rnext >= c.rn {
			if c.busyPoll > 0 {
				c.spin()
			}
			n, err := c.receive()
			c.readSyscalls.Add(1)
			if err != nil {
				return nil, err
			}
			c.startBatch(n)
		}
		if dgs := c.nextDatagrams(); len(dgs) > 0 {
			return dgs, nil
		}
	}
}

// spin polls the socket until it has a datagram to read, BusyPoll or the
// read deadline has passed, or the socket is closed (the receive call that follows then
// returns at once, blocks, or reports the close). It yields the processor
// between polls so that goroutines woken by what the caller did with the
// last batch run meanwhile. It does not allocate.
func (c *Conn) spin() {
	deadline := c.now() + c.busyPoll
	for {
		if err := c.rc.Control(c.pollFn); err != nil {
			return // closed: let receive say so
		}
		if c.pollReady {
			c.busyHits.Add(1)
			return
		}
		c.busyEmpty.Add(1)
		if c.now() >= deadline || c.deadlinePassed() {
			c.busyTimeouts.Add(1)
			return
		}
		runtime.Gosched()
	}
}

// startBatch records what the control messages and addresses of the n
// messages just received say, once per message.
func (c *Conn) startBatch(n int) {
	c.rn, c.rnext, c.roff = n, 0, 0
	var groReads uint64
	for i := range c.rmsgs[:n] {
		m := &c.rmsgs[i]
		info := parseOOB(m.OOB[:m.NN])
		if info.dropsOK {
			c.kernelDrops.Store(uint64(info.drops))
		}
		if c.mm != nil {
			c.rsrc[i] = c.mm.srcs[i]
		} else {
			c.rsrc[i] = c.sourceOf(m)
		}
		c.rseg[i] = 0
		if !c.gro {
			continue
		}
		switch {
		case m.Flags&msgTrunc != 0 || (m.Flags&msgCtrunc != 0 && info.gsoSize == 0):
			// The payload did not fit (it always fits GROBufferSize), or
			// the control data did not fit oobSize and the segment size
			// may be what was cut: the message cannot be split safely.
			c.rseg[i] = -1
		case info.gsoSize > 0 && m.N > info.gsoSize:
			c.rseg[i] = info.gsoSize
			groReads++
		}
	}
	if groReads > 0 {
		c.groReads.Add(groReads)
	}
}

// nextDatagrams hands out the next datagrams of the current batch, at most
// cap(c.rdgs), splitting coalesced messages into their segments.
func (c *Conn) nextDatagrams() []Datagram {
	dgs := c.rdgs[:0]
	var bytes, groDatagrams, truncated uint64
	for c.rnext < c.rn && len(dgs) < cap(dgs) {
		m := &c.rmsgs[c.rnext]
		data := m.Buffers[0][:m.N]
		seg := c.rseg[c.rnext]
		if seg <= 0 {
			if seg < 0 || len(data) > c.maxDatagram {
				truncated++
			} else {
				dgs = append(dgs, Datagram{Data: data, Addr: c.rsrc[c.rnext]})
				bytes += uint64(len(data))
			}
			c.rnext++
			continue
		}
		for c.roff < len(data) && len(dgs) < cap(dgs) {
			end := min(c.roff+seg, len(data))
			if end-c.roff > c.maxDatagram {
				truncated++
			} else {
				dgs = append(dgs, Datagram{Data: data[c.roff:end:end], Addr: c.rsrc[c.rnext]})
				bytes += uint64(end - c.roff)
				groDatagrams++
			}
			c.roff = end
		}
		if c.roff >= len(data) {
			c.rnext, c.roff = c.rnext+1, 0
		}
	}
	if truncated > 0 {
		c.truncated.Add(truncated)
	}
	if len(dgs) > 0 {
		c.datagramsRead.Add(uint64(len(dgs)))
		c.bytesRead.Add(bytes)
		if groDatagrams > 0 {
			c.groDatagrams.Add(groDatagrams)
		}
	}
	c.rdgs = dgs
	return dgs
}

// receive fills c.rmsgs[:n] with one receive call.
func (c *Conn) receive() (n int, err error) {
	c.rn = 0
	if c.mm != nil {
		if c.d != nil {
			return c.d.read(c.mm, c.rmsgs)
		}
		return c.mm.read(c.rmsgs)
	}
	if c.bc != nil {
		n, err = c.bc.ReadBatch(c.rmsgs, 0)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	m := &c.rmsgs[0]
	m.N, m.NN, m.Flags, c.oneAddr, err = c.uc.ReadMsgUDPAddrPort(m.Buffers[0], m.OOB)
	if err != nil {
		return 0, err
	}
	return 1, nil
}

// sourceOf returns the source address of a received message.
func (c *Conn) sourceOf(m *ipv4.Message) netip.AddrPort {
	if c.bc == nil {
		return unmapAddrPort(c.oneAddr)
	}
	ua, ok := m.Addr.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	m.Addr = nil // let the collector have it before the next Read
	return unmapAddrPort(ua.AddrPort())
}

func unmapAddrPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// WriteBatch sends dgs in order, calling sendmmsg with up to BatchSize
// messages until all are sent (one sendmsg per datagram with NoBatch). A
// message is one datagram, or with GSO a run of up to [MaxGSOSegments]
// datagrams (see Config.NoGSO). It returns how many datagrams were sent. On
// error, dgs[:n] were sent and dgs[n] was not (with GSO the datagrams after
// dgs[n] in its run were not either); if any destination is invalid,
// nothing is sent and the error matches ErrInvalidAddr. Datagrams of 0
// bytes are allowed. It does not allocate once the destinations are cached.
func (c *Conn) WriteBatch(dgs []Datagram) (int, error) {
	for i := range dgs {
		if !dgs[i].Addr.IsValid() {
			return 0, fmt.Errorf("%w: datagram %d: %v", ErrInvalidAddr, i, dgs[i].Addr)
		}
	}
	if c.bc == nil {
		for i := range dgs {
			if err := c.writeOne(dgs[i].Data, dgs[i].Addr); err != nil {
				return i, err
			}
		}
		return len(dgs), nil
	}
	sent := 0
	// After the kernel refuses a UDP_SEGMENT message, dgs[sent:probeEnd]
	// (its datagrams) are resent one per message: if the first goes, the
	// refusal was GSO's doing; if not, its error is the datagram's own.
	probeEnd, probeSeg := 0, 0
	var probeErr error
	for sent < len(dgs) {
		rest, coalesce := dgs[sent:], c.gso
		probing := probeEnd > sent
		if probing {
			rest, coalesce = dgs[sent:probeEnd], false
		}
		nmsgs, niov := c.pack(rest, coalesce)
		n, err := c.bc.WriteBatch(c.wmsgs[:nmsgs], 0)
		c.writeSyscalls.Add(1)
		if err == nil && n <= 0 {
			err = fmt.Errorf("udpio: sendmmsg sent nothing: %w", io.ErrShortWrite)
		}
		if err != nil {
			n = 0 // x/net reports -1 with the error
		}
		done := c.countSent(rest, n)
		clear(c.wiov[:niov]) // do not keep the caller's slices
		sent += done
		if probing {
			probeEnd = 0
			if done > 0 {
				c.gsoRefused(probeSeg, probeErr)
			}
		}
		if err != nil {
			c.writeErrors.Add(1)
			if !probing && c.wsegs[n] > 1 && gsoRefusal(err) {
				probeEnd, probeSeg, probeErr = sent+c.wsegs[n], len(dgs[sent].Data), err
				continue
			}
			return sent, err
		}
	}
	return sent, nil
}

// pack fills c.wmsgs with messages for the start of dgs: at most
// len(c.wmsgs) messages, each one datagram or, when coalesce is set, one
// run of datagrams (see gsoRun). It returns the number of messages and of
// c.wiov entries used; c.wsegs says how many datagrams each message holds.
func (c *Conn) pack(dgs []Datagram, coalesce bool) (nmsgs, niov int) {
	iov := c.wiov[:0]
	for i := 0; i < len(dgs) && nmsgs < len(c.wmsgs); {
		run := 1
		if coalesce {
			run = gsoRun(dgs[i:], c.gsoMax)
		}
		start := len(iov)
		for j := range run {
			iov = append(iov, dgs[i+j].Data)
		}
		m := &c.wmsgs[nmsgs]
		m.Buffers = iov[start:len(iov):len(iov)]
		m.Addr = c.udpAddr(dgs[i].Addr)
		m.OOB = nil
		if run > 1 {
			oob := c.woob[nmsgs*gsoCmsgSpace : (nmsgs+1)*gsoCmsgSpace]
			putSegmentSize(oob, len(dgs[i].Data))
			m.OOB = oob
		}
		c.wsegs[nmsgs] = run
		nmsgs++
		i += run
	}
	return nmsgs, len(iov)
}

// gsoRun returns how many datagrams at the start of dgs (at least one) go
// in one UDP_SEGMENT message: the same destination, the same size as the
// first except that the last may be shorter, none empty, at most
// MaxGSOSegments of them and MaxGSOBytes4/6 bytes in all, and none when the
// first is larger than maxSegment.
func gsoRun(dgs []Datagram, maxSegment int) int {
	if len(dgs) == 0 {
		return 0
	}
	seg, to := len(dgs[0].Data), dgs[0].Addr
	if seg == 0 || seg > maxSegment {
		return 1
	}
	limit := MaxGSOBytes6
	if to.Addr().Is4() || to.Addr().Is4In6() {
		limit = MaxGSOBytes4
	}
	n, total := 1, seg
	for n < len(dgs) && n < MaxGSOSegments {
		size := len(dgs[n].Data)
		if size == 0 || size > seg || total+size > limit || dgs[n].Addr != to {
			break
		}
		n++
		total += size
		if size < seg {
			break // a shorter datagram ends the run
		}
	}
	return n
}

// countSent adds the first nmsgs packed messages, covering the start of
// dgs, to the counters, and returns how many datagrams they held.
func (c *Conn) countSent(dgs []Datagram, nmsgs int) (datagrams int) {
	var bytes, gsoMsgs, gsoDgs uint64
	for _, segs := range c.wsegs[:nmsgs] {
		for _, dg := range dgs[datagrams : datagrams+segs] {
			bytes += uint64(len(dg.Data))
		}
		if segs > 1 {
			gsoMsgs++
			gsoDgs += uint64(segs)
		}
		datagrams += segs
	}
	if datagrams > 0 {
		c.datagramsWritten.Add(uint64(datagrams))
		c.bytesWritten.Add(bytes)
	}
	if gsoMsgs > 0 {
		c.gsoMessages.Add(gsoMsgs)
		c.gsoDatagrams.Add(gsoDgs)
	}
	return datagrams
}

// gsoRefused records that the kernel refused a UDP_SEGMENT message of
// segment size seg with err, and that the same datagrams went out one by
// one. EINVAL most likely means a segment larger than the route's MTU, so
// segments that large are no longer coalesced; EIO means the device
// cannot checksum segments at all. Either way, after maxGSOFallbacks
// refusals GSO is turned off.
func (c *Conn) gsoRefused(seg int, err error) {
	n := c.gsoFallbacks.Add(1)
	c.gsoMax = min(c.gsoMax, seg-1)
	if n >= maxGSOFallbacks || c.gsoMax < 1 || !gsoSizeRelated(err) {
		c.gso = false
		c.gsoActive.Store(false)
	}
}

// udpAddr returns a *net.UDPAddr for ap from a bounded cache, so that a
// steady set of destinations costs no allocation per datagram. A zone
// that names an interface ("eth0") is turned into its index once, here,
// rather than looked up for every datagram.
func (c *Conn) udpAddr(ap netip.AddrPort) *net.UDPAddr {
	if ua, ok := c.addrs[ap]; ok {
		return ua
	}
	if len(c.addrs) >= maxCachedAddrs {
		for k := range c.addrs {
			delete(c.addrs, k)
			break
		}
	}
	ua := net.UDPAddrFromAddrPort(ap)
	if z := ua.Zone; z != "" {
		if _, err := strconv.ParseUint(z, 10, 32); err != nil {
			if ifi, err := net.InterfaceByName(z); err == nil {
				ua.Zone = strconv.Itoa(ifi.Index)
			}
		}
	}
	c.addrs[ap] = ua
	return ua
}

// WriteTo sends one datagram to addr with one system call. It does not
// allocate.
func (c *Conn) WriteTo(b []byte, addr netip.AddrPort) error {
	if !addr.IsValid() {
		return fmt.Errorf("%w: %v", ErrInvalidAddr, addr)
	}
	return c.writeOne(b, addr)
}

func (c *Conn) writeOne(b []byte, addr netip.AddrPort) error {
	var err error
	if c.d != nil {
		err = c.d.sendTo(b, c.udpAddr(addr))
	} else {
		_, err = c.uc.WriteToUDPAddrPort(b, addr)
	}
	c.writeSyscalls.Add(1)
	if err != nil {
		c.writeErrors.Add(1)
		return err
	}
	c.datagramsWritten.Add(1)
	c.bytesWritten.Add(uint64(len(b)))
	return nil
}

// Stats returns a snapshot of the counters. Each counter is read
// atomically; the snapshot as a whole is not.
func (c *Conn) Stats() Stats {
	return Stats{
		DatagramsRead:    c.datagramsRead.Load(),
		BytesRead:        c.bytesRead.Load(),
		ReadSyscalls:     c.readSyscalls.Load(),
		Truncated:        c.truncated.Load(),
		KernelDrops:      c.kernelDrops.Load(),
		DatagramsWritten: c.datagramsWritten.Load(),
		BytesWritten:     c.bytesWritten.Load(),
		WriteSyscalls:    c.writeSyscalls.Load(),
		WriteErrors:      c.writeErrors.Load(),
		GSOMessages:      c.gsoMessages.Load(),
		GSODatagrams:     c.gsoDatagrams.Load(),
		GSOFallbacks:     c.gsoFallbacks.Load(),
		GROReads:         c.groReads.Load(),
		GRODatagrams:     c.groDatagrams.Load(),
		BusyPollHits:     c.busyHits.Load(),
		BusyPollTimeouts: c.busyTimeouts.Load(),
		BusyPollEmpty:    c.busyEmpty.Load(),
	}
}

// Offload reports whether UDP GSO (coalescing on send) and GRO (splitting
// coalesced reads) are in use now: each is on when the platform and kernel
// support it and the Config did not turn it off, and GSO goes off for good
// after the kernel refuses it (see Config.NoGSO).
func (c *Conn) Offload() (gso, gro bool) { return c.gsoActive.Load(), c.groActive.Load() }

// BufferSizes returns the receive and send buffer sizes the kernel granted
// (getsockopt SO_RCVBUF/SO_SNDBUF), in bytes. Linux reports twice the
// effective request, since it counts its bookkeeping overhead. Both are 0
// on platforms other than Linux, where the size cannot be queried portably,
// and after Close.
func (c *Conn) BufferSizes() (read, write int) {
	if c.d != nil {
		return c.d.bufferSizes()
	}
	rc, err := c.uc.SyscallConn()
	if err != nil {
		return 0, 0
	}
	return grantedBufferSizes(rc)
}

// withUDPConn calls fn with a net.UDPConn for the Conn's socket, for
// setting socket options through APIs that want one (x/net's ipv4/ipv6
// PacketConn): the Conn's own, or for a socket outside the netpoller a
// net.UDPConn on a duplicate of it, closed when fn returns. Options set
// through it are the socket's.
func (c *Conn) withUDPConn(fn func(*net.UDPConn) error) error {
	if c.d != nil {
		return c.d.withUDPConn(fn)
	}
	return fn(c.uc)
}

// LocalAddr returns the address the socket is bound to. A dual-stack
// wildcard socket reports [::]:port.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// SetReadDeadline sets the time after which a blocked or future Read fails
// with an error matching os.ErrDeadlineExceeded; the zero time means none.
// A deadline that passes also ends a busy-poll spin (Config.BusyPoll), so
// a deadline in the past interrupts a Read at once in either mode. It is
// safe to call while another goroutine is in Read.
func (c *Conn) SetReadDeadline(t time.Time) error {
	var d int64 // wall-clock ns; 0: none
	if !t.IsZero() {
		d = max(t.UnixNano(), 1)
	}
	c.rdeadline.Store(d)
	if c.d != nil {
		return c.d.wakeReader()
	}
	return c.uc.SetReadDeadline(t)
}

// deadlinePassed reports whether a read deadline is set and has passed.
func (c *Conn) deadlinePassed() bool {
	d := c.rdeadline.Load()
	return d != 0 && time.Now().UnixNano() >= d
}

// Close closes the socket. A Read blocked in another goroutine returns an
// error matching net.ErrClosed, as do later calls.
func (c *Conn) Close() error {
	if c.d != nil {
		return c.d.close()
	}
	return c.uc.Close()
}
