package unionfs

import (
	"runtime"
	"sync/atomic"
	"time"
)

// go-fuse serves each request on the goroutine that read it from
// /dev/fuse, which then reads the next: a reader loops for good without
// passing through the Go scheduler. The runtime's monitor (sysmon) then
// takes every busy reader for a goroutine that has run 10 ms straight:
// it preempts it (a signal, which restarts its read of /dev/fuse) and
// takes its P away, and having taken one it polls again after 20 us
// rather than backing off to 10 ms. Under a steady load of requests that
// kept sysmon awake 5000 times a second here, at 8% of a CPU, on a
// machine of two. A reader that yields now and then counts as scheduled
// afresh; schedYield does so from places where no reply the kernel
// waits for is held up: after a read's reply is written (its data's
// Done), and in releases and forgets, which nothing waits on.

// yieldEvery is how often, at most, a request yields, over all readers.
const yieldEvery = time.Millisecond

// lastYield is when (monoNow) a request last yielded.
var lastYield atomic.Int64

// schedYield lets the scheduler run other goroutines, unless a request
// did so less than yieldEvery ago.
func schedYield() {
	now := monoNow()
	if last := lastYield.Load(); now-last >= int64(yieldEvery) && lastYield.CompareAndSwap(last, now) {
		runtime.Gosched()
	}
}
