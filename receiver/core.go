package receiver

import (
	"crypto/cipher"
	"fmt"
	"math/bits"
	"net/netip"
	"time"
	"unsafe"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/fec"
	"github.com/telewire/telewire/internal/outbox"
	"github.com/telewire/telewire/internal/seal"
	"github.com/telewire/telewire/internal/stats"
	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/reliability"
)

// Origin says how a delivered message reached the receiver.
type Origin uint8

// Message origins.
const (
	OriginFirst      Origin = iota // first transmission
	OriginRetransmit               // a retransmission answering a NACK
	OriginFEC                      // rebuilt from FEC parity
)

var originNames = [...]string{"first", "retransmit", "fec"}

// String returns "first", "retransmit" or "fec".
func (o Origin) String() string {
	if int(o) < len(originNames) {
		return originNames[o]
	}
	return "unknown"
}

// Message is one delivered application payload.
type Message struct {
	Source       netip.AddrPort // sender's address
	Session      uint64         // sender's session id
	Stream       uint32
	Seq          uint64
	SentNanos    int64 // sender's clock when it was sent
	ReceiveNanos int64 // receiver's clock when it arrived
	Origin       Origin
	// Index is the message's place among those packed into the datagram
	// Seq (0 for the first or only one). Seq and Index together name a
	// message within its stream; a message sent in fragments has the
	// sequence of its first fragment.
	Index uint16
	// Gap is GapNone for a message. Only with Config.DeliverGaps, Recv
	// also returns gap markers, with Gap saying why ordered delivery
	// passed over sequences Seq through GapLast (inclusive) of the stream
	// for good. A marker comes in order with the messages around it
	// (GapStart excepted, see there); its Payload is empty, SentNanos and
	// Origin are zero and ReceiveNanos is when delivery passed the gap.
	Gap GapReason
	// GapLast is the last sequence a gap marker covers; 0 for a message.
	GapLast uint64
	// Payload aliases the receiver's delivery buffer: it is valid until the
	// next call to Recv (or TryRecv). Copy it to keep it.
	Payload []byte

	off int // payload offset in the queue's ring
}

// GapReason says why ordered delivery passed over a range of sequences;
// see Message.Gap.
type GapReason uint8

// Gap reasons. Their sum over a stream's markers is StreamStats.Skipped,
// plus the messages QueueOverflow counted for the stream.
const (
	// GapNone marks an ordinary message.
	GapNone GapReason = iota
	// GapDeadline: a later message reached its deadline (Config.Latency)
	// while these were still missing.
	GapDeadline
	// GapOverflow: a message arrived further ahead than the reorder
	// buffer (Config.ReorderCapacity) reaches, so delivery moved on.
	GapOverflow
	// GapResync: the stream jumped beyond the tracking window (or its
	// sender restarted its sequence) and delivery restarted past them.
	GapResync
	// GapStart: sent before the first message delivered on the stream but
	// arrived after it (beyond the startup hold). Such a marker comes when
	// the late message arrives, after messages with higher sequences.
	GapStart
	// GapQueueFull: Recv fell behind and the queue (Config.QueueMessages,
	// QueueBytes) was full, so these messages, or markers for them, were
	// dropped (the messages counted in Stats.QueueOverflow). The marker
	// comes once there is room again: before the stream's next message or
	// marker, or at the next timer tick.
	GapQueueFull
)

var gapNames = [...]string{"none", "deadline", "overflow", "resync", "start", "queue_full"}

// String returns "none", "deadline", "overflow", "resync", "start" or
// "queue_full".
func (g GapReason) String() string {
	if int(g) < len(gapNames) {
		return gapNames[g]
	}
	return "unknown"
}

// RTO bounds for NACK retries, and the value used before the receiver has
// measured a round trip (NACK to retransmission).
const (
	minRTO = 2 * time.Millisecond
	maxRTO = 500 * time.Millisecond
)

// parityWait is how long after a loss shows the receiver expects parity
// that could rebuild it, holding its NACK back: the sender's default block
// time limit (50 ms) plus a margin for jitter. A block whose parity has
// all arrived without repairing it is NACKed at once.
const parityWait = 60 * time.Millisecond

// reorderFloor is the least time a gap waits before its first NACK, in
// case the "missing" packet was only reordered, once the stream has shown
// reordering; until then a gap is NACKed as soon as it is found
// (TrackerConfig.NACKAtOnceUntilReordered). The tracker raises it to
// twice the jitter and to the reordering it has seen, so it only needs to
// cover a clean path's scheduling noise; every microsecond of it is added
// to the latency of each repaired message. Waiting it on a path that does
// not reorder costs more than its value: the wait is a timer, and a Go
// timer shorter than a millisecond fires after about one in a process
// that is otherwise idle, which is what a receiver of a slow stream is.
const reorderFloor = 250 * time.Microsecond

// startupHold caps the grace time ordered delivery waits at the start of a
// stream whose opening HEARTBEAT did not arrive first (a quarter of the
// latency budget, at most this), so that messages reordered ahead of the
// first one are not delivered before it. Messages overtaken by more than
// that are counted as skipped.
const startupHold = 50 * time.Millisecond

// startupBackfill is how far before the first DATA heard a HEARTBEAT may
// place the stream's start, during the startup hold, for the messages in
// between to be taken as lost (and NACKed) rather than as history sent
// before this receiver joined.
const startupBackfill = 256

