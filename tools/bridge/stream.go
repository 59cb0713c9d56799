package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamConfig describes a JetStream stream that EnsureStream creates when
// it does not exist. The zero value of every field but Name is its default.
type StreamConfig struct {
	// Name of the stream. Required.
	Name string
	// Subjects it stores. Default: the Wildcard of the publishing Template.
	Subjects []string
	// Retention: "limits" (default: keep until MaxAge/MaxBytes), "interest"
	// (until every consumer has it) or "workqueue" (until one consumer
	// acknowledged it).
	Retention string
	// MaxAge drops messages older than this; 0 keeps them forever.
	MaxAge time.Duration
	// MaxBytes drops the oldest messages past this size; 0 for no limit.
	MaxBytes int64
	// Duplicates is the de-duplication window: a message whose
	// Nats-Msg-Id was stored within it is stored once. Default 2 minutes
	// (JetStream's). It must cover the longest outage a bridge restart or
	// a redundant bridge may lag behind.
	Duplicates time.Duration
	// Replicas is the number of copies in a cluster. Default 1.
	Replicas int
	// Memory stores in memory instead of files.
	Memory bool
}

// ParseRetention maps "limits", "interest" or "workqueue" to its policy.
func ParseRetention(s string) (jetstream.RetentionPolicy, error) {
	switch s {
	case "", "limits":
		return jetstream.LimitsPolicy, nil
	case "interest":
		return jetstream.InterestPolicy, nil
	case "workqueue":
		return jetstream.WorkQueuePolicy, nil
	}
	return 0, fmt.Errorf("%w: retention %q is not limits, interest or workqueue", ErrConfig, s)
}

// EnsureStream creates the stream cfg describes unless a stream of that
// name exists already (which is then left as it is). It reports whether it
// created one.
func EnsureStream(ctx context.Context, conn *Conn, cfg StreamConfig) (created bool, err error) {
	if cfg.Name == "" || len(cfg.Subjects) == 0 {
		return false, fmt.Errorf("%w: a stream needs a name and subjects", ErrConfig)
	}
	ret, err := ParseRetention(cfg.Retention)
	if err != nil {
		return false, err
	}
	if cfg.MaxAge < 0 || cfg.MaxBytes < 0 || cfg.Duplicates < 0 || cfg.Replicas < 0 {
		return false, fmt.Errorf("%w: negative stream limit", ErrConfig)
	}
	js, err := jetstream.New(conn.Conn)
	if err != nil {
		return false, err
	}
	if _, err := js.Stream(ctx, cfg.Name); err == nil {
		return false, nil
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, fmt.Errorf("bridge: looking up stream %s: %w", cfg.Name, err)
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	maxBytes := cfg.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       cfg.Name,
		Subjects:   cfg.Subjects,
		Retention:  ret,
		MaxAge:     cfg.MaxAge,
		MaxBytes:   maxBytes,
		Duplicates: cfg.Duplicates,
		Replicas:   max(cfg.Replicas, 1),
		Storage:    storage,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return false, nil // another bridge created it meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("bridge: creating stream %s: %w", cfg.Name, err)
	}
	return true, nil
}
