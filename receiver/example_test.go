package receiver_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"

	"github.com/telewire/telewire/receiver"
	"github.com/telewire/telewire/sender"
)

// A receiver and a sender on loopback: the sender stamps each message with
// its send time and sends it in a numbered DATA datagram (messages sent
// while the socket is busy share one: m.Seq and m.Index name a message),
// the receiver delivers them in order and measures loss, jitter and
// one-way delay, and reports back.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // closes both ends

	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	s, err := sender.New(ctx, sender.Config{To: r.Addr().String()})
	if err != nil {
		log.Fatal(err)
	}

	for _, tick := range []string{"AAPL 187.25", "MSFT 411.10", "NVDA 131.42"} {
		if err := s.Send([]byte(tick)); err != nil {
			log.Fatal(err)
		}
	}
	for range 3 {
		m, err := r.Recv(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("stream %d: %s\n", m.Stream, m.Payload)
	}
	st := r.Stats().Streams[0]
	fmt.Printf("delivered %d, lost %d\n", st.Delivered, st.Lost)
	// Output:
	// stream 0: AAPL 187.25
	// stream 0: MSFT 411.10
	// stream 0: NVDA 131.42
	// delivered 3, lost 0
}

// A reader that passes messages on in batches: it blocks in Recv for the
// first message, takes what else is ready with TryRecv, and flushes as
// soon as nothing more is, so that no message waits in its buffer for one
// that may never come, while a burst still goes out in one write.
func ExampleReceiver_TryRecv() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := receiver.Listen(ctx, receiver.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	s, err := sender.New(ctx, sender.Config{To: r.Addr().String()})
	if err != nil {
		log.Fatal(err)
	}
	for _, tick := range []string{"AAPL 187.25", "MSFT 411.10", "NVDA 131.42"} {
		if err := s.Send([]byte(tick)); err != nil {
			log.Fatal(err)
		}
	}

	out := bufio.NewWriter(os.Stdout)
	for got := 0; got < 3; {
		m, err := r.Recv(ctx)
		if err != nil {
			log.Fatal(err)
		}
		for ok := true; ok; m, ok = r.TryRecv() {
			fmt.Fprintf(out, "%s\n", m.Payload) // copies the payload before the next TryRecv
			got++
		}
		if err := out.Flush(); err != nil { // nothing more ready: hand the batch on
			log.Fatal(err)
		}
	}
	// Output:
	// AAPL 187.25
	// MSFT 411.10
	// NVDA 131.42
}