// stream is the receiver's state for one stream of one session.
type stream struct {
	id       uint32
	tracker  *reliability.Tracker
	delivery *reliability.Delivery[*held]
	jitter   stats.Jitter
	delay    *stats.DelayHistogram // allocated by the first delay sample (16 KiB)
	rtt      reliability.RTT       // NACK → retransmission, for NACK retry timing
	// usedRTO is the longest retry timeout NACKs went out with since the
	// retry times were last pulled in (retime).
	usedRTO  int64
	fecDelay reliability.RTT // loss found → rebuilt by FEC: how long parity takes to help
	// The FEC block span of the latest PARITY (K × stride, in messages)
	// and the mean send-time gap between messages (ns, gain 1/16): what a
	// gap in a block waits for its parity on average is half the span.
	fecSpan int64
	msgGap  int64
	gapSeq  uint64 // newest first transmission seen, for msgGap
	gapTs   int64
	decoder *fec.Decoder // created by the first protected DATA or PARITY of the stream
	// fecRecent remembers the sequences FEC rebuilt lately. When the
	// original of one arrives after all, it was reordered, not lost, and
	// is taken out of the loss and FEC counts (fecEarly).
	fecRecent *[fecRecentLen]uint64 // allocated with the decoder
	fecNext   int
	fecEarly  uint64
	nacks     []packet.Range // reused by AppendNACK; allocated by the first NACK
	// mapped: the sender flags its DATA packet.FlagMessages, so payloads
	// FEC rebuilds carry message maps too.
	mapped           bool
	reasm            reassembly // messages arriving in fragments
	delivered        uint64     // messages into the queue
	packedSuperseded uint64     // latest mode: packed messages not delivered for a newer one in the same datagram
	// budgetDropped counts messages not held for want of budget.
	budgetDropped uint64
	denied        uint8 // optional parts the budget refused (opt*), counted once

	minOffset int64 // smallest receive time - send time seen: maps send times to deadlines
	haveMin   bool
	holdUntil int64  // ordered mode: no delivery before this, so the first arrivals can be sorted
	started   bool   // a DATA packet has arrived
	anchored  bool   // a HEARTBEAT told where the stream starts before any DATA
	anchorSeq uint64 // with anchored: where the first HEARTBEAT said the stream was
	// The first sequence the reader was told of (delivered, or passed
	// over before the first delivery: a jump, or a gap at the start), and
	// the messages sent before it that arrived after (they count as
	// skipped).
	delivering     bool
	firstDelivered uint64
	skippedAtStart uint64
	skippedResync  uint64 // sequences a jump beyond the window passed over
	firstSeq       uint64
	// Config.JoinHistory (join.go): joined once the request is made;
	// historyEnd is the first live sequence, below which NACKs ask for
	// history; joining is set while the history's gaps are created.
	joined, history, joining bool
	historyFrom, historyEnd  uint64
	// A joiner's NACK ranges, split (splitHistory); allocated at join.
	histRanges, liveRanges []packet.Range
	historyDeadline        int64 // when the first live message is due
	// The history's gaps and its repairs, which are not loss: loss()
	// leaves them out of what is reported.
	historyMissing, historyRepaired uint64

	// With Config.DeliverGaps: why delivery skips while it is flushing,
	// and a range dropped for a full queue, not yet reported by a marker.
	flushCause       GapReason
	queueLost        bool
	queueLostFrom    uint64
	queueLostThrough uint64

	echoTs  int64  // newest sender timestamp seen
	echoAt  int64  // when it arrived
	echoSeq uint64 // the sequence that carried it

	retransmits uint64
	nacksSent   uint64
	bursts      uint64 // loss events (gaps) found

	// At the last REPORT, for per-interval figures.
	lastHighest uint64
	lastLost    uint64
	lastBursts  uint64
	lossPPM     uint32
	burstMilli  uint32
	// intervalClosed: a REPORT interval has closed, so lossPPM is measured.
	intervalClosed bool

	// Early REPORTs: a stream receiving fast reports every
	// earlyReportPackets first transmissions (at most every
	// earlyReportGap) as well as every ReportInterval, so the sender's
	// congestion controller sees a queue build within milliseconds.
	sinceReport uint32
	reportedAt  int64
	reportDue   bool
	// The figures of the last REPORT queued and the gap before they are
	// repeated: a stream with no news is not reported every interval (see
	// quiet).
	lastSig reportSig
	idleGap int64
	// senderIdle: the stream's latest datagram was a HEARTBEAT, so its
	// sender has had nothing new to send (a stream whose data is stuck in
	// a queue on the path is not idle, and its unchanged REPORTs are what
	// tell the sender's congestion controller that delivery stalled).
	senderIdle bool
}

// session is the state for one sender (address and session id).
type session struct {
	addr      netip.AddrPort
	id        uint64
	streams   []*stream
	lastSeen  int64
	malformed uint64
	keys      *sessionKeys // nil without encryption
	// Bytes received from and sent to the session's address: without a
	// key, feedback stays within amplificationFactor times what arrived.
	rxBytes, txBytes uint64

	created int64
	// validated: without a key, the sender answered a challenge, so its
	// address receives what is sent to it (see Core.trusted).
	validated  bool
	challenged bool  // the opening challenge went out
	bytes      int64 // state charged to the receiver's budget
	meter      meter
	seedRTT    int64 // a round trip measured outside the NACK loop, 0 if none
	reasmBytes int   // bytes in reassembly over all its streams
	groupSize  int   // the group's size the sender advertised, 0 if none (groupnack.go)
}

// amplificationFactor bounds the feedback bytes sent to an unauthenticated
// sender's address per byte received from it (RFC 9000 §8.1's factor), so
// that a datagram with a forged source cannot turn the receiver into a
// reflector. A real sender sends far more than it is sent, so it never
// meets the bound except on a very slow stream's first report.
const amplificationFactor = 3

// challengeCost is the feedback credit a session needs before its opening
// challenge goes: the REPORT, and room left for a NACK of a few ranges.
const challengeCost = packet.HeaderLen + packet.ReportLen + packet.ChallengeLen + 128

// Core is the receiver's protocol state machine, free of sockets,
// goroutines and clocks: Handle and Tick take the time as an argument,
// deliver messages into the queue Pop reads, and encode feedback (REPORT,
// NACK) into the Outbox. [Receiver] runs it over a real socket. A Core is
// not safe for concurrent use.
type Core struct {
	cfg      Config
	sessions map[keyOf]*session // bounded by cfg.MaxSessions
	sec      *secure            // nil without encryption
	sub      *subscription      // nil without Config.Subscribe
	queue    *queue
	pool     heldPool
	out      *outbox.Pair
	pkt      packet.Packet
	log      zerolog.Logger

	nextReport int64
	reportsDue bool  // some stream owes an early REPORT
	stats      Stats // global counters; per-stream figures are built on demand

	// State budget (Config.MaxStateBytes): bytes charged by all sessions,
	// and by those not yet trusted.
	memUsed, memUnvalidated int64
	mac                     cipher.Block // keys challenges
	macBuf                  [32]byte
}

