package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/telewire/telewire/internal/udpio"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// Transport is one contestant of the bench: how to open its receiving end
// and its sending end. A worker process looks transports up by Name; the
// parent only needs Name and Description. The built-in set is Builtin;
// the peer comparison (tools/bench/peers) adds kcp-go's.
type Transport struct {
	// Name identifies the transport on the command line and in reports,
	// e.g. "raw-batch" or "tw-nack".
	Name string `json:"name"`
	// Description is a short human label for tables and plots.
	Description string `json:"description"`
	// Baseline marks the raw batched UDP transport that every other
	// figure of the same run is divided by.
	Baseline bool `json:"baseline,omitempty"`
	// Optional transports are left out of the default matrix and run only
	// when --only names them (or Options.Transports lists them).
	Optional bool `json:"optional,omitempty"`
	// CleanOnly transports are measured on the direct link only: Run
	// skips their lossy cases.
	CleanOnly bool `json:"clean_only,omitempty"`
	// FullSpeedOnly transports are measured at full speed only: Run
	// skips their paced cases.
	FullSpeedOnly bool `json:"full_speed_only,omitempty"`
	// Bare marks a minimal loop that carries no stamps (ref-loop): its
	// Sender implements Blaster and its Receiver BatchCounter, the
	// receiving worker counts datagrams, and the case has no latency
	// figures and no warm-up.
	Bare bool `json:"bare,omitempty"`
	// NoLatency transports measure no latency (ref-loop, ref-iperf3,
	// cmd-*): their cases get no "added p50" against the ping-pong.
	NoLatency bool `json:"no_latency,omitempty"`
	// Receivers is how many receiving ends a case opens (fan-out); 0 and
	// 1 mean one. With SharedAddr every end after the first listens on
	// the address the first one got (a multicast group and port) and the
	// sender is given that address; without it each end listens on
	// ListenAddr and the sender is given their addresses comma-separated.
	Receivers  int  `json:"receivers,omitempty"`
	SharedAddr bool `json:"shared_addr,omitempty"`
	// Family groups fan-out transports that differ only in Receivers
	// ("mcast", "ucast", "sub"): Case.VsOne divides each by its family's
	// one-receiver case of the same run.
	Family string `json:"family,omitempty"`
	// Subscribe turns the order of opening round (fan-sub): the sending
	// worker opens the sender first, with Dial given ListenAddr (its
	// Sender implements Subscribable), every receiving end is opened with
	// Listen given the sender's address to subscribe to, and the sender
	// starts sending once Receivers of them have joined. Clean link only.
	Subscribe bool `json:"subscribe,omitempty"`
	// ListenAddr is where the first receiving end listens (with
	// Subscribe: where the sender listens); default "127.0.0.1:0".
	ListenAddr string `json:"-"`
	// Listen opens a receiving end on addr ("127.0.0.1:0"); with
	// Subscribe, one subscribed to the sender at addr.
	Listen func(ctx context.Context, addr string) (Receiver, error) `json:"-"`
	// Dial opens a sending end towards addr; with Subscribe, one that
	// listens for subscribers at addr.
	Dial func(ctx context.Context, addr string) (Sender, error) `json:"-"`
	// External, when set, runs the whole case in the parent instead of
	// the worker processes (Listen and Dial are unused): an external
	// tool (ref-iperf3) or the telewire commands themselves (cmd-*). It
	// returns what a sending and a receiving worker would have.
	External func(ctx context.Context, x ExternalCase) (*SendResult, *RecvResult, error) `json:"-"`
}

// Blaster is the sending end of a Bare transport.
type Blaster interface {
	// Blast sends msg, unchanged, as fast as the socket takes it until
	// Nanotime passes end or max messages are out, and returns how many
	// it sent.
	Blast(ctx context.Context, msg []byte, end int64, max uint64) (uint64, error)
}

