package sender

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/fec"
	"github.com/telewire/telewire/internal/guard"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/reliability"
)

// Errors returned by Send.
var (
	// ErrQueueFull is returned by Send when DropWhenFull is set and the
	// queue has no room.
	ErrQueueFull = errors.New("sender: queue full")
	// ErrTooLarge is returned for a message over [Core.MaxPayload]
	// (Config.MaxMessage), or one whose fragments a queue configured
	// smaller could never hold.
	ErrTooLarge = errors.New("sender: message larger than the largest the sender takes")
	// ErrTooManyStreams is returned when a new stream would exceed MaxStreams.
	ErrTooManyStreams = errors.New("sender: too many streams")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("sender: closed")
)

// stream is the sender's state for one stream id.
type stream struct {
	id    uint32
	start uint64 // first sequence
	next  uint64 // sequence of the next DATA

	heartbeatAt  int64 // when the next HEARTBEAT is due
	heartbeatGap int64 // current idle heartbeat interval (backs off)

	opened   bool                    // the stream's opening HEARTBEAT was queued
	retained *reliability.SendBuffer // nil when retransmission is off
	encoder  *fec.Encoder            // nil when FEC is off
	adaptive *fec.Adaptive           // nil unless FEC is automatic

	firstTs, lastTs int64 // send times of the first and the latest DATA: echoes must lie between
	// sentTs holds the send time of each of the last sentTsLen DATA
	// (index seq mod sentTsLen): the echoes and proofs a receiver sends
	// must name one of them exactly (see proves).
	sentTs   []int64
	messages uint64 // messages Send queued on the stream
	// wire counts the stream's wire bytes: its DATA, their parity and
	// retransmissions. wireAt holds its value when each of the last
	// sentTsLen DATA was finished (index seq mod sentTsLen), so that the
	// bytes a run of sequences stood for are known exactly: with packing
	// and fragments, datagrams differ in size too much for a mean.
	wire   uint64
	wireAt []uint64

	report   packet.Report // latest REPORT from any receiver (each one's: group)
	reportAt int64         // when it arrived, 0 if never
	group    streamGroup   // merged figures of every receiver (receivers.go)
}

// Core is the sender's protocol state machine, free of sockets, goroutines
// and clocks: Send, Handle and Tick take the time as an argument and queue
// datagrams in Outbox. [Sender] runs it over a real socket; simulations run
// it over a simulated link. A Core is not safe for concurrent use.
type Core struct {
	cfg     Config
	session uint64
	// remote is the first destination: a unicast sender's receiver, a
	// multicast group, or the first address of a list (invalid for a
	// sender that takes subscribers and has none in To). Sealed mode
	// makes its handshake with it.
	remote netip.AddrPort
	// dests is where DATA, PARITY and HEARTBEAT go (outbox Fanout): the
	// one destination of a unicast or multicast sender, or a fan-out
	// sender's list and subscribers (subs).
	dests   []netip.AddrPort
	subs    *subscribers // nil for a single destination without Listen
	width   int          // the most destinations there can be: the outbox has room for each copy
	slots   int          // datagrams one half of the outbox holds: QueuePackets per destination, capped
	qbytes  int          // bytes one half holds: QueueBytes, per destination when sealed copies differ
	out     *outbox.Pair
	streams []*stream // few; linear search beats a map at this size
	rtt     reliability.RTT
	pkt     packet.Packet // reused for decoding and encoding
	probe   packet.Packet // decodes retained packets
	answer  reliability.NACKResult
	peers   *guard.Peers       // feedback addresses: amplification limit and retransmit budget
	rcv     *receiverSet       // one view per receiver (receivers.go)
	sec     *secure            // nil without encryption
	pace    *reliability.Pacer // nil with congestion control off
	// delivered estimates the wire bytes of DATA the receiver has
	// received, from the REPORTs' counts: the pacer's delivery rate.
	delivered uint64
	// accounted estimates the wire bytes the receiver knows were sent,
	// lost or not, from its newest sequence (reliability.Feedback).
	accounted uint64
	lastRTT   int64  // the latest RTT sample (capped): see handleNACK
	room      int    // DATA payload per datagram: Config.DataRoom
	body      []byte // a DATA payload being encoded, reused
	// While Send queues a message's fragments: the datagrams and bytes
	// those still to come need, which parity must leave free.
	resvK, resvBytes int
	open             openDatagram // the DATA datagram Send packs into
	inLen            int          // length of the datagram being handled
	log              zerolog.Logger
	stats            Stats

	// When the first DATA was queued and when feedback (a REPORT or a
	// NACK) last came; see FeedbackSilence.
	firstSendAt, feedbackAt int64
	sentAny, heard          bool
}

// NewCore returns a Core for session sending to remote. cfg.To, Local,
// the socket settings and Clock are not used by a Core: the caller owns
// the socket and the time. With a key (cfg.KeyFile or cfg.Key) the Core
// first makes a handshake with remote (its first Tick or Send sends the
// HELLO), holds what is sent until it completes, then seals every packet
// and takes only sealed feedback.
func NewCore(cfg Config, session uint64, remote netip.AddrPort) (*Core, error) {
	return NewFanoutCore(cfg, session, []netip.AddrPort{remote})
}

