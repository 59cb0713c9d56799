package udpio

import (
	"net/netip"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// mmsgReader receives a batch with one recvmmsg(2) through the socket's
// RawConn, into the buffers of a fixed set of messages, and decodes the
// source addresses itself. x/net's ReadBatch does the same call but
// allocates a net.UDPAddr and its IP for every datagram, which at 100 000
// datagrams/s is the receiver's only garbage; this reader allocates
// nothing.
type mmsgReader struct {
	rc    syscall.RawConn
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // large enough for an IPv4 address too
	oobs  [][]byte                // each message's control buffer, nil if none
	srcs  []netip.AddrPort
	zone  scopeZone
	fn    func(fd uintptr) bool // made once: a closure per call would allocate
	n     int
	errno syscall.Errno
}

// newMmsgReader prepares msgs (their Buffers[0] and OOB set) for recvmmsg.
func newMmsgReader(rc syscall.RawConn, msgs []ipv4.Message) *mmsgReader {
	r := &mmsgReader{
		rc:    rc,
		hdrs:  make([]unix.Mmsghdr, len(msgs)),
		iovs:  make([]unix.Iovec, len(msgs)),
		names: make([]unix.RawSockaddrInet6, len(msgs)),
		oobs:  make([][]byte, len(msgs)),
		srcs:  make([]netip.AddrPort, len(msgs)),
	}
	for i := range msgs {
		buf := msgs[i].Buffers[0]
		r.iovs[i].Base = &buf[0]
		r.iovs[i].SetLen(len(buf))
		h := &r.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		if oob := msgs[i].OOB; len(oob) > 0 {
			r.oobs[i] = oob
			h.Control = &oob[0]
		}
	}
	r.fn = r.call
	return r
}

// call is the RawConn.Read callback: one non-blocking recvmmsg; false
// (wait for the socket to be readable) when nothing is queued.
func (r *mmsgReader) call(fd uintptr) bool {
	for i := range r.hdrs {
		h := &r.hdrs[i].Hdr
		h.Namelen = uint32(unsafe.Sizeof(r.names[i]))
		h.SetControllen(len(r.oobs[i]))
		h.Flags = 0
	}
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)), 0, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.n, r.errno = int(n), e
		return true
	}
}

// read receives into msgs (the ones given to newMmsgReader), setting N,
// NN and Flags of the first n; srcs[:n] are their sources.
func (r *mmsgReader) read(msgs []ipv4.Message) (int, error) {
	if err := r.rc.Read(r.fn); err != nil {
		return 0, err
	}
	return r.finish(msgs)
}

// finish reports what the last call received into msgs (see read).
func (r *mmsgReader) finish(msgs []ipv4.Message) (int, error) {
	if r.errno != 0 {
		return 0, r.errno
	}
	for i := range r.n {
		h := &r.hdrs[i]
		m := &msgs[i]
		m.N, m.NN, m.Flags = int(h.Len), int(h.Hdr.Controllen), int(h.Hdr.Flags)
		r.srcs[i] = sockaddrAddrPort(&r.names[i], &r.zone)
	}
	return r.n, nil
}

// scopeZone names an IPv6 scope id (an interface index) as a zone: its
// decimal form, which every resolver of zones takes (Go's net package, the
// Conn's writes) and which, unlike an interface's name, needs no lookup
// and means the same interface in whichever network namespace the
// goroutine that reads it runs. It remembers the last id it named, so a
// peer at a link-local address costs no allocation per datagram.
type scopeZone struct {
	id   uint32
	name string
}

func (z *scopeZone) of(id uint32) string {
	if id != z.id || z.name == "" {
		z.id, z.name = id, strconv.FormatUint(uint64(id), 10)
	}
	return z.name
}

// sockaddrAddrPort decodes a sockaddr_in or sockaddr_in6 written by the
// kernel; IPv4-mapped addresses come out as IPv4. A scope id (the source
// is link-local) becomes the address's zone, named by z: without it a
// reply to a link-local address would leave by whichever interface the
// routing table prefers, not the one it came in by.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6, z *scopeZone) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && a.Is6() {
			a = a.WithZone(z.of(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}