// BatchCounter is the receiving end of a Bare transport.
type BatchCounter interface {
	// NextBatch blocks until datagrams arrive and returns how many; after
	// Close it returns an error.
	NextBatch() (int, error)
}

// Receiver is the receiving end of a transport under test.
type Receiver interface {
	// Addr is the address senders reach it at.
	Addr() string
	// Next blocks until the next message is delivered and returns it; the
	// slice is valid until the next call. After Close it returns an error.
	// Called from one goroutine.
	Next() ([]byte, error)
	// Close stops the receiver and unblocks Next. Safe to call from any
	// goroutine, once or more.
	Close() error
	// Counters returns transport-specific counts (kernel drops, skipped
	// gaps, …) for the report; called after Close.
	Counters() map[string]uint64
}

// Sender is the sending end of a transport under test.
type Sender interface {
	// Send sends one message, or queues it until Flush; msg may be reused
	// when Send returns.
	Send(msg []byte) error
	// Flush sends whatever Send has queued.
	Flush() error
	// Close flushes, stops the transport and releases its socket.
	Close() error
	// Wire returns the bytes and datagrams written to the network so far
	// (UDP payload, retransmissions and parity included) and
	// transport-specific counts; called after Close.
	Wire() (bytes, datagrams uint64, counters map[string]uint64)
}

// Names of the built-in transports.
const (
	RawSingle = "raw-single" // one datagram per syscall
	RawBatch  = "raw-batch"  // sendmmsg/recvmmsg, batches of RawBatchSize, no offload: the baseline
	RawUDPIO  = "raw-udpio"  // as raw-batch through telewire's socket layer (internal/udpio)
	// RawNetpoll is raw-udpio with the socket left in Go's netpoller
	// (udpio.Config.Netpoll), as udpio ran before it took sockets out.
	RawNetpoll = "raw-netpoll"
	RawGSO     = "raw-gso" // as raw-batch with UDP GSO on send and GRO on receive
	TwNACK     = "tw-nack" // telewire, NACK retransmission, FEC off
	TwFEC      = "tw-fec"  // telewire, NACK and FEC fixed 10,3
	TwAuto     = "tw-auto" // telewire, NACK and FEC auto (the default)
	// RawPingPong is the latency baseline: each message is echoed back by
	// the receiving worker and its one-way latency is half the round trip.
	RawPingPong = "raw-pingpong"
	// TwSealed is tw-nack with encryption on: every packet sealed with
	// AES-256-GCM under BenchKey.
	TwSealed = "tw-sealed"
	// TwSpin is tw-nack with the receiver's busy-poll mode on
	// (receiver.Config.BusyPoll = SpinBusyPoll).
	TwSpin = "tw-spin"
	// TwGSO is tw-nack with the sender's UDP GSO on (sender.Config.GSO),
	// which the default configuration leaves off.
	TwGSO = "tw-gso"
	// TwNoPack is tw-nack with message packing off
	// (sender.Config.DisablePacking): one message per datagram, the
	// per-datagram path.
	TwNoPack = "tw-nopack"
	// RefLoop is the minimal loop raw-batch is checked against, in the
	// same worker processes: the same sockets and batches, but the sender
	// writes one unchanging batch over and over and the receiver only
	// counts (no stamps, no copies, no clock per message).
	RefLoop = "ref-loop"
	// RefIperf3 is the external cross-check: iperf3 -u -b 0 at the run's
	// message size, client and server started by the parent.
	RefIperf3 = "ref-iperf3"
	// CmdDefault, CmdNoPack and CmdGSO run the telewire commands
	// themselves, `telewire recv --count N --framing len32 > /dev/null`
	// and `telewire send --gen market --count N --size SIZE`, with default
	// flags, with --no-pack, and with --gso.
	CmdDefault = "cmd-default"
	CmdNoPack  = "cmd-nopack"
	CmdGSO     = "cmd-gso"
	// FanMcast1, FanMcast10 and FanMcast50 are tw-nack over IP multicast
	// on loopback (group FanoutGroup, interface lo) to 1, 10 and 50
	// receivers in the receiving worker.
	FanMcast1  = "fan-mcast1"
	FanMcast10 = "fan-mcast10"
	FanMcast50 = "fan-mcast50"
	// FanUcast1, FanUcast10 and FanUcast50 are tw-nack unicast to a
	// static list of 1, 10 and 50 receivers on loopback, each on a port
	// of its own (sender.Config.To a comma-separated list: `send --to
	// a,b,c`).
	FanUcast1  = "fan-ucast1"
	FanUcast10 = "fan-ucast10"
	FanUcast50 = "fan-ucast50"
	// FanSub1, FanSub10 and FanSub50 are tw-nack to 1, 10 and 50
	// subscribers: the sender listens (sender.Config.Listen: `send
	// --listen`) and each receiver subscribes (receiver.Config.Subscribe:
	// `recv --subscribe`, the token echo) before the sender starts.
	FanSub1  = "fan-sub1"
	FanSub10 = "fan-sub10"
	FanSub50 = "fan-sub50"
)

