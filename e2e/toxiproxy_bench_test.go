package e2e

import (
	"context"
	"net"
	"net/http"
	"strings"
	gosync "sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

// toxicLink is a Toxiproxy TCP proxy (the library, in process) in front
// of a test server, emulating a poor mobile link: each way 64 kbit/s
// (Toxiproxy's bandwidth toxic, 8 KB/s) and 250 ms ± 100 ms of latency.
// Unlike slowLink it acts on the TCP stream, headers and all. The device's
// HTTP client counts the bytes it writes and reads on its connections and
// the requests it makes (its client method), from start on.
type toxicLink struct {
	proxy *toxiproxy.Proxy
	url   string

	sent, received atomic.Int64
	requests       atomic.Int64
}

// start puts the proxy in front of upstream (host:port) and zeroes the
// counters.
func (l *toxicLink) start(tb testing.TB, upstream string) {
	tb.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "doorstep", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Stop)
	for _, stream := range []string{"upstream", "downstream"} {
		for _, toxic := range []string{
			`{"type": "latency", "stream": "` + stream + `", "attributes": {"latency": 250, "jitter": 100}}`,
			`{"type": "bandwidth", "stream": "` + stream + `", "attributes": {"rate": 8}}`,
		} {
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	l.proxy, l.url = p, "http://"+p.Listen
	l.sent.Store(0)
	l.received.Store(0)
	l.requests.Store(0)
}

// loseNextReply makes the link cut the connection as the next reply starts
// (the server got the request and answered; the device hears nothing but
// the cut, a latency later). The returned func puts the link back.
func (l *toxicLink) loseNextReply(tb testing.TB) func() {
	tb.Helper()
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(
		`{"name": "lose", "type": "limit_data", "stream": "downstream", "attributes": {"bytes": 0}}`)); err != nil {
		tb.Fatal(err)
	}
	var once gosync.Once
	return func() {
		once.Do(func() {
			if err := l.proxy.Toxics.RemoveToxic(context.Background(), "lose"); err != nil {
				tb.Error(err)
			}
		})
	}
}

// client returns an HTTP client whose connections count their bytes into l.
func (l *toxicLink) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, l: l}, nil
	}
	return &http.Client{Timeout: time.Minute, Transport: countingTransport{tr, l}}
}

type countingTransport struct {
	http.RoundTripper
	l *toxicLink
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.l.requests.Add(1)
	return t.RoundTripper.RoundTrip(r)
}

type countingConn struct {
	net.Conn
	l *toxicLink
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.l.received.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.l.sent.Add(int64(n))
	return n, err
}

// BenchmarkSDKDaySyncToxiproxy is issue 17's evening sync (daySync: push
// 496 ops, pull 5,500) over toxicLink: 64 kbit/s and 250 ms ± 100 ms one
// way, on the TCP stream (headers, TCP setup and every request counted),
// with the packed pull encoding (the SDK's default) and the plain one.
// "lost-reply" cuts the reply to the first request (the server applied
// its push) and Syncs again; wall time covers both attempts. Reported:
// wall seconds, HTTP requests (round trips), and TCP payload bytes each
// way as the device's connections counted them.
//
//	go test -run '^$' -bench '^BenchmarkSDKDaySyncToxiproxy$' -benchtime 1x ./e2e
func BenchmarkSDKDaySyncToxiproxy(b *testing.B) {
	for _, plain := range []bool{true, false} {
		for _, lose := range []bool{false, true} {
			name := map[[2]bool]string{{true, false}: "plain/clean", {true, true}: "plain/lost-reply",
				{false, false}: "packed/clean", {false, true}: "packed/lost-reply"}[[2]bool{plain, lose}]
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				var wall time.Duration
				var requests, sent, received int64
				for b.Loop() {
					b.StopTimer()
					link := &toxicLink{}
					e, ann := daySync(b, func(o *client.Options) { o.PlainPull, o.PlainPush, o.HTTPClient = plain, plain, link.client() })
					link.start(b, strings.TrimPrefix(e.http.URL, "http://"))
					ann.SetServerURL(link.url)
					restore := func() {}
					if lose {
						restore = link.loseNextReply(b)
					}
					b.StartTimer()
					start := time.Now()
					res, err := ann.Sync(ctx)
					if lose {
						if err == nil {
							b.Fatal("sync with its reply lost succeeded")
						}
						restore()
						res, err = ann.Sync(ctx)
					}
					wall += time.Since(start)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					if ops, _ := ann.PendingOps(ctx); len(ops) != 0 {
						b.Fatalf("%d ops pending", len(ops))
					}
					if res.PulledOps != daySyncPulled {
						b.Fatalf("pulled %d ops, want %d", res.PulledOps, daySyncPulled)
					}
					requests += link.requests.Load()
					sent += link.sent.Load()
					received += link.received.Load()
					b.StartTimer()
				}
				n := float64(b.N)
				b.ReportMetric(wall.Seconds()/n, "wall-s")
				b.ReportMetric(float64(requests)/n, "requests")
				b.ReportMetric(float64(sent)/n, "sent-B")
				b.ReportMetric(float64(received)/n, "received-B")
				b.ReportMetric(float64(received)/n/daySyncPulled, "received-B/pulled-op")
				b.ReportMetric(float64(sent)/n/daySyncPushed, "sent-B/pushed-op")
			})
		}
	}
}