// NewFanoutCore returns a Core for session sending each packet to every
// address of to (unicast fan-out; see subscribers.go), and, when
// cfg.Listen is set, to the subscribers it admits (to may then be empty).
// One address is NewCore's case, through the same code. A duplicate
// address, a multicast group among several, or a key with more than one
// destination or Listen is refused (ErrConfig).
func NewFanoutCore(cfg Config, session uint64, to []netip.AddrPort) (*Core, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	dests := make([]netip.AddrPort, len(to))
	for i, a := range to {
		dests[i] = unmap(a)
	}
	key, err := seal.Configured(cfg.KeyFile, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := checkDestinations(dests, cfg); err != nil {
		return nil, err
	}
	var remote netip.AddrPort
	if len(dests) > 0 {
		remote = dests[0]
	}
	width := len(dests)
	if cfg.Listen != "" {
		width = cfg.MaxReceivers
	}
	width = max(width, 1)
	// The configured receiver is validated by configuration: data goes
	// there anyway. Any other address that sends feedback is answered
	// within the amplification limit (RFC 9000 §8.1).
	peers, err := guard.NewPeers(guard.PeersConfig{MaxPeers: max(guard.DefaultMaxPeers, cfg.MaxReceivers)})
	if err != nil {
		return nil, err
	}
	loopback := len(dests) > 0
	for _, a := range dests {
		peers.Validate(a)
		loopback = loopback && a.Addr().IsLoopback()
	}
	if cfg.Listen != "" {
		// Subscribers may come from anywhere: the room of any path, unless
		// the sender listens on loopback only.
		l, err := netip.ParseAddrPort(cfg.Listen)
		loopback = err == nil && l.Addr().IsLoopback() && (len(dests) == 0 || loopback)
	}
	c := &Core{
		cfg:     cfg,
		session: session,
		remote:  remote,
		dests:   make([]netip.AddrPort, 0, width),
		width:   width,
		slots:   max(cfg.QueuePackets, min(cfg.QueuePackets*width, maxQueueDatagrams)),
		peers:   peers,
		rcv:     newReceiverSet(cfg.MaxReceivers, cfg.ReceiverTimeout, cfg.FECLossPercentile),
		log:     cfg.Logger.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}),
		room:    cfg.DataRoom(loopback),
	}
	c.qbytes = cfg.QueueBytes
	if key != nil && (len(dests) > 1 || cfg.Listen != "") {
		// Sealed copies differ: the queue holds each one's bytes.
		c.qbytes = max(cfg.QueueBytes, min(cfg.QueueBytes*width, maxSealedQueueBytes))
	}
	c.out = outbox.NewPair(c.slots, c.qbytes)
	c.dests = append(c.dests, dests...)
	if len(dests) > 1 || cfg.Listen != "" {
		if c.subs, err = newSubscribers(cfg, dests, 0); err != nil {
			return nil, err
		}
	}
	c.body = make([]byte, 0, c.room)
	c.out.BeforeTake = c.finishOpen
	if !cfg.DisableCongestionControl {
		c.pace = reliability.NewPacer(reliability.PacerConfig{MaxRate: cfg.MaxRate})
	}
	if key != nil {
		if c.sec, err = newSecure(key, c.subs != nil, width); err != nil {
			return nil, err
		}
		// One key state per destination; the handshakes start at the
		// first Tick or Send.
		for _, a := range c.dests {
			c.sec.dests = append(c.sec.dests, &destKeys{addr: a, static: true})
		}
		c.sec.statics = len(c.sec.dests)
	}
	return c, nil
}

// maxQueueDatagrams caps the datagrams one half of a fan-out sender's
// queue holds (QueuePackets times the destinations): 1 << 18 places, 14
// MiB, however many subscribers MaxReceivers allows.
const maxQueueDatagrams = 1 << 18

// maxSealedQueueBytes caps the bytes one half of a sealed fan-out
// sender's queue holds (QueueBytes times the destinations: each sealed
// copy has bytes of its own).
const maxSealedQueueBytes = 32 << 20

// fanout sends the datagram just queued (DATA, PARITY or HEARTBEAT, queued
// to c.remote) to every destination. Sealed, each destination with keys
// gets a copy sealed under its own (fanoutSealed); with one destination
// it is sealed in place already, or went to the held queue.
func (c *Core) fanout() {
	if c.sec != nil {
		c.fanoutSealed()
		return
	}
	if len(c.dests) == 1 && c.dests[0] == c.remote {
		return // already addressed to the set's one member
	}
	if len(c.dests) == 0 {
		c.stats.NoDestination++ // Fanout removes it: it goes nowhere
	}
	if err := c.out.Current().Fanout(c.dests); err != nil {
		c.stats.FeedbackDropped++ // cannot happen: room was checked for every copy
	}
}

// copies returns how many datagrams each DATA, PARITY and HEARTBEAT
// takes in the queue: one per destination (at least one, so that room
// is kept while a listening sender has no subscriber).
func (c *Core) copies() int { return max(len(c.dests), 1) }

// byteCopies returns how many times the queue holds the bytes of each
// DATA, PARITY and HEARTBEAT: once (the copies of a fan-out share them),
// or, sealed for several destinations, once per destination.
func (c *Core) byteCopies() int {
	if c.sec != nil && c.sec.fan {
		return c.copies()
	}
	return 1
}

// unmap turns an IPv4-mapped IPv6 address into plain IPv4, so that one
// peer has one key in the address tables whichever socket family saw it.
func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// MaxPayload returns the largest message Send takes: Config.MaxMessage.
func (c *Core) MaxPayload() int { return c.cfg.MaxMessage }

// Outbox returns the queue datagrams are encoded into.
func (c *Core) Outbox() *outbox.Pair { return c.out }

// Session returns the session id.
func (c *Core) Session() uint64 { return c.session }

func (c *Core) stream(id uint32, now int64) (*stream, error) {
	for _, s := range c.streams {
		if s.id == id {
			return s, nil
		}
	}
	if len(c.streams) >= c.cfg.MaxStreams {
		return nil, ErrTooManyStreams
	}
	s := &stream{id: id, start: c.cfg.FirstSeq, next: c.cfg.FirstSeq, sentTs: make([]int64, sentTsLen), wireAt: make([]uint64, sentTsLen)}
	if !c.cfg.DisableRetransmit {
		s.retained = reliability.NewSendBuffer(reliability.SendBufferConfig{
			Capacity:        c.cfg.RetransmitPackets,
			MaxBytes:        c.cfg.RetransmitBytes,
			MaxAge:          int64(c.cfg.RetransmitMaxAge),
			RetransmitShare: c.cfg.RetransmitShare,
			// A sequence is resent at most once per round trip however
			// many NACKs ask: a receiver asks again only after its own
			// retry timeout, which is longer than the round trip.
			SuppressPercent: 100,
			DisableSuppress: c.subs != nil, // see handleNACK
		})
	}
	if err := c.startFEC(s); err != nil {
		return nil, err
	}
	c.streams = append(c.streams, s)
	return s, nil
}

