// Package bridge carries telewire messages into NATS JetStream and back:
// the hop from a lossy, low-latency telewire link into a data centre's
// stream store, and from the store out to the edge.
//
// UDP → NATS: a [Publisher] takes each message a receiver.Receiver
// delivers ([Publisher.Put]) and publishes it to a subject made from a
// [Template], with headers naming its session, stream, sequence number,
// send and receive times, origin and source, and with Nats-Msg-Id =
// [MsgID](session, stream, seq), so that JetStream stores it once however
// often it is published: after a retransmission, a bridge restart, or by
// two bridges receiving the same feed. Publishing is asynchronous with a
// bounded number in flight; a message counts as published only once
// JetStream acknowledged it. While the server is unreachable messages wait
// in a bounded buffer; what does not fit is dropped and counted (or Put
// blocks, by choice). [PublisherStats] accounts for every message.
//
// NATS → UDP: a [Forwarder] consumes a JetStream stream through a durable
// consumer (or core NATS) and sends each message through a sender.Sender,
// acknowledging it only once it left the sender ([sender.Sender.Flush]) or
// once the receiver reported it: a bridge that crashes loses nothing, and
// JetStream delivers what it had not acknowledged to the next one.
//
// [Connect] connects in the background and reconnects with back-off and
// jitter; [EnsureStream] creates a stream if it does not exist. The
// telewire command's `recv --publish` and `send --from` only wire flags to
// this package; docs/nats.md is the guide.
package bridge