// NewCore returns a receiver Core. cfg.Listen, the socket settings and
// Clock are not used by a Core: the caller owns the socket and the time.
func NewCore(cfg Config) (*Core, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	key, err := seal.Configured(cfg.KeyFile, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var sec *secure
	if key != nil {
		if sec, err = newSecure(key); err != nil {
			return nil, err
		}
	}
	mac, err := newMAC()
	if err != nil {
		return nil, err
	}
	if cfg.Rand == nil {
		cfg.Rand = newRand()
	}
	var sub *subscription
	if cfg.Subscribe != "" {
		to, err := netip.ParseAddrPort(cfg.Subscribe)
		if err != nil || to.Port() == 0 || to.Addr().IsUnspecified() || to.Addr().IsMulticast() {
			return nil, fmt.Errorf("%w: Subscribe %q: not a sender's unicast address", ErrConfig, cfg.Subscribe)
		}
		if sub, err = newSubscription(netip.AddrPortFrom(to.Addr().Unmap(), to.Port())); err != nil {
			return nil, err
		}
	}
	return &Core{
		sub:      sub,
		cfg:      cfg,
		sec:      sec,
		mac:      mac,
		sessions: make(map[keyOf]*session),
		queue:    newQueue(cfg.QueueMessages, cfg.QueueBytes),
		// Feedback is small and paced by the report and NACK intervals.
		out: outbox.NewPair(1024, 1<<20),
		log: cfg.Logger.Sample(&zerolog.BurstSampler{Burst: 5, Period: 10 * time.Second}),
	}, nil
}

// Outbox returns the queue feedback is encoded into.
func (c *Core) Outbox() *outbox.Pair { return c.out }

// Pop lends the next delivered message; see Message.Payload for its life.
func (c *Core) Pop() (Message, bool) { return c.queue.pop() }

// Handle processes one datagram received at now. With encryption on, a
// HELLO is answered, and any other datagram is authenticated, checked
// against its keys' replay window and decrypted before anything else
// looks at it; one that fails is counted (Unsealed, KeyMismatch,
// AuthFailed, NoKeys, Replayed) and creates no state.
func (c *Core) Handle(b []byte, from netip.AddrPort, now int64) {
	c.stats.Datagrams++
	p := &c.pkt
	var s *session
	if c.sec != nil && c.plainSubscription(b) {
		// A subscriber with a key takes the sender's TOKEN, and a
		// GOODBYE before its handshake, in clear (see handleSubscription).
		if p.Parse(b) != nil {
			c.stats.Malformed++
			return
		}
		c.handleSubscription(p, from, now, false)
		return
	}
	if c.sec != nil {
		if s = c.openSealed(b, from, now); s == nil {
			return
		}
	} else if err := p.Parse(b); err != nil {
		c.stats.Malformed++
		if s := c.sessions[keyOf{addr: from}]; s != nil {
			s.malformed++
		}
		if e := c.log.Debug(); e != nil {
			// Built only when debug is on: boxing from for Stringer would
			// allocate for every datagram of a flood of junk.
			e.Err(err).Stringer("from", from).Int("len", len(b)).Msg("malformed datagram dropped")
		}
		return
	}
	switch p.Kind {
	case packet.KindData, packet.KindHeartbeat, packet.KindParity:
	case packet.KindNACK:
		if p.Flags&packet.FlagUnavailable != 0 {
			c.handleUnavailable(p, from)
			return
		}
		c.stats.Unexpected++
		return
	case packet.KindToken, packet.KindGoodbye:
		c.handleSubscription(p, from, now, c.sec != nil)
		return
	default: // REPORT goes the other way
		c.stats.Unexpected++
		return
	}
	if s == nil {
		if s = c.session(p.Session, from, now); s == nil {
			return
		}
	}
	s.rxBytes += uint64(len(b))
	if c.sub != nil && c.sub.hasTok && from == c.sub.to {
		c.sub.stats.Admitted = true
	}
	st := s.stream(p.Stream, c)
	if st == nil {
		return // refused and counted
	}
	s.lastSeen = now
	st.senderIdle = p.Kind == packet.KindHeartbeat
	switch p.Kind {
	case packet.KindHeartbeat:
		if p.Flags&packet.FlagAnswer != 0 {
			c.handleAnswer(s, &p.Heartbeat, from, now)
		}
		if p.Flags&packet.FlagGroup != 0 {
			c.observeGroup(s, p.Heartbeat.Receivers)
		}
		c.handleHeartbeat(st, &p.Heartbeat, now)
	case packet.KindParity:
		c.handleParity(s, st, p, from, now)
	default:
		c.handleData(s, st, p, from, now)
	}
	if !s.challenged && !c.trusted(s) && s.txBytes+challengeCost <= amplificationFactor*s.rxBytes {
		// Challenge a new sender as soon as the amplification limit lets a
		// REPORT go with room to spare for a first NACK (from its second
		// or third datagram): its answer validates it and gives the first
		// round trip.
		c.sendReport(s, st, now, packet.FlagEarly)
	}
}

// handleHeartbeat learns from the sender's highest sequence. On a stream
// that has seen nothing yet the heartbeat only sets the starting point:
// what was sent before this receiver heard the stream is history, not
// loss, and is not requested.
func (c *Core) handleHeartbeat(st *stream, hb *packet.Heartbeat, now int64) {
	c.stats.Heartbeats++
	start := hb.Next
	if st.started {
		// Never reach back before the first DATA this receiver heard: a
		// receiver that joined a running stream has not lost its history.
		start = packet.SeqMax(hb.Start, st.firstSeq)
	} else if _, started := st.tracker.Next(); started {
		// A later HEARTBEAT before any DATA: what was sent between the
		// anchoring one and this is loss, but not what was sent before
		// this receiver first heard the stream.
		start = packet.SeqMax(hb.Start, st.anchorSeq)
	}
	if n := st.tracker.OnHeartbeat(start, hb.Next, now); n > 0 {
		st.bursts++
	}
	if st.started && st.holdUntil != 0 && !st.delivering {
		// Ordered delivery holds the first arrivals in case the stream
		// began earlier (its opening HEARTBEAT was lost). This one says
		// where it began: at the first DATA heard, and nothing is missing
		// before it; or a little earlier, and the first messages were
		// lost: they become gaps, NACKed and waited for like any other.
		// Either way the hold ends now, not a quarter of the latency
		// budget after it began. (Further back, this receiver joined a
		// running stream: its history is not asked for.)
		if hb.Start == st.firstSeq {
			st.holdUntil = now
		} else if packet.SeqLess(hb.Start, st.firstSeq) && packet.SeqDiff(st.firstSeq, hb.Start) <= startupBackfill &&
			st.delivery.StartAt(hb.Start) {
			if n := st.tracker.OnHeartbeat(hb.Start, hb.Next, now); n > 0 {
				st.bursts++
			}
			st.firstSeq, st.holdUntil = hb.Start, now
		}
	}
	if !st.started && st.delivery.Len() == 0 {
		// Delivery starts where the stream does (or, joining a running
		// stream, at the next message), not at whichever message happens
		// to arrive first; no startup hold is needed. A late joiner may
		// still move the start down for its history (join).
		st.delivery.Anchor(hb.Next)
		if !st.anchored {
			st.anchorSeq = hb.Next
		}
		st.anchored = true
	}
}

func (c *Core) handleData(s *session, st *stream, p *packet.Packet, from netip.AddrPort, now int64) {
	if p.Flags&packet.FlagProtected != 0 {
		c.ensureDecoder(s, st) // before accept hands the data to it
	}
	origin := OriginFirst
	if p.Flags&packet.FlagRetransmit != 0 {
		st.retransmits++
		origin = OriginRetransmit
	}
	mapped := p.Flags&packet.FlagMessages != 0
	st.mapped = st.mapped || mapped
	if c.cfg.JoinHistory > 0 && !st.joined && !st.started && st.anchored {
		// A HEARTBEAT came first: the history is before the point it
		// announced, and must be asked for before this DATA is delivered.
		c.join(s, st, now)
	}
	c.accept(s, st, from, p.Seq, p.Timestamp, p.Payload, mapped, origin, now)
	if c.cfg.JoinHistory > 0 && !st.joined && st.started {
		c.join(s, st, now)
	}
}

// ensureDecoder gives the stream its FEC decoder, at the first DATA the
// sender marks as protected or, from a sender that does not mark it, at
// the first PARITY. The decoder starts with its tables (about 15 KiB,
// charged to the budget now) and asks the session's meter before every
// growth: ring pages as sequences come, shard and parity buffers, scratch.
func (c *Core) ensureDecoder(s *session, st *stream) {
	if st.decoder != nil {
		return
	}
	dec, err := fec.NewDecoder(fec.DecoderConfig{ParityWaitNanos: int64(parityWait), MaxBlocks: c.cfg.FECMaxBlocks, Budget: &s.meter})
	if err != nil { // the defaults are valid; this is a programming error
		panic(err)
	}
	if !c.reserveOpt(s, st, optFEC, dec.MemBytes()+int(unsafe.Sizeof([fecRecentLen]uint64{}))) {
		return // counted; the stream goes on without FEC
	}
	st.decoder = dec
	st.fecRecent = new([fecRecentLen]uint64)
}

// handleParity feeds a PARITY packet to the stream's FEC decoder and
// delivers what it rebuilds.
func (c *Core) handleParity(s *session, st *stream, p *packet.Packet, from netip.AddrPort, now int64) {
	c.stats.Parity++
	c.ensureDecoder(s, st)
	if st.decoder == nil {
		c.stats.ParityDropped++ // the budget refused the stream a decoder
		return
	}
	st.fecSpan = int64(p.Parity.K) * int64(max(p.Parity.Stride, 1))
	// The flag says the block's data shards carry message maps: what the
	// decoder rebuilds is read so (a sender flags all its DATA or none).
	st.mapped = st.mapped || p.Flags&packet.FlagMessages != 0
	if err := st.decoder.AddParity(p.Parity, p.Payload, now); err != nil {
		c.stats.ParityRejected++
		if e := c.log.Debug(); e != nil {
			e.Err(err).Stringer("from", from).Msg("parity rejected")
		}
		return
	}
	st.decoder.TakeRecovered(func(seq uint64, ts int64, payload []byte) {
		c.accept(s, st, from, seq, ts, payload, st.mapped, OriginFEC, now)
	})
}

// accept takes one DATA message, arrived or rebuilt, through loss
// tracking, statistics, the FEC decoder and delivery. payload is only
// borrowed: accept copies it if delivery holds the message.
//
// With mapped, payload begins with a message map (packet.FlagMessages):
// whole messages are held as the datagram and unpacked when delivered;
// a fragment goes into reassembly, and the message it completes, if any,
// is held in its place.
func (c *Core) accept(s *session, st *stream, from netip.AddrPort, seq uint64, ts int64, payload []byte, mapped bool, origin Origin, now int64) {
	src := reliability.SourceOriginal
	switch origin {
	case OriginRetransmit:
		src = reliability.SourceRetransmit
	case OriginFEC:
		src = reliability.SourceFEC
	}
	arrival, info := st.tracker.OnArrival(seq, now, src)
	if info.NewlyMissing > 0 {
		st.bursts++
	}
	switch arrival {
	case reliability.ArrivalNew:
	case reliability.ArrivalResync:
		// The stream jumped beyond the window: deliver what is held and
		// restart ordering at this sequence, without requesting the jump.
		st.flushCause = GapResync
		st.delivery.Flush()
		c.drain(s, st, now, 0)
		if from, ok := st.delivery.WantFrom(); ok && c.cfg.Mode == ModeOrdered && packet.SeqLess(from, seq) {
			st.skippedResync += uint64(packet.SeqDiff(seq, from)) // jumped over: never delivered
			if c.cfg.DeliverGaps {
				c.pushGap(s, st, from, seq-1, GapResync, now)
			}
			if !st.delivering {
				// The reader's run starts with the jump: a straggler
				// from before it is late, but not a second skip.
				st.delivering, st.firstDelivered = true, from
			}
		}
		st.delivery.Resync(seq)
		if st.decoder != nil {
			st.decoder.Reset()
		}
	default:
		if arrival == reliability.ArrivalDuplicate && origin == OriginFirst && st.rebuiltEarly(seq) {
			st.fecEarly++
		}
		return // duplicate or too old: counted by the tracker
	}
	if origin == OriginRetransmit && info.WasMissing && st.inHistory(seq) {
		st.historyRepaired++
	}
	if origin == OriginFEC && info.WasMissing && st.fecRecent != nil {
		st.fecRecent[st.fecNext%fecRecentLen] = seq + 1 // 0 marks an empty slot
		st.fecNext++
		st.fecDelay.Observe(info.SinceDetectedNanos)
	}
	switch origin {
	case OriginRetransmit:
		if info.SinceNACKNanos > 0 {
			st.rtt.Observe(info.SinceNACKNanos)
			c.retime(st)
		}
	case OriginFirst:
		// Jitter and delay describe the path, so only first
		// transmissions feed them, message by message: each packed
		// message with its own send time, a fragmented one when it is
		// complete (addFragment).
		switch {
		case !mapped:
			c.observe(s, st, ts, now)
		case len(payload) > 0 && payload[0] == packet.MapMessages:
			var it packet.Messages
			if it.Init(payload, ts) == nil {
				for mts, _, ok := it.Next(); ok; mts, _, ok = it.Next() {
					c.observe(s, st, mts, now)
				}
			}
		}
		if off := now - ts; !st.haveMin || off < st.minOffset {
			st.minOffset, st.haveMin = off, true
		}
		if ts > st.echoTs || st.echoAt == 0 {
			st.echoTs, st.echoAt, st.echoSeq = ts, now, seq
		}
		if d := ts - st.gapTs; st.gapTs != 0 && packet.SeqLess(st.gapSeq, seq) && d > 0 {
			// Send times are the sender's word: the gap is capped so that
			// the expected-wait product in holdForParity cannot overflow.
			gap := min(d/packet.SeqDiff(seq, st.gapSeq), maxMsgGap)
			if st.msgGap == 0 {
				st.msgGap = gap
			} else {
				st.msgGap += (gap - st.msgGap) / 16
			}
		}
		if st.gapTs == 0 || packet.SeqLess(st.gapSeq, seq) {
			st.gapSeq, st.gapTs = seq, ts
		}
		if st.sinceReport++; st.sinceReport >= earlyReportPackets && now-st.reportedAt >= int64(earlyReportGap) && !st.reportDue {
			st.reportDue = true
			c.reportsDue = true
		}
	}
	if st.decoder != nil && origin != OriginFEC {
		st.decoder.AddData(seq, ts, payload, now)
		st.decoder.TakeRecovered(func(seq uint64, ts int64, payload []byte) {
			c.accept(s, st, from, seq, ts, payload, st.mapped, OriginFEC, now)
		})
	}
	if !st.started {
		// The first arrival need not be the first message: the stream may
		// have been reordered from its start. Ordered delivery waits a
		// short grace time before fixing where the stream begins.
		st.started, st.firstSeq = true, seq
		if c.cfg.Mode == ModeOrdered && !st.anchored {
			st.holdUntil = now + min(int64(c.cfg.Latency)/4, int64(startupHold))
		}
	}
	offset := st.minOffset
	if !st.haveMin {
		offset = now - ts
	}
	deadline := ts + offset + int64(c.cfg.Latency)
	if st.inHistory(seq) {
		// A late joiner's history was sent long ago: it is due with the
		// first live message, which waits for it.
		deadline = max(deadline, st.historyDeadline)
	}
	kind := heldWhole
	if mapped {
		if packet.ValidateMap(payload, ts) != nil {
			// Only a rebuilt payload can get here (Parse checked the
			// rest): a sender that mapped some blocks and not others.
			st.reasm.refused++
			kind, payload = heldNone, nil
		} else if payload[0] == packet.MapFragment {
			var f packet.Fragment
			_ = packet.ParseFragment(payload, &f) // validated above
			if h := c.addFragment(s, st, from, &f, seq, ts, origin, deadline, now); h != nil {
				c.holdComplete(s, st, seq, h, deadline, now)
				return
			}
			kind, payload = heldNone, nil
		} else if msg, ok := packet.OnlyMessage(payload); ok {
			payload = msg
		} else {
			kind = heldPacked
		}
		if kind == heldNone && c.cfg.Mode != ModeOrdered {
			return // only ordered delivery needs the place kept
		}
	}
	h := c.pool.get()
	h.kind = kind
	h.m = Message{
		Source:       from,
		Session:      s.id,
		Stream:       st.id,
		Seq:          seq,
		SentNanos:    ts,
		ReceiveNanos: now,
		Origin:       origin,
		Payload:      payload, // borrowed until owned
	}
	// A message delivery holds is copied into a pooled buffer of its size
	// class, charged to the budget before it is taken.
	charge := 0
	if kind != heldNone {
		charge = 1 << (class(len(payload)) + minClassShift)
	}
	if !c.reserve(s, charge) {
		st.budgetDropped++
		c.stats.BudgetDenied++
		c.pool.put(h)
		return
	}
	gaps := c.cfg.DeliverGaps && c.cfg.Mode == ModeOrdered
	var wantFrom uint64
	var fixed bool
	if gaps {
		wantFrom, fixed = st.delivery.WantFrom()
	}
	res := st.delivery.Push(seq, h, deadline)
	if res != reliability.PushAccepted {
		c.unreserve(s, charge) // not held: nothing copied
		if res == reliability.PushLate && st.delivering && packet.SeqLess(seq, st.firstDelivered) {
			// Sent before the first message delivered and overtaken by it
			// past the startup hold: passed over like a gap, and counted
			// so (Delivery counts only gaps after its start).
			st.skippedAtStart++
			if gaps {
				c.pushGap(s, st, seq, seq, GapStart, now)
			}
		}
		if res == reliability.PushDropped {
			st.flushCause = GapOverflow // delivery now skips the gaps in its way
		}
		c.pool.put(h) // late, superseded, duplicate or over capacity: counted by Delivery
		return
	}
	if fixed {
		// With nothing held, a message beyond the reorder buffer's reach
		// moves delivery straight to it.
		if from, _ := st.delivery.WantFrom(); from != wantFrom {
			c.pushGap(s, st, wantFrom, from-1, GapOverflow, now)
		}
	}
	if c.drain(s, st, now, seq) {
		c.unreserve(s, charge) // delivered at once: nothing copied
		return
	}
	if kind != heldNone {
		c.pool.own(h) // held for ordering: copy it out of the borrowed buffer (charge is its size)
	}
}

// holdComplete hands delivery a message reassembly completed at the
// arrival of sequence seq (h owns its buffer and the buffer's charge),
// in that arrival's place.
func (c *Core) holdComplete(s *session, st *stream, seq uint64, h *held, deadline, now int64) {
	if res := st.delivery.Push(seq, h, deadline); res != reliability.PushAccepted {
		c.putHeld(s, h) // late, superseded or over capacity: counted by Delivery
		return
	}
	c.drain(s, st, now, seq)
}

// observe feeds one message's send time and arrival to the stream's
// jitter and delay figures.
func (c *Core) observe(s *session, st *stream, ts, now int64) {
	st.jitter.Observe(ts, now)
	if st.delay == nil && c.reserveOpt(s, st, optDelay, int(unsafe.Sizeof(stats.DelayHistogram{}))) {
		st.delay = new(stats.DelayHistogram)
	}
	if st.delay != nil {
		st.delay.Observe(now - ts)
	}
}

// fecRecentLen is how many FEC-rebuilt sequences a stream remembers to
// tell reordering from loss.
const fecRecentLen = 256

// rebuiltEarly reports whether FEC rebuilt seq lately, and forgets it.
func (st *stream) rebuiltEarly(seq uint64) bool {
	if st.fecRecent == nil {
		return false
	}
	for i, v := range st.fecRecent {
		if v == seq+1 {
			st.fecRecent[i] = 0
			return true
		}
	}
	return false
}

// drain moves every message due at now from the stream's delivery into the
// queue Recv reads, and tells the tracker to stop asking for what delivery
// has passed. It reports whether sequence want was among them.
func (c *Core) drain(s *session, st *stream, now int64, want uint64) bool {
	if st.holdUntil != 0 {
		if now < st.holdUntil {
			return false
		}
		st.holdUntil = 0
	}
	found := false
	gaps := c.cfg.DeliverGaps && c.cfg.Mode == ModeOrdered
	for {
		var from uint64
		var fixed, flushing bool
		if gaps || !st.delivering {
			from, fixed = st.delivery.WantFrom()
			flushing = st.delivery.Flushing()
		}
		seq, h, ok := st.delivery.Pop(now)
		if !ok {
			break
		}
		if gaps && fixed && seq != from {
			why := GapDeadline
			if flushing {
				why = st.flushCause
			}
			c.pushGap(s, st, from, seq-1, why, now)
		}
		if seq == want {
			found = true
		}
		if !st.delivering {
			st.delivering, st.firstDelivered = true, seq
			if c.cfg.Mode == ModeOrdered && packet.SeqLess(from, seq) {
				// Pop passed over from..seq-1 first (Delivery counted
				// them skipped): the reader's run starts there.
				st.firstDelivered = from
			}
		}
		if gaps && st.queueLost {
			// A range dropped for a full queue is reported before what
			// follows it; without room for its marker there is none for
			// the messages either, and they join the range (push).
			c.pushQueueLost(s, st, now)
		}
		c.deliver(st, h)
		c.putHeld(s, h)
	}
	if from, ok := st.delivery.WantFrom(); ok && (c.cfg.JoinHistory == 0 || st.joined) {
		// (A late joiner that has not joined yet may still move the
		// start down for its history: the tracker's floor, which only
		// rises, waits for it. Until then it holds no gap below the
		// start to give up.)
		st.tracker.GiveUpBefore(from)
	}
	return found
}

// pushGap queues a marker for sequences first..last of st passed over
// for reason why (Config.DeliverGaps). If the queue has no room, the range
// joins the one a full queue lost, reported once room returns.
func (c *Core) pushGap(s *session, st *stream, first, last uint64, why GapReason, now int64) {
	m := Message{Source: s.addr, Session: s.id, Stream: st.id, Seq: first, GapLast: last, Gap: why, ReceiveNanos: now}
	if why == GapStart {
		// Out of sequence order by nature, so it does not wait behind a
		// queue_full range nor join one (that would cover delivered
		// messages); without room it is dropped and counted as a record
		// the reader lost by falling behind.
		if !c.queue.push(&m) {
			c.stats.QueueOverflow++
		}
		return
	}
	if st.queueLost && !c.pushQueueLost(s, st, now) {
		c.queueFull(st, first, last)
		return
	}
	if !c.queue.push(&m) {
		c.queueFull(st, first, last)
	}
}

// queueFull adds first..last to the range of st a full queue lost.
func (c *Core) queueFull(st *stream, first, last uint64) {
	if !st.queueLost {
		st.queueLost, st.queueLostFrom, st.queueLostThrough = true, first, last
		return
	}
	if packet.SeqLess(first, st.queueLostFrom) {
		st.queueLostFrom = first
	}
	if packet.SeqLess(st.queueLostThrough, last) {
		st.queueLostThrough = last
	}
}

// pushQueueLost queues the marker of the range a full queue lost; it
// reports false if there is still no room.
func (c *Core) pushQueueLost(s *session, st *stream, now int64) bool {
	m := Message{Source: s.addr, Session: s.id, Stream: st.id, Seq: st.queueLostFrom, GapLast: st.queueLostThrough, Gap: GapQueueFull, ReceiveNanos: now}
	if !c.queue.push(&m) {
		return false
	}
	st.queueLost = false
	return true
}

// handleUnavailable takes the sender's word that it cannot retransmit the
// listed sequences: they are given up at once instead of asked for again.
func (c *Core) handleUnavailable(p *packet.Packet, from netip.AddrPort) {
	s := c.sessions[c.sessionKey(p.Session, from)]
	if s == nil || s.id != p.Session {
		c.stats.Unexpected++
		return
	}
	c.stats.Unavailable++
	for _, st := range s.streams {
		if st.id == p.Stream {
			for _, r := range p.Ranges {
				st.tracker.OnUnavailable(r)
			}
			return
		}
	}
}

// session finds or creates the state for a sender. A new session id from a
// known address is a restarted sender: its old state is dropped.
func (c *Core) session(id uint64, from netip.AddrPort, now int64) *session {
	s := c.sessions[keyOf{addr: from}]
	if s != nil && s.id == id {
		return s
	}
	if s != nil {
		c.stats.SessionRestarts++
		c.log.Info().Stringer("from", from).Str("old", hex64(s.id)).Str("new", hex64(id)).Msg("sender restarted")
		c.forget(s)
		delete(c.sessions, keyOf{addr: from})
	} else if len(c.sessions) >= c.cfg.MaxSessions && !c.evictStale(now) {
		c.stats.SessionsRefused++
		if e := c.log.Debug(); e != nil {
			e.Stringer("from", from).Msg("session table full, datagram dropped")
		}
		return nil
	}
	s = c.newSession(id, from, now)
	if s == nil {
		return nil
	}
	c.log.Info().Stringer("from", from).Str("session", hex64(id)).Msg("new sender")
	c.sessions[keyOf{addr: from}] = s
	c.stats.Sessions++
	return s
}

// newSession returns a new session charged to the state budget, evicting
// a stale unvalidated session if the budget is short; nil (counted) if it
// cannot be admitted.
func (c *Core) newSession(id uint64, from netip.AddrPort, now int64) *session {
	s := &session{addr: from, id: id, lastSeen: now, created: now}
	s.meter = meter{c: c, s: s}
	for !c.reserve(s, sessionBytes) {
		if !c.evictStale(now) {
			c.stats.BudgetRefused++
			return nil
		}
	}
	return s
}

// retrySpan is how long a missing sequence is asked for before its
// retries may give it up: in ordered delivery, as long as delivery waits
// for it (Latency), so a long budget is not cut short by the retries of a
// loaded host's round trips running out first (the tracker's default of
// one second, the sender's default retransmit age, otherwise).
func (c *Core) retrySpan() int64 {
	if c.cfg.Mode == ModeOrdered {
		return max(reliability.DefaultRetrySpan, int64(c.cfg.Latency))
	}
	return 0
}

// release returns what a dropped session's delivery still holds to the
// pool; those messages are not delivered.
func (c *Core) release(s *session) {
	for _, st := range s.streams {
		st.delivery.Flush()
		for {
			_, h, ok := st.delivery.Pop(0)
			if !ok {
				break
			}
			c.putHeld(s, h)
		}
	}
}

// putHeld recycles a held message, giving back the bytes its copied
// payload was charged.
func (c *Core) putHeld(s *session, h *held) {
	if h.buf != nil {
		c.unreserve(s, cap(h.buf))
	}
	c.pool.put(h)
}

func (s *session) stream(id uint32, c *Core) *stream {
	for _, st := range s.streams {
		if st.id == id {
			return st
		}
	}
	if len(s.streams) >= c.cfg.MaxStreams {
		c.stats.StreamsRefused++
		return nil
	}
	var st *stream
	st = &stream{
		id:      id,
		tracker: reliability.NewTracker(reliability.TrackerConfig{Window: c.cfg.Window, MaxMissing: c.cfg.MaxMissing, ReorderFloor: int64(reorderFloor), NACKAtOnceUntilReordered: true, NACKInterval: int64(time.Millisecond), RetrySpan: c.retrySpan(), Budget: &s.meter, NACKBackoff: c.groupBackoff(s, &st)}),
		delivery: reliability.NewDelivery[*held](reliability.DeliveryConfig{
			Mode:     c.cfg.Mode,
			Capacity: 1 << (bits.Len(uint(c.cfg.ReorderCapacity)) - 1), // a power of two, at most the bound
			Budget:   &s.meter,
		}),
	}
	// The state grows with use from here, each growth charged as it comes.
	if !c.reserve(s, streamBytes+st.tracker.MemBytes()+st.delivery.MemBytes()) {
		c.stats.BudgetRefused++
		return nil
	}
	if s.seedRTT != 0 {
		st.rtt.Observe(s.seedRTT)
	}
	s.streams = append(s.streams, st)
	return st
}

// Tick delivers what has reached its deadline, sends the NACKs that are
// due, sends the periodic REPORTs and expires silent sessions.
func (c *Core) Tick(now int64) {
	c.subscribeTick(now)
	if c.reportsDue {
		c.reportEarly(now)
	}
	for _, s := range c.sessions {
		for _, st := range s.streams {
			if st.decoder != nil {
				st.decoder.Expire(now)
			}
			if st.queueLost { // the reader may have made room since
				c.pushQueueLost(s, st, now)
			}
			c.drain(s, st, now, 0)
			if len(st.reasm.parts) > 0 {
				c.expireReassembly(s, st, now)
			}
			if !c.cfg.DisableNACK {
				c.nack(s, st, now)
			}
		}
	}
	if c.nextReport == 0 {
		c.nextReport = now + int64(c.cfg.ReportInterval)
		return
	}
	if now < c.nextReport {
		return
	}
	c.nextReport += int64(c.cfg.ReportInterval)
	if c.nextReport <= now { // we fell behind: do not burst to catch up
		c.nextReport = now + int64(c.cfg.ReportInterval)
	}
	for k, s := range c.sessions {
		if now-s.lastSeen > int64(c.cfg.SessionTimeout) {
			c.forget(s)
			delete(c.sessions, k)
			c.stats.SessionsExpired++
			c.log.Info().Stringer("from", s.addr).Str("session", hex64(s.id)).Msg("sender silent, session expired")
			continue
		}
		for _, st := range s.streams {
			if !c.quiet(st, now) {
				c.report(s, st, now)
			}
		}
	}
}

// reportSig is what a stream's REPORT says that changes only with news:
// a datagram received, a loss found, repaired or given up, a late arrival.
type reportSig struct {
	highest, received, duplicates, lost, unrecovered, late uint64
}

func (st *stream) sig() reportSig {
	ts := st.tracker.Stats()
	l := st.loss()
	highest, _ := st.tracker.Highest()
	return reportSig{highest, ts.Received, ts.Duplicates, l.lost, l.unrecovered, st.delivery.Stats().Late}
}

// quiet reports whether the periodic REPORT of st may be left out: its
// sender is idle (its latest datagram was a HEARTBEAT), its figures are
// those of the last REPORT queued, and the stream's idle gap since that
// REPORT has not passed. The gap starts at one ReportInterval
// when the figures change and doubles with each REPORT that repeats them,
// up to half the SessionTimeout: news is repeated at 1, 3, 7, 15, ...
// intervals (a REPORT lost on the way back is soon made good), while an
// idle stream costs a few REPORTs, not ten a second. A sender of many idle
// streams (a capture replay of thousands of short flows) would otherwise
// get ten copies a second of every stream's old figures, which fill the
// feedback outbox and, without a key, spend the amplification budget so
// that the REPORT a sender waits for never goes out.
func (c *Core) quiet(st *stream, now int64) bool {
	return st.senderIdle && st.idleGap != 0 && now-st.reportedAt < st.idleGap-int64(c.cfg.ReportInterval)/2 && st.sig() == st.lastSig
}

// reported records the figures of a REPORT just queued, and sets the
// stream's idle gap (see quiet).
func (c *Core) reported(st *stream) {
	if sig := st.sig(); sig != st.lastSig || st.idleGap == 0 {
		st.lastSig, st.idleGap = sig, int64(c.cfg.ReportInterval)
		return
	}
	st.idleGap = min(2*st.idleGap, max(int64(c.cfg.SessionTimeout)/2, int64(c.cfg.ReportInterval)))
}

// nack sends the stream's due NACKs, all gaps at once, cut into packets.
func (c *Core) nack(s *session, st *stream, now int64) {
	if at, ok := st.tracker.NextNACKAt(); !ok || at > now {
		return
	}
	st.tracker.SetJitter(int64(st.jitter.Nanos()))
	var rec reliability.Recoverer // NACK only what FEC cannot rebuild
	if st.decoder != nil && st.holdForParity() {
		rec = st.decoder
	}
	if st.nacks == nil {
		if !c.reserveOpt(s, st, optNACKs, reliability.DefaultMaxNACKRanges*int(unsafe.Sizeof(packet.Range{}))) {
			return // counted; asked again at the next tick
		}
		st.nacks = make([]packet.Range, 0, reliability.DefaultMaxNACKRanges)
	}
	rto := c.retryTimeout(st)
	st.usedRTO = max(st.usedRTO, rto)
	rs := st.tracker.AppendNACK(st.nacks[:0], now, rto, rec)
	live, hist := st.splitHistory(rs)
	c.sendNACKRanges(s, st, hist, packet.FlagHistory)
	c.sendNACKRanges(s, st, live, 0)
}

// sendNACKRanges sends NACKs for rs, flagged flags.
func (c *Core) sendNACKRanges(s *session, st *stream, rs []packet.Range, flags packet.Flags) {
	for len(rs) > 0 {
		head, rest := reliability.SplitNACK(rs)
		c.pkt = packet.Packet{
			Header: packet.Header{Kind: packet.KindNACK, Flags: flags, Session: s.id, Stream: st.id},
			Ranges: head,
		}
		if st.echoAt != 0 && c.sec == nil {
			// Proof of receipt: the sender answers a NACK beyond the
			// amplification limit only with it (packet.FlagProof).
			c.pkt.Flags |= packet.FlagProof
			c.pkt.ProofSeq, c.pkt.ProofTimestamp = st.echoSeq, st.echoTs
		}
		for range c.nackCopies(st) {
			if err := c.feedback(s, &c.pkt); err != nil {
				if err != errAmplification {
					c.stats.FeedbackDropped++ // the tracker asks again after its backoff
				}
				break
			}
			st.nacksSent++
			c.stats.NACKs++
		}
		rs = rest
	}
	c.pkt.Ranges = nil
}

// holdForParity reports whether a gap FEC may still rebuild should wait for
// its parity rather than be NACKed at once: yes when a retransmission (the
// reorder wait, then a NACK round trip) has been the slower repair. On a
// short path, or a slow stream whose FEC blocks take long to fill, the
// retransmission wins and the hold would only add latency; on a long path
// FEC wins and saves the NACK. Until both repairs have been timed the gap
// is NACKed: FEC still rebuilds what it can meanwhile, which times it, and
// the retransmission times the round trip; holding blindly could keep a
// stream waiting a whole FEC block (tens of ms at a low rate) for parity.
//
// The measured FEC delay alone is biased low: while gaps are NACKed, FEC
// is timed only when it beat the retransmission, i.e. only its fast cases.
// So the hold also needs the expected wait from the block's shape — half
// the block's span of messages at the stream's message rate — to beat
// the NACK; at 1 000 messages/s a 10-message block waits 5 ms on average,
// a loopback NACK under one.
func (st *stream) holdForParity() bool {
	if st.rtt.Samples() == 0 || st.fecDelay.Samples() == 0 || st.msgGap == 0 {
		return false
	}
	nack := st.tracker.ReorderTolerance() + st.rtt.Smoothed()
	expected := st.fecSpan * st.msgGap / 2
	return st.fecDelay.Smoothed() <= nack && expected <= nack
}

// redundantLossPPM is the loss rate from which NACKs are sent twice: with p
// lost each way a request fails with probability about 2p with one copy
// and 2p² with two, which at 5% loss is the difference between a few
// messages in 100 000 missing their deadline and none.
const redundantLossPPM = 20_000

// nackCopies is how many copies of each NACK packet to send, from the loss
// rate of the last report interval or, before one has closed, of the
// stream so far (a stream's first interval is when ordered delivery can
// least afford a lost NACK: see issue #19).
func (st *stream) nackCopies() int {
	ppm := uint64(st.lossPPM)
	if !st.intervalClosed {
		if highest, ok := st.tracker.Highest(); ok {
			if n := packet.SeqDiff(highest, st.firstSeq) + 1; n > 0 {
				ppm = st.tracker.Stats().Missing * packet.MaxLossPPM / uint64(n)
			}
		}
	}
	if ppm >= redundantLossPPM {
		return 2
	}
	return 1
}

// retryTimeout is how long a NACKed sequence waits before it is asked for
// again: the smoothed NACK-to-retransmission time plus two mean deviations
// (at least minRTO of margin), within [minRTO, maxRTO]. It is tighter than
// TCP's SRTT + 4·RTTVAR because a late retransmission is worthless here,
// while an early repeat costs one small NACK and is deduplicated by the
// sender. Before any round trip is measured it is a quarter of the latency
// budget, leaving room for several attempts.
func (c *Core) retryTimeout(st *stream) int64 {
	if st.rtt.Samples() == 0 {
		return int64(c.cfg.Latency) / 4
	}
	rto := st.rtt.Smoothed() + max(2*st.rtt.Variance(), int64(minRTO))
	return min(max(rto, int64(minRTO)), int64(maxRTO))
}

// retime pulls in the retry times of the stream's NACKed sequences when a
// new RTT sample makes the retry timeout clearly (by a quarter) shorter
// than the one they were scheduled with: a NACK sent before the first
// sample waited a quarter of the latency budget, which the first
// retransmission's round trip shows is far too long. Retimes happen only
// on such falls, so their cost (a walk of the missing set) stays rare.
func (c *Core) retime(st *stream) {
	rto := c.retryTimeout(st)
	if st.usedRTO == 0 || 4*rto >= 3*st.usedRTO {
		return
	}
	st.tracker.RetimeRetries(rto)
	st.usedRTO = rto
}

// NextTimer returns when Tick next has work: a REPORT, a delivery deadline
// or a NACK. The report clock runs even without sessions, so that a session
// that appears between ticks is reported on time.
func (c *Core) NextTimer() (int64, bool) {
	at := c.nextReport // 0 before the first Tick: due at once
	if c.reportsDue {
		return 0, true // due at once
	}
	if t, ok := c.subscribeTimer(); ok && t < at {
		at = t
	}
	for _, s := range c.sessions {
		for _, st := range s.streams {
			if t, ok := st.delivery.NextDeadline(); ok {
				if st.holdUntil != 0 {
					// Nothing is delivered during the startup hold, even
					// past a deadline (a late joiner's history has old
					// ones): waking before its end would spin.
					t = max(t, st.holdUntil)
				}
				if t < at {
					at = t
				}
			}
			if st.holdUntil != 0 && st.holdUntil < at {
				at = st.holdUntil
			}
			if t, ok := st.nextReassemblyDeadline(); ok && t < at {
				at = t
			}
			if c.cfg.DisableNACK {
				continue
			}
			if t, ok := st.tracker.NextNACKAt(); ok && t < at {
				at = t
			}
		}
	}
	return at, true
}

// maxMsgGap caps the estimated time between a stream's messages.
const maxMsgGap = int64(10 * time.Second)

// earlyReportPackets and earlyReportGap pace early REPORTs: one per this
// many first transmissions of a stream, at most one per gap. At 10 000
// messages/s that is a REPORT every 6.4 ms; from 64 000 messages/s on one
// per ms (1.5 Mbit/s of feedback against 100+ Mbit/s of data); under 640
// messages/s only the ReportInterval ones go.
const (
	earlyReportPackets = 64
	earlyReportGap     = time.Millisecond
)

// reportEarly sends the REPORTs that early reporting made due. They carry
// the latest counters and echo but leave the loss interval open: the
// interval loss figure that adaptive FEC reads keeps its ReportInterval
// span.
func (c *Core) reportEarly(now int64) {
	c.reportsDue = false
	for _, s := range c.sessions {
		for _, st := range s.streams {
			if st.reportDue {
				st.reportDue = false
				c.sendReport(s, st, now, packet.FlagEarly)
			}
		}
	}
}

// ReportNow queues a REPORT for every stream, so that a sender hears about the tail of its data from a
// receiver about to close (Receiver.Close calls it) instead of waiting for
// a report that never comes. Amplification limits and the feedback outbox
// bound it as they bound every REPORT.
func (c *Core) ReportNow(now int64) {
	for _, s := range c.sessions {
		for _, st := range s.streams {
			st.reportDue = false
			c.sendReport(s, st, now, packet.FlagEarly)
		}
	}
}

// report closes the stream's interval and queues a REPORT to its sender.
func (c *Core) report(s *session, st *stream, now int64) {
	l := st.loss()
	// A gap younger than the reorder tolerance may yet fill by itself: it
	// is left for the next interval, so that reordering is not reported
	// as loss (adaptive FEC would pay parity for it).
	settled := l.lost - min(l.lost, st.tracker.MissingSince(now-st.tracker.ReorderTolerance()))
	highest, _ := st.tracker.Highest()
	expected := packet.SeqDiff(highest, st.lastHighest)
	var lost uint64 // net new losses this interval; late arrivals may make it negative
	if settled > st.lastLost {
		lost = settled - st.lastLost
	}
	bursts := st.bursts - st.lastBursts
	st.lossPPM = 0
	if expected > 0 {
		st.lossPPM = uint32(min(packet.MaxLossPPM, lost*packet.MaxLossPPM/uint64(expected)))
	} else if lost > 0 {
		st.lossPPM = packet.MaxLossPPM // only tail loss revealed by a heartbeat
	}
	st.burstMilli = 0
	if bursts > 0 {
		st.burstMilli = uint32(min(1<<31, lost*1000/bursts))
	}
	st.lastHighest, st.lastLost, st.lastBursts = highest, settled, st.bursts
	st.intervalClosed = true
	st.reportDue = false
	c.sendReport(s, st, now, 0)
}

// sendReport queues a REPORT of the stream's figures to its sender.
func (c *Core) sendReport(s *session, st *stream, now int64, flags packet.Flags) {
	st.sinceReport, st.reportedAt = 0, now
	c.pkt = packet.Packet{
		Header: packet.Header{Kind: packet.KindReport, Flags: flags, Session: s.id, Stream: st.id},
		Report: c.reportBody(s, st, now),
	}
	// A sender not yet validated, or a stream with no round trip yet, is
	// challenged: the answer validates the one and times the other.
	challenge := !c.trusted(s) || st.rtt.Samples() == 0
	if challenge {
		c.pkt.Flags |= packet.FlagChallenge
		c.pkt.Challenge = c.challenge(s.addr, s.id, now)
	}
	if err := c.feedback(s, &c.pkt); err != nil {
		if err != errAmplification {
			c.stats.FeedbackDropped++
		}
		return
	}
	if challenge {
		s.challenged = true
		c.stats.Challenges++
	}
	c.reported(st)
	c.stats.Reports++
}

func (c *Core) reportBody(s *session, st *stream, now int64) packet.Report {
	ts := st.tracker.Stats()
	l := st.loss()
	highest, _ := st.tracker.Highest()
	var d stats.Summary
	if st.delay != nil {
		d = st.delay.Summary()
	}
	r := packet.Report{
		HighestSeq:      highest,
		Received:        ts.Received,
		Lost:            l.lost,
		Unrecovered:     l.unrecovered,
		RecoveredRTX:    ts.RecoveredRTX,
		RecoveredFEC:    l.fec,
		Duplicates:      ts.Duplicates,
		Reordered:       ts.Reordered,
		Late:            st.delivery.Stats().Late,
		NACKsSent:       st.nacksSent,
		Retransmits:     st.retransmits,
		JitterNanos:     st.jitter.Nanos(),
		DelayP50Nanos:   d.P50,
		DelayP90Nanos:   d.P90,
		DelayP99Nanos:   d.P99,
		DelayMaxNanos:   d.Max,
		Malformed:       s.malformed,
		IntervalLossPPM: st.lossPPM,
		BurstMeanMilli:  st.burstMilli,
	}
	if st.echoAt != 0 {
		r.EchoTimestamp = st.echoTs
		r.EchoHoldNanos = now - st.echoAt
	}
	return r
}

// Stats returns the counters and a snapshot of every live stream.
func (c *Core) Stats() Stats {
	st := c.stats
	if c.sub != nil {
		st.Subscription = c.sub.stats
	}
	st.StateBytes, st.UnvalidatedStateBytes = uint64(c.memUsed), uint64(c.memUnvalidated)
	st.Streams = []StreamStats{}
	for _, s := range c.sessions {
		for _, x := range s.streams {
			ts := x.tracker.Stats()
			ds := x.delivery.Stats()
			l := x.loss()
			highest, _ := x.tracker.Highest()
			ss := StreamStats{
				Source:       s.addr.String(),
				Session:      hex64(s.id),
				Stream:       x.id,
				HighestSeq:   highest,
				Received:     ts.Received,
				Lost:         l.lost,
				Unrecovered:  l.unrecovered,
				RecoveredRTX: ts.RecoveredRTX,
				RecoveredFEC: l.fec,
				Duplicates:   ts.Duplicates,
				Reordered:    ts.Reordered,
				Stale:        ts.Stale,
				Resyncs:      ts.Resyncs,
				Retransmits:  x.retransmits,
				NACKs:        x.nacksSent,
				Skipped:      ds.Skipped + x.skippedAtStart + x.skippedResync,
				Late:         ds.Late,
				Superseded:   ds.Superseded + x.packedSuperseded,
				Held:         ds.Buffered,
				IntervalLoss: float64(x.lossPPM) / packet.MaxLossPPM,
				JitterNanos:  x.jitter.Nanos(),
				NACKRTTNanos: x.rtt.Smoothed(),

				ReorderDropped:  ds.Dropped,
				MissingOverflow: ts.GivenUpOverflow,
			}
			ss.BudgetDropped = x.budgetDropped
			ss.Delivered = x.delivered
			ss.Reassembled = x.reasm.reassembled
			ss.ReassemblyDropped = x.reasm.dropped
			ss.ReassemblyExpired = x.reasm.expired
			ss.FragmentsRefused = x.reasm.refused
			ss.ReassemblyBytes = uint64(x.reasm.bytes)
			if x.delay != nil {
				ss.Delay, ss.DelaySamples = x.delay.Summary(), x.delay.Count()
				ss.DelaySumNanos = x.delay.Cumulative(DelayBucketNanos[:], ss.DelayBuckets[:])
			}
			if x.decoder != nil {
				ds := x.decoder.Stats()
				ss.ParityReceived = ds.ParityReceived
				ss.FECBlocksUnrecoverable = ds.BlocksUnrecoverable
				ss.FECBlocksEvicted = ds.BlocksEvicted
				ss.FECParityDropped = ds.ParityDropped
			}
			st.Streams = append(st.Streams, ss)
		}
	}
	return st
}

// loss is a stream's loss accounting derived from the tracker's counters.
type loss struct {
	lost        uint64 // missing on the path: found missing and not arrived by themselves
	unrecovered uint64 // of lost, not repaired (yet) by retransmission or FEC
	fec         uint64 // of lost, rebuilt by FEC
}

// loss turns the tracker's counters into loss figures. The tracker counts
// a sequence missing as soon as a later one arrives, so reordering alone
// makes sequences "missing" that then arrive on their own, or that FEC
// rebuilds before their original arrives; neither is a loss.
func (st *stream) loss() loss {
	ts := st.tracker.Stats()
	late := ts.Recovered - ts.RecoveredRTX - ts.RecoveredFEC + ts.ArrivedAfterGiveUp
	// A late joiner's history was never lost on the path: its gaps and
	// their repairs are not loss (Config.JoinHistory).
	missing := ts.Missing - min(ts.Missing, st.historyMissing)
	rtx := ts.RecoveredRTX - min(ts.RecoveredRTX, st.historyRepaired)
	var l loss
	if missing > late+st.fecEarly {
		l.lost = missing - late - st.fecEarly
	}
	if ts.RecoveredFEC > st.fecEarly {
		l.fec = ts.RecoveredFEC - st.fecEarly
	}
	if repaired := rtx + l.fec; l.lost > repaired {
		l.unrecovered = l.lost - repaired
	}
	return l
}

func hex64(v uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b[:])
}