// startFEC gives a new stream its encoder (and, with FECAuto, its
// adaptive rule).
func (c *Core) startFEC(s *stream) error {
	f := c.cfg.FEC.withDefaults()
	if f.Mode == FECOff {
		return nil
	}
	enc, err := fec.NewEncoder(fec.EncoderConfig{K: f.K, M: f.M, Interleave: f.Interleave, MaxDelayNanos: int64(f.MaxDelay)})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.encoder = enc
	if f.Mode == FECAuto {
		if s.adaptive, err = fec.NewAdaptive(fec.AdaptiveConfig{
			MaxOverhead:   f.MaxOverhead,
			MaxInterleave: 8,
			AllowOff:      true,
			MaxDelayNanos: int64(f.MaxDelay),
		}); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		k, m, d := s.adaptive.Params()
		setFEC(enc, k, m, d)
	}
	return nil
}

// setFEC moves an encoder to new parameters for its next block; the
// interleaving goes to 1 first so that every intermediate step is valid.
func setFEC(enc *fec.Encoder, k, m, d int) {
	if ck, cm, cd := enc.Params(); ck == k && cm == m && cd == d {
		return
	}
	_ = enc.SetInterleave(1)
	if enc.SetParams(k, m) == nil {
		_ = enc.SetInterleave(d)
	}
}

// sendParity queues the parity the stream's encoder has ready, trailing
// the DATA of the batch: PARITY is longer than the DATA it protects, and in
// among it would cut every UDP GSO run short (see package outbox).
func (c *Core) sendParity(s *stream) {
	c.pkt.Header = packet.Header{Kind: packet.KindParity, Session: c.session, Stream: s.id}
	s.encoder.TakeParity(func(par packet.Parity, shard []byte) {
		c.pkt.Parity, c.pkt.Payload = par, shard
		// Parity made in the middle of a fragmented message leaves room
		// for the message's remaining fragments, which Send has counted.
		if !c.out.Current().RoomFor((1+c.resvK)*c.copies(), (c.pkt.EncodedLen()+c.overhead()+c.resvBytes)*c.byteCopies()) {
			c.stats.ParityDropped++
			return
		}
		if err := c.queueTrailing(&c.pkt); err != nil {
			c.stats.ParityDropped++
			return
		}
		c.fanout()
		c.spend(c.pkt.EncodedLen() + c.overhead())
		s.wire += uint64(c.pkt.EncodedLen() + c.overhead())
		c.stats.Parity++
	})
	c.pkt.Payload = nil
}

// spend charges n wire bytes to the pacer.
func (c *Core) spend(n int) {
	if c.pace != nil {
		c.pace.OnSend(n)
	}
}

// PaceDelay returns how long a Send at now should wait for the congestion
// controller, in ns: 0 when it may go at once (always, with congestion
// control off). The wait is the caller's to make; Send itself never
// refuses for pacing, so a simulation may drive a Core at any rate.
func (c *Core) PaceDelay(now int64) int64 {
	if c.pace == nil {
		return 0
	}
	return c.pace.Delay(now)
}

// heartbeatLen is the encoded size of a HEARTBEAT.
const heartbeatLen = packet.HeaderLen + packet.HeartbeatLen

// Room reports whether a message of n bytes fits in the queue now, on any
// stream: it counts the HEARTBEAT that opens a new stream too.
func (c *Core) Room(n int) bool {
	k, bytes := c.cfg.fragmentsOf(n, c.room)
	needK, need := k, bytes
	for _, s := range c.streams {
		if a, b := c.need(s, k, bytes); a > needK || b > need {
			needK, need = max(needK, a), max(need, b)
		}
	}
	return c.out.Current().RoomFor((needK+1)*c.copies(), (need+heartbeatLen+c.overhead())*c.byteCopies()) && c.roomHeld(needK+1, need+heartbeatLen+c.overhead())
}

// DataRoom returns the DATA payload, message map included, that one
// datagram carries: Config.MTU less every header (see Config.DataRoom).
func (c *Core) DataRoom() int { return c.room }

// Send stamps payload with the time now and queues it on the stream: in
// one DATA datagram of its own when it fits in DataRoom, else split into
// fragments, one DATA datagram each, every one with a sequence number of
// its own. It returns ErrQueueFull when the queue has no room for all of
// it (the caller decides whether to wait), leaving the sequences unused,
// and ErrTooLarge for a message over MaxMessage or one whose fragments
// the queue could never hold.
func (c *Core) Send(streamID uint32, payload []byte, now int64) error {
	if len(payload) > c.cfg.MaxMessage {
		return ErrTooLarge
	}
	k, bytes := c.cfg.fragmentsOf(len(payload), c.room)
	if k+1 > c.cfg.QueuePackets || (k+1)*c.copies() > c.slots || (bytes+heartbeatLen+c.overhead())*c.byteCopies() > c.qbytes {
		return ErrTooLarge // the queue could never hold it whole (a copy per destination)
	}
	if c.sec != nil {
		// With a key, nothing goes out before a handshake: packets are
		// held (boundedly) until it completes.
		c.secureStart(now)
		if !c.roomHeld(k+1, bytes+heartbeatLen+c.overhead()) {
			return ErrQueueFull
		}
	}
	s, err := c.stream(streamID, now)
	if err != nil {
		return err
	}
	if k == 1 && !c.cfg.DisablePacking && c.pack(s, payload, now) {
		// Packed into the datagram still queued: the writer is busy, so
		// the message would have waited for it anyway.
		c.stats.Messages++
		c.countUnheard()
		s.messages++
		c.stats.Packed++
		c.stats.PayloadBytes += uint64(len(payload))
		return nil
	}
	if !c.sentAny {
		c.sentAny, c.firstSendAt = true, now
	}
	if err := c.finishData(); err != nil {
		return err
	}
	out := c.out.Current()
	if !s.opened {
		// Announce the stream before its first DATA: a HEARTBEAT with
		// nothing sent yet tells the receiver where the stream starts, so
		// losing the first messages is seen and repaired like any gap.
		// Both must fit, or neither is queued.
		if !out.RoomFor((k+1)*c.copies(), (bytes+heartbeatLen+c.overhead())*c.byteCopies()) || !c.queueHeartbeat(s, now) {
			return ErrQueueFull
		}
		s.opened = true
	}
	// The parity the message's datagrams will complete must fit too
	// (unless the queue could never hold both): dropped for want of room,
	// it would leave the message unprotected.
	if needK, need := c.need(s, k, bytes); !out.RoomFor(needK*c.copies(), need*c.byteCopies()) {
		return ErrQueueFull
	}
	if k == 1 {
		// Left open: messages sent before the writer takes the batch
		// are packed into it (Core.pack).
		b := packet.AppendMessagesHeader(c.body[:0], 1)
		c.body = packet.AppendEntry(b, 0, payload)
		if err := c.openData(s, c.body, now); err != nil {
			return err
		}
		if c.cfg.DisablePacking {
			if err := c.finishData(); err != nil {
				return err
			}
		}
	} else {
		chunk := c.room - packet.FragmentHeaderLen
		f := packet.Fragment{Length: uint32(len(payload))}
		perFrag := packet.HeaderLen + packet.DataHeaderLen + packet.FragmentHeaderLen + c.overhead()
		for off := 0; off < len(payload); off += chunk {
			f.Offset, f.Data = uint32(off), payload[off:min(off+chunk, len(payload))]
			c.body = packet.AppendFragment(c.body[:0], &f)
			rest := len(payload) - off - len(f.Data)
			c.resvK, c.resvBytes = (rest+chunk-1)/chunk, rest+(rest+chunk-1)/chunk*perFrag
			err := c.queueData(s, c.body, now)
			c.resvK, c.resvBytes = 0, 0
			if err != nil {
				return err // only a sealing failure: the session must end
			}
			f.Index++
		}
		c.stats.Fragmented++
	}
	c.stats.Messages++
	c.countUnheard()
	s.messages++
	c.stats.PayloadBytes += uint64(len(payload))
	return nil
}

