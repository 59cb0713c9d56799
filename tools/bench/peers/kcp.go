package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	kcp "github.com/xtaci/kcp-go/v5"

	"github.com/telewire/telewire/tools/bench"
)

// kcp-go settings of the comparison: the "fast" profile its README
// recommends (nodelay on, 10 ms internal clock, fast resend after 2
// duplicate ACKs, no congestion window), a 1024-segment window each way,
// message mode (one Write is one message), and 4 MiB socket buffers like
// telewire's and the raw baselines'.
const (
	kcpNoDelay, kcpInterval, kcpResend, kcpNoCongestion = 1, 10, 2, 1
	kcpWindow                                           = 1024
	kcpSocketBuffer                                     = 4 << 20
	kcpDataShards, kcpParityShards                      = 10, 3
)

// Transports returns the peer transports: kcp-go without FEC, and with its
// own Reed-Solomon FEC of 10 data and 3 parity shards — plus the raw
// batched baseline, so that each figure is also a ratio to raw UDP in the
// same run.
func Transports() []bench.Transport {
	var base bench.Transport
	for _, t := range bench.Builtin() {
		if t.Baseline {
			base = t
		}
	}
	return []bench.Transport{
		base,
		{Name: "kcp", Description: "kcp-go v5, NoDelay(1,10,2,1), window 1024",
			Listen: kcpListen(0, 0), Dial: kcpDial(0, 0)},
		{Name: "kcp-fec", Description: "kcp-go v5, NoDelay(1,10,2,1), window 1024, FEC 10,3",
			Listen: kcpListen(kcpDataShards, kcpParityShards), Dial: kcpDial(kcpDataShards, kcpParityShards)},
	}
}

func tune(s *kcp.UDPSession) {
	s.SetNoDelay(kcpNoDelay, kcpInterval, kcpResend, kcpNoCongestion)
	s.SetWindowSize(kcpWindow, kcpWindow) // message mode is kcp-go's default
}

func kcpListen(data, parity int) func(context.Context, string) (bench.Receiver, error) {
	return func(_ context.Context, addr string) (bench.Receiver, error) {
		l, err := kcp.ListenWithOptions(addr, nil, data, parity)
		if err != nil {
			return nil, err
		}
		_ = l.SetReadBuffer(kcpSocketBuffer) // best effort, as udpio does
		_ = l.SetWriteBuffer(kcpSocketBuffer)
		return &kcpReceiver{l: l, buf: make([]byte, 64<<10)}, nil
	}
}

// kcpReceiver accepts the one session of a case on the first Next and
// reads one message per Read (message mode).
type kcpReceiver struct {
	l   *kcp.Listener
	buf []byte

	mu     sync.Mutex
	sess   *kcp.UDPSession
	closed bool
}

var errClosed = errors.New("kcp receiver closed")

func (r *kcpReceiver) Addr() string { return r.l.Addr().String() }

func (r *kcpReceiver) Next() ([]byte, error) {
	r.mu.Lock()
	s := r.sess
	r.mu.Unlock()
	if s == nil {
		var err error
		if s, err = r.l.AcceptKCP(); err != nil {
			return nil, err
		}
		tune(s)
		r.mu.Lock()
		closed := r.closed
		r.sess = s
		r.mu.Unlock()
		if closed {
			s.Close()
			return nil, errClosed
		}
	}
	n, err := s.Read(r.buf)
	if err != nil {
		return nil, err
	}
	return r.buf[:n], nil
}

func (r *kcpReceiver) Close() error {
	r.mu.Lock()
	r.closed = true
	s := r.sess
	r.mu.Unlock()
	var err error
	if s != nil {
		err = s.Close()
	}
	return errors.Join(err, r.l.Close())
}

func (r *kcpReceiver) Counters() map[string]uint64 {
	s := kcp.DefaultSnmp.Copy()
	return map[string]uint64{"in_pkts": s.InPkts, "fec_recovered": s.FECRecovered, "lost_segs": s.LostSegs, "repeat_segs": s.RepeatSegs}
}

func kcpDial(data, parity int) func(context.Context, string) (bench.Sender, error) {
	return func(_ context.Context, addr string) (bench.Sender, error) {
		before := kcp.DefaultSnmp.Copy()
		s, err := kcp.DialWithOptions(addr, nil, data, parity)
		if err != nil {
			return nil, fmt.Errorf("kcp dial %s: %w", addr, err)
		}
		tune(s)
		_ = s.SetReadBuffer(kcpSocketBuffer)
		_ = s.SetWriteBuffer(kcpSocketBuffer)
		return &kcpSender{s: s, before: before}, nil
	}
}

// kcpSender writes each message with one Write, which blocks while the
// send window is full: kcp-go's own back-pressure.
type kcpSender struct {
	s      *kcp.UDPSession
	before *kcp.Snmp
}

func (s *kcpSender) Send(msg []byte) error {
	_, err := s.s.Write(msg)
	return err
}

func (s *kcpSender) Flush() error { return nil }
func (s *kcpSender) Close() error { return s.s.Close() }

// Wire reports the UDP bytes and datagrams this process wrote since the
// dial (kcp-go counts them process-wide; a worker runs one case at once).
func (s *kcpSender) Wire() (bytes, datagrams uint64, counters map[string]uint64) {
	now := kcp.DefaultSnmp.Copy()
	return now.OutBytes - s.before.OutBytes, now.OutPkts - s.before.OutPkts, map[string]uint64{
		"retrans_segs":      now.RetransSegs - s.before.RetransSegs,
		"fast_retrans_segs": now.FastRetransSegs - s.before.FastRetransSegs,
		"out_segs":          now.OutSegs - s.before.OutSegs,
	}
}
