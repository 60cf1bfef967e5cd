package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// slowLink is an HTTP proxy emulating a poor mobile link at the level of
// bodies: each way, a one-way delay of 250 ms ± 100 ms (uniform) plus the
// body's bytes at 64 kbit/s. Headers and TCP are not counted, so it is a
// lower bound on the real link's time. It can lose one reply (the server
// gets the request and commits; the device never hears).
type slowLink struct {
	target   string
	upstream *http.Client
	rng      *rand.Rand

	mu       gosync.Mutex
	dropNext bool
	sent     int64
	received int64
}

const slowLinkBitsPerSecond = 64_000

func (l *slowLink) delay(n int) time.Duration {
	l.mu.Lock()
	jitter := time.Duration(l.rng.Int64N(int64(200*time.Millisecond))) - 100*time.Millisecond
	l.mu.Unlock()
	return 250*time.Millisecond + jitter + time.Duration(int64(n)*8*int64(time.Second)/slowLinkBitsPerSecond)
}

func (l *slowLink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		sdkHangUp(w)
		return
	}
	time.Sleep(l.delay(len(body)))
	l.mu.Lock()
	l.sent += int64(len(body))
	drop := l.dropNext && r.URL.Path == "/v1/sync"
	if drop {
		l.dropNext = false
	}
	l.mu.Unlock()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, l.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		sdkHangUp(w)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := l.upstream.Do(req)
	if err != nil {
		sdkHangUp(w)
		return
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || drop {
		time.Sleep(l.delay(0)) // the device notices the cut after a while
		sdkHangUp(w)
		return
	}
	time.Sleep(l.delay(len(out)))
	l.mu.Lock()
	l.received += int64(len(out))
	l.mu.Unlock()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// daySync is issue 17's evening sync, set up and ready to run: a team of
// 500 people; a colleague (bea) has pushed 5,500 ops since the device
// (ann) last synced; ann holds her day's 496 ops unsynced. ann's
// Options come from mod (after the defaults: server page sizes, a one
// minute HTTP timeout).
func daySync(b *testing.B, mod func(*client.Options)) (*sdkEnv, *client.Replica) {
	b.Helper()
	ctx := context.Background()
	e := newSDKEnv(b, nil, func(c *server.Config) { c.PageBytes, c.DeviceRate = 0, -1 })
	defaults := func(o *client.Options) { o.PullLimit = 0; o.HTTPClient = &http.Client{Timeout: time.Minute} }
	ann := e.device("ann", "", func(o *client.Options) {
		defaults(o)
		if mod != nil {
			mod(o)
		}
	})
	bea := e.device("bea", "", defaults)
	refs := sdkSeedPeople(b, bea, 500)
	if _, err := bea.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := ann.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	// The colleague's 5,500 ops: 11 per person.
	for i := 0; i < len(refs); i += 50 {
		err := bea.Batch(ctx, func(bt *client.Batch) error {
			for _, ref := range refs[i : i+50] {
				for k := range 10 {
					if err := bt.Append(ref, "case_notes", fmt.Sprintf("visit note %d", k)); err != nil {
						return err
					}
				}
				if err := bt.Set(ref, "phone", "01942 000000"); err != nil {
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
	// The device's day: 62 visits of 8 ops.
	for v := range 62 {
		err := ann.Batch(ctx, func(bt *client.Batch) error {
			ref := refs[v*7%len(refs)]
			for k := range 6 {
				if err := bt.Append(ref, "case_notes", fmt.Sprintf("ann visit %d note %d: mobility and meals", v, k)); err != nil {
					return err
				}
			}
			if err := bt.Set(ref, "cfs", 1+v%9); err != nil {
				return err
			}
			return bt.Set(ref, "lives_alone", v%2 == 0)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return e, ann
}

// daySyncPulled and daySyncPushed are the ops the day's sync moves.
const (
	daySyncPulled = 5_500
	daySyncPushed = 496
)

// BenchmarkSDKDaySyncSlowLink is issue 17's evening sync (daySync) over
// slowLink (64 kbit/s, 250 ± 100 ms one way, bodies only), with the
// packed pull encoding ("packed", the SDK's default) and without it
// ("plain"). "clean" is one Sync; "lost-reply" loses the reply to the
// first request (the server applied the push) and Syncs again. Reported:
// wall seconds of the whole sync (both attempts), round trips that got a
// reply, and body bytes each way. BenchmarkSDKDaySyncToxiproxy is the
// same over a TCP-level emulation.
//
//	go test -run '^$' -bench '^BenchmarkSDKDaySyncSlowLink$' -benchtime 1x ./e2e
func BenchmarkSDKDaySyncSlowLink(b *testing.B) {
	for _, plain := range []bool{true, false} {
		for _, lose := range []bool{false, true} {
			name := "packed/clean"
			switch {
			case plain && lose:
				name = "plain/lost-reply"
			case plain:
				name = "plain/clean"
			case lose:
				name = "packed/lost-reply"
			}
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				var wall time.Duration
				var rounds int
				var sent, received int64
				for b.Loop() {
					b.StopTimer()
					e, ann := daySync(b, func(o *client.Options) { o.PlainPull, o.PlainPush = plain, plain })
					link := &slowLink{target: e.http.URL, upstream: &http.Client{Timeout: time.Minute}, rng: rand.New(rand.NewPCG(17, 17))}
					hs := httptest.NewServer(link)
					ann.SetServerURL(hs.URL)
					link.dropNext = lose
					b.StartTimer()
					start := time.Now()
					res, err := ann.Sync(ctx)
					if lose {
						if err == nil {
							b.Fatal("sync with its reply lost succeeded")
						}
						rounds += res.Rounds
						res, err = ann.Sync(ctx)
					}
					wall += time.Since(start)
					b.StopTimer()
					if err != nil {
						b.Fatal(err)
					}
					rounds += res.Rounds
					if ops, _ := ann.PendingOps(ctx); len(ops) != 0 {
						b.Fatalf("%d ops pending", len(ops))
					}
					if res.PulledOps != daySyncPulled {
						b.Fatalf("pulled %d ops, want %d", res.PulledOps, daySyncPulled)
					}
					sent += link.sent
					received += link.received
					hs.Close()
					b.StartTimer()
				}
				n := float64(b.N)
				b.ReportMetric(wall.Seconds()/n, "wall-s")
				b.ReportMetric(float64(rounds)/n, "rounds")
				b.ReportMetric(float64(sent)/n, "sent-B")
				b.ReportMetric(float64(received)/n, "received-B")
				b.ReportMetric(float64(received)/n/daySyncPulled, "received-B/pulled-op")
			})
		}
	}
}
