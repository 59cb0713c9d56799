//go:build !linux

package bench

import "github.com/telewire/telewire/internal/udpio"

// Elsewhere than Linux the raw-batch baseline is udpio's batched socket
// (which there reads and writes one datagram per call).
var (
	rawMinListen = rawListen(udpio.Config{BatchSize: RawBatchSize, NoGSO: true, NoGRO: true})
	rawMinDial   = rawDial(udpio.Config{BatchSize: RawBatchSize, NoGSO: true, NoGRO: true}, RawBatchSize)
)
