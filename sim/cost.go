package sim

import "time"

// A receiver's processing cost, measured from the real receive path on the 2-core machine
// this was built on (BenchmarkReceive in cost_test.go: gossip's Inbound.Broadcast decoding
// a batch and appending it to a real log.Store on disk with fsync): per message, and per
// byte of a large batch.
const (
	measuredPerMessage = 50 * time.Microsecond
	measuredPerByte    = 10 * time.Nanosecond
)
