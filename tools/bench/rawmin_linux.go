package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The raw-batch baseline on Linux is the plainest batched loop there is,
// so that it measures the machine and not a socket library: a blocking
// socket of its own (no Go netpoller, no epoll, no goroutine parking), a
// connected sender whose sendmmsg carries no per-message address (the
// kernel reuses the cached route), a receiver whose recvmmsg blocks for
// the first datagram and takes whatever else is queued
// (MSG_WAITFORONE), and both socket buffers at 4 MiB (udpio's default).
// Every telewire figure is divided by it, so it has to be the best a
// program can expect from the kernel without offload.

// rawMinTimeout is how often a blocked raw-batch receive wakes to see
// whether Close was called; a closed receiver's Next returns within it.
var rawMinTimeout = unix.Timeval{Usec: 20_000}

// rawMinBuffer is both socket buffers' size, as udpio's default.
const rawMinBuffer = 4 << 20

// rawMinSocket opens a blocking UDP socket of addr's family with both
// buffers at rawMinBuffer (forced past the sysctl limit where allowed).
func rawMinSocket(addr netip.AddrPort) (int, error) {
	family := unix.AF_INET
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("bench: raw socket: %w", err)
	}
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], rawMinBuffer) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], rawMinBuffer) // capped by the sysctl: best effort
		}
	}
	return fd, nil
}

func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	if a := ap.Addr().Unmap(); a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

func rawMinListen(ctx context.Context, addr string) (Receiver, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: raw receiver: %w", err)
	}
	ap := ua.AddrPort()
	fd, err := rawMinSocket(ap)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (Receiver, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("bench: raw receiver: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &rawMinTimeout); err != nil {
		return fail(err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) // best effort: drops stay 0 without it
	if err := unix.Bind(fd, sockaddrOf(ap)); err != nil {
		return fail(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	var local netip.AddrPort
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		local = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		local = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	slot := min(max(rawMaxDatagram, sizeOf(ctx)), RawMaxSize) // each receive buffer
	r := &rawMinReceiver{fd: fd, local: local, slot: slot, hdrs: make([]unix.Mmsghdr, RawBatchSize),
		iovs: make([]unix.Iovec, RawBatchSize), buf: make([]byte, RawBatchSize*slot),
		oob: make([]byte, RawBatchSize*rawMinOOB)}
	for i := range r.hdrs {
		r.iovs[i].Base = &r.buf[i*slot]
		r.iovs[i].SetLen(slot)
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
		r.hdrs[i].Hdr.Control = &r.oob[i*rawMinOOB]
	}
	return r, nil
}

// rawMinOOB holds one SO_RXQ_OVFL control message (a uint32).
var rawMinOOB = unix.CmsgSpace(4)

// rawMinReceiver reads batches with one blocking recvmmsg each, from the
// goroutine calling Next (whose thread the kernel parks while nothing is
// queued).
type rawMinReceiver struct {
	fd     int
	local  netip.AddrPort
	slot   int // bytes per receive buffer
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	buf    []byte
	oob    []byte
	n      int // messages of the current batch
	next   int // next one to hand out
	closed atomic.Bool
	once   sync.Once

	reads, drops, datagrams, bytes atomic.Uint64
}

func (r *rawMinReceiver) Addr() string { return r.local.String() }

func (r *rawMinReceiver) Next() ([]byte, error) {
	for r.next >= r.n {
		if err := r.read(); err != nil {
			return nil, err
		}
	}
	r.next++
	i := r.next - 1
	return r.buf[i*r.slot : i*r.slot+int(r.hdrs[i].Len)], nil
}

// NextBatch reads one batch and returns how many datagrams it held, for
// the bare loop (ref-loop): nothing is looked at but the count.
func (r *rawMinReceiver) NextBatch() (int, error) {
	r.n, r.next = 0, 0
	if err := r.read(); err != nil {
		return 0, err
	}
	n := r.n
	r.n = 0
	return n, nil
}

// read fills the batch with one blocking recvmmsg (n > 0 on success).
func (r *rawMinReceiver) read() error {
	for {
		if r.closed.Load() {
			r.once.Do(func() { unix.Close(r.fd) })
			return net.ErrClosed
		}
		for i := range r.hdrs {
			r.hdrs[i].Hdr.SetControllen(rawMinOOB)
			r.hdrs[i].Hdr.Flags = 0
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.hdrs[0])),
			uintptr(len(r.hdrs)), unix.MSG_WAITFORONE, 0, 0)
		switch e {
		case 0:
		case unix.EAGAIN, unix.EINTR: // the timeout: look at closed again
			continue
		default:
			return fmt.Errorf("bench: raw recvmmsg: %w", e)
		}
		r.reads.Add(1)
		r.n, r.next = int(n), 0
		var bytes uint64
		for i := range r.n {
			bytes += uint64(r.hdrs[i].Len)
		}
		r.datagrams.Add(uint64(r.n))
		r.bytes.Add(bytes)
		if last := &r.hdrs[r.n-1].Hdr; last.Controllen >= uint64(unix.CmsgLen(4)) {
			cm := r.oob[(r.n-1)*rawMinOOB:]
			h := (*unix.Cmsghdr)(unsafe.Pointer(&cm[0]))
			if h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL {
				r.drops.Store(uint64(binary.NativeEndian.Uint32(cm[unix.CmsgLen(0):])))
			}
		}
		return nil
	}
}

// Close makes Next return net.ErrClosed within rawMinTimeout; Next closes
// the socket then.
func (r *rawMinReceiver) Close() error {
	r.closed.Store(true)
	return nil
}

func (r *rawMinReceiver) Counters() map[string]uint64 {
	return map[string]uint64{"kernel_drops": r.drops.Load(), "read_syscalls": r.reads.Load(),
		"datagrams": r.datagrams.Load()}
}

func rawMinDial(ctx context.Context, addr string) (Sender, error) {
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("bench: raw sender: %w", err)
	}
	fd, err := rawMinSocket(to)
	if err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, sockaddrOf(to)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bench: raw sender: connect %v: %w", to, err)
	}
	size := sizeOf(ctx) // bytes per batch slot
	if size > RawMaxSize {
		unix.Close(fd)
		return nil, fmt.Errorf("bench: raw UDP carries at most %d bytes a message, not %d", RawMaxSize, size)
	}
	s := &rawMinSender{fd: fd, size: size, hdrs: make([]unix.Mmsghdr, RawBatchSize), iovs: make([]unix.Iovec, RawBatchSize),
		slab: make([]byte, RawBatchSize*size)}
	for i := range s.hdrs {
		s.iovs[i].Base = &s.slab[i*size]
		s.hdrs[i].Hdr.Iov = &s.iovs[i]
		s.hdrs[i].Hdr.SetIovlen(1)
	}
	return s, nil
}

