package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// Pipelined pushes and pulls (docs/PROTOCOL.md "Pipelined pushes",
// client-sdk/pipeline.go, server/pipeline.go) through the real server.

// pipeProxy forwards to target and watches sync requests: how many were in
// flight at once, how many were pipelined (api.HeaderAfterSeq) or
// push-only, and how many changes the server refused with seq_gap. old
// makes it stand for a server that predates pipelining: it removes
// api.SyncResponse.Pipelines from replies. strip removes the header from
// requests (an intermediary that drops it) while the server still says it
// orders them.
type pipeProxy struct {
	target     string
	upstream   *http.Client
	old, strip bool

	mu                           gosync.Mutex
	inFlight, maxInFlight        int
	requests, pipelined, pushOnl int
	gaps                         int
}

func newPipeProxy(t *testing.T, target string) (*pipeProxy, string) {
	p := &pipeProxy{target: target, upstream: &http.Client{Timeout: 20 * time.Second}}
	hs := httptest.NewServer(p)
	t.Cleanup(hs.Close)
	return p, hs.URL
}

func (p *pipeProxy) counts() (maxInFlight, requests, pipelined, pushOnly, gaps int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxInFlight, p.requests, p.pipelined, p.pushOnl, p.gaps
}

func (p *pipeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		sdkHangUp(w)
		return
	}
	isSync := r.URL.Path == "/v1/sync"
	if isSync {
		var req api.SyncRequest
		plain := body
		if r.Header.Get("Content-Encoding") == "gzip" {
			if zr, err := gzip.NewReader(bytes.NewReader(body)); err == nil {
				plain, _ = io.ReadAll(zr)
			}
		}
		_ = msgpack.Unmarshal(plain, &req)
		p.mu.Lock()
		p.inFlight++
		p.maxInFlight = max(p.maxInFlight, p.inFlight)
		p.requests++
		if r.Header.Get(api.HeaderAfterSeq) != "" {
			p.pipelined++
		}
		if req.PushOnly {
			p.pushOnl++
		}
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.inFlight--
			p.mu.Unlock()
		}()
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		sdkHangUp(w)
		return
	}
	req.Header = r.Header.Clone()
	if isSync {
		req.Header.Del("Accept-Encoding") // plain replies, to read them here
		if p.strip {
			req.Header.Del(api.HeaderAfterSeq)
		}
	}
	resp, err := p.upstream.Do(req)
	if err != nil {
		sdkHangUp(w)
		return
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		sdkHangUp(w)
		return
	}
	if isSync && resp.StatusCode == http.StatusOK {
		var sr api.SyncResponse
		if err := msgpack.Unmarshal(out, &sr); err == nil {
			n := 0
			for _, cr := range sr.Results {
				if cr.Code == api.CodeSeqGap {
					n++
				}
			}
			p.mu.Lock()
			p.gaps += n
			p.mu.Unlock()
			if p.old {
				sr.Pipelines = false
				if out, err = server.EncodeSyncResponse(&sr); err != nil {
					sdkHangUp(w)
					return
				}
			}
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(out)))
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// pipeEnv is an SDK env without the tight per-device rate limit of the
// other SDK tests: a pipelined push sends requests faster than 5 a second.
func pipeEnv(t *testing.T) *sdkEnv {
	return newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate, c.DeviceBurst = 1000, 1000 })
}

// pipeSmall makes a device push and pull in many small requests.
func pipeSmall(o *client.Options) { o.MaxChangesPerRequest, o.MaxOpsPerChange, o.PullLimit = 3, 4, 10 }

