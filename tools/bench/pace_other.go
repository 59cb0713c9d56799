//go:build !linux

package bench

import "time"

// pacer sleeps the sending goroutine until a message is due (time.Sleep:
// coarser than the Linux version, so paced loads go out in small bursts).
type pacer struct{}

func newPacer() pacer { return pacer{} }

func (pacer) sleep(d int64) { time.Sleep(time.Duration(d)) }

func (pacer) stop() {}