// FanoutGroup is the multicast group of the fan-out cases (administratively
// scoped, sent out of lo only).
const FanoutGroup = "239.77.16.1"

// SpinBusyPoll is tw-spin's receiver.Config.BusyPoll: twice the gap
// between messages at 1k msgs/s, so that at that load and above the
// receiver's reader never parks.
const SpinBusyPoll = 2 * time.Millisecond

// RawBatchSize is the batch of the raw batched baseline.
const RawBatchSize = 64

// Builtin returns the transports telewire bench measures: raw UDP
// baselines and telewire with several repair settings. raw-batch, the
// baseline, is the plainest sendmmsg/recvmmsg loop (GSO and GRO off; on
// Linux its own blocking sockets, the sender connected: see
// rawmin_linux.go); raw-udpio is the same batches through
// internal/udpio's non-blocking sockets, which telewire uses (optional:
// it tells the socket layer's cost apart from telewire's); raw-gso turns
// GSO and GRO on where the kernel has them. Telewire's receiver delivers
// in order (the default) with its default 200 ms latency budget; tw-nack,
// tw-fec, tw-auto and tw-sealed run in telewire's default configuration
// (sender GSO off, receiver GRO on), tw-gso is tw-nack with the sender's
// GSO on.
func Builtin() []Transport {
	single := udpio.Config{NoBatch: true}
	batch := udpio.Config{BatchSize: RawBatchSize, NoGSO: true, NoGRO: true}
	netpoll := batch
	netpoll.Netpoll = true
	gso := udpio.Config{BatchSize: RawBatchSize}
	return []Transport{
		{Name: RawSingle, Description: "raw UDP, one datagram per syscall",
			Listen: rawListen(single), Dial: rawDial(single, 1)},
		{Name: RawBatch, Description: fmt.Sprintf("raw UDP, sendmmsg/recvmmsg batch %d", RawBatchSize), Baseline: true,
			Listen: rawMinListen, Dial: rawMinDial},
		{Name: RawUDPIO, Description: fmt.Sprintf("raw UDP through udpio, sendmmsg/recvmmsg batch %d", RawBatchSize),
			Optional: true, CleanOnly: true, Listen: rawListen(batch), Dial: rawDial(batch, RawBatchSize)},
		{Name: RawNetpoll, Description: fmt.Sprintf("raw UDP through udpio in Go's netpoller, sendmmsg/recvmmsg batch %d", RawBatchSize),
			Optional: true, CleanOnly: true, Listen: rawListen(netpoll), Dial: rawDial(netpoll, RawBatchSize)},
		{Name: RawGSO, Description: fmt.Sprintf("raw UDP, sendmmsg+GSO/recvmmsg+GRO batch %d", RawBatchSize),
			Listen: rawListen(gso), Dial: rawDial(gso, RawBatchSize)},
		{Name: TwNACK, Description: "telewire, NACK only (FEC off)",
			Listen: twListen, Dial: twDial(sender.FECConfig{Mode: sender.FECOff})},
		{Name: TwFEC, Description: "telewire, NACK + FEC 10,3",
			Listen: twListen, Dial: twDial(sender.FECConfig{Mode: sender.FECFixed, K: 10, M: 3})},
		{Name: TwAuto, Description: "telewire, NACK + FEC auto",
			Listen: twListen, Dial: twDial(sender.FECConfig{Mode: sender.FECAuto})},
		{Name: TwSealed, Description: "telewire, NACK only, every packet sealed (AES-256-GCM)",
			Listen: twListenWith(receiver.Config{Key: BenchKey}), Dial: twDialWith(sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}, Key: BenchKey})},
		{Name: RawPingPong, Description: "raw UDP ping-pong, one-way = RTT/2", CleanOnly: true,
			Listen: echoListen, Dial: pingDial},
		{Name: TwGSO, Description: "telewire, NACK only, sender GSO on", Optional: true, CleanOnly: true,
			Listen: twListen, Dial: twDialWith(sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}, GSO: true})},
		{Name: TwSpin, Description: fmt.Sprintf("telewire, NACK only, receiver busy-polls %v", SpinBusyPoll), Optional: true,
			Listen: twListenWith(receiver.Config{BusyPoll: SpinBusyPoll}), Dial: twDial(sender.FECConfig{Mode: sender.FECOff})},
		{Name: TwNoPack, Description: "telewire, NACK only, packing off (one message per datagram)", Optional: true, CleanOnly: true,
			Listen: twListen, Dial: twDialWith(sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}, DisablePacking: true})},
		{Name: RefLoop, Description: fmt.Sprintf("minimal sendmmsg/recvmmsg loop, batch %d, nothing per message", RawBatchSize),
			Optional: true, CleanOnly: true, FullSpeedOnly: true, Bare: true, NoLatency: true, Listen: rawMinListen, Dial: rawMinDial},
		{Name: RefIperf3, Description: "iperf3 -u -b 0, one datagram per sendto/recv", Optional: true, CleanOnly: true,
			FullSpeedOnly: true, NoLatency: true, External: iperf3Case},
		{Name: CmdDefault, Description: "telewire send --gen market | telewire recv --framing len32, default flags", Optional: true,
			CleanOnly: true, FullSpeedOnly: true, NoLatency: true, External: commandCase()},
		{Name: CmdNoPack, Description: "the commands, send --no-pack", Optional: true, CleanOnly: true, FullSpeedOnly: true,
			NoLatency: true, External: commandCase("--no-pack")},
		{Name: CmdGSO, Description: "the commands, send --gso (recv has GRO on by default)", Optional: true, CleanOnly: true,
			FullSpeedOnly: true, NoLatency: true, External: commandCase("--gso")},
		fanMcast(FanMcast1, 1), fanMcast(FanMcast10, 10), fanMcast(FanMcast50, 50),
		fanUcast(FanUcast1, 1), fanUcast(FanUcast10, 10), fanUcast(FanUcast50, 50),
		fanSub(FanSub1, 1), fanSub(FanSub10, 10), fanSub(FanSub50, 50),
	}
}

