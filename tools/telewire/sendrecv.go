package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/telewire/telewire/packet"
	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/bridge"
	"github.com/telewire/telewire/tools/framing"
	"github.com/telewire/telewire/tools/gen"
	"github.com/telewire/telewire/tools/metrics"
)

func runSend(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	defMax := sender.Config{}.MaxPayload()
	fs := newFlagSet("send", "--to HOST:PORT[,HOST:PORT...] | --listen HOST:PORT [flags] < messages",
		fmt.Sprintf(`Sends each message read from stdin (or made by --gen) as one telewire message to the
receiver at --to (several, comma-separated: each gets every packet, in one sendmmsg; repairs go
only to the receiver that asked), or to every receiver that subscribes on --listen (recv
--subscribe; --to and --listen combine), then keeps answering the receiver's feedback for --linger and prints
the sender's statistics (round-trip time, and the loss, jitter and delay the receiver
reported, and everything refused or dropped).

A message is at most --max-message bytes (default %d bytes, 1 MiB; at most %d);
a longer line or len32 frame is an error: send stops there, prints its summary and
exits 1. A message larger than one datagram carries (--mtu less the headers) goes
out in fragments, each repaired on its own; messages queued while the socket is
busy are packed into one datagram. No datagram exceeds --mtu, so IP never
fragments one.

It warns on stderr when nothing is heard from the receiver within a second of the
first message, and when the receiver's feedback fails authentication.

SIGINT or SIGTERM stops reading stdin (even while a read is blocked), sends what was
read, lingers for feedback and prints the summary as at end of input; a second one
exits at once with status 128+signal (130 for SIGINT, 143 for SIGTERM).

Exit status: 0 done (or nothing to send); 1 failure, such as a message over the
limit; 2 bad usage or an invalid --to (port 0, 0.0.0.0 or ::, a broadcast address
without --broadcast, a multicast group with --key-file, an address listed twice); 3 messages were sent but the receiver never
reported, so nothing confirms they arrived; 130/143 a second signal.`, defMax, packet.MaxMessageLimit), stderr)
	var o app.SendOptions
	fs.StringVar(&o.To, "to", "", "receiver address `HOST:PORT` (required unless --listen), a comma-separated list of them (unicast fan-out: every packet to each), or a multicast group (239.1.2.3:9000, [ff15::1]:9000): each packet goes once to the group, every receiver's feedback comes back unicast")
	fs.StringVar(&o.Sender.Listen, "listen", "", "take subscribers: bind `HOST:PORT` and stream to every receiver that subscribes there (recv --subscribe) once it proved its address; combines with --to (not with a multicast group); with --key-file each subscriber must hold the key, and gets a handshake and keys of its own")
	slow := fs.String("slow-receiver", "lose", "a subscriber that cannot keep up: lose (it loses what it cannot keep up with, counted at both ends; never holds back the others) or disconnect (dropped and told once its unrepairable losses last 2s; recv then exits 4)")
	fs.IntVar(&o.Sender.MaxReceivers, "max-receivers", 0, fmt.Sprintf("receivers the sender keeps a view of, and with --listen the most destinations (0 = %d)", sender.DefaultMaxReceivers))
	fs.IntVar(&o.Sender.MulticastTTL, "ttl", 0, "with a multicast --to: TTL (hop limit) of the group's packets, 1..255 (default 1: this link only)")
	fs.StringVar(&o.Sender.MulticastInterface, "iface", "", "with a multicast --to: `NAME` of the interface to send the group's packets out of (default: an IPv6 group's zone, as in [ff02::1%eth0]:9000, else the kernel's route; lo for this host only)")
	noLoop := fs.Bool("no-multicast-loop", false, "with a multicast --to: do not deliver the group's packets to receivers on this host")
	fs.BoolVar(&o.Sender.Broadcast, "broadcast", false, "allow --to to be a broadcast address (255.255.255.255 or a local subnet's)")
	fs.BoolVar(&o.Sender.GSO, "gso", false, "coalesce each batch with UDP GSO where the kernel has it: several times the throughput of a saturating sender, but a datagram the kernel drops on the way then takes its whole run (up to 64) with it, repaired by NACK")
	fr := fs.String("framing", "line", "stdin framing: line (one message per line) or len32 (4-byte big-endian length + bytes)")
	fs.Float64Var(&o.Rate, "rate", 0, "cap on messages per second (0 = as fast as possible)")
	fs.DurationVar(&o.Linger, "linger", time.Second, "after the last message, keep answering feedback this long")
	stats := addStatsFlags(fs, false)
	stream := fs.Uint("stream", 0, "stream id")
	g := fs.String("gen", "", "send synthetic data instead of stdin: market (ticks) or game (entity positions)")
	fs.IntVar(&o.Count, "count", 0, "with --gen: number of messages (0 = until interrupted)")
	fs.IntVar(&o.Size, "size", 0, "with --gen: message size in bytes (0 = natural size, else 64 up to --max-message)")
	fs.IntVar(&o.Sender.MTU, "mtu", 0, fmt.Sprintf("largest IP packet to send, headers included (%d..%d; 0 = %d, or %d to a loopback address)", sender.MinMTU, sender.MaxMTU, sender.DefaultMTU, sender.DefaultLoopbackMTU))
	fs.IntVar(&o.Sender.MaxMessage, "max-message", 0, fmt.Sprintf("largest message in bytes (0 = %d; at most %d); the receiver's --max-message must be as large", defMax, packet.MaxMessageLimit))
	noPack := fs.Bool("no-pack", false, "send every message that fits in a datagram in one of its own (default: pack messages queued while the socket is busy)")
	fs.Uint64Var(&o.Seed, "seed", 1, "with --gen: random seed")
	progress := fs.Bool("progress", app.IsTerminal(stderr), "show a live status line on stderr each second (default: on when stderr is a terminal)")
	nack := fs.String("nack", "on", "answer retransmission requests from a buffer of recent messages: on or off")
	fecFlag := fs.String("fec", "auto", "forward error correction: auto (parity chosen from the loss the receiver reports, none while there is none), off, or K,M (M parity packets per K data packets)")
	interleave := fs.Int("fec-interleave", 1, "with --fec K,M: spread consecutive packets over this many blocks, so bursts of up to D·M losses are repairable (repair waits up to D times longer)")
	cc := fs.String("cc", "on", "congestion control: on (pace sends at the rate the receiver's reports show the path carries; random loss is not read as congestion) or off (send as fast as messages come)")
	maxMbit := fs.Float64("max-mbit", 0, "with --cc on: cap the pacing rate at this many Mbit/s on the wire, headers, parity and retransmissions included (0 = no cap)")
	fs.StringVar(&o.Sender.KeyFile, "key-file", "", keyFileUsage)
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error or disabled")
	hw := addWebFlags(fs)
	from := addFromFlags(fs)
	session := fs.String("session", "", "session id, 16 hex digits (default: random): two senders of one feed with the same --session, --stream and messages are the A/B pattern, whose copies a NATS bridge stores once")
	if err := parse(fs, args); err != nil {
		return err
	}
	on, err := onOff(*nack)
	if err != nil {
		return usageError(fs, "--nack: %v", err)
	}
	if o.From, err = from.options(o.Count); err != nil {
		return usageError(fs, "%v", err)
	}
	if o.Sender.Session, err = parseSession(*session); err != nil {
		return usageError(fs, "--session: %v", err)
	}
	o.Sender.DisableRetransmit = !on
	o.Sender.NoMulticastLoopback = *noLoop
	ccOn, err := onOff(*cc)
	if err != nil {
		return usageError(fs, "--cc: %v", err)
	}
	if *maxMbit < 0 {
		return usageError(fs, "--max-mbit must not be negative")
	}
	o.Sender.DisableCongestionControl, o.Sender.MaxRate = !ccOn, *maxMbit*1e6/8
	if o.Sender.FEC, err = sender.ParseFEC(*fecFlag); err != nil {
		return usageError(fs, "--fec: %v", err)
	}
	if *interleave < 1 || *interleave > 255 {
		return usageError(fs, "--fec-interleave %d: outside 1..255", *interleave)
	}
	if *interleave != 1 {
		if o.Sender.FEC.Mode != sender.FECFixed {
			return usageError(fs, "--fec-interleave goes with --fec K,M")
		}
		o.Sender.FEC.Interleave = *interleave
	}
	if o.To == "" && o.Sender.Listen == "" {
		return usageError(fs, "--to (or --listen) is required")
	}
	tos, err := sender.SplitDestinations(o.To)
	if err != nil {
		return usageError(fs, "--to %s: empty address in the list", o.To)
	}
	for _, to := range tos {
		if err := checkAddr(fs, "to", to); err != nil {
			return err
		}
	}
	if o.Sender.Listen != "" {
		if err := checkAddr(fs, "listen", o.Sender.Listen); err != nil {
			return err
		}
	}
	if o.Sender.SlowReceiver, err = sender.ParseSlowPolicy(*slow); err != nil {
		return usageError(fs, "--slow-receiver %q: lose or disconnect", *slow)
	}
	if o.Sender.MaxReceivers < 0 || o.Sender.MaxReceivers > 1<<16 {
		return usageError(fs, "--max-receivers %d: outside 0..65536", o.Sender.MaxReceivers)
	}
	f, err := framing.Parse(*fr)
	if err != nil {
		return usageError(fs, "--framing: %v", err)
	}
	if *stream > 1<<32-1 {
		return usageError(fs, "--stream %d does not fit in 32 bits", *stream)
	}
	if o.Sender.MTU != 0 && (o.Sender.MTU < sender.MinMTU || o.Sender.MTU > sender.MaxMTU) {
		return usageError(fs, "--mtu %d: outside %d..%d", o.Sender.MTU, sender.MinMTU, sender.MaxMTU)
	}
	if o.Sender.MaxMessage < 0 || o.Sender.MaxMessage > packet.MaxMessageLimit {
		return usageError(fs, "--max-message %d: outside 0..%d", o.Sender.MaxMessage, packet.MaxMessageLimit)
	}
	o.Sender.DisablePacking = *noPack
	if *g == "" && o.From == nil && (o.Count != 0 || o.Size != 0) {
		return usageError(fs, "--count and --size go with --gen")
	}
	if *g != "" {
		if err := checkGen(fs, *g, o.Size); err != nil {
			return err
		}
	}
	if o.Rate < 0 || o.Count < 0 || o.Size < 0 || o.Linger < 0 {
		return usageError(fs, "--rate, --count, --size and --linger must not be negative")
	}
	o.Framing, o.Stream, o.Gen, o.Progress = f, uint32(*stream), gen.Kind(*g), *progress
	if o.Logger, err = app.NewLogger(stderr, *logLevel); err != nil {
		return usageError(fs, "--log-level: %v", err)
	}
	if o.Stats, err = stats.open(fs, stdout, false); err != nil {
		return err
	}
	defer o.Stats.Close()
	srv, err := hw.start(fs, "send", stderr, o.Logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	o.OnSender = func(s *sender.Sender) { srv.AddSender(s, o.To) }
	o.OnForwarder = func(f *bridge.Forwarder, c *bridge.Conn) { srv.AddCollector(metrics.NewForwarderCollector(f, c)) }
	return sendExit(app.Send(ctx, o, stdin, stderr), o.To)
}

// sendExit maps the errors of app.Send with an exit status of their own:
// an invalid destination is a usage error (2) told in one line naming
// --to; a receiver that never reported is status 3, which the summary
// has already explained.
func sendExit(err error, to string) error {
	var de *sender.DestinationError
	switch {
	case errors.Is(err, app.ErrNoReport):
		return &exitError{code: 3, err: err, quiet: true}
	case errors.As(err, &de):
		var why string
		switch {
		case errors.Is(err, sender.ErrZeroPort):
			why = "port 0 is not a destination; give the receiver's port"
		case errors.Is(err, sender.ErrUnspecified):
			why = "0.0.0.0 and :: are not destinations; give the receiver's address (127.0.0.1 for this host)"
		case errors.Is(err, sender.ErrBroadcast):
			why = "a broadcast address; add --broadcast to send to every host on the link"
		case errors.Is(err, sender.ErrMulticast):
			why = "a multicast group with --key-file; sealed multicast is not supported yet (send it without a key)"
		case errors.Is(err, sender.ErrDuplicateDestination):
			why = fmt.Sprintf("%v is listed twice", de.Addr)
		case errors.Is(err, sender.ErrFanoutMulticast):
			why = fmt.Sprintf("%v is a multicast group: it must be the only destination, without --listen", de.Addr)
		default:
			why = de.Reason.Error()
		}
		return &exitError{code: 2, err: fmt.Errorf("--to %s: %s", to, why)}
	}
	return err
}

func runRecv(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("recv", "--listen HOST:PORT | --subscribe HOST:PORT [flags] > messages",
		`Receives telewire messages on --listen (or, with --subscribe, from the sender it subscribes
to) and writes each payload to stdout (or
--output). Prints the address it listens on ("telewire recv: listening on ...") on
stderr at start, so --listen 127.0.0.1:0 is usable. Each message is handed on at
once: what is ready is written as one batch, and the batch goes to the kernel as
soon as nothing more is ready. Exits on SIGINT/SIGTERM, after --count messages, or
after --idle without data once data has arrived, then prints the receiver's
statistics (loss, duplicates, reordering, jitter, one-way delay percentiles) and
everything refused, dropped or skipped. A subscriber (--subscribe) leaves with a
goodbye when it exits, and ends when the sender closes.

Exit status: 0 done; 1 failure; 2 bad usage; 4 the sender ended the subscription
(dropped this receiver as too slow, --slow-receiver disconnect, or had no room for it).`, stderr)
	var o app.RecvOptions
	fs.StringVar(&o.Listen, "listen", "", "local address `HOST:PORT` to receive on (required; port 0 picks one, printed at start), or a multicast group to join (239.1.2.3:9000, [ff15::1]:9000; several receivers on one host may join one group and port)")
	fs.StringVar(&o.Receiver.Subscribe, "subscribe", "", "subscribe to the sender taking subscribers at `HOST:PORT` (send --listen), from this receiver's socket (--listen, default an ephemeral port); leaves with a goodbye at exit")
	fs.StringVar(&o.Receiver.Interface, "iface", "", "with a multicast --listen: `NAME` of the interface to join the group on (default: an IPv6 group's zone, as in [ff02::1%eth0]:9000, else the kernel's route; lo for senders on this host)")
	fs.IntVar(&o.Receiver.NACKGroupSize, "group-size", 0, "size of the multicast group the NACK back-off assumes, overriding the one the sender advertises: with more than 1, each retransmission request waits a random back-off so one receiver of the group asks for everyone (default: the sender's figure with a multicast --listen, 64 until it is heard; else 1)")
	fs.IntVar(&o.Receiver.JoinHistory, "join-history", 0, "with a multicast --listen: on joining a running stream, ask the sender (unicast) for up to `N` messages sent before the first one heard, still in its retransmit buffer, delivered before the live ones (at most 1024; default 0: start at the live edge)")
	fs.StringVar(&o.Receiver.Source, "source", "", "with a multicast --listen: hear only the sender at this `IP` (source-specific multicast, where the kernel supports it)")
	fs.StringVar(&o.Output, "output", "-", "write the messages to `FILE` (- = stdout)")
	fr := fs.String("framing", "line", "output framing: line (payload + newline; a payload containing a newline is refused and counted), len32 (4-byte big-endian length + payload) or json (one object per line per message with its metadata, and one per skipped gap; see docs/cli.md)")
	fs.Uint64Var(&o.Count, "count", 0, "exit after this many messages (0 = no limit)")
	fs.DurationVar(&o.Idle, "idle", 0, "exit after this long without data, once data has arrived (0 = never)")
	stats := addStatsFlags(fs, true)
	fs.DurationVar(&o.Receiver.ReportInterval, "report-interval", 100*time.Millisecond, "how often to send statistics back to the sender")
	mode := fs.String("mode", "ordered", "delivery: ordered (in sequence, waiting for repairs up to --latency), unordered (on arrival), latest (only newer than the last delivered)")
	fs.DurationVar(&o.Receiver.Latency, "latency", 200*time.Millisecond, "latency budget of ordered delivery: how long after its send time a message may wait for earlier missing ones")
	nack := fs.String("nack", "on", "request retransmission of lost messages: on or off")
	fs.IntVar(&o.Receiver.MaxMessage, "max-message", 0, fmt.Sprintf("largest message in bytes, reassembled from fragments (0 = 1 MiB; at most %d); fragments of larger ones are refused", packet.MaxMessageLimit))
	fs.StringVar(&o.PcapOut, "pcap-out", "", "also write each delivered message as a UDP datagram into the pcap `FILE` (- = stdout, with --output elsewhere), stamped with its receive time, flushed with the output (addresses: see --flows)")
	fs.StringVar(&o.FlowsFile, "flows", "", "with --pcap-out: the stream mapping `FILE` of telewire replay (its --flows-out or --stats JSON), read when the first message arrives (replay writes --flows-out before sending); messages of the sessions and streams it maps are written with their original addresses and ports, others from the sender's IP with port = stream id (low 16 bits) to this receiver's address")
	progress := fs.Bool("progress", app.IsTerminal(stderr), "show a live status line on stderr each second (default: on when stderr is a terminal)")
	fs.StringVar(&o.Receiver.KeyFile, "key-file", "", keyFileUsage)
	fs.IntVar(&o.Receiver.MaxSessions, "max-sessions", 64, "senders (sessions) taken at once; datagrams of further ones are dropped and counted")
	fs.IntVar(&o.Receiver.MaxStreams, "max-streams", 64, "streams taken per sender; datagrams of further ones are dropped and counted")
	maxState := fs.Int("max-state", 64, "cap on the `MiB` of all session and stream state (held messages, reorder and FEC buffers); new senders or streams beyond it are refused and counted (at least 1)")
	logLevel := fs.String("log-level", "warn", "log level: debug, info, warn, error or disabled")
	hw := addWebFlags(fs)
	publish := addPublishFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Receiver.MaxSessions < 1 || o.Receiver.MaxStreams < 1 {
		return usageError(fs, "--max-sessions and --max-streams must be positive")
	}
	var err error
	if o.Publish, err = publish.options(); err != nil {
		return usageError(fs, "%v", err)
	}
	if o.Listen == "" && o.Receiver.Subscribe == "" {
		return usageError(fs, "--listen (or --subscribe) is required")
	}
	if o.Receiver.Subscribe != "" {
		if err := checkAddr(fs, "subscribe", o.Receiver.Subscribe); err != nil {
			return err
		}
	}
	if *maxState < 1 || *maxState > 1<<20 {
		return usageError(fs, "--max-state %d: between 1 and %d MiB", *maxState, 1<<20)
	}
	o.Receiver.MaxStateBytes = *maxState << 20
	if o.Listen != "" {
		if err := checkAddr(fs, "listen", o.Listen); err != nil {
			return err
		}
	}
	f, err := framing.ParseOutput(*fr)
	if err != nil {
		return usageError(fs, "--framing: %v", err)
	}
	if o.PcapOut == "-" && (o.Output == "" || o.Output == "-") {
		return usageError(fs, "--pcap-out - and the messages cannot both go to stdout: add --output FILE (or --output /dev/null)")
	}
	if o.Idle < 0 || o.Receiver.ReportInterval < time.Millisecond || o.Receiver.Latency < time.Millisecond {
		return usageError(fs, "--idle must not be negative; --report-interval and --latency must be at least 1ms")
	}
	if h := o.Receiver.JoinHistory; h != 0 {
		if ap, err := netip.ParseAddrPort(o.Listen); h < 0 || h > packet.MaxJoinHistory || err != nil || !ap.Addr().IsMulticast() {
			return usageError(fs, "--join-history %d: needs a multicast --listen group and 0..%d (JoinHistory)", h, packet.MaxJoinHistory)
		}
	}
	if o.Receiver.MaxMessage < 0 || o.Receiver.MaxMessage > packet.MaxMessageLimit {
		return usageError(fs, "--max-message %d: outside 0..%d", o.Receiver.MaxMessage, packet.MaxMessageLimit)
	}
	if o.Receiver.Mode, err = receiver.ParseMode(*mode); err != nil {
		return usageError(fs, "--mode: %v", err)
	}
	on, err := onOff(*nack)
	if err != nil {
		return usageError(fs, "--nack: %v", err)
	}
	o.Receiver.DisableNACK = !on
	if o.FlowsFile != "" && o.PcapOut == "" {
		return usageError(fs, "--flows goes with --pcap-out")
	}
	o.Framing, o.Progress = f, *progress
	if o.Logger, err = app.NewLogger(stderr, *logLevel); err != nil {
		return usageError(fs, "--log-level: %v", err)
	}
	if o.Stats, err = stats.open(fs, stdout, true); err != nil {
		return err
	}
	defer o.Stats.Close()
	srv, err := hw.start(fs, "recv", stderr, o.Logger)
	if err != nil {
		return err
	}
	defer srv.Close()
	o.OnReceiver = func(r *receiver.Receiver) { srv.AddReceiver(r) }
	o.OnPublisher = func(p *bridge.Publisher) { srv.AddCollector(metrics.NewPublisherCollector(p)) }
	return recvExit(app.Recv(ctx, o, stdout, stderr))
}

// recvExit gives a subscription the sender ended (dropped as too slow, or
// refused for want of room) exit status 4, told in one line.
func recvExit(err error) error {
	var ended *receiver.SubscriptionEndedError
	if errors.As(err, &ended) {
		return &exitError{code: 4, err: fmt.Errorf("recv: %s", receiver.ReasonText(ended.Reason))}
	}
	return err
}

// onOff parses an on/off flag value.
func onOff(s string) (bool, error) {
	switch s {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is neither on nor off", s)
}
