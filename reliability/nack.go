package reliability

import (
	"math"

	"github.com/telewire/telewire/packet"
)

// Recoverer tells the NACK scheduler that a missing sequence may still be
// rebuilt without a retransmission, typically because its FEC block has
// not yet received all the shards it could. The FEC decoder implements it.
type Recoverer interface {
	// CanRecover reports whether seq may still be recovered locally at or
	// after now. While it says so, seq is not NACKed.
	CanRecover(seq uint64, now int64) bool
}

// SetJitter tells the tracker the stream's current interarrival jitter
// (RFC 3550), ns. The reorder tolerance is at least twice the jitter.
func (t *Tracker) SetJitter(nanos int64) { t.jitter = min(max(nanos, 0), maxRTTSample) }

// ReorderTolerance returns how long, ns, a newly found gap waits before its
// first NACK: the larger of ReorderFloor, twice the jitter, and the
// reordering delay observed so far (smoothed delay plus four mean
// deviations, from gaps filled by a later original), capped at
// ReorderCeiling; 0 with NACKAtOnceUntilReordered before any reordering
// was observed. Gaps found earlier keep the tolerance they were given.
func (t *Tracker) ReorderTolerance() int64 {
	if t.cfg.NACKAtOnceUntilReordered && t.reoSample == 0 {
		return 0
	}
	tol := max(t.cfg.ReorderFloor, 2*t.jitter)
	if t.reoSample > 0 {
		tol = max(tol, t.reoAvg+4*t.reoDev)
	}
	return min(tol, t.cfg.ReorderCeiling)
}

// backoff returns the wait after the tries-th request of a sequence: one
// RTO for the first linearRetries requests, then doubling. A lost NACK or
// retransmission is normal at real loss rates, and a message has only its
// latency budget to be repaired in, so the first retries come one round
// trip apart (five attempts fit in 200 ms at 40 ms RTT); a sequence that
// keeps failing backs off exponentially.
func backoff(rto int64, tries uint16) int64 {
	shift := min(int(tries)-linearRetries, maxBackoffShift)
	return rto << max(shift, 0)
}

// AppendNACK appends to dst the ranges of every pending sequence due for a
// request at now and returns the extended slice, in increasing sequence
// order, coalesced into ranges of at most packet.MaxRangeLen. Cut the
// result into packets with SplitNACK.
//
// A sequence is due when its reorder tolerance has passed since it was
// found missing (first request), or when its backoff has passed since the
// last request: rto after each of the first four requests, then 2*rto,
// 4*rto ... up to 64*rto. rto is the caller's
// retransmission timeout, ns (e.g. from an RTT estimator); non-positive
// means 100 ms. A due sequence that rec (if not nil) says it can recover
// is skipped and looked at again one tolerance later; a due sequence
// already requested MaxNACKRetries times, and missing for RetrySpan, is
// given up instead.
//
// At most MaxNACKRanges ranges are emitted per call, oldest first. A call
// within NACKInterval of the last call that repeated a request emits first
// requests only; repeats stay due until the interval has passed. A call
// within NACKInterval of one that ran out of ranges emits nothing.
// AppendNACK does not allocate when dst has room.
func (t *Tracker) AppendNACK(dst []packet.Range, now, rto int64, rec Recoverer) []packet.Range {
	paced := t.nacked && now-t.lastNACK < t.cfg.NACKInterval
	if paced && (t.lastFull || t.nextFirst > now) {
		return dst // nothing may go out: skip the walk
	}
	if rto <= 0 {
		rto = fallbackRTO
	}
	rto = min(rto, maxRTO)
	m := &t.miss
	start := len(dst)
	closed := 0
	var cur packet.Range
	open := false
	nextFirst, nextRetry := int64(math.MaxInt64), int64(math.MaxInt64)
	note := func(e *missEntry) {
		if e.tries == 0 {
			nextFirst = min(nextFirst, e.due)
		} else {
			nextRetry = min(nextRetry, e.due)
		}
	}
	retry := max(t.ReorderTolerance(), t.cfg.NACKInterval)
	maxTries := uint16(t.cfg.MaxNACKRetries)
	repeated, full := false, false
	retryWait := int64(-1)
	for i := range m.n {
		e := m.at(i)
		if !e.live {
			continue
		}
		if now < e.due {
			note(e)
			continue
		}
		if e.tries >= maxTries && now-e.detected >= t.cfg.RetrySpan {
			m.kill(i)
			t.giveUpCount(1, &t.stats.GivenUpRetries)
			continue
		}
		if paced && e.tries > 0 {
			note(e) // due, but waits for the interval
			continue
		}
		if rec != nil && rec.CanRecover(e.seq, now) {
			t.stats.NACKVetoed++
			e.due = now + retry
			note(e)
			continue
		}
		if !open || e.seq != cur.Last()+1 || cur.Len >= packet.MaxRangeLen {
			used := closed
			if open {
				used++
			}
			if used >= t.cfg.MaxNACKRanges {
				// Out of ranges for this round: the entry stays due.
				full = true
				note(e)
				continue
			}
			if open {
				dst = append(dst, cur)
				closed++
			}
			cur, open = packet.Range{First: e.seq, Len: 1}, true
		} else {
			cur.Len++
		}
		if e.tries == 0 {
			t.stats.NACKed++
		} else {
			t.stats.NACKRetries++
			repeated = true
		}
		e.tries++
		e.lastNACK = now
		if retryWait < 0 {
			retryWait = t.groupWait(true) // one draw per round, so a burst stays one range
		}
		e.due = now + backoff(rto, e.tries) + retryWait
		note(e)
	}
	if open {
		dst = append(dst, cur)
	}
	m.trim()
	t.nextFirst, t.nextRetry = nextFirst, nextRetry
	if repeated || full {
		t.nacked, t.lastNACK, t.lastFull = true, now, full
	}
	if len(dst) > start {
		t.stats.NACKRounds++
		for rs := dst[start:]; len(rs) > 0; {
			_, rs = SplitNACK(rs)
			t.stats.NACKPackets++
		}
	}
	return dst
}