// fanout is the shape every fan-out transport shares: tw-nack (FEC off)
// to n receiving ends of family, measured on the clean link only.
func fanout(name, family, what string, n int) Transport {
	return Transport{Name: name, Description: fmt.Sprintf("telewire, NACK only, %s %d receivers", what, n),
		Optional: true, CleanOnly: true, Receivers: n, Family: family}
}

// fanMcast is tw-nack over IP multicast on loopback to n receivers.
func fanMcast(name string, n int) Transport {
	t := fanout(name, "mcast", "multicast on lo to", n)
	t.SharedAddr, t.ListenAddr = true, FanoutGroup+":0"
	t.Listen = twListenWith(receiver.Config{Interface: "lo"})
	t.Dial = twDialWith(sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}, MulticastInterface: "lo"})
	return t
}

// fanUcast is tw-nack to a static list of n unicast receivers.
func fanUcast(name string, n int) Transport {
	t := fanout(name, "ucast", "unicast, a static list (--to a,b,…) of", n)
	t.Listen = twListen
	t.Dial = twDial(sender.FECConfig{Mode: sender.FECOff})
	return t
}

// fanSub is tw-nack from a listening sender to n subscribed receivers.
func fanSub(name string, n int) Transport {
	t := fanout(name, "sub", "unicast, a listening sender (--listen) and subscribed", n)
	t.Subscribe = true
	t.Listen = twSubscribe
	t.Dial = twListenDial(sender.Config{FEC: sender.FECConfig{Mode: sender.FECOff}})
	return t
}

