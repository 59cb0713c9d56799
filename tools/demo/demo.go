// Package demo runs telewire end to end in one process: a sender streaming
// synthetic ticks, an in-process lossy, delaying UDP link (tools/netem's
// Relay) and a receiver, all on loopback, with a live statistics table and
// a final summary. It is what `telewire demo` runs.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/gen"
	"github.com/telewire/telewire/tools/netem"
)

// Options configure a demo run. The zero value of each field is its
// default.
type Options struct {
	Duration time.Duration // how long to stream; default 10s
	Rate     float64       // messages per second; default 2000
	Size     int           // message size in bytes; default 0 (natural size)
	Source   gen.Kind      // market or game; default market
	// Fwd and Rev are netem specs for the sender→receiver and
	// receiver→sender directions; default DefaultLink for both.
	Fwd, Rev string
	Seed     int64         // seeds the link and the generator; default 1
	Interval time.Duration // table row interval; default 1s
	KeyFile  string        // pre-shared key file: both ends encrypt (sender.Config.KeyFile)
	// Latency is the receivers' latency budget (receiver.Config.Latency);
	// default the receiver's, 200 ms.
	Latency time.Duration
	// Receivers, from 2 (at most MaxReceivers), makes RunGroup's group
	// demo: the sender sends to a multicast group and each receiver has
	// a link of its own (Fwd and Rev, drawn independently). Run ignores
	// it.
	Receivers int
	Logger    zerolog.Logger // default: discard
	// OnStart, if set, is called once the sender, the link relay and the
	// receiver run, before the first message (to export their statistics,
	// for instance). They are safe to use from any goroutine until Run
	// returns.
	OnStart func(*sender.Sender, *receiver.Receiver, *netem.Relay)
}

// DefaultLink is the demo's default impairment for each direction: about
// 2% random loss and 5 ms ± 1 ms of one-way delay.
const DefaultLink = "delay 5ms 1ms distribution normal loss random 2%"

// Summary is the outcome of a run.
type Summary struct {
	Sent      uint64
	Delivered uint64
	Receiver  receiver.StreamStats
	Sender    sender.Stats
	Link      netem.RelayStats
	// Encrypted says the run used a key; Rejected counts the datagrams
	// the receiver refused before opening (unsealed, another key, failed
	// authentication, replayed).
	Encrypted bool
	Rejected  uint64
	// ReceiverAll is the receiver's whole statistics at the end.
	ReceiverAll receiver.Stats
}

func (o Options) withDefaults() Options {
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Rate == 0 {
		o.Rate = 2000
	}
	if o.Source == "" {
		o.Source = gen.Market
	}
	if o.Fwd == "" {
		o.Fwd = DefaultLink
	}
	if o.Rev == "" {
		o.Rev = DefaultLink
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	return o
}

// Run streams for o.Duration (or until ctx is cancelled), writing the live
// table and the summary to out.
func Run(ctx context.Context, o Options, out io.Writer) (Summary, error) {
	o = o.withDefaults()
	if o.Rate < 0 || o.Duration < 0 {
		return Summary{}, errors.New("demo: rate and duration must be positive")
	}
	fwd, err := netem.ParseSpec(o.Fwd)
	if err != nil {
		return Summary{}, fmt.Errorf("demo: forward link: %w", err)
	}
	rev, err := netem.ParseSpec(o.Rev)
	if err != nil {
		return Summary{}, fmt.Errorf("demo: reverse link: %w", err)
	}
	src, err := gen.New(o.Source, o.Size, uint64(o.Seed))
	if err != nil {
		return Summary{}, err
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// Cancel first, then wait: the relay and the reader stop on cancel.
	defer wg.Wait()
	defer cancel()

	rcv, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0", KeyFile: o.KeyFile, Latency: o.Latency, Logger: o.Logger})
	if err != nil {
		return Summary{}, err
	}
	defer rcv.Close()
	relay, err := netem.NewRelay(netem.RelayConfig{
		Listen: "127.0.0.1:0", To: rcv.Addr().String(), Fwd: fwd, Rev: rev, Seed: o.Seed, Logger: &o.Logger,
	})
	if err != nil {
		return Summary{}, err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := relay.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			o.Logger.Error().Err(err).Msg("link relay stopped")
		}
	}()
	snd, err := sender.New(ctx, sender.Config{To: relay.Addr().String(), KeyFile: o.KeyFile, Logger: o.Logger})
	if err != nil {
		return Summary{}, err
	}
	defer snd.Close()
	if o.OnStart != nil {
		o.OnStart(snd, rcv, relay)
	}

	var delivered uint64
	var dmu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, err := rcv.Recv(ctx); err != nil {
				return
			}
			dmu.Lock()
			delivered++
			dmu.Unlock()
		}
	}()
	deliveredNow := func() uint64 {
		dmu.Lock()
		defer dmu.Unlock()
		return delivered
	}

	fmt.Fprintf(out, "telewire demo: %s messages at %.0f/s for %s over loopback\n", o.Source, o.Rate, o.Duration)
	fmt.Fprintf(out, "link each way: %s\n", o.Fwd)
	if o.KeyFile != "" {
		fmt.Fprintf(out, "encryption: AES-256-GCM, key from %s\n", o.KeyFile)
	}
	fmt.Fprintln(out)
	t := newTable(out)
	t.header()

	start := time.Now()
	interval := time.Duration(float64(time.Second) / o.Rate)
	nextRow := start.Add(o.Interval)
	buf := make([]byte, 0, 2048)
	var sent uint64
	row := func() {
		t.row(time.Since(start), sent, deliveredNow(), snd.Stats(), streamOf(rcv.Stats()))
	}
loop:
	for time.Since(start) < o.Duration {
		// Send what is due, then sleep until the next message or row.
		// Send blocks while the congestion controller holds the rate
		// below --rate: the row is then printed on time all the same.
		for due := start.Add(time.Duration(sent) * interval); !time.Now().Before(due) && time.Now().Before(nextRow); due = start.Add(time.Duration(sent) * interval) {
			buf = src.Next(buf[:0])
			if err := snd.Send(buf); err != nil {
				return Summary{}, err
			}
			sent++
		}
		if !time.Now().Before(nextRow) {
			row()
			nextRow = nextRow.Add(o.Interval)
		}
		wait := min(time.Until(start.Add(time.Duration(sent)*interval)), time.Until(nextRow))
		select {
		case <-ctx.Done():
			break loop
		case <-time.After(max(wait, 0)):
		}
	}
	// Let the last packets land and the last REPORT come back.
	select {
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}
	row()
	rst := rcv.Stats()
	sum := Summary{
		Sent:      sent,
		Delivered: deliveredNow(),
		Receiver:  streamOf(rst),
		Sender:    snd.Stats(),
		Link:      relay.Stats(),
		Encrypted: o.KeyFile != "",
		Rejected:  rst.Unsealed + rst.KeyMismatch + rst.Corrupted + rst.AuthFailed + rst.Replayed + rst.NoKeys,
	}
	sum.ReceiverAll = rst
	t.summary(sum, time.Since(start))
	return sum, nil
}

// streamOf returns the stats of the demo's one stream (zero before data).
func streamOf(st receiver.Stats) receiver.StreamStats {
	if len(st.Streams) == 0 {
		return receiver.StreamStats{}
	}
	return st.Streams[0]
}
