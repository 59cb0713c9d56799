package udpio

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
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
// MaxDatagram+1 bytes with NoBatch.
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
	// on Windows batching is always off.
	NoBatch bool
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
	return c, errors.Join(
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
	// last datagram read. Always 0 on other platforms.
	KernelDrops uint64

	DatagramsWritten uint64 // datagrams the kernel accepted for sending
	BytesWritten     uint64 // payload bytes of those datagrams
	WriteSyscalls    uint64 // send calls (sendmmsg; sendmsg for WriteTo and NoBatch), including failed ones
	WriteErrors      uint64 // send calls that failed
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

// Conn is a UDP socket that reads and writes datagrams in batches.
//
// Concurrency: Read may be called from one goroutine while WriteBatch and
// WriteTo are called from one other goroutine; Read is not safe to call
// concurrently with itself, nor writes with writes. Stats, BufferSizes,
// LocalAddr, SetReadDeadline and Close are safe to call from any goroutine.
//
// Buffers: the slice returned by Read and every Datagram.Data in it point
// into the Conn's own buffers and are valid only until the next Read; copy
// what must outlive it. Writes do not keep the caller's slices after they
// return.
//
// The zero value is not usable; create a Conn with [Listen] or [New].
type Conn struct {
	uc          *net.UDPConn
	bc          batchConn // nil on the one-datagram-per-call path
	local       netip.AddrPort
	maxDatagram int

	// Reader state, owned by the goroutine calling Read.
	rmsgs   []ipv4.Message // len BatchSize (1 with NoBatch); Buffers and OOB set once
	rdgs    []Datagram     // what Read returns; cap len(rmsgs)
	oneAddr netip.AddrPort // source of the last datagram on the NoBatch path

	// Writer state, owned by the goroutine calling WriteBatch/WriteTo.
	wmsgs []ipv4.Message // len BatchSize; Buffers[0] points into wbufs
	wbufs [][]byte
	addrs map[netip.AddrPort]*net.UDPAddr // bounded by maxCachedAddrs

	datagramsRead, bytesRead, readSyscalls, truncated, kernelDrops atomic.Uint64
	datagramsWritten, bytesWritten, writeSyscalls, writeErrors     atomic.Uint64
}

// Listen opens a UDP socket on addr ("127.0.0.1:0", "[::1]:0", ":9000";
// a host name is resolved) and wraps it with [New].
func Listen(addr string, cfg Config) (*Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("udpio: listen %q: %w", addr, err)
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("udpio: listen %q: %w", addr, err)
	}
	return New(uc, cfg)
}

// New wraps an unconnected UDP socket. It takes ownership of c: the Conn
// closes it, and so does New when it fails. New sets the socket buffer sizes
// and, on Linux, enables the kernel drop counter, and allocates every buffer
// the Conn will use.
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
	}
	n := 1
	if !cfg.NoBatch && batchSupported {
		n = cfg.BatchSize
		// The net package gives an AF_INET socket's address as a 4-byte IP
		// and an AF_INET6 one's (dual-stack wildcard, IPv4-mapped) as 16.
		if len(la.IP) == net.IPv4len {
			c.bc = ipv4.NewPacketConn(uc)
		} else {
			c.bc = ipv6.NewPacketConn(uc)
		}
		c.wmsgs = make([]ipv4.Message, n)
		c.wbufs = make([][]byte, n)
		for i := range c.wmsgs {
			c.wmsgs[i].Buffers = c.wbufs[i : i+1 : i+1]
		}
		c.addrs = make(map[netip.AddrPort]*net.UDPAddr)
	}

	// One slab for the payload buffers and one for the control messages.
	bufLen := cfg.MaxDatagram + 1
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
	c.rdgs = make([]Datagram, 0, n)
	return c, nil
}