// pipeWrite gives each of refs a new phone and a note, one change each.
func pipeWrite(t *testing.T, d *client.Replica, refs []client.Ref, round int) {
	t.Helper()
	for i, ref := range refs {
		if err := d.Set(context.Background(), ref, "phone", fmt.Sprintf("01942 %03d%03d", round, i)); err != nil {
			t.Fatal(err)
		}
		if err := d.Append(context.Background(), ref, "case_notes", fmt.Sprintf("round %d note %d", round, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPipelinedPushAndPull: a push of many rounds goes pipelined (two
// requests in flight, the second naming the seq it follows) and the server
// applies every one in order (no seq_gap); a fresh device pulls many pages
// with the next one asked for while the last is stored. Every op arrives
// once and both devices converge.
func TestPipelinedPushAndPull(t *testing.T) {
	e := pipeEnv(t)
	px, url := newPipeProxy(t, e.http.URL)
	e.url = url
	ann := e.device("ann", "", pipeSmall)
	refs := sdkSeedPeople(t, ann, 30)
	sdkMustSync(t, ann) // learns that the server orders pipelined pushes
	for round := range 3 {
		pipeWrite(t, ann, refs, round)
	}
	res := sdkMustSync(t, ann)
	maxIn, reqs, pipelined, pushOnly, gaps := px.counts()
	t.Logf("push: %d rounds; proxy: %d requests, %d pipelined, %d push-only, %d at once, %d seq gaps", res.Rounds, reqs, pipelined, pushOnly, maxIn, gaps)
	if maxIn < 2 || pipelined < res.Rounds/3 || pushOnly == 0 {
		t.Fatalf("push was not pipelined: %d at once, %d of %d requests pipelined, %d push-only", maxIn, pipelined, reqs, pushOnly)
	}
	if gaps != 0 {
		t.Fatalf("the server refused %d pipelined changes with seq_gap on a clean link", gaps)
	}
	if res.PushedOps != 3*2*len(refs) {
		t.Fatalf("pushed %d ops, want %d", res.PushedOps, 3*2*len(refs))
	}
	if ops, _ := ann.PendingOps(context.Background()); len(ops) != 0 {
		t.Fatalf("%d ops pending after the push", len(ops))
	}

	_, before, _, _, _ := px.counts()
	bea := e.device("bea", "", pipeSmall)
	pull := sdkMustSync(t, bea)
	maxIn, reqs, _, _, _ = px.counts()
	t.Logf("pull: %d rounds, %d records; %d requests, %d at once", pull.Rounds, pull.Snapshot, reqs-before, maxIn)
	if pull.Rounds < 3 {
		t.Fatalf("pull took %d rounds; the test wants many", pull.Rounds)
	}
	sdkAssertConverged(t, ann, bea)
	pipeAssertHistoryOnce(t, e, refs, 4+3*2)
}

// pipeAssertHistoryOnce checks that the server's history of each of refs
// holds each op once, want in all.
func pipeAssertHistoryOnce(t *testing.T, e *sdkEnv, refs []client.Ref, want int) {
	t.Helper()
	for _, ref := range refs {
		var hist struct {
			History []server.HistoryJSON `json:"history"`
		}
		if code := e.coordinatorGET("/v1/teams/"+sdkTeam+"/records/people/"+ref.ID+"/history", &hist); code != http.StatusOK {
			t.Fatalf("GET history: %d", code)
		}
		seen := map[string]bool{}
		for _, h := range hist.History {
			if seen[h.Op] {
				t.Fatalf("history of %v holds op %s twice", ref, h.Op)
			}
			seen[h.Op] = true
		}
		if len(hist.History) != want {
			t.Fatalf("history of %v has %d ops, want %d", ref, len(hist.History), want)
		}
	}
}

// TestPipelinedSyncThroughFaults: devices push and pull pipelined through
// a proxy that drops requests, drops and cuts replies and sends requests
// twice; after the faults stop they converge, nothing pending, every op
// once in the server's history.
func TestPipelinedSyncThroughFaults(t *testing.T) {
	seed := sdkSeed(t)
	e := pipeEnv(t)
	proxy := newSDKChaosProxy(t, e.http.URL, seed)
	e.url = proxy.srv.URL
	ann := e.device("ann", "", pipeSmall)
	bea := e.device("bea", "", pipeSmall)
	proxy.setChaos(false)
	refs := sdkSeedPeople(t, ann, 12)
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	proxy.setChaos(true)
	for round := range 4 {
		pipeWrite(t, ann, refs, 2*round)
		pipeWrite(t, bea, refs, 2*round+1)
		sdkSyncUntilDone(t, ann, 200)
		sdkSyncUntilDone(t, bea, 200)
	}
	proxy.setChaos(false)
	for range 2 {
		sdkMustSync(t, ann)
		sdkMustSync(t, bea)
	}
	proxy.mu.Lock()
	t.Logf("proxy modes: %v", proxy.hits)
	faults := proxy.hits["drop-request"] + proxy.hits["drop-reply"] + proxy.hits["truncate-reply"] + proxy.hits["duplicate"] + proxy.hits["truncate-request"]
	proxy.mu.Unlock()
	if faults == 0 {
		t.Fatal("the proxy injected no faults")
	}
	sdkAssertConverged(t, ann, bea)
	for _, d := range []*client.Replica{ann, bea} {
		if ops, _ := d.PendingOps(context.Background()); len(ops) != 0 {
			t.Fatalf("device %s still has %d ops pending", d.ID(), len(ops))
		}
	}
	pipeAssertHistoryOnce(t, e, refs, 4+8*2)
}

// TestPipelinedOldServer: against a server that does not say it orders
// pipelined pushes, the SDK sends one push at a time (no request names a
// seq it follows or is push-only), and still converges.
func TestPipelinedOldServer(t *testing.T) {
	e := pipeEnv(t)
	px, url := newPipeProxy(t, e.http.URL)
	px.old = true
	e.url = url
	ann := e.device("ann", "", pipeSmall)
	bea := e.device("bea", "", pipeSmall)
	refs := sdkSeedPeople(t, ann, 20)
	sdkMustSync(t, ann)
	pipeWrite(t, ann, refs, 0)
	res := sdkMustSync(t, ann)
	_, reqs, pipelined, pushOnly, gaps := px.counts()
	if res.Rounds < 3 || pipelined != 0 || pushOnly != 0 || gaps != 0 {
		t.Fatalf("old server: %d rounds, %d requests, %d pipelined, %d push-only, %d gaps; want many rounds, none pipelined", res.Rounds, reqs, pipelined, pushOnly, gaps)
	}
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea)
	pipeAssertHistoryOnce(t, e, refs, 4+2)
}

// TestPipelinedOldSDK: an SDK that sends one request at a time (as before
// pipelining; Options.Serial) works with the server as ever: nothing
// pipelined, nothing refused, converged.
func TestPipelinedOldSDK(t *testing.T) {
	e := pipeEnv(t)
	px, url := newPipeProxy(t, e.http.URL)
	e.url = url
	serial := func(o *client.Options) { pipeSmall(o); o.Serial = true }
	ann := e.device("ann", "", serial)
	bea := e.device("bea", "", serial)
	refs := sdkSeedPeople(t, ann, 20)
	sdkMustSync(t, ann)
	pipeWrite(t, ann, refs, 0)
	sdkMustSync(t, ann)
	sdkMustSync(t, bea)
	maxIn, reqs, pipelined, pushOnly, gaps := px.counts()
	if maxIn != 1 || pipelined != 0 || pushOnly != 0 || gaps != 0 {
		t.Fatalf("serial SDK: %d requests, %d at once, %d pipelined, %d push-only, %d gaps", reqs, maxIn, pipelined, pushOnly, gaps)
	}
	sdkAssertConverged(t, ann, bea)
	pipeAssertHistoryOnce(t, e, refs, 4+2)
}

// TestPipelinedHeaderLost: an intermediary drops the header naming the
// seq a pipelined push follows, so the server may take it before the one
// it follows and refuse it with seq_gap. The SDK falls back to one request
// at a time from the first unacknowledged change: nothing lost, nothing
// applied twice.
func TestPipelinedHeaderLost(t *testing.T) {
	e := pipeEnv(t)
	px, url := newPipeProxy(t, e.http.URL)
	px.strip = true
	e.url = url
	ann := e.device("ann", "", pipeSmall)
	bea := e.device("bea", "", pipeSmall)
	refs := sdkSeedPeople(t, ann, 20)
	sdkMustSync(t, ann)
	for round := range 3 {
		pipeWrite(t, ann, refs, round)
		sdkMustSync(t, ann)
	}
	_, reqs, pipelined, _, gaps := px.counts()
	t.Logf("%d requests, %d pipelined, %d seq gaps", reqs, pipelined, gaps)
	if ops, _ := ann.PendingOps(context.Background()); len(ops) != 0 {
		t.Fatalf("%d ops pending", len(ops))
	}
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea)
	pipeAssertHistoryOnce(t, e, refs, 4+3*2)
}
