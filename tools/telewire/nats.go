package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/telewire/telewire/tools/app"
	"github.com/telewire/telewire/tools/bridge"
)

// natsConnFlags are the connection flags recv --publish and send --from share.
type natsConnFlags struct {
	creds, userFile, tlsCA, tlsCert, tlsKey *string
}

func addNATSConnFlags(fs *flag.FlagSet) *natsConnFlags {
	return &natsConnFlags{
		creds: fs.String("nats-creds", "", "NATS credentials `FILE` (user JWT and NKey seed, as nsc writes it)"),
		userFile: fs.String("nats-user-file", "", "`FILE` whose first line is user:password for NATS (default: the environment variables "+
			bridge.EnvUser+" and "+bridge.EnvPassword+", if set)"),
		tlsCA:   fs.String("nats-tls-ca", "", "PEM `FILE` of the CAs that sign the NATS server's certificate (turns TLS on)"),
		tlsCert: fs.String("nats-tls-cert", "", "client certificate PEM `FILE` for NATS (with --nats-tls-key)"),
		tlsKey:  fs.String("nats-tls-key", "", "client key PEM `FILE` for NATS (with --nats-tls-cert)"),
	}
}

func (f *natsConnFlags) config(servers, name string) (bridge.ConnConfig, error) {
	if (*f.tlsCert == "") != (*f.tlsKey == "") {
		return bridge.ConnConfig{}, fmt.Errorf("--nats-tls-cert and --nats-tls-key go together")
	}
	return bridge.ConnConfig{
		Servers: servers, Name: name,
		CredsFile: *f.creds, UserFile: *f.userFile,
		TLSCA: *f.tlsCA, TLSCert: *f.tlsCert, TLSKey: *f.tlsKey,
	}, nil
}

// publishFlags are recv's --publish flags.
type publishFlags struct {
	conn                          *natsConnFlags
	url, subject, onFull          *string
	buffer, bufferBytes, inFlight *int
	ackTimeout                    *time.Duration
	create, subjects, retention   *string
	maxAge, dupWindow             *time.Duration
	maxBytes                      *int64
	replicas                      *int
}

func addPublishFlags(fs *flag.FlagSet) *publishFlags {
	return &publishFlags{
		conn:        addNATSConnFlags(fs),
		url:         fs.String("publish", "", "also publish every delivered message to NATS JetStream at `URL` (nats://HOST:4222; several comma-separated for a cluster)"),
		subject:     fs.String("subject", "telewire.{stream}", "with --publish: subject `TEMPLATE`; {stream}, {session} and {source} are filled in per message"),
		onFull:      fs.String("on-full", "drop", "with --publish: when the buffer is full (NATS unreachable or slow): drop (count and drop the new message; recv never stalls) or block (hold recv, whose own queue then overflows)"),
		buffer:      fs.Int("buffer", 65536, "with --publish: messages held until JetStream acknowledges them, in flight included (covers an outage of buffer/rate seconds)"),
		bufferBytes: fs.Int("buffer-bytes", 64<<20, "with --publish: payload bytes so held"),
		inFlight:    fs.Int("max-in-flight", 1024, "with --publish: messages published and not yet acknowledged"),
		ackTimeout:  fs.Duration("ack-timeout", 5*time.Second, "with --publish: publish again (same Nats-Msg-Id) when JetStream has not acknowledged within this"),
		create:      fs.String("create-stream", "", "with --publish: create the JetStream stream `NAME` if it does not exist"),
		subjects:    fs.String("stream-subjects", "", "with --create-stream: comma-separated subjects the stream stores (default: the --subject template with * for each placeholder)"),
		retention:   fs.String("retention", "limits", "with --create-stream: limits (keep until --max-age/--max-bytes), interest or workqueue"),
		maxAge:      fs.Duration("max-age", 0, "with --create-stream: drop messages older than this (0 = keep)"),
		maxBytes:    fs.Int64("max-bytes", 0, "with --create-stream: drop the oldest messages beyond this many bytes (0 = no limit)"),
		dupWindow:   fs.Duration("duplicate-window", 2*time.Minute, "with --create-stream: messages with the same session/stream/seq within this window are stored once"),
		replicas:    fs.Int("replicas", 1, "with --create-stream: copies kept in a NATS cluster"),
	}
}