// ---- raw UDP ----

// rawMaxDatagram bounds the raw receiver's buffers for the default
// message size; larger runs get buffers of their size (sizeOf).
const rawMaxDatagram = 2048

// sizeKey carries a run's message size (Request.Size) to the transports'
// Listen and Dial through their context.
type sizeKey struct{}

// withSize returns ctx carrying the message size (0: MessageSize).
func withSize(ctx context.Context, size int) context.Context {
	if size == 0 {
		return ctx
	}
	return context.WithValue(ctx, sizeKey{}, size)
}

// sizeOf returns the message size ctx carries, MessageSize by default.
func sizeOf(ctx context.Context) int {
	if n, ok := ctx.Value(sizeKey{}).(int); ok && n > 0 {
		return n
	}
	return MessageSize
}

func rawListen(cfg udpio.Config) func(context.Context, string) (Receiver, error) {
	return func(ctx context.Context, addr string) (Receiver, error) {
		cfg.MaxDatagram = min(max(rawMaxDatagram, sizeOf(ctx)), RawMaxSize)
		c, err := udpio.Listen(addr, cfg)
		if err != nil {
			return nil, err
		}
		return &rawReceiver{conn: c}, nil
	}
}

type rawReceiver struct {
	conn *udpio.Conn
	dgs  []udpio.Datagram // the current batch
	next int
}

func (r *rawReceiver) Addr() string { return r.conn.LocalAddr().String() }

func (r *rawReceiver) Next() ([]byte, error) {
	for r.next >= len(r.dgs) {
		dgs, err := r.conn.Read()
		if err != nil {
			return nil, err
		}
		r.dgs, r.next = dgs, 0
	}
	r.next++
	return r.dgs[r.next-1].Data, nil
}

func (r *rawReceiver) Close() error { return r.conn.Close() }

func (r *rawReceiver) Counters() map[string]uint64 {
	st := r.conn.Stats()
	_, gro := r.conn.Offload()
	return map[string]uint64{"kernel_drops": st.KernelDrops, "read_syscalls": st.ReadSyscalls,
		"gro": b2u(gro), "gro_reads": st.GROReads}
}

func rawDial(cfg udpio.Config, batch int) func(context.Context, string) (Sender, error) {
	return func(ctx context.Context, addr string) (Sender, error) {
		to, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("bench: raw sender: %w", err)
		}
		cfg.MaxDatagram = rawMaxDatagram
		local := "127.0.0.1:0"
		if to.Addr().Is6() {
			local = "[::1]:0"
		}
		c, err := udpio.Listen(local, cfg)
		if err != nil {
			return nil, err
		}
		size := sizeOf(ctx)
		if size > RawMaxSize {
			c.Close()
			return nil, fmt.Errorf("bench: raw UDP carries at most %d bytes a message, not %d", RawMaxSize, size)
		}
		s := &rawSender{conn: c, dgs: make([]udpio.Datagram, batch), slab: make([]byte, batch*size), size: size}
		for i := range s.dgs {
			s.dgs[i] = udpio.Datagram{Data: s.slab[i*size : (i+1)*size : (i+1)*size], Addr: to}
		}
		return s, nil
	}
}

