// Package reliability is telewire's repair logic: loss tracking and NACK
// scheduling at the receiver, the retransmit buffer at the sender,
// reorder/deadline delivery, and RTT estimation.
//
// It is pure logic, like packet and fec: no sockets, no goroutines, no
// clock. Every method that needs the time takes now, an int64 of monotonic
// nanoseconds, so tests and simulations drive it with a fake clock. It
// imports only packet and the standard library. No type is safe for
// concurrent use; each belongs to the one goroutine that owns its stream.
// Nothing here allocates per packet (allocation tests prove it), and every
// structure a peer can grow is bounded, with a counter for what the bound
// turned away.
//
// # Data path
//
// Sender, per stream:
//
//	Send ─▶ SendBuffer.Put(seq, datagram, now)            keeps a copy
//	NACK ─▶ SendBuffer.OnNACK(ranges, now, srtt, &res)   suppression + budget
//	        res.Resend ─▶ SendBuffer.Get ─▶ resend with packet.FlagRetransmit
//	        res.Unavailable ─▶ NACK with packet.FlagUnavailable
//	REPORT echo ─▶ RTT.Observe(sample); RTT.RTO / Smoothed for the above
//
// Receiver, per stream:
//
//	DATA ─▶ Tracker.OnArrival(seq, now, src)   new / duplicate / stale / resync
//	        new ─▶ Delivery.Push(seq, msg, deadline)
//	FEC recovery ─▶ Tracker.OnArrival(seq, now, SourceFEC) ─▶ Delivery.Push
//	HEARTBEAT ─▶ Tracker.OnHeartbeat(start, next, now)   tail loss
//	timer (Tracker.NextNACKAt) ─▶ Tracker.AppendNACK(dst, now, rto, fecDecoder)
//	        ─▶ SplitNACK into NACK packets
//	NACK with FlagUnavailable ─▶ Tracker.OnUnavailable(range)
//	timer (Delivery.NextDeadline) / after Push ─▶ drain Delivery.Pop(now)
//	        ─▶ Tracker.GiveUpBefore(Delivery.WantFrom())
//	ArrivalResync ─▶ Delivery.Flush, drain, Delivery.Resync(seq)
//
// # Tracker
//
// A Tracker records received sequences in a power-of-two bitmap ring
// (TrackerConfig.Window sequences, Window/8 bytes) behind next, one past
// the highest sequence known to have been sent. A forward arrival reveals
// the gap before it; a heartbeat reveals the tail gap; an arrival or
// heartbeat start below the first sequence seen extends the stream down.
// Each sequence of the stream in the window that has not arrived is counted
// Missing exactly once and kept in the missing set: an ordered deque with
// tombstones, searched by binary search, holding at most MaxMissing live
// entries (the oldest are given up beyond that), grown on demand to at most
// MaxMissing*3/2 entries of 40 bytes. Arrivals older than the window are
// Stale; a jump forward by more than the window is a Resync that restarts
// the window and NACKs nothing for the jump. Serial arithmetic throughout,
// so a stream may start anywhere and wrap 2^64.
//
// Every missing sequence ends in exactly one of: Recovered (it arrived),
// GivenUp (for one counted reason: overflow, window, resync, retries,
// deadline, unavailable), or still Pending; TrackerStats documents the
// identities.
//
// # NACK scheduling
//
// A missing sequence is first requested after the reorder tolerance: the
// largest of a floor, twice the jitter (SetJitter) and the reordering delay
// observed (smoothed delay plus four deviations of how long gaps took to be
// filled by late originals), capped by a ceiling. Before each request the
// Recoverer (the FEC decoder; nil means none) may veto it while the
// sequence can still be rebuilt. Retries follow after rto, 2rto, 4rto ...
// (at most 64rto) until the sequence arrives, the sender says it is
// unavailable, delivery gives up on it (GiveUpBefore), or MaxNACKRetries is
// reached. Each AppendNACK emits all due sequences at once, coalesced into
// ranges, at most MaxNACKRanges per round; rounds are at least NACKInterval
// apart; NextNACKAt tells the receiver when to call next.
//
// # SendBuffer
//
// A ring of Capacity slots indexed by sequence modulo Capacity, the bytes
// copied into one slab allocated up front (packets never straddle its end),
// bounded by packets, bytes and age, with O(1) Get. OnNACK answers each
// requested sequence as resend, unavailable (evicted or never retained), or
// not now: suppressed (resent within SuppressPercent of the RTT, whichever
// receiver asked — this is what merges many receivers' NACKs) or throttled
// (a token bucket caps retransmitted bytes per second at a share of the
// stream's measured send rate, with a floor).
//
// # Delivery
//
// Delivery[T] holds up to Capacity messages of the caller's type and hands
// them out in one of three modes. ModeOrdered delivers in sequence order; a
// message waits for missing earlier ones until its own deadline, then the
// gap is Skipped (lost after repair). ModeUnordered delivers in arrival
// order. ModeLatest delivers only what is newer than the last delivered;
// older arrivals are Late and displaced waiting messages Superseded, and
// WantFrom tells the tracker to stop asking for them.
//
// # RTT
//
// RTT is an RFC 6298 estimator (SRTT gain 1/8, RTTVAR gain 1/4) with the
// minimum sample kept; RTO clamps SRTT + 4*RTTVAR to the caller's bounds.
package reliability
