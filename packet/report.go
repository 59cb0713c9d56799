package packet

import "encoding/binary"

// MaxLossPPM is the largest valid loss fraction in parts per million.
const MaxLossPPM = 1_000_000

// appendTo appends the REPORT body: the fields of Report in declaration
// order, 8 bytes each except the two trailing 4-byte fields.
func (r *Report) appendTo(b []byte) []byte {
	be := binary.BigEndian
	b = be.AppendUint64(b, uint64(r.EchoTimestamp))
	b = be.AppendUint64(b, uint64(r.EchoHoldNanos))
	for _, v := range [...]uint64{
		r.HighestSeq, r.Received, r.Lost, r.Unrecovered,
		r.RecoveredRTX, r.RecoveredFEC, r.Duplicates, r.Reordered,
		r.Late, r.NACKsSent, r.Retransmits, r.JitterNanos,
		r.DelayP50Nanos, r.DelayP90Nanos, r.DelayP99Nanos, r.DelayMaxNanos,
		r.Malformed,
	} {
		b = be.AppendUint64(b, v)
	}
	b = be.AppendUint32(b, r.IntervalLossPPM)
	return be.AppendUint32(b, r.BurstMeanMilli)
}

func (p *Packet) parseReport(body []byte) error {
	want := ReportLen + p.optional(FlagChallenge, ChallengeLen)
	if len(body) != want {
		if len(body) < want {
			return ErrShort
		}
		return ErrLength
	}
	be := binary.BigEndian
	u := func(i int) uint64 { return be.Uint64(body[8*i:]) }
	r := &p.Report
	*r = Report{
		EchoTimestamp:   int64(u(0)),
		EchoHoldNanos:   int64(u(1)),
		HighestSeq:      u(2),
		Received:        u(3),
		Lost:            u(4),
		Unrecovered:     u(5),
		RecoveredRTX:    u(6),
		RecoveredFEC:    u(7),
		Duplicates:      u(8),
		Reordered:       u(9),
		Late:            u(10),
		NACKsSent:       u(11),
		Retransmits:     u(12),
		JitterNanos:     u(13),
		DelayP50Nanos:   u(14),
		DelayP90Nanos:   u(15),
		DelayP99Nanos:   u(16),
		DelayMaxNanos:   u(17),
		Malformed:       u(18),
		IntervalLossPPM: be.Uint32(body[152:]),
		BurstMeanMilli:  be.Uint32(body[156:]),
	}
	p.Challenge = 0
	if p.Flags&FlagChallenge != 0 {
		p.Challenge = be.Uint64(body[ReportLen:])
	}
	return validateReport(r)
}

// validateReport rejects figures no honest receiver can produce. Plausible
// but wrong figures are the sender's to distrust.
func validateReport(r *Report) error {
	if r.EchoHoldNanos < 0 || r.IntervalLossPPM > MaxLossPPM {
		return ErrBadField
	}
	return nil
}