// rawMinSender copies messages into a preallocated batch and writes it
// with sendmmsg on its connected blocking socket when full or flushed.
type rawMinSender struct {
	fd   int
	size int // bytes per slot
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	slab []byte
	n    int

	syscalls, errs, datagrams, bytes uint64
}

func (s *rawMinSender) Send(msg []byte) error {
	if len(msg) > s.size {
		return fmt.Errorf("bench: raw message of %d bytes > %d", len(msg), s.size)
	}
	s.iovs[s.n].SetLen(copy(s.slab[s.n*s.size:(s.n+1)*s.size], msg))
	s.n++
	if s.n == len(s.hdrs) {
		return s.Flush()
	}
	return nil
}

func (s *rawMinSender) Flush() error {
	for sent := 0; sent < s.n; {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.hdrs[sent])),
			uintptr(s.n-sent), 0, 0, 0)
		s.syscalls++
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			s.errs++
			s.n = 0
			return fmt.Errorf("bench: raw sendmmsg: %w", e)
		}
		for i := sent; i < sent+int(n); i++ {
			s.bytes += s.iovs[i].Len
		}
		s.datagrams += uint64(n)
		sent += int(n)
	}
	s.n = 0
	return nil
}

// Blast is the bare loop's sending side (ref-loop): it fills every slot
// of the batch with msg once and then writes the whole batch with one
// sendmmsg after another, untouched (no stamp, no copy), until the clock
// passes end or max messages are out. It returns how many it wrote.
func (s *rawMinSender) Blast(ctx context.Context, msg []byte, end int64, max uint64) (uint64, error) {
	if len(msg) > s.size {
		return 0, fmt.Errorf("bench: raw message of %d bytes > %d", len(msg), s.size)
	}
	for s.n = 0; s.n < len(s.hdrs); s.n++ {
		s.iovs[s.n].SetLen(copy(s.slab[s.n*s.size:(s.n+1)*s.size], msg))
	}
	var sent uint64
	for sent < max && ctx.Err() == nil && Nanotime() < end {
		s.n = int(min(uint64(len(s.hdrs)), max-sent))
		before := s.datagrams
		if err := s.Flush(); err != nil {
			return sent, err
		}
		sent += s.datagrams - before
	}
	return sent, nil
}

func (s *rawMinSender) Close() error {
	err := s.Flush()
	return errors.Join(err, unix.Close(s.fd))
}

func (s *rawMinSender) Wire() (bytes, datagrams uint64, counters map[string]uint64) {
	return s.bytes, s.datagrams, map[string]uint64{"write_syscalls": s.syscalls, "write_errors": s.errs}
}