// countUnheard counts a message sent while the sender had nowhere to send
// it: a sender taking subscribers with none (with a key: none with keys,
// nothing held for them). It reached no one.
func (c *Core) countUnheard() {
	switch {
	case c.subs == nil:
	case len(c.dests) == 0, c.sec != nil && len(c.sec.addrs) == 0 && !c.sec.holdingPackets():
		c.stats.MessagesNoDestination++
	}
}

// need returns the datagrams and bytes Send needs free to queue a
// message of k datagrams, bytes in all, on s: with the parity they will
// complete, unless the queue could never hold both.
func (c *Core) need(s *stream, k, bytes int) (int, int) {
	if pk, pbytes := c.parityFor(s, k); k+pk+1 <= c.cfg.QueuePackets && (k+pk+1)*c.copies() <= c.slots && (bytes+pbytes+heartbeatLen)*c.byteCopies() <= c.qbytes {
		return k + pk, bytes + pbytes
	}
	return k, bytes
}

// parityFor returns the most PARITY datagrams, and their bytes, that k
// more DATA datagrams of s can complete: a block in progress and those
// the k begin.
func (c *Core) parityFor(s *stream, k int) (n, bytes int) {
	if s.encoder == nil {
		return 0, 0
	}
	bk, m, _ := s.encoder.Params()
	if m == 0 || bk == 0 {
		return 0, 0
	}
	n = ((k-1)/bk + 1) * m // k packets complete at most this many blocks
	return n, n * (c.room + packet.HeaderLen + packet.ParityHeaderLen + fec.ShardHeaderLen + c.overhead())
}

// queueData queues one DATA datagram of s carrying body, a DATA payload
// with its message map, stamped now, and finishes it; the caller checked
// the room.
func (c *Core) queueData(s *stream, body []byte, now int64) error {
	if err := c.openData(s, body, now); err != nil {
		return err
	}
	return c.finishData()
}

// openData queues one DATA datagram of s carrying body, stamped now, and
// leaves it open (c.open): more messages may be packed into it until
// finishData. The caller checked the room and finished any open one.
func (c *Core) openData(s *stream, body []byte, now int64) error {
	out := c.out.Current()
	// Fields set one by one: a Packet literal would clear its range
	// buffer (a kilobyte) for every message.
	p := &c.pkt
	p.Header = packet.Header{Kind: packet.KindData, Flags: packet.FlagMessages, Session: c.session, Stream: s.id}
	if s.encoder != nil {
		if _, m, _ := s.encoder.Params(); m > 0 {
			p.Flags |= packet.FlagProtected
		}
	}
	p.Seq, p.Timestamp, p.Payload = s.next, now, body
	err := out.Append(p, c.remote)
	c.pkt.Payload = nil
	if err != nil {
		return err
	}
	c.open = openDatagram{s: s, ts: now, count: 1}
	return nil
}

// LastSeq returns the sequence number of the DATA datagram that carries
// the newest message sent on stream id (its last fragment, if it was
// split; the datagram still being packed, if it is open), and false before
// any message was sent on it. A message is delivered once the receiver's
// reports cover that sequence.
func (c *Core) LastSeq(id uint32) (uint64, bool) {
	for _, s := range c.streams {
		if s.id != id {
			continue
		}
		if c.open.s == s {
			return s.next, true
		}
		return s.next - 1, s.next != s.start
	}
	return 0, false
}

// openDatagram is the DATA datagram the sender is still packing: the last
// one queued in order in the current batch, its sequence s.next not yet
// taken. It is finished (checksum, sealing, retransmit buffer, FEC,
// sequence) by finishData, before anything else is queued and when the
// batch is taken for writing.
type openDatagram struct {
	s     *stream // nil: none open
	ts    int64   // its timestamp: the send time of its first message
	count int     // messages in it
}

// pack adds a message of payload sent now to the open datagram, if it is
// s's and the message fits, and reports whether it did.
func (c *Core) pack(s *stream, payload []byte, now int64) bool {
	if c.open.s != s || c.open.count >= packet.MaxMessagesPerDatagram {
		return false
	}
	out := c.out.Current()
	dgs := out.Datagrams()
	if len(dgs) == 0 {
		return false
	}
	delta := now - c.open.ts
	e := packet.EntryLen(len(payload), delta)
	cur := len(dgs[len(dgs)-1].Data)
	if cur-packet.HeaderLen-packet.DataHeaderLen+e > c.room || !out.RoomFor(0, (e+c.overhead())*c.byteCopies()) {
		return false
	}
	data, ok := out.ExtendLast(e)
	if !ok {
		return false
	}
	packet.AppendEntry(data[:cur], delta, payload)
	c.open.count++
	packet.SetMessageCount(data[packet.HeaderLen+packet.DataHeaderLen:], uint16(c.open.count))
	return true
}

