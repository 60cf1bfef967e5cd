package client

import (
	gosync "sync"
	"time"
)

// Attachment request sizing. A fixed 4 MiB request takes over 8 minutes
// at 64 kbit/s, beyond the HTTP client's and the server's timeouts, so
// every request would be cut and resumed. Instead each direction keeps an
// estimate of the link's rate, measured on the requests themselves
// (bytes moved over the request's wall time, round trip included, so the
// estimate errs low), and sizes the next request to take
// Options.AttachmentRequestTime at that rate: it starts small, grows at
// most 4× per request on a fast link, shrinks after a cut, and is never
// larger than maxChunkTime of transfer at the measured rate nor than
// UploadChunk.
const (
	minChunk     = 16 << 10
	startChunk   = 64 << 10 // 8 s at 64 kbit/s
	maxChunkTime = 30 * time.Second
	maxGrowth    = 4
)

// chunkSizer is one direction's rate estimate and next request size. The
// zero value is ready; it is safe for concurrent use.
type chunkSizer struct {
	mu   gosync.Mutex
	size int64   // next request's bytes; 0 until first used
	rate float64 // bytes per second, smoothed; 0 while unknown
}

// next returns how many bytes the next request should carry.
func (c *chunkSizer) next() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size == 0 {
		c.size = startChunk
	}
	return c.size
}

// observe records a request that moved n bytes in d and sizes the next to
// take target at the smoothed rate.
func (c *chunkSizer) observe(n int64, d, target time.Duration) {
	if n <= 0 || d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size == 0 {
		c.size = startChunk
	}
	r := float64(n) / d.Seconds()
	if c.rate == 0 {
		c.rate = r
	} else {
		c.rate = (c.rate + r) / 2
	}
	want := int64(c.rate * target.Seconds())
	want = min(want, c.size*maxGrowth, int64(c.rate*maxChunkTime.Seconds()), UploadChunk)
	c.size = max(want, minChunk)
}

// cut records a request that failed on the network (cut, timed out): the
// link may be worse than measured, so the next request is a quarter.
func (c *chunkSizer) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size == 0 {
		c.size = startChunk
	}
	c.size = max(c.size/maxGrowth, minChunk)
	c.rate /= 2
}
