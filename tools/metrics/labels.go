package metrics

import (
	"strconv"
	"sync"
)

// DefaultMaxStreams is the default of Options.MaxStreams.
const DefaultMaxStreams = 64

// Other is the label value that every stream beyond Options.MaxStreams is
// aggregated under, for both the stream and the peer label.
const Other = "other"

// Options configure a collector. The zero value is the default.
type Options struct {
	// MaxStreams is how many distinct (peer, stream) label pairs keep
	// their own series; the rest are aggregated under Other. Default
	// DefaultMaxStreams; negative means none (everything under Other).
	MaxStreams int
	// Peer is the peer label of a sender's streams: its destination
	// address. Default: empty. Receivers label each stream with the
	// address it comes from and ignore Peer.
	Peer string
}

func (o Options) maxStreams() int {
	switch {
	case o.MaxStreams == 0:
		return DefaultMaxStreams
	case o.MaxStreams < 0:
		return 0
	}
	return o.MaxStreams
}

// labelKey is one series' label values.
type labelKey struct{ peer, stream string }

// labeler hands out label pairs first come, first served, up to a limit.
// Safe for concurrent use (Prometheus may collect concurrently).
type labeler struct {
	mu    sync.Mutex
	max   int
	known map[labelKey]struct{} // at most max entries
}

func newLabeler(max int) *labeler {
	return &labeler{max: max, known: make(map[labelKey]struct{}, min(max, 1024))}
}

// key returns the series a stream from peer belongs to.
func (l *labeler) key(peer string, stream uint32) labelKey {
	k := labelKey{peer: peer, stream: strconv.FormatUint(uint64(stream), 10)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.known[k]; ok {
		return k
	}
	if len(l.known) < l.max {
		l.known[k] = struct{}{}
		return k
	}
	return labelKey{peer: Other, stream: Other}
}
