package e2e

import (
	"context"
	"fmt"
	"net"
	gosync "sync"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

// sdkSlowLink is a loopback TCP proxy that delays every chunk by a one-way
// latency and paces each direction to a byte rate: a poor mobile link,
// without netem (which this machine's kernel lacks).
type sdkSlowLink struct {
	ln      net.Listener
	target  string
	latency time.Duration
	rate    int // bytes per second, each direction
	wg      gosync.WaitGroup
}

func newSDKSlowLink(tb testing.TB, target string, latency time.Duration, bitsPerSecond int) *sdkSlowLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &sdkSlowLink{ln: ln, target: target, latency: latency, rate: bitsPerSecond / 8}
	l.wg.Add(1)
	go l.accept()
	tb.Cleanup(func() { ln.Close(); l.wg.Wait() })
	return l
}

func (l *sdkSlowLink) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.wg.Add(2)
		go l.pipe(c, up)
		go l.pipe(up, c)
	}
}

type sdkChunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each chunk no earlier than latency after it was
// read and no faster than the rate.
func (l *sdkSlowLink) pipe(src, dst net.Conn) {
	defer l.wg.Done()
	ch := make(chan sdkChunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 1024)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- sdkChunk{buf[:n], time.Now().Add(l.latency)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.due))
		if _, err := dst.Write(c.b); err != nil {
			break
		}
		time.Sleep(time.Duration(len(c.b)) * time.Second / time.Duration(l.rate))
	}
	// Closing both ends stops the reader above and the opposite pipe.
	src.Close()
	dst.Close()
	for range ch {
	}
}

// BenchmarkSDKReconnectSlowLink is a typical reconnect (a day's work: 250
// field ops pushed, 1,000 pulled) over a 64 kbit/s link with 250 ms each
// way (500 ms round trips), through the real server.
//
//	go test -run '^$' -bench SDKReconnectSlowLink -benchtime 2x ./e2e
func BenchmarkSDKReconnectSlowLink(b *testing.B) {
	ctx := context.Background()
	e := newSDKEnv(b, nil)
	link := newSDKSlowLink(b, e.http.Listener.Addr().String(), 250*time.Millisecond, 64_000)
	bea := e.device("bea", "", nil)
	e.url = "http://" + link.ln.Addr().String()
	ann := e.device("ann", "", nil)
	refs := sdkSeedPeople(b, bea, 100)
	if _, err := bea.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := ann.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	var sent, received int64
	var rounds int
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		for v := range 50 {
			ref := refs[v]
			err := ann.Batch(ctx, func(bt *client.Batch) error {
				for k := range 4 {
					if err := bt.Append(ref, "case_notes", fmt.Sprintf("day %d visit %d note %d", i, v, k)); err != nil {
						return err
					}
				}
				return bt.Set(ref, "phone", fmt.Sprintf("01942 %06d", i*50+v))
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		for v := range 100 {
			err := bea.Batch(ctx, func(bt *client.Batch) error {
				for k := range 10 {
					if err := bt.Append(refs[v], "case_notes", fmt.Sprintf("bea day %d note %d", i, k)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		if _, err := bea.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		res, err := ann.Sync(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		sent += res.BytesSent
		received += res.BytesReceived
		rounds += res.Rounds
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(sent)/n, "wire-B-sent/reconnect")
	b.ReportMetric(float64(received)/n, "wire-B-received/reconnect")
	b.ReportMetric(float64(rounds)/n, "round-trips/reconnect")
}
