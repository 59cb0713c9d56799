package receiver

import (
	"fmt"
	"math/bits"
	"net/netip"
	"time"

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
	// Payload aliases the receiver's delivery buffer: it is valid until the
	// next call to Recv. Copy it to keep it.
	Payload []byte

	off int // payload offset in the queue's ring
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

// stream is the receiver's state for one stream of one session.
type stream struct {
	id       uint32
	tracker  *reliability.Tracker
	delivery *reliability.Delivery[*held]
	jitter   stats.Jitter
	delay    stats.DelayHistogram
	rtt      reliability.RTT // NACK → retransmission, for NACK retry timing
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
	fecRecent [fecRecentLen]uint64
	fecNext   int
	fecEarly  uint64
	nacks     []packet.Range // reused by AppendNACK

	minOffset int64 // smallest receive time - send time seen: maps send times to deadlines
	haveMin   bool
	holdUntil int64  // ordered mode: no delivery before this, so the first arrivals can be sorted
	started   bool   // a DATA packet has arrived
	anchored  bool   // a HEARTBEAT told where the stream starts before any DATA
	anchorSeq uint64 // with anchored: where the first HEARTBEAT said the stream was
	// The first sequence delivered, and the messages sent before it that
	// arrived after it was delivered (they count as skipped).
	delivering     bool
	firstDelivered uint64
	skippedAtStart uint64
	skippedResync  uint64 // sequences a jump beyond the window passed over
	firstSeq       uint64

	echoTs int64 // newest sender timestamp seen
	echoAt int64 // when it arrived

	retransmits uint64
	nacksSent   uint64
	bursts      uint64 // loss events (gaps) found

	// At the last REPORT, for per-interval figures.
	lastHighest uint64
	lastLost    uint64
	lastBursts  uint64
	lossPPM     uint32
	burstMilli  uint32

	// Early REPORTs: a stream receiving fast reports every
	// earlyReportPackets first transmissions (at most every
	// earlyReportGap) as well as every ReportInterval, so the sender's
	// congestion controller sees a queue build within milliseconds.
	sinceReport uint32
	reportedAt  int64
	reportDue   bool
}

// session is the state for one sender (address and session id).
type session struct {
	addr      netip.AddrPort
	id        uint64
	streams   []*stream
	lastSeen  int64
	malformed uint64
	keys      *sessionKeys // nil without encryption
	rttSeed   int64        // a first round trip (the handshake's), for streams yet to come; 0 if none
	// Bytes received from and sent to the session's address: without a
	// key, feedback stays within amplificationFactor times what arrived.
	rxBytes, txBytes uint64
}

// amplificationFactor bounds the feedback bytes sent to an unauthenticated
// sender's address per byte received from it (RFC 9000 §8.1's factor), so
// that a datagram with a forged source cannot turn the receiver into a
// reflector. A real sender sends far more than it is sent, so it never
// meets the bound except on a very slow stream's first report.
const amplificationFactor = 3

// Core is the receiver's protocol state machine, free of sockets,
// goroutines and clocks: Handle and Tick take the time as an argument,
// deliver messages into the queue Pop reads, and encode feedback (REPORT,
// NACK) into the Outbox. [Receiver] runs it over a real socket. A Core is
// not safe for concurrent use.
type Core struct {
	cfg      Config
	sessions map[keyOf]*session // bounded by cfg.MaxSessions
	sec      *secure            // nil without encryption
	queue    *queue
	pool     heldPool
	out      *outbox.Pair
	pkt      packet.Packet
	log      zerolog.Logger

	nextReport int64
	reportsDue bool  // some stream owes an early REPORT
	stats      Stats // global counters; per-stream figures are built on demand
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
	return &Core{
		cfg:      cfg,
		sec:      sec,
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
	if c.sec != nil {
		if s = c.openSealed(b, from, now); s == nil {
			return
		}
	} else if err := p.Parse(b); err != nil {
		c.stats.Malformed++
		if s := c.sessions[keyOf{addr: from}]; s != nil {
			s.malformed++
		}
		c.log.Debug().Err(err).Stringer("from", from).Int("len", len(b)).Msg("malformed datagram dropped")
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
	st := s.stream(p.Stream, c)
	if st == nil {
		c.stats.StreamsRefused++
		return
	}
	s.lastSeen = now
	switch p.Kind {
	case packet.KindHeartbeat:
		c.handleHeartbeat(st, &p.Heartbeat, now)
	case packet.KindParity:
		c.handleParity(s, st, p, from, now)
	default:
		c.handleData(s, st, p, from, now)
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
	if !st.started && st.delivery.Len() == 0 {
		// Delivery starts where the stream does (or, joining a running
		// stream, at the next message), not at whichever message happens
		// to arrive first; no startup hold is needed.
		st.delivery.Resync(hb.Next)
		if !st.anchored {
			st.anchorSeq = hb.Next
		}
		st.anchored = true
	}
}

func (c *Core) handleData(s *session, st *stream, p *packet.Packet, from netip.AddrPort, now int64) {
	if p.Flags&packet.FlagProtected != 0 {
		c.ensureDecoder(st) // before accept hands the data to it
	}
	origin := OriginFirst
	if p.Flags&packet.FlagRetransmit != 0 {
		st.retransmits++
		origin = OriginRetransmit
	}
	c.accept(s, st, from, p.Seq, p.Timestamp, p.Payload, origin, now)
}

// ensureDecoder gives the stream its FEC decoder, at the first DATA the
// sender marks as protected or, from a sender that does not mark it, at
// the first PARITY.
func (c *Core) ensureDecoder(st *stream) {
	if st.decoder != nil {
		return
	}
	dec, err := fec.NewDecoder(fec.DecoderConfig{ParityWaitNanos: int64(parityWait), MaxBlocks: c.cfg.FECMaxBlocks})
	if err != nil { // the defaults are valid; this is a programming error
		panic(err)
	}
	st.decoder = dec
}

// handleParity feeds a PARITY packet to the stream's FEC decoder and
// delivers what it rebuilds.
func (c *Core) handleParity(s *session, st *stream, p *packet.Packet, from netip.AddrPort, now int64) {
	c.stats.Parity++
	c.ensureDecoder(st)
	st.fecSpan = int64(p.Parity.K) * int64(max(p.Parity.Stride, 1))
	if err := st.decoder.AddParity(p.Parity, p.Payload, now); err != nil {
		c.stats.ParityRejected++
		c.log.Debug().Err(err).Stringer("from", from).Msg("parity rejected")
		return
	}
	st.decoder.TakeRecovered(func(seq uint64, ts int64, payload []byte) {
		c.accept(s, st, from, seq, ts, payload, OriginFEC, now)
	})
}

// accept takes one DATA message, arrived or rebuilt, through loss
// tracking, statistics, the FEC decoder and delivery. payload is only
// borrowed: accept copies it if delivery holds the message.
func (c *Core) accept(s *session, st *stream, from netip.AddrPort, seq uint64, ts int64, payload []byte, origin Origin, now int64) {
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
		st.delivery.Flush()
		c.drain(s, st, now, 0)
		if from, ok := st.delivery.WantFrom(); ok && c.cfg.Mode == ModeOrdered && packet.SeqLess(from, seq) {
			st.skippedResync += uint64(packet.SeqDiff(seq, from)) // jumped over: never delivered
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
	if origin == OriginFEC && info.WasMissing {
		st.fecRecent[st.fecNext%fecRecentLen] = seq + 1 // 0 marks an empty slot
		st.fecNext++
		st.fecDelay.Observe(info.SinceDetectedNanos)
	}
	switch origin {
	case OriginRetransmit:
		if info.SinceNACKNanos > 0 {
			st.rtt.Observe(info.SinceNACKNanos)
		}
	case OriginFirst:
		// Jitter and delay describe the path, so only first
		// transmissions feed them.
		st.jitter.Observe(ts, now)
		st.delay.Observe(now - ts)
		if off := now - ts; !st.haveMin || off < st.minOffset {
			st.minOffset, st.haveMin = off, true
		}
		if ts > st.echoTs || st.echoAt == 0 {
			st.echoTs, st.echoAt = ts, now
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
			c.accept(s, st, from, seq, ts, payload, OriginFEC, now)
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
	h := c.pool.get()
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
	offset := st.minOffset
	if !st.haveMin {
		offset = now - ts
	}
	if res := st.delivery.Push(seq, h, ts+offset+int64(c.cfg.Latency)); res != reliability.PushAccepted {
		if res == reliability.PushLate && st.delivering && packet.SeqLess(seq, st.firstDelivered) {
			// Sent before the first message delivered and overtaken by it
			// past the startup hold: passed over like a gap, and counted
			// so (Delivery counts only gaps after its start).
			st.skippedAtStart++
		}
		c.pool.put(h) // late, superseded, duplicate or over capacity: counted by Delivery
		return
	}
	if !c.drain(s, st, now, seq) {
		c.pool.own(h) // held for ordering: copy it out of the borrowed buffer
	}
}

// fecRecentLen is how many FEC-rebuilt sequences a stream remembers to
// tell reordering from loss.
const fecRecentLen = 256

// rebuiltEarly reports whether FEC rebuilt seq lately, and forgets it.
func (st *stream) rebuiltEarly(seq uint64) bool {
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
	for {
		seq, h, ok := st.delivery.Pop(now)
		if !ok {
			break
		}
		if seq == want {
			found = true
		}
		if !st.delivering {
			st.delivering, st.firstDelivered = true, seq
		}
		if c.queue.push(&h.m) {
			c.stats.Delivered++
		} else {
			c.stats.QueueOverflow++
		}
		c.pool.put(h)
	}
	if from, ok := st.delivery.WantFrom(); ok {
		st.tracker.GiveUpBefore(from)
	}
	return found
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
		c.release(s)
	} else {
		if len(c.sessions) >= c.cfg.MaxSessions {
			c.stats.SessionsRefused++
			c.log.Debug().Stringer("from", from).Msg("session table full, datagram dropped")
			return nil
		}
		c.log.Info().Stringer("from", from).Str("session", hex64(id)).Msg("new sender")
	}
	s = &session{addr: from, id: id, lastSeen: now}
	c.sessions[keyOf{addr: from}] = s
	c.stats.Sessions++
	return s
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
			c.pool.put(h)
		}
	}
}

func (s *session) stream(id uint32, c *Core) *stream {
	for _, st := range s.streams {
		if st.id == id {
			return st
		}
	}
	if len(s.streams) >= c.cfg.MaxStreams {
		return nil
	}
	st := &stream{
		id:      id,
		tracker: reliability.NewTracker(reliability.TrackerConfig{Window: c.cfg.Window, MaxMissing: c.cfg.MaxMissing, ReorderFloor: int64(reorderFloor), NACKAtOnceUntilReordered: true, NACKInterval: int64(time.Millisecond)}),
		delivery: reliability.NewDelivery[*held](reliability.DeliveryConfig{
			Mode:     c.cfg.Mode,
			Capacity: 1 << (bits.Len(uint(c.cfg.ReorderCapacity)) - 1), // a power of two, at most the bound
		}),
		nacks: make([]packet.Range, 0, reliability.DefaultMaxNACKRanges),
	}
	if s.rttSeed > 0 {
		st.rtt.Observe(s.rttSeed)
	}
	s.streams = append(s.streams, st)
	return st
}

// seedRTT gives session s a first round-trip sample measured outside the
// NACK path (the handshake's WELCOME to CONFIRM, with a key): streams that
// have no sample yet, and streams created later, start their NACK retry
// timeout from it instead of a quarter of the latency budget. Samples of
// zero or less, or beyond maxRTO, are ignored.
func (c *Core) seedRTT(s *session, sample int64) {
	if sample <= 0 || sample > int64(maxRTO) {
		return
	}
	s.rttSeed = sample
	for _, st := range s.streams {
		if st.rtt.Samples() == 0 {
			st.rtt.Observe(sample)
		}
	}
}

// Tick delivers what has reached its deadline, sends the NACKs that are
// due, sends the periodic REPORTs and expires silent sessions.
func (c *Core) Tick(now int64) {
	if c.reportsDue {
		c.reportEarly(now)
	}
	for _, s := range c.sessions {
		for _, st := range s.streams {
			if st.decoder != nil {
				st.decoder.Expire(now)
			}
			c.drain(s, st, now, 0)
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
			c.release(s)
			delete(c.sessions, k)
			c.stats.SessionsExpired++
			c.log.Info().Stringer("from", s.addr).Str("session", hex64(s.id)).Msg("sender silent, session expired")
			continue
		}
		for _, st := range s.streams {
			c.report(s, st, now)
		}
	}
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
	rs := st.tracker.AppendNACK(st.nacks[:0], now, c.retryTimeout(st), rec)
	for len(rs) > 0 {
		head, rest := reliability.SplitNACK(rs)
		c.pkt = packet.Packet{
			Header: packet.Header{Kind: packet.KindNACK, Session: s.id, Stream: st.id},
			Ranges: head,
		}
		for range st.nackCopies() {
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
// rate of the last report interval.
func (st *stream) nackCopies() int {
	if st.lossPPM >= redundantLossPPM {
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

// NextTimer returns when Tick next has work: a REPORT, a delivery deadline
// or a NACK. The report clock runs even without sessions, so that a session
// that appears between ticks is reported on time.
func (c *Core) NextTimer() (int64, bool) {
	at := c.nextReport // 0 before the first Tick: due at once
	if c.reportsDue {
		return 0, true // due at once
	}
	for _, s := range c.sessions {
		for _, st := range s.streams {
			if t, ok := st.delivery.NextDeadline(); ok && t < at {
				at = t
			}
			if st.holdUntil != 0 && st.holdUntil < at {
				at = st.holdUntil
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
	if err := c.feedback(s, &c.pkt); err != nil {
		if err != errAmplification {
			c.stats.FeedbackDropped++
		}
		return
	}
	c.stats.Reports++
}

func (c *Core) reportBody(s *session, st *stream, now int64) packet.Report {
	ts := st.tracker.Stats()
	l := st.loss()
	highest, _ := st.tracker.Highest()
	d := st.delay.Summary()
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
				Superseded:   ds.Superseded,
				Held:         ds.Buffered,
				IntervalLoss: float64(x.lossPPM) / packet.MaxLossPPM,
				JitterNanos:  x.jitter.Nanos(),
				Delay:        x.delay.Summary(),
				DelaySamples: x.delay.Count(),
				NACKRTTNanos: x.rtt.Smoothed(),

				ReorderDropped:  ds.Dropped,
				MissingOverflow: ts.GivenUpOverflow,
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
	var l loss
	if ts.Missing > late+st.fecEarly {
		l.lost = ts.Missing - late - st.fecEarly
	}
	if ts.RecoveredFEC > st.fecEarly {
		l.fec = ts.RecoveredFEC - st.fecEarly
	}
	if repaired := ts.RecoveredRTX + l.fec; l.lost > repaired {
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
