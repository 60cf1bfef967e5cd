package e2e

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"testing"
	"time"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

// lossyProxy forwards to target, counts the sync request bodies (as they
// cross the wire) and, when told, lets one sync request through to the
// server but hangs up instead of passing its reply back: a lost reply.
type lossyProxy struct {
	target   string
	upstream *http.Client

	mu       gosync.Mutex
	dropNext bool
	bodies   []int // wire size of each sync request body since reset
}

func (p *lossyProxy) reset(drop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropNext, p.bodies = drop, nil
}

func (p *lossyProxy) sent() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.bodies...)
}

func (p *lossyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		sdkHangUp(w)
		return
	}
	drop := false
	if r.URL.Path == "/v1/sync" {
		p.mu.Lock()
		p.bodies = append(p.bodies, len(body))
		drop, p.dropNext = p.dropNext, false
		p.mu.Unlock()
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		sdkHangUp(w)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.upstream.Do(req)
	if err != nil {
		sdkHangUp(w)
		return
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || drop {
		sdkHangUp(w) // the server committed; the device never hears
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// TestLostReplyCostsOneSmallRoundTrip: after the reply to a push is lost
// (the server applied it), the next Sync learns the server's high-water
// with a push-less request and sends the held changes only as stubs: a
// few hundred bytes on the wire, not the push again. Nothing is lost or
// applied twice: a second device converges with the first.
func TestLostReplyCostsOneSmallRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	px := &lossyProxy{target: e.http.URL, upstream: &http.Client{Timeout: 20 * time.Second}}
	hs := httptest.NewServer(px)
	t.Cleanup(hs.Close)
	e.url = hs.URL
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)
	sdkMustSync(t, bea)
	sdkMustSync(t, ann)
	refs := sdkSeedPeople(t, ann, 300)

	px.reset(true)
	if _, err := ann.Sync(ctx); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("sync with its reply lost: %v, want ErrUnavailable", err)
	}
	lost := px.sent()
	if len(lost) != 1 {
		t.Fatalf("lost sync made %d requests, want 1", len(lost))
	}
	px.reset(false)
	res := sdkMustSync(t, ann)
	retry := px.sent()
	total := 0
	for _, n := range retry {
		total += n
	}
	t.Logf("push %d B (reply lost); retry: %d requests of %v B", lost[0], len(retry), retry)
	if len(retry) != 2 || res.Rounds != 2 {
		t.Fatalf("retry took %d requests (%d rounds), want 2: a push-less probe and the stubs", len(retry), res.Rounds)
	}
	if total*10 > lost[0] {
		t.Fatalf("retry sent %d bytes, over a tenth of the %d-byte push it repeats", total, lost[0])
	}
	if res.PushedOps != 4*len(refs) {
		t.Fatalf("retry acknowledged %d ops, want %d", res.PushedOps, 4*len(refs))
	}
	if ops, _ := ann.PendingOps(ctx); len(ops) != 0 {
		t.Fatalf("%d ops still pending after the retry", len(ops))
	}
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea)
}