// rawSender copies messages into a preallocated batch and writes it with
// one sendmmsg when full or flushed; with a batch of 1 it writes each
// message with one sendmsg at once.
type rawSender struct {
	conn *udpio.Conn
	dgs  []udpio.Datagram
	slab []byte
	size int // bytes per slot
	n    int
}

func (s *rawSender) Send(msg []byte) error {
	if len(msg) > s.size {
		return fmt.Errorf("bench: raw message of %d bytes > %d", len(msg), s.size)
	}
	d := &s.dgs[s.n]
	d.Data = d.Data[:copy(d.Data[:s.size], msg)]
	s.n++
	if s.n == len(s.dgs) {
		return s.Flush()
	}
	return nil
}

func (s *rawSender) Flush() error {
	if s.n == 0 {
		return nil
	}
	var err error
	if len(s.dgs) == 1 {
		err = s.conn.WriteTo(s.dgs[0].Data, s.dgs[0].Addr)
	} else {
		_, err = s.conn.WriteBatch(s.dgs[:s.n])
	}
	s.n = 0
	return err
}

func (s *rawSender) Close() error {
	return errors.Join(s.Flush(), s.conn.Close())
}

func (s *rawSender) Wire() (bytes, datagrams uint64, counters map[string]uint64) {
	st := s.conn.Stats()
	gso, _ := s.conn.Offload()
	return st.BytesWritten, st.DatagramsWritten, map[string]uint64{"write_syscalls": st.WriteSyscalls,
		"write_errors": st.WriteErrors, "gso": b2u(gso), "gso_fallbacks": st.GSOFallbacks}
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// ---- telewire ----

func twListen(ctx context.Context, addr string) (Receiver, error) {
	return twListenWith(receiver.Config{})(ctx, addr)
}

// twListenWith opens telewire receivers configured as cfg, on the address
// Listen is given.
func twListenWith(cfg receiver.Config) func(context.Context, string) (Receiver, error) {
	return func(ctx context.Context, addr string) (Receiver, error) {
		if size := sizeOf(ctx); size > receiver.DefaultMaxMessage {
			cfg.MaxMessage, cfg.QueueBytes = size, max(32<<20, 4*size)
			cfg.MaxReassemblyBytes, cfg.MaxSessionReassemblyBytes = 4*size, 8*size
			cfg.MaxStateBytes = max(64<<20, 16*size)
		}
		cfg.Listen = addr
		return twOpen(ctx, cfg)
	}
}

// twSubscribe opens a telewire receiver (default configuration) on a
// loopback port of its own, subscribed to the sender at addr.
func twSubscribe(ctx context.Context, addr string) (Receiver, error) {
	return twOpen(ctx, receiver.Config{Listen: "127.0.0.1:0", Subscribe: addr})
}

// twOpen opens a telewire receiver configured as cfg.
func twOpen(ctx context.Context, cfg receiver.Config) (Receiver, error) {
	ctx, cancel := context.WithCancel(ctx)
	r, err := receiver.Listen(ctx, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	return &twReceiver{r: r, ctx: ctx, cancel: cancel}, nil
}

type twReceiver struct {
	r      *receiver.Receiver
	ctx    context.Context
	cancel context.CancelFunc
}

func (r *twReceiver) Addr() string { return r.r.Addr().String() }

func (r *twReceiver) Next() ([]byte, error) {
	m, err := r.r.Recv(r.ctx)
	return m.Payload, err
}

func (r *twReceiver) Close() error {
	r.cancel()
	return r.r.Close()
}

func (r *twReceiver) Counters() map[string]uint64 {
	st := r.r.Stats()
	c := map[string]uint64{
		"datagrams": st.Datagrams, "read_syscalls": st.ReadSyscalls, "kernel_drops": st.KernelDrops,
		"queue_overflow": st.QueueOverflow, "nacks": st.NACKs, "parity": st.Parity, "malformed": st.Malformed,
	}
	for _, s := range st.Streams {
		c["lost"] += s.Lost
		c["unrecovered"] += s.Unrecovered
		c["recovered_rtx"] += s.RecoveredRTX
		c["recovered_fec"] += s.RecoveredFEC
		c["skipped"] += s.Skipped
		c["late"] += s.Late
	}
	return c
}

// BenchKey is the pre-shared key of tw-sealed: fixed, so that the worker
// processes agree on it without a file. It protects nothing.
var BenchKey = []byte("telewire bench key, not a secret")

func twDial(fec sender.FECConfig) func(context.Context, string) (Sender, error) {
	return twDialWith(sender.Config{FEC: fec})
}

// twDialWith opens telewire senders configured as cfg (To is filled in)
// to the address Dial is given.
func twDialWith(cfg sender.Config) func(context.Context, string) (Sender, error) {
	return func(ctx context.Context, addr string) (Sender, error) {
		cfg.To = addr // the default configuration: no GSO unless the transport sets it
		return twNew(ctx, cfg)
	}
}

// twListenDial opens telewire senders configured as cfg that listen for
// subscribers at the address Dial is given (Config.Listen, no To).
func twListenDial(cfg sender.Config) func(context.Context, string) (Sender, error) {
	return func(ctx context.Context, addr string) (Sender, error) {
		cfg.Listen = addr
		return twNew(ctx, cfg)
	}
}

// twNew opens a telewire sender configured as cfg, sized for the run's
// messages.
func twNew(ctx context.Context, cfg sender.Config) (Sender, error) {
	if size := sizeOf(ctx); size > sender.DefaultMaxMessage {
		cfg.MaxMessage = size
	}
	s, err := sender.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &twSender{s: s}, nil
}

// twSender needs no Flush: telewire's writer goroutine sends as soon as a
// message is queued and coalesces what queues up meanwhile. It is
// Subscribable: a sender without Config.Listen just never has
// subscribers.
type twSender struct{ s *sender.Sender }

func (s *twSender) Send(msg []byte) error { return s.s.Send(msg) }
func (s *twSender) Flush() error          { return nil }
func (s *twSender) Close() error          { return s.s.Close() }
func (s *twSender) unblockSend()          { s.s.Close() }
func (s *twSender) Addr() string          { return s.s.LocalAddr().String() }
func (s *twSender) Subscribed() int       { return s.s.Stats().Subscribers.Subscribed }

func (s *twSender) Wire() (bytes, datagrams uint64, counters map[string]uint64) {
	st := s.s.Stats()
	return st.BytesSent, st.DatagramsSent, map[string]uint64{
		"write_syscalls": st.WriteSyscalls, "retransmits": st.Retransmits, "parity": st.Parity,
		"nacks": st.NACKs, "queue_full": st.QueueFull, "heartbeats": st.Heartbeats,
		"destinations": uint64(st.Subscribers.Destinations), "joined": st.Subscribers.Joined,
		"pacing_waits": st.Pacing.Waits, "congestion_events": st.Pacing.CongestionEvents,
		"pacing_rate_bytes_per_sec": uint64(st.Pacing.RateBytesPerSec),
	}
}

// ---- raw ping-pong ----

// EchoTimeout is how long the ping-pong sender waits for each echo before
// it counts the message's echo lost and goes on.
const EchoTimeout = 100 * time.Millisecond

// RoundTripper is implemented by a Sender that measures latency itself,
// as half the round trip of an echo (raw-pingpong). The sending worker
// reports its summary as SendResult.HalfRTT, and the case's latency
// figures are then taken from it.
type RoundTripper interface {
	// HalfRTT summarises half of each measured message's round trip, in
	// nanoseconds; called after Close.
	HalfRTT() LatencySummary
}

// echoListen opens the ping-pong's receiving end: a plain net.UDPConn
// that echoes every datagram back to its source.
func echoListen(_ context.Context, addr string) (Receiver, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("bench: echo receiver: %w", err)
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("bench: echo receiver: %w", err)
	}
	return &echoReceiver{uc: uc, buf: make([]byte, rawMaxDatagram)}, nil
}

// echoReceiver hands each datagram to the collector and echoes it at the
// start of the next Next, after the collector has read its clock, so that
// the one-way latency it records (ForwardP50Nanos) is stamped exactly as
// for every other transport; the echo waits only for that clock reading
// and the collector's bookkeeping (about 100 ns).
type echoReceiver struct {
	uc      *net.UDPConn
	buf     []byte
	n       int
	from    netip.AddrPort
	pending bool // buf[:n] is still to be echoed to from
	echoed  uint64
	errors  uint64
}

func (r *echoReceiver) Addr() string { return r.uc.LocalAddr().String() }

func (r *echoReceiver) Next() ([]byte, error) {
	if r.pending {
		r.pending = false
		if _, err := r.uc.WriteToUDPAddrPort(r.buf[:r.n], r.from); err != nil {
			r.errors++
		} else {
			r.echoed++
		}
	}
	n, from, err := r.uc.ReadFromUDPAddrPort(r.buf)
	if err != nil {
		return nil, err
	}
	r.n, r.from, r.pending = n, from, true
	return r.buf[:n], nil
}

func (r *echoReceiver) Close() error { return r.uc.Close() }

func (r *echoReceiver) Counters() map[string]uint64 {
	return map[string]uint64{"echoed": r.echoed, "echo_errors": r.errors}
}

// pingDial opens the ping-pong's sending end, a plain net.UDPConn.
func pingDial(_ context.Context, addr string) (Sender, error) {
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("bench: ping sender: %w", err)
	}
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if to.Addr().Is6() {
		local = &net.UDPAddr{IP: net.IPv6loopback}
	}
	uc, err := net.ListenUDP("udp", local)
	if err != nil {
		return nil, fmt.Errorf("bench: ping sender: %w", err)
	}
	return &pingSender{uc: uc, to: to, buf: make([]byte, rawMaxDatagram)}, nil
}