// RetimeRetries pulls in the retry time of every requested sequence that
// waits longer than rto (with its backoff) since its last request: the
// caller's retransmission timeout has fallen since it was requested, as
// when the first round trip is measured after NACKs went out with a
// default timeout. Retry times never move later. It walks the missing
// set: call it when the timeout falls, not per packet.
func (t *Tracker) RetimeRetries(rto int64) {
	if rto <= 0 {
		return
	}
	rto = min(rto, maxRTO)
	m := &t.miss
	for i := range m.n {
		e := m.at(i)
		if !e.live || e.tries == 0 {
			continue
		}
		if due := e.lastNACK + backoff(rto, e.tries); due < e.due {
			e.due = due
			t.nextRetry = min(t.nextRetry, due)
		}
	}
}

// NextNACKAt returns when AppendNACK should next be called, ns: the
// earliest time a pending sequence becomes due, a repeated request no
// earlier than NACKInterval after the last round that repeated one. ok is
// false when nothing is pending. The time may be early (a gap filled
// since), never late; calling AppendNACK early is harmless.
func (t *Tracker) NextNACKAt() (at int64, ok bool) {
	if t.miss.live == 0 {
		return 0, false
	}
	paceAt := t.lastNACK + t.cfg.NACKInterval
	if t.nacked && t.lastFull {
		return max(min(t.nextFirst, t.nextRetry), paceAt), true
	}
	retry := t.nextRetry
	if t.nacked && retry != math.MaxInt64 {
		retry = max(retry, paceAt)
	}
	return min(t.nextFirst, retry), true
}

// SplitNACK cuts from rs the longest prefix that one NACK packet can carry
// (at most packet.MaxRanges ranges, none touching the one before, spanning
// less than packet.MaxNACKSpan sequences) and returns it with the rest. A
// run longer than packet.MaxRangeLen comes out of AppendNACK as touching
// ranges, which SplitNACK puts in separate packets. rs must be in increasing order
// with ranges of at most packet.MaxRangeLen, as AppendNACK produces. An
// empty rs gives two empty slices.
func SplitNACK(rs []packet.Range) (head, rest []packet.Range) {
	if len(rs) == 0 {
		return rs, rs
	}
	n := 1
	for n < len(rs) && n < packet.MaxRanges {
		if packet.SeqDiff(rs[n].First, rs[n-1].Last()) < 2 ||
			packet.SeqDiff(rs[n].Last(), rs[0].First) >= packet.MaxNACKSpan {
			break
		}
		n++
	}
	return rs[:n], rs[n:]
}

// MissingSince returns how many sequences still missing were found missing
// after since (ns): gaps too young to tell from reordering. It walks the
// missing sequences, so call it per report, not per packet.
func (t *Tracker) MissingSince(since int64) uint64 {
	var n uint64
	for i := range t.miss.n {
		if e := t.miss.at(i); e.live && e.detected > since {
			n++
		}
	}
	return n
}
