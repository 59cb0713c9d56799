package app

import (
	"strings"
	"testing"
	"time"

	"github.com/telewire/telewire/sender"
)

func TestFeedbackWatch(t *testing.T) {
	w := feedbackWatch{to: "192.0.2.1:9000", grace: time.Second}
	steps := []struct {
		st   sender.Stats
		want []string // substrings, one per warning expected
	}{
		{sender.Stats{}, nil},
		{sender.Stats{Messages: 10, FeedbackSilenceNanos: int64(999 * time.Millisecond)}, nil},
		{sender.Stats{Messages: 20, FeedbackSilenceNanos: int64(time.Second)}, []string{"no feedback from the receiver at 192.0.2.1:9000 within 1s"}},
		{sender.Stats{Messages: 30, FeedbackSilenceNanos: int64(3 * time.Second)}, nil}, // once
		{sender.Stats{Messages: 40, KeyMismatch: 2, FeedbackSilenceNanos: int64(4 * time.Second)}, []string{"fails authentication and is refused: 2 sealed under a different key"}},
		{sender.Stats{Messages: 50, KeyMismatch: 3, AuthFailed: 1, FeedbackSilenceNanos: int64(5 * time.Second)}, nil}, // once
		{sender.Stats{Messages: 60, Reports: 1}, []string{"arrived after all"}},
		{sender.Stats{Messages: 70, Reports: 2}, nil},
	}
	for i, s := range steps {
		got := w.check(s.st)
		if len(got) != len(s.want) {
			t.Fatalf("step %d: warnings %q, want %d", i, got, len(s.want))
		}
		for j, sub := range s.want {
			if !strings.Contains(got[j], sub) {
				t.Fatalf("step %d: %q lacks %q", i, got[j], sub)
			}
		}
	}
	// A receiver heard from in time gives no warning at all, however long
	// it is quiet afterwards (the warning is about never hearing from it).
	w = feedbackWatch{to: "x", grace: time.Second}
	if got := w.check(sender.Stats{Messages: 5, Reports: 1, FeedbackSilenceNanos: int64(time.Minute)}); got != nil {
		t.Fatalf("warned %q", got)
	}
	// Unencrypted feedback at a sender with a key names the missing key.
	w = feedbackWatch{to: "x", grace: time.Second}
	if got := w.check(sender.Stats{Messages: 5, Unsealed: 4}); len(got) != 1 || !strings.Contains(got[0], "receiver has no --key-file") {
		t.Fatalf("unsealed: %q", got)
	}
}

func TestSendSummary(t *testing.T) {
	st := sender.Stats{Messages: 7, Packets: 7, QueueFull: 3, NACKsRejected: 1, WriteErrors: 2,
		Streams: []sender.StreamStats{{Stream: 0, Sent: 7, RetransmitEvictedBytes: 5}}}
	s := sendSummary(st, time.Second)
	for _, want := range []string{"sender: 7 messages", "the receiver never reported", "no receiver listening",
		"3 sends held or refused by a full queue", "1 NACKs rejected", "2 datagrams the kernel refused", "5 by its byte bound"} {
		if !strings.Contains(s, want) {
			t.Fatalf("summary lacks %q:\n%s", want, s)
		}
	}
	st = sender.Stats{Packets: 7, Messages: 7, Reports: 4, Streams: []sender.StreamStats{{Stream: 0, Sent: 7, Receiver: sender.ReceiverView{Reported: true, Received: 7}}}}
	s = sendSummary(st, time.Second)
	if strings.Contains(s, "never reported") || !strings.Contains(s, "refused or dropped: nothing") || !strings.Contains(s, "receiver got 7 of 7") {
		t.Fatalf("summary:\n%s", s)
	}
}
