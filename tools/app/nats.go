package app

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
	"github.com/telewire/telewire/tools/bridge"
)

// PublishOptions are the settings of `telewire recv --publish`: every
// delivered message also goes into NATS JetStream (tools/bridge).
type PublishOptions struct {
	Conn      bridge.ConnConfig
	Publisher bridge.PublisherConfig
	// CreateStream, if set, is created when no stream of its name exists
	// (its Subjects default to the subject template's wildcard).
	CreateStream *bridge.StreamConfig
}

// ForwardOptions are the settings of `telewire send --from`: messages come
// from NATS instead of stdin (tools/bridge).
type ForwardOptions struct {
	Conn      bridge.ConnConfig
	Forwarder bridge.ForwarderConfig
}

// natsSink publishes what recv delivers.
type natsSink struct {
	conn  *bridge.Conn
	pub   *bridge.Publisher
	final *bridge.PublisherStats // set by close
}

// openNATSSink connects, creates the stream if asked, and starts the
// publisher. Connecting does not wait for the server, but creating the
// stream does (until ctx ends).
func openNATSSink(ctx context.Context, o PublishOptions, log zerolog.Logger) (*natsSink, error) {
	o.Conn.Logger, o.Publisher.Logger = log, log
	conn, err := bridge.Connect(o.Conn)
	if err != nil {
		return nil, err
	}
	if sc := o.CreateStream; sc != nil {
		if len(sc.Subjects) == 0 {
			sc.Subjects = []string{o.Publisher.Subject.Wildcard()}
		}
		if err := ensureStream(ctx, conn, *sc, log); err != nil {
			conn.Close()
			return nil, err
		}
	}
	pub, err := bridge.NewPublisher(conn, o.Publisher)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &natsSink{conn: conn, pub: pub}, nil
}

// ensureStream retries EnsureStream while the server is not reachable.
func ensureStream(ctx context.Context, conn *bridge.Conn, sc bridge.StreamConfig, log zerolog.Logger) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		created, err := bridge.EnsureStream(cctx, conn, sc)
		cancel()
		if err == nil {
			if created {
				log.Info().Str("stream", sc.Name).Strs("subjects", sc.Subjects).Msg("stream created")
			}
			return nil
		}
		if conn.IsConnected() && ctx.Err() == nil {
			return err // the server answered: a real refusal
		}
		log.Warn().Err(err).Msg("waiting for NATS to create the stream")
		select {
		case <-ctx.Done():
			return fmt.Errorf("recv: stream %s not created: %w", sc.Name, ctx.Err())
		case <-conn.Connected():
		case <-time.After(time.Second):
		}
	}
}

func (n *natsSink) put(m *receiver.Message) error { return n.pub.Put(m) }

// close drains the publisher (up to its DrainTimeout) and disconnects.
func (n *natsSink) close() error {
	err := n.pub.Close()
	st := n.pub.Stats() // before the connection goes: Connected still says how it ended
	n.final = &st
	n.conn.Close()
	return err
}

func (n *natsSink) stats() bridge.PublisherStats {
	if n.final != nil {
		return *n.final
	}
	return n.pub.Stats()
}

func (n *natsSink) summary() string { return natsPublishSummary(n.stats()) }

func natsPublishSummary(st bridge.PublisherStats) string {
	return fmt.Sprintf("nats: %d offered, %d published (%d already stored), %d dropped (buffer full), %d rejected, %d abandoned, %d still buffered; %d republished, %d ack failures, %d disconnects, %d reconnects",
		st.Offered, st.Published, st.Duplicates, st.Dropped, st.Rejected, st.Abandoned, st.Buffered,
		st.Republished, st.AckFailures, st.Disconnects, st.Reconnects)
}

// recvStatsJSON is what --stats holds when recv publishes: the receiver's
// statistics with the publisher's beside them.
type recvStatsJSON struct {
	receiver.Stats
	NATS bridge.PublisherStats `json:"nats"`
}

// sendStatsJSON is what --stats holds when send forwards from NATS.
type sendStatsJSON struct {
	sender.Stats
	NATS bridge.ForwarderStats `json:"nats"`
}

// withNATS returns what --stats should hold: st, with the publisher's
// statistics beside it when there is one.
func (n *natsSink) withNATS(st receiver.Stats) any {
	if n == nil {
		return st
	}
	return recvStatsJSON{Stats: st, NATS: n.stats()}
}

// natsSource feeds send from NATS.
type natsSource struct {
	conn *bridge.Conn
	fwd  *bridge.Forwarder
}

func openNATSSource(o ForwardOptions, log zerolog.Logger) (*natsSource, error) {
	o.Conn.Logger, o.Forwarder.Logger = log, log
	conn, err := bridge.Connect(o.Conn)
	if err != nil {
		return nil, err
	}
	fwd, err := bridge.NewForwarder(conn, o.Forwarder)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &natsSource{conn: conn, fwd: fwd}, nil
}

func (n *natsSource) close() { n.conn.Close() }

func (n *natsSource) summary() string {
	st := n.fwd.Stats()
	return fmt.Sprintf("nats: %d received (%d redelivered), %d sent, %d acknowledged, %d unacknowledged at exit (delivered again later), %d ack errors, %d not sendable, %d dropped by core NATS; %d disconnects, %d reconnects",
		st.Received, st.Redelivered, st.Sent, st.Acked, st.Unacked, st.AckErrors, st.SendErrors, st.CoreDropped,
		n.conn.Disconnects(), n.conn.Reconnects())
}

func (n *natsSource) withNATS(st sender.Stats) any {
	if n == nil {
		return st
	}
	return sendStatsJSON{Stats: st, NATS: n.fwd.Stats()}
}
