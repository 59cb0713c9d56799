package receiver_test

import (
	"context"
	"fmt"
	"log"

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
