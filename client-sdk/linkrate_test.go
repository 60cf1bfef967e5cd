package client

import (
	"testing"
	"time"
)

// simulate sends requests sized by c over a link of rate bytes/s and rtt,
// returning each request's duration and size.
func simulate(c *chunkSizer, rate float64, rtt time.Duration, n int) (ds []time.Duration, sizes []int64) {
	for range n {
		sz := c.next()
		d := rtt + time.Duration(float64(sz)/rate*float64(time.Second))
		c.observe(sz, d, 10*time.Second)
		ds, sizes = append(ds, d), append(sizes, sz)
	}
	return ds, sizes
}

// At 64 kbit/s with a 500 ms round trip no request takes 30 s (a fixed
// 4 MiB one takes over 8 minutes, past every timeout), and requests settle
// near the 10 s target; on a fast link they grow to UploadChunk within a
// few requests; a cut shrinks the next.
func TestChunkSizerFollowsTheLink(t *testing.T) {
	var slow chunkSizer
	ds, sizes := simulate(&slow, 8000, 500*time.Millisecond, 40)
	for i, d := range ds {
		if d > maxChunkTime {
			t.Fatalf("request %d of %d bytes takes %v at 64 kbit/s", i, sizes[i], d)
		}
	}
	if last := ds[len(ds)-1]; last < 5*time.Second || last > 15*time.Second {
		t.Fatalf("settled at %v per request (%d bytes), want about 10 s", last, sizes[len(sizes)-1])
	}
	if (UploadChunk*8)/64_000 < 120 {
		t.Fatal("the fixed chunk would fit a 2-minute timeout: the test proves nothing")
	}

	var fast chunkSizer
	_, sizes = simulate(&fast, 200e6, time.Millisecond, 6)
	if sizes[len(sizes)-1] != UploadChunk {
		t.Fatalf("on a fast link sizes %v, want to reach %d", sizes, UploadChunk)
	}
	before := fast.next()
	fast.cut()
	if got := fast.next(); got >= before || got < minChunk {
		t.Fatalf("after a cut %d (was %d)", got, before)
	}
	for range 20 {
		fast.cut()
	}
	if fast.next() != minChunk {
		t.Fatalf("after many cuts %d, want the floor %d", fast.next(), minChunk)
	}
}