// pingSender writes each message with one sendmsg and blocks reading
// until its echo returns (or EchoTimeout passes), then records half the
// round trip, from the stamp written just before Send to the clock
// reading just after the echo is read. Warm-up messages are echoed but
// not recorded. Send does not allocate while echoes come back.
type pingSender struct {
	uc   *net.UDPConn
	to   netip.AddrPort
	buf  []byte
	hist Histogram

	written, bytes, lost, stray uint64
}

func (s *pingSender) Send(msg []byte) error {
	seq, sent, err := ParseStamp(msg)
	if err != nil {
		return err
	}
	if _, err := s.uc.WriteToUDPAddrPort(msg, s.to); err != nil {
		return err
	}
	s.written++
	s.bytes += uint64(len(msg))
	// Set while the ping is on its way: a few hundred ns against a round
	// trip of tens of µs, and never after the echo could have arrived.
	if err := s.uc.SetReadDeadline(time.Now().Add(EchoTimeout)); err != nil {
		return err
	}
	for {
		n, _, err := s.uc.ReadFromUDPAddrPort(s.buf)
		now := Nanotime()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.lost++
				return nil
			}
			return err
		}
		eseq, esent, perr := ParseStamp(s.buf[:n])
		if perr != nil || eseq != seq || esent != sent {
			s.stray++ // an echo that came back after its timeout, or noise
			continue
		}
		if seq&WarmupBit == 0 {
			s.hist.Record((now - sent) / 2)
		}
		return nil
	}
}

func (s *pingSender) Flush() error { return nil }
func (s *pingSender) Close() error { return s.uc.Close() }

func (s *pingSender) Wire() (bytes, datagrams uint64, counters map[string]uint64) {
	return s.bytes, s.written, map[string]uint64{"echo_lost": s.lost, "echo_stray": s.stray}
}

func (s *pingSender) HalfRTT() LatencySummary { return s.hist.Summary() }