// finishOpen finishes the open DATA datagram, if any, before something
// else is queued or the batch is taken. A failure (sealing's counter
// exhausted) is counted; the session must end, as Send then reports.
func (c *Core) finishOpen() {
	if err := c.finishData(); err != nil {
		c.stats.SealErrors++
	}
}

// finishData finishes the open DATA datagram, if any: see openDatagram.
func (c *Core) finishData() error {
	s := c.open.s
	if s == nil {
		return nil
	}
	now := c.open.ts
	c.open = openDatagram{}
	out := c.out.Current()
	data := out.Datagrams()[out.Len()-1].Data
	if err := packet.Refinish(data); err != nil {
		return err // cannot happen: the room was checked
	}
	body := data[packet.HeaderLen+packet.DataHeaderLen:]
	if s.encoder != nil {
		// Sealing encrypts the datagram in place: FEC codes the plain
		// payload, kept aside.
		c.body = append(c.body[:0], body...)
		body = c.body
	}
	if s.retained != nil {
		// The plain packet is kept: every retransmission is sealed anew.
		s.retained.Put(s.next, data, now)
	}
	if err := c.sealLast(out); err != nil {
		return err // counter exhausted: the session must end
	}
	c.noteSealed(s.id, s.next)
	c.fanout()
	c.spend(len(data) + c.overhead())
	s.wire += uint64(len(data) + c.overhead())
	if s.next == s.start {
		s.firstTs = now
	}
	s.lastTs = now
	s.sentTs[s.next%sentTsLen] = now
	if s.encoder != nil && s.encoder.Add(s.next, now, body, now) {
		c.sendParity(s) // the parity this DATA completes counts with it
	}
	s.wireAt[s.next%sentTsLen] = s.wire
	s.next++
	s.heartbeatGap = int64(c.cfg.HeartbeatInterval)
	s.heartbeatAt = now + s.heartbeatGap
	c.stats.Packets++
	return nil
}

// Handle processes one datagram from the network: REPORTs update RTT and
// the receiver's figures; NACKs are answered. Anything malformed, for
// another session, or of a kind a sender does not expect is counted and
// dropped.
//
// With encryption on, only feedback sealed under this session's traffic
// keys is taken, besides the handshake's WELCOME and RETRY; the rest is
// counted (Unsealed, KeyMismatch, AuthFailed, NoKeys, Replayed) before
// anything else looks at it. Every datagram counts
// towards the amplification limit of its source address.
func (c *Core) Handle(b []byte, from netip.AddrPort, now int64) {
	c.finishOpen()
	from = unmap(from)
	if c.subs != nil && c.subs.listen && len(b) > 5 && packet.Kind(b[3]).IsSubscription() && b[5] == 0 {
		// Plain subscription traffic (byte 3 is the kind, 5 the
		// envelope): handled before any state is kept for its source.
		c.handleSubscription(b, from, now)
		return
	}
	c.peers.OnReceive(from, len(b))
	c.inLen = len(b)
	if !c.decode(b, from, now) {
		return
	}
	from = c.feedbackFrom(from)
	p := &c.pkt
	if p.Session != c.session {
		c.stats.ForeignSession++
		if e := c.log.Debug(); e != nil { // boxing from allocates: only when debug is on
			e.Uint64("session", p.Session).Stringer("from", from).Msg("feedback for another session dropped")
		}
		return
	}
	switch p.Kind {
	case packet.KindReport:
		c.handleReport(p, from, now)
	case packet.KindNACK:
		c.handleNACK(p, from, now)
	default:
		c.stats.Unexpected++
	}
}