// options returns recv's publishing options, nil without --publish.
func (p *publishFlags) options() (*app.PublishOptions, error) {
	if *p.url == "" {
		if *p.create != "" {
			return nil, fmt.Errorf("--create-stream goes with --publish")
		}
		return nil, nil
	}
	tmpl, err := bridge.ParseTemplate(*p.subject)
	if err != nil {
		return nil, fmt.Errorf("--subject: %v", err)
	}
	conn, err := p.conn.config(*p.url, "telewire recv")
	if err != nil {
		return nil, err
	}
	o := &app.PublishOptions{Conn: conn, Publisher: bridge.PublisherConfig{
		Subject: tmpl, BufferMessages: *p.buffer, BufferBytes: *p.bufferBytes,
		MaxInFlight: *p.inFlight, AckTimeout: *p.ackTimeout,
	}}
	switch *p.onFull {
	case "drop":
	case "block":
		o.Publisher.Block = true
	default:
		return nil, fmt.Errorf("--on-full %q is neither drop nor block", *p.onFull)
	}
	if *p.buffer < 1 || *p.bufferBytes < 1 || *p.inFlight < 1 || *p.ackTimeout <= 0 {
		return nil, fmt.Errorf("--buffer, --buffer-bytes, --max-in-flight and --ack-timeout must be positive")
	}
	if *p.create != "" {
		if _, err := bridge.ParseRetention(*p.retention); err != nil {
			return nil, fmt.Errorf("--retention: %v", err)
		}
		if *p.maxAge < 0 || *p.maxBytes < 0 || *p.dupWindow < 0 || *p.replicas < 1 {
			return nil, fmt.Errorf("--max-age, --max-bytes and --duplicate-window must not be negative, --replicas at least 1")
		}
		sc := &bridge.StreamConfig{Name: *p.create, Retention: *p.retention, MaxAge: *p.maxAge,
			MaxBytes: *p.maxBytes, Duplicates: *p.dupWindow, Replicas: *p.replicas}
		if *p.subjects != "" {
			sc.Subjects = strings.Split(*p.subjects, ",")
		}
		o.CreateStream = sc
	}
	return o, nil
}

// fromFlags are send's --from flags.
type fromFlags struct {
	conn                           *natsConnFlags
	url, subject, stream, durable  *string
	core, ackDelivered, untilEmpty *bool
	since                          *time.Duration
	startSeq                       *uint64
	maxAckPending                  *int
	ackWait                        *time.Duration
}

func addFromFlags(fs *flag.FlagSet) *fromFlags {
	return &fromFlags{
		conn:          addNATSConnFlags(fs),
		url:           fs.String("from", "", "send what NATS carries instead of stdin: the server `URL` (nats://HOST:4222; several comma-separated)"),
		subject:       fs.String("subject", "", "with --from: the subject filter to consume (wildcards allowed: ticks.>)"),
		stream:        fs.String("nats-stream", "", "with --from: the JetStream stream `NAME` (default: the stream storing --subject)"),
		durable:       fs.String("durable", "telewire-send", "with --from: the durable consumer `NAME`; a restarted send continues where it stopped"),
		core:          fs.Bool("core", false, "with --from: subscribe with core NATS (no JetStream; nothing delivered again, slow-consumer drops counted)"),
		ackDelivered:  fs.Bool("ack-delivered", false, "with --from: acknowledge to JetStream once the receiver's reports cover a message, not once it left the sender"),
		untilEmpty:    fs.Bool("until-empty", false, "with --from: exit once everything the stream held has been sent"),
		since:         fs.Duration("since", 0, "with --from: a new consumer starts with the messages stored this long ago (0 = from the first)"),
		startSeq:      fs.Uint64("start-seq", 0, "with --from: a new consumer starts at this stream sequence (0 = from the first)"),
		maxAckPending: fs.Int("max-ack-pending", 4096, "with --from: messages delivered and not yet acknowledged"),
		ackWait:       fs.Duration("ack-wait", 30*time.Second, "with --from: JetStream delivers a message again when not acknowledged within this"),
	}
}

// options returns send's forwarding options, nil without --from.
func (f *fromFlags) options(count int) (*app.ForwardOptions, error) {
	if *f.url == "" {
		return nil, nil
	}
	if *f.subject == "" {
		return nil, fmt.Errorf("--from needs --subject")
	}
	if *f.maxAckPending < 1 || *f.ackWait <= 0 || *f.since < 0 {
		return nil, fmt.Errorf("--max-ack-pending and --ack-wait must be positive, --since not negative")
	}
	conn, err := f.conn.config(*f.url, "telewire send")
	if err != nil {
		return nil, err
	}
	o := &app.ForwardOptions{Conn: conn, Forwarder: bridge.ForwarderConfig{
		Subject: *f.subject, Stream: *f.stream, Durable: *f.durable, Core: *f.core,
		AckDelivered: *f.ackDelivered, UntilEmpty: *f.untilEmpty, StartSeq: *f.startSeq,
		MaxAckPending: *f.maxAckPending, AckWait: *f.ackWait, Count: uint64(count),
	}}
	if *f.since > 0 {
		o.Forwarder.StartTime = time.Now().Add(-*f.since)
	}
	if o.Forwarder.Core && (o.Forwarder.AckDelivered || o.Forwarder.UntilEmpty || o.Forwarder.Stream != "" || *f.since > 0 || *f.startSeq > 0) {
		return nil, fmt.Errorf("--core has no acknowledgements or stream: it does not go with --ack-delivered, --until-empty, --nats-stream, --since or --start-seq")
	}
	return o, nil
}

// parseSession parses send's --session: 16 hex digits, not all zero; empty
// means random (0).
func parseSession(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || len(s) != 16 || v == 0 {
		return 0, fmt.Errorf("%q is not 16 hex digits (and not zero)", s)
	}
	return v, nil
}