// Read blocks until at least one datagram arrives and returns all that one
// receive call got: at most BatchSize datagrams (one with NoBatch, and one
// on platforms other than Linux, where x/net reads one message per call). The
// slice and each Data alias the Conn's buffers and are valid until the next
// Read. Datagrams longer than MaxDatagram are dropped and counted in
// Stats.Truncated, never returned; if a whole batch is dropped, Read waits
// for more.
//
// After Close, Read returns an error matching net.ErrClosed; after the read
// deadline passes, one matching os.ErrDeadlineExceeded.
func (c *Conn) Read() ([]Datagram, error) {
	for {
		n, err := c.receive()
		c.readSyscalls.Add(1)
		if err != nil {
			return nil, err
		}
		dgs := c.rdgs[:0]
		var bytes uint64
		for i := range c.rmsgs[:n] {
			m := &c.rmsgs[i]
			if d, ok := dropsFromOOB(m.OOB[:m.NN]); ok {
				c.kernelDrops.Store(uint64(d))
			}
			if m.N > c.maxDatagram {
				c.truncated.Add(1)
				continue
			}
			dgs = append(dgs, Datagram{Data: m.Buffers[0][:m.N], Addr: c.sourceOf(m)})
			bytes += uint64(m.N)
		}
		if len(dgs) > 0 {
			c.datagramsRead.Add(uint64(len(dgs)))
			c.bytesRead.Add(bytes)
			c.rdgs = dgs
			return dgs, nil
		}
	}
}

// receive fills c.rmsgs[:n] with one receive call.
func (c *Conn) receive() (n int, err error) {
	if c.bc != nil {
		n, err = c.bc.ReadBatch(c.rmsgs, 0)
		if err != nil {
			return 0, err
		}
		return n, nil
	}
	m := &c.rmsgs[0]
	m.N, m.NN, _, c.oneAddr, err = c.uc.ReadMsgUDPAddrPort(m.Buffers[0], m.OOB)
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

// WriteBatch sends dgs in order, BatchSize datagrams per sendmmsg call (one
// per call with NoBatch), calling again until all are sent. It returns how
// many were sent. On error, dgs[:n] were sent and dgs[n] was not; if any
// destination is invalid, nothing is sent and the error matches
// ErrInvalidAddr. Datagrams of 0 bytes are allowed.
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
	for sent < len(dgs) {
		chunk := dgs[sent:min(len(dgs), sent+len(c.wmsgs))]
		for i := range chunk {
			c.wbufs[i] = chunk[i].Data
			c.wmsgs[i].Addr = c.udpAddr(chunk[i].Addr)
		}
		n, err := c.sendChunk(chunk)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// sendChunk sends the len(chunk) messages prepared in c.wmsgs, retrying
// after partial sends.
func (c *Conn) sendChunk(chunk []Datagram) (sent int, err error) {
	defer clear(c.wbufs[:len(chunk)]) // do not keep the caller's slices
	for sent < len(chunk) {
		n, err := c.bc.WriteBatch(c.wmsgs[sent:len(chunk)], 0)
		c.writeSyscalls.Add(1)
		if err != nil {
			c.writeErrors.Add(1)
			return sent, err
		}
		if n <= 0 {
			c.writeErrors.Add(1)
			return sent, fmt.Errorf("udpio: sendmmsg sent nothing: %w", io.ErrShortWrite)
		}
		var bytes uint64
		for _, dg := range chunk[sent : sent+n] {
			bytes += uint64(len(dg.Data))
		}
		c.datagramsWritten.Add(uint64(n))
		c.bytesWritten.Add(bytes)
		sent += n
	}
	return sent, nil
}

// udpAddr returns a *net.UDPAddr for ap from a bounded cache, so that a
// steady set of destinations costs no allocation per datagram.
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
	_, err := c.uc.WriteToUDPAddrPort(b, addr)
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
	}
}

// BufferSizes returns the receive and send buffer sizes the kernel granted
// (getsockopt SO_RCVBUF/SO_SNDBUF), in bytes. Linux reports twice the
// effective request, since it counts its bookkeeping overhead. Both are 0
// on platforms other than Linux, where the size cannot be queried portably,
// and after Close.
func (c *Conn) BufferSizes() (read, write int) {
	rc, err := c.uc.SyscallConn()
	if err != nil {
		return 0, 0
	}
	return grantedBufferSizes(rc)
}

// LocalAddr returns the address the socket is bound to. A dual-stack
// wildcard socket reports [::]:port.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// SetReadDeadline sets the time after which a blocked or future Read fails
// with an error matching os.ErrDeadlineExceeded; the zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.uc.SetReadDeadline(t) }

// Close closes the socket. A Read blocked in another goroutine returns an
// error matching net.ErrClosed, as do later calls.
func (c *Conn) Close() error { return c.uc.Close() }
