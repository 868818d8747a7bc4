package sim

import "time"

// A receiver's processing cost per message and per byte, taken from the real receive path
// as measured on the 2-core machine this was built on and recorded in bench/RESULTS.md:
// materializer BenchmarkApplyOne (one small changeset appended durably to the log and
// folded into SQLite, one at a time) has a p50 of 0.31 ms, and BenchmarkApply (the whole
// remote path at saturation) folds 388,087 cells/s, about 2.6 us per cell of about 40
// encoded bytes.
const (
	measuredPerMessage = 300 * time.Microsecond
	measuredPerByte    = 65 * time.Nanosecond
)
