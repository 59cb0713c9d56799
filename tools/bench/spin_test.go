package bench

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/telewire/telewire/receiver"
)

// TestSpinReceiverConfig: tw-spin's busy-poll setting is one the receiver
// accepts, and one out of range is refused with receiver.ErrConfig.
func TestSpinReceiverConfig(t *testing.T) {
	ctx := context.Background()
	r, err := pick(TwSpin)[0].Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tw-spin listen: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []time.Duration{-1, 2 * time.Second} {
		if _, err := twListenWith(receiver.Config{BusyPoll: bad})(ctx, "127.0.0.1:0"); !errors.Is(err, receiver.ErrConfig) {
			t.Errorf("BusyPoll %v: %v, want receiver.ErrConfig", bad, err)
		}
	}
}
