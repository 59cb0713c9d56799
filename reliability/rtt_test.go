package reliability

import "testing"

const ms = int64(1_000_000)

func TestRTTZeroValue(t *testing.T) {
	var r RTT
	if r.Smoothed() != 0 || r.Variance() != 0 || r.Min() != 0 || r.Samples() != 0 {
		t.Fatalf("zero RTT not empty: %+v", r)
	}
	if got := r.RTO(10*ms, 3000*ms); got != 3000*ms {
		t.Fatalf("RTO before samples = %d, want ceiling", got)
	}
	r.Observe(0)
	r.Observe(-5)
	if r.Samples() != 0 {
		t.Fatal("non-positive samples were counted")
	}
}

func TestRTTSequence(t *testing.T) {
	// Expected values follow RFC 6298 section 2 by hand, in integer
	// nanoseconds: first sample sets SRTT=R, RTTVAR=R/2; later ones update
	// RTTVAR with |SRTT-R| before SRTT moves.
	cases := []struct {
		sample             int64
		srtt, rttvar, min_ int64
		rtoFloor, rtoCeil  int64
		rto                int64
		comment            string
	}{
		{100 * ms, 100 * ms, 50 * ms, 100 * ms, 0, 10_000 * ms, 300 * ms, "first sample"},
		// rttvar = 50 + (|100-60| - 50)/4 = 47.5; srtt = 100 + (60-100)/8 = 95
		{60 * ms, 95 * ms, 47*ms + ms/2, 60 * ms, 0, 10_000 * ms, 95*ms + 190*ms, "lower sample"},
		// rttvar = 47.5 + (|95-95| - 47.5)/4 = 35.625; srtt = 95
		{95 * ms, 95 * ms, 35*ms + 625*ms/1000, 60 * ms, 0, 10_000 * ms, 95*ms + 142*ms + ms/2, "steady"},
		{95 * ms, 95 * ms, 26*ms + 718750, 60 * ms, 250 * ms, 10_000 * ms, 250 * ms, "floor applies"},
		{95 * ms, 95 * ms, 20*ms + 39063, 60 * ms, 0, 150 * ms, 150 * ms, "ceiling applies"},
	}
	var r RTT
	for i, c := range cases {
		r.Observe(c.sample)
		if r.Smoothed() != c.srtt || r.Variance() != c.rttvar || r.Min() != c.min_ {
			t.Fatalf("step %d (%s): srtt=%d rttvar=%d min=%d, want %d %d %d",
				i, c.comment, r.Smoothed(), r.Variance(), r.Min(), c.srtt, c.rttvar, c.min_)
		}
		if got := r.RTO(c.rtoFloor, c.rtoCeil); got != c.rto {
			t.Fatalf("step %d (%s): RTO=%d, want %d", i, c.comment, got, c.rto)
		}
		if r.Samples() != uint64(i+1) {
			t.Fatalf("step %d: samples=%d", i, r.Samples())
		}
	}
}

func TestRTTConvergesAndClamps(t *testing.T) {
	var r RTT
	for range 200 {
		r.Observe(20 * ms)
	}
	if r.Smoothed() < 20*ms-ms/10 || r.Smoothed() > 20*ms+ms/10 {
		t.Fatalf("srtt %d did not converge to 20ms", r.Smoothed())
	}
	if r.Variance() > ms/10 {
		t.Fatalf("rttvar %d did not decay", r.Variance())
	}
	// Absurd samples must not overflow the RTO.
	var big RTT
	big.Observe(1<<63 - 1)
	big.Observe(1)
	if rto := big.RTO(0, 1<<62); rto <= 0 {
		t.Fatalf("RTO overflowed: %d", rto)
	}
	if big.Min() != 1 {
		t.Fatalf("min = %d, want 1", big.Min())
	}
	// floor > ceiling: ceiling wins.
	if got := r.RTO(500*ms, 100*ms); got != 100*ms {
		t.Fatalf("RTO with floor>ceiling = %d", got)
	}
}