func (c *Core) findStream(id uint32) *stream {
	for _, s := range c.streams {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (c *Core) handleReport(p *packet.Packet, from netip.AddrPort, now int64) {
	s := c.findStream(p.Stream)
	if s == nil {
		c.stats.Unexpected++
		return
	}
	c.stats.Reports++
	c.heard, c.feedbackAt = true, now
	r := &p.Report
	if p.Flags&packet.FlagChallenge != 0 {
		c.answerChallenge(s, p.Challenge, from, now)
	}
	// Without a key the REPORT's source address proves nothing: only one
	// whose echo is the exact send time of a recent DATA comes from a
	// receiver of the data. One that is not touches nothing: no RTT
	// sample, no pacing, no FEC change, no validation.
	if c.sec == nil && !s.proves(r.HighestSeq, r.EchoTimestamp) {
		c.stats.ReportsUnproven++
		return
	}
	c.validate(from)
	c.peers.OnProven(from, c.inLen)
	c.subs.heard(from, now)
	view := c.rcv.observe(from, now) // nil when MaxReceivers is reached
	// RTT as RTCP computes it from LSR/DLSR: the time since the echoed
	// timestamp was sent, less the time the receiver held it. An echo from
	// the future, from outside the times this stream's DATA was sent, or a
	// hold longer than the elapsed time is a lie or a bug and yields no
	// sample.
	var sample int64
	if r.EchoTimestamp > 0 && r.EchoTimestamp <= now && r.EchoHoldNanos >= 0 &&
		s.next != s.start && r.EchoTimestamp >= s.firstTs && r.EchoTimestamp <= s.lastTs {
		if sample = now - r.EchoTimestamp - r.EchoHoldNanos; sample > 0 {
			c.rtt.Observe(sample)
			c.lastRTT = min(sample, maxSuppression)
			if view != nil {
				view.rtt.Observe(sample)
				view.lastRTT = c.lastRTT
			}
		} else {
			sample = 0
		}
	}
	if c.pace != nil {
		// Only feedback that proved it comes from a receiver of the data
		// (or authentic feedback, sealed) gets here to move the pacer.
		c.feedPacer(s, view, r, sample, now)
	}
	s.report = *r
	s.reportAt = now
	c.recordReport(s, view, r, p.Flags&packet.FlagEarly == 0, now)
	if s.adaptive != nil && p.Flags&packet.FlagEarly == 0 {
		// Early REPORTs repeat the interval figures adaptive FEC reads.
		c.feedFEC(s, now)
	}
}

// feedPacer hands a REPORT to the congestion controller: its RTT sample
// (0 for none) and the receiver's count of DATA received, turned into
// wire bytes at the mean bytes sent per DATA. Counts are per stream; their
// increases add up to the path's delivery. With many receivers only the
// nearest one's REPORTs reach the pacer (see receivers.go), and when
// another becomes the nearest its counts start a new baseline.
func (c *Core) feedPacer(s *stream, view *peer, r *packet.Report, sample, now int64) {
	g := &s.group
	if view == nil || view != c.rcv.nearest() {
		return
	}
	if g.paced && g.pacer != view.addr {
		g.received, g.pacedSeq = r.Received, r.HighestSeq
	}
	prev := uint64(0)
	if g.paced {
		prev = g.received
	}
	if c.stats.Packets > 0 {
		// A stream's first report counts from its first sequence; then
		// from the newest the paced receiver reported.
		prevHighest := s.start - 1
		if g.paced {
			prevHighest = g.pacedSeq
		}
		c.account(s, r, prev, prevHighest)
	}
	echo := r.EchoTimestamp
	if sample == 0 {
		echo = 0 // an echo that gave no sample proves nothing about when
	}
	c.pace.OnFeedback(now, reliability.Feedback{RTT: sample, Delivered: c.delivered, Accounted: c.accounted, Echo: echo})
	g.paced, g.pacer, g.received, g.pacedSeq = true, view.addr, r.Received, r.HighestSeq
}

// account adds what REPORT r (after one with prev received) says arrived
// and was accounted for to the pacer's byte counts.
func (c *Core) account(s *stream, r *packet.Report, prev, prevHighest uint64) {
	// Each DATA stands for its share of every byte sent, parity and
	// retransmissions included, so that delivery and the pacer's rate
	// (wire bytes) compare like for like: exactly, from the stream's
	// byte counts at each sequence, while the sequences reported are
	// recent; else at the mean over everything sent.
	mean := uint64(c.pace.Sent()) / c.stats.Packets
	// Everything up to the newest sequence the receiver has seen was sent
	// and is accounted for, arrived or lost: unlike Received, its rate
	// matches the send rate on a lossy path. prevHighest is the newest
	// sequence already accounted for.
	if d := packet.SeqDiff(r.HighestSeq, prevHighest); d > 0 && d <= packet.SeqDiff(s.next, s.start) {
		if b, ok := s.wireBetween(prevHighest, r.HighestSeq); ok {
			c.accounted += b
			mean = b / uint64(d) // the recent datagrams' size, for Received too
		} else {
			c.accounted += uint64(d) * mean
		}
	}
	if r.Received > prev {
		c.delivered += (r.Received - prev) * mean
	}
}

// wireBetween returns the stream's wire bytes for sequences (a, b], both
// sent, and whether the ring still holds what that needs (a may be the
// sequence before the stream's first).
func (s *stream) wireBetween(a, b uint64) (uint64, bool) {
	sent := uint64(packet.SeqDiff(s.next, s.start))
	back := func(x uint64) uint64 { return s.next - 1 - x } // how far x is behind the newest
	if back(b) >= min(sentTsLen, sent) {
		return 0, false
	}
	from := uint64(0)
	if a != s.start-1 {
		if back(a) >= min(sentTsLen, sent) {
			return 0, false
		}
		from = s.wireAt[a%sentTsLen]
	}
	to := s.wireAt[b%sentTsLen]
	if to < from {
		return 0, false
	}
	return to - from, true
}

// sentTsLen is how many recent DATA send times a stream keeps for
// checking echoes and proofs: a receiver's newest DATA may be at most this
// many messages behind the sender (4096: 40 ms at 100 000 messages/s).
const sentTsLen = 4096

// proves reports whether ts is, to the nanosecond, the send time of DATA
// seq, one of the stream's last sentTsLen: a value only a receiver of that
// packet knows (send times are nanoseconds of the sender's monotonic
// clock). A REPORT echoes it for its highest sequence; a NACK carries it
// as its proof.
func (s *stream) proves(seq uint64, ts int64) bool {
	back := s.next - 1 - seq // how far seq lies behind the newest DATA
	return ts > 0 && s.next != s.start && back < min(uint64(sentTsLen), s.next-s.start) &&
		s.sentTs[seq%sentTsLen] == ts
}

// validate marks the address proven feedback came from (a REPORT whose
// echo or a NACK whose proof names a DATA sent lately, or with encryption
// any authentic feedback) as one that receives this sender's data,
// lifting the amplification limit on answers to it that carry no proof of
// their own (RFC 9000 §8). The configured receiver is validated from the
// start; this is for feedback that comes back by another address, as
// through a relay or a NAT that maps the two directions apart.
func (c *Core) validate(from netip.AddrPort) {
	if c.peers.Validated(from) {
		return
	}
	c.peers.Validate(from)
	if c.sec == nil {
		c.stats.AddressesValidated++
		c.log.Info().Stringer("addr", from).Msg("feedback address validated")
	}
}

// answerChallenge answers a REPORT's challenge at once with a HEARTBEAT flagged
// packet.FlagAnswer, sent where the data goes: the receiver learns that
// this address receives its feedback and times the round trip.
func (c *Core) answerChallenge(s *stream, challenge uint64, from netip.AddrPort, now int64) {
	p := &c.probe // c.pkt holds the REPORT being handled
	p.Header = packet.Header{Kind: packet.KindHeartbeat, Flags: packet.FlagAnswer, Session: c.session, Stream: s.id}
	p.Heartbeat = packet.Heartbeat{Start: s.start, Next: s.next, Timestamp: now, Answer: challenge}
	to := c.remote
	if c.subs != nil {
		// A fan-out sender answers the destination that asked, and only a
		// destination: the answer proves its address to that receiver.
		if c.subs.find(from) == nil {
			c.stats.AnswersBlocked++
			return
		}
		to = from
	}
	if c.queue(p, to) != nil {
		c.stats.FeedbackDropped++
		return
	}
	c.stats.Answers++
}

// handleNACK answers a NACK from the retransmit buffer: the sequences it
// still holds are resent (flagged, same sequence and timestamp) to the
// receiver that asked, unless resent within the suppression time or over
// the retransmit budget; the ones it no longer holds are named in an
// "unavailable" NACK so the receiver stops asking.
func (c *Core) handleNACK(p *packet.Packet, from netip.AddrPort, now int64) {
	if p.Flags&packet.FlagUnavailable != 0 {
		c.stats.Unexpected++ // only senders send those
		return
	}
	c.stats.NACKs++
	c.heard, c.feedbackAt = true, now
	s := c.findStream(p.Stream)
	// Without a key, a NACK is answered beyond the amplification limit of
	// its source only if it proves its sender receives the data, whatever
	// address it claims to come from: the configured receiver's own
	// address is as easy to forge as any.
	proven := c.sec != nil || s != nil && p.Flags&packet.FlagProof != 0 && s.proves(p.ProofSeq, p.ProofTimestamp)
	var view *peer
	if proven {
		c.validate(from)
		c.peers.OnProven(from, c.inLen)
		c.subs.heard(from, now)
		if view = c.rcv.observe(from, now); view != nil {
			view.nacks++
		}
	} else {
		c.stats.NACKsUnproven++
	}
	if s == nil || s.retained == nil {
		c.unavailable(p, p.Ranges, from, proven)
		return
	}
	// Ranges are sorted (Parse checks it); one that reaches the next
	// sequence to send asks for what was never sent: the NACK is a lie or
	// a bug and is rejected whole.
	if last := p.Ranges[len(p.Ranges)-1].Last(); !packet.SeqLess(last, s.next) || !c.historyAllowed(p) {
		c.stats.NACKsRejected++
		return
	}
	res := &c.answer
	// A sequence is resent at most once per round trip. The latest
	// sample counts as well as the smoothed one: when a queue builds at
	// the bottleneck the round trip grows faster than SRTT follows, and
	// resending on every repeat of the NACK would only lengthen the queue.
	//
	// With unicast fan-out a repair reaches only the receiver that asked,
	// so one receiver's repair must not silence another's request: there
	// the suppression is per destination, by its own round trip once
	// measured (SendBufferConfig.DisableSuppress and the receiver view's
	// ResendLog); a request from a receiver without a view (unproven, or
	// past MaxReceivers) is answered every time, within its
	// amplification limit and the budget.
	rtt := max(c.rtt.Smoothed(), c.lastRTT)
	var log *reliability.ResendLog
	if c.subs != nil && view != nil {
		ps := view.stream(p.Stream) // the stream exists: bounded by MaxStreams
		if ps.resent == nil {
			ps.resent = reliability.NewResendLog(resendLogSize)
		}
		log = ps.resent
		if view.rtt.Samples() > 0 {
			rtt = max(view.rtt.Smoothed(), view.lastRTT)
		}
	}
	s.retained.OnNACKTo(p.Ranges, now, rtt, log, res)
	c.stats.Suppressed += uint64(res.Suppressed)
	c.stats.Throttled += uint64(res.Throttled)
	out := c.out.Current()
	grow := c.overhead()
	copies := 1
	if s.group.reported && s.group.lossPPM >= redundantLossPPM && !c.remote.Addr().IsMulticast() {
		copies = 2
	}
	to := c.repairTo(from, p.Flags&packet.FlagHistory != 0)
	sent := 0 // of res.Resend, the sequences sent at least once
resend:
	for i, seq := range res.Resend {
		data, ok := s.retained.Get(seq, now)
		if !ok {
			continue
		}
		sent = i
		for k := range c.repairCopies(s, seq, copies) {
			if !out.Room(len(data) + grow) {
				c.stats.FeedbackDropped++ // queue full: the receiver will ask again
				break resend
			}
			if c.pace != nil && !c.pace.ResendOK(now) {
				c.stats.RetransmitsPaced++ // repairs have spent their share of the rate
				break resend
			}
			if !c.peers.AllowRetransmit(from, len(data)+grow, c.rtt.Smoothed(), now, proven) {
				c.stats.RetransmitsBlocked++ // amplification limit or per-RTT budget
				break resend
			}
			if k == 0 {
				sent = i + 1
			}
			_ = out.AppendRaw(data, to)
			_ = packet.MarkRetransmit(out.Datagrams()[out.Len()-1].Data) // stored packets are DATA
			if c.sealTo(out, to) != nil {
				break resend
			}
			if c.pace != nil {
				c.pace.OnResend(len(data) + grow)
			}
			s.wire += uint64(len(data) + grow)
			c.stats.Retransmits++
			c.stats.RetransmitBytes += uint64(len(data))
		}
		sent = i + 1
	}
	for _, seq := range res.Resend[sent:] {
		s.retained.Unresend(seq) // not sent: neither suppressed nor charged
		if log != nil {
			log.Forget(seq)
		}
	}
	if len(res.Unavailable) > 0 {
		if proven {
			// The receiver asked too late: these are lost to it for good.
			if view != nil {
				for _, r := range res.Unavailable {
					view.unavailable += uint64(r.Len)
				}
			}
			c.unrepairable(from, now)
		}
		c.unavailable(p, res.Unavailable, from, proven)
	}
}

// resendLogSize is the size of a fan-out receiver's ResendLog per stream
// (6 KiB): the sequences resent to one receiver within one of its round
// trips that per-destination suppression remembers. More are answered
// again early, never refused.
const resendLogSize = 256

// maxSuppression caps the latest-RTT term of retransmit suppression, so a
// freak sample cannot silence repairs for long.
const maxSuppression = int64(200 * time.Millisecond)

// redundantLossPPM is the reported loss rate from which retransmissions
// are sent twice, so that one loss of the repair does not cost another
// round trip of the latency budget; below it one copy is enough.
const redundantLossPPM = 20_000

// unavailable tells the receiver at to that the sequences in rs will never
// be resent. p is reused for the encoding; its header names the stream.
func (c *Core) unavailable(p *packet.Packet, rs []packet.Range, to netip.AddrPort, proven bool) {
	history := p.Flags&packet.FlagHistory != 0
	p.Flags = packet.FlagUnavailable
	if len(rs) > packet.MaxRanges {
		rs = rs[:packet.MaxRanges]
	}
	p.Ranges = rs
	if !c.peers.AllowSend(to, p.EncodedLen()+c.overhead(), proven) {
		c.stats.AnswersBlocked++
		return
	}
	if err := c.queue(p, c.repairTo(to, history)); err != nil {
		c.stats.FeedbackDropped++
		return
	}
	c.stats.Unavailable++
}

// Tick sends HEARTBEATs for streams idle past their heartbeat time and the
// parity of FEC blocks whose time limit has passed, and, with a key, runs
// the handshake: the first one, its retries, and rekeying.
func (c *Core) Tick(now int64) {
	c.finishOpen()
	c.secureTick(now)
	c.rcv.expire(now)
	c.expireSubscribers(now)
	c.announceGroup(now)
	for _, s := range c.streams {
		if s.encoder != nil {
			if at, ok := s.encoder.NextFlushAt(); ok && at <= now && s.encoder.Flush(now) {
				c.sendParity(s)
			}
		}
		if s.heartbeatAt == 0 || now < s.heartbeatAt {
			continue
		}
		if !c.queueHeartbeat(s, now) {
			return // queue full: data is flowing, retry on the next tick
		}
		s.heartbeatGap = min(2*s.heartbeatGap, int64(c.cfg.MaxHeartbeatInterval))
		s.heartbeatAt = now + s.heartbeatGap
	}
}

// queueHeartbeat queues a HEARTBEAT for s and reports whether it fit.
func (c *Core) queueHeartbeat(s *stream, now int64) bool {
	c.pkt = packet.Packet{
		Header:    packet.Header{Kind: packet.KindHeartbeat, Session: c.session, Stream: s.id},
		Heartbeat: packet.Heartbeat{Start: s.start, Next: s.next, Timestamp: now},
	}
	c.flagGroup(&c.pkt, now)
	if !c.out.Current().RoomFor(c.copies(), (c.pkt.EncodedLen()+c.overhead())*c.byteCopies()) || c.queueAll(&c.pkt) != nil {
		return false
	}
	c.fanout()
	c.stats.Heartbeats++
	return true
}

// NextTimer returns the earliest heartbeat or FEC block time limit.
func (c *Core) NextTimer() (int64, bool) {
	var at int64
	ok := false
	consider := func(t int64) {
		if !ok || t < at {
			at, ok = t, true
		}
	}
	if t, due := c.secureTimer(); due {
		consider(t)
	}
	if t, due := c.rcv.nextExpiry(); due {
		consider(t)
	}
	if t, due := c.subs.nextExpiry(); due {
		consider(t)
	}
	if t, due := c.announceTimer(); due {
		consider(t)
	}
	for _, s := range c.streams {
		if s.heartbeatAt != 0 {
			consider(s.heartbeatAt)
		}
		if s.encoder != nil {
			if t, due := s.encoder.NextFlushAt(); due {
				consider(t)
			}
		}
	}
	return at, ok
}

// FeedbackSilence returns how long, in ns at now, the sender has gone
// without feedback: since the latest REPORT or NACK of its session that
// decoded (and, with encryption, passed authentication), or, while none
// has come, since the first DATA was queued. It is 0 before the first
// DATA. A silence of a second or more with Stats.Reports == 0 means the
// receiver has never been heard from: no receiver at that address,
// different keys (or a key on one end only), or a firewall on the way
// there or back. [Sender.Stats] puts it in Stats.FeedbackSilenceNanos.
func (c *Core) FeedbackSilence(now int64) int64 {
	switch {
	case !c.sentAny:
		return 0
	case c.heard:
		return max(now-c.feedbackAt, 0)
	}
	return max(now-c.firstSendAt, 0)
}

// Stats returns the sender's counters and the latest figures the receiver
// reported for each stream. It leaves FeedbackSilenceNanos 0: a Core has
// no clock; see [Core.FeedbackSilence].
func (c *Core) Stats() Stats {
	st := c.stats
	st.Session = c.session
	st.Queued = c.out.Current().Len()
	st.RTT = RTTStats{
		SmoothedNanos: c.rtt.Smoothed(),
		VarianceNanos: c.rtt.Variance(),
		MinNanos:      c.rtt.Min(),
		Samples:       c.rtt.Samples(),
	}
	if c.pace != nil {
		ps := c.pace.Stats()
		st.Pacing = PacingStats{
			Enabled: true, RateBytesPerSec: ps.RateBytes, DeliveryPerSec: ps.Delivery,
			MinRTTNanos: ps.MinRTTNanos, RTTJitterNanos: ps.JitterNanos, CongestionEvents: ps.Cuts, Waits: ps.Waits, Startup: ps.Startup,
		}
	}
	c.rcv.stats(&st, c.streams)
	if c.sec != nil {
		st.KeysPending = c.sec.pending()
	}
	if c.subs != nil {
		st.Subscribers = c.subs.stats
		st.Subscribers.Destinations = len(c.dests)
		st.Subscribers.Subscribed = c.subs.subscribed()
	}
	st.Streams = make([]StreamStats, 0, len(c.streams))
	for _, s := range c.streams {
		x := StreamStats{
			Stream:   s.id,
			NextSeq:  s.next,
			Sent:     s.next - s.start,
			Messages: s.messages,
			Receiver: receiverView(&s.report, s.reportAt != 0),
		}
		if s.retained != nil {
			rs := s.retained.Stats()
			x.RetransmitEvictedCapacity, x.RetransmitEvictedBytes, x.RetransmitEvictedAge = rs.EvictedCapacity, rs.EvictedBytes, rs.EvictedAge
		}
		if s.encoder != nil {
			x.FECK, x.FECM, x.FECInterleave = s.encoder.Params()
			es := s.encoder.Stats()
			x.FECBlocks, x.FECOverheadBytes = es.Blocks, es.OverheadBytes
		}
		st.Streams = append(st.Streams, x)
	}
	return st
}
