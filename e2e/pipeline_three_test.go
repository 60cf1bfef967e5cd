package e2e

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
)

// Three in flight (docs/PROTOCOL.md "Three in flight", client-sdk/pipeline.go,
// server/limits_device.go): a device sends its next push once a reply has
// come, before storing it, while two requests are still on the wire; the
// server gives a request's per-device slot back before it writes the reply.

// stallWriter is a ResponseWriter that, on the first body write, sends the
// headers and then waits until released before writing anything more: a
// reply whose body is slow to leave (a slow link, a client slow to read).
type stallWriter struct {
	http.ResponseWriter
	release <-chan struct{}
	once    gosync.Once
}

func (w *stallWriter) Write(b []byte) (int, error) {
	w.once.Do(func() {
		w.ResponseWriter.(http.Flusher).Flush() // the headers reach the client
		<-w.release
	})
	return w.ResponseWriter.Write(b)
}

// TestSlotGivenBackBeforeReply: a sync's per-device slot is given back
// before its reply is written. While the reply to one sync of a device is
// still being written (stalled after its headers), the device has two
// more syncs in the handler at once (one of them with its body still
// arriving); both are served. A server that gave the slot back only once
// the reply was written answers one of them 429 rate_limited (the bound
// on replies being written: server.TestDeviceSlotsReplying).
func TestSlotGivenBackBeforeReply(t *testing.T) {
	e := newEnv(t)
	ann := e.login("ann")
	release := make(chan struct{})
	var releaseOnce gosync.Once
	unstall := func() { releaseOnce.Do(func() { close(release) }) }
	h := e.srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Stall") != "" {
			w = &stallWriter{ResponseWriter: w, release: release}
		}
		h.ServeHTTP(w, r)
	}))
	defer ts.Close()
	defer unstall() // before ts.Close, which waits for the stalled handler
	post := func(req *api.SyncRequest, hdr map[string]string, body io.Reader) (*http.Response, error) {
		if body == nil {
			body = bytes.NewReader(encode(t, req))
		}
		hr, err := http.NewRequest(http.MethodPost, ts.URL+"/v1/sync", body)
		if err != nil {
			t.Fatal(err)
		}
		hr.Header.Set("Content-Type", api.ContentType)
		hr.Header.Set("Accept-Encoding", "identity") // the reply is written inside the handler
		hr.Header.Set("Authorization", "Bearer "+ann.access)
		for k, v := range hdr {
			hr.Header.Set(k, v)
		}
		return http.DefaultClient.Do(hr)
	}
	// A: its reply's headers come, its body stalls.
	a, err := post(ann.request(ann.change(ann.write("wigan", "people", "p1", "given_name", "Ann"))), map[string]string{"X-Test-Stall": "1"}, nil)
	if err != nil || a.StatusCode != http.StatusOK {
		t.Fatalf("stalled sync: %v %v", err, a)
	}
	defer a.Body.Close()
	// B: in the handler, its body still arriving.
	bReq := ann.request(ann.change(ann.write("wigan", "people", "p2", "given_name", "Bo")))
	bBody := encode(t, bReq)
	pr, pw := io.Pipe()
	defer pw.CloseWithError(io.ErrUnexpectedEOF)
	bDone := make(chan *http.Response, 1)
	go func() {
		res, err := post(nil, nil, io.MultiReader(bytes.NewReader(bBody[:1]), pr))
		if err != nil {
			bDone <- nil
			return
		}
		bDone <- res
	}()
	// C: an ordinary pull, while A writes its reply and B is in the
	// handler. Whichever of B and C comes second would be the device's
	// third sync in the handler if A still counted.
	time.Sleep(50 * time.Millisecond)
	c, err := post(ann.request(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := io.ReadAll(c.Body)
	c.Body.Close()
	go func() { pw.Write(bBody[1:]); pw.Close() }() // not read at all if B was refused
	b := <-bDone
	if b == nil {
		t.Fatal("B failed")
	}
	bb, _ := io.ReadAll(b.Body)
	b.Body.Close()
	if c.StatusCode != http.StatusOK || b.StatusCode != http.StatusOK {
		t.Fatalf("while a reply was being written: B %d %.200q, C %d %.200q; want both served", b.StatusCode, bb, c.StatusCode, cb)
	}
	unstall()
	ab, err := io.ReadAll(a.Body)
	if err != nil {
		t.Fatal(err)
	}
	var ar api.SyncResponse
	if err := msgpack.Unmarshal(ab, &ar); err != nil || len(ar.Results) != 1 || ar.Results[0].Status != api.ChangeApplied {
		t.Fatalf("stalled reply: %v %+v", err, ar.Results)
	}
}

// TestSDKThreeInFlight: a long push sends its next request once a reply
// has come, before that reply is stored: when a device's reply has just
// been stored (OnProgress runs then, and the Sync waits for it), the
// server has already seen the two requests after it. Every op arrives
// once, in order (no seq_gap), with no 429.
func TestSDKThreeInFlight(t *testing.T) {
	e := pipeEnv(t)
	px, url := newPipeProxy(t, e.http.URL)
	e.url = url
	var mu gosync.Mutex
	var base int    // proxy requests before the measured Sync
	var ahead []int // at each stored reply: requests the server has seen beyond it
	measure := false
	onProgress := func(p client.Progress) {
		mu.Lock()
		on, b := measure, base
		mu.Unlock()
		if !on || p.Round > 4 {
			return // the first rounds are enough, and the last have nothing more to send
		}
		// Requests sent before this reply was stored reach the proxy
		// soon; wait a little for them (none comes while this runs).
		seen := 0
		for deadline := time.Now().Add(time.Second); ; {
			_, reqs, _, _, _ := px.counts()
			if seen = reqs - b - p.Round; seen >= 2 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		ahead = append(ahead, seen)
		mu.Unlock()
	}
	ann := e.device("ann", "", func(o *client.Options) { pipeSmall(o); o.OnProgress = onProgress })
	refs := sdkSeedPeople(t, ann, 30)
	sdkMustSync(t, ann)
	for round := range 3 {
		pipeWrite(t, ann, refs, round)
	}
	mu.Lock()
	_, base, _, _, _ = px.counts()
	measure = true
	mu.Unlock()
	res := sdkMustSync(t, ann)
	mu.Lock()
	measure = false
	got := append([]int(nil), ahead...)
	mu.Unlock()
	maxIn, reqs, pipelined, _, gaps := px.counts()
	t.Logf("%d rounds; requests beyond each stored reply: %v; proxy: %d requests, %d pipelined, %d at once, %d gaps", res.Rounds, got, reqs-base, pipelined, maxIn, gaps)
	if len(got) < 4 || got[0] < 2 || got[1] < 2 {
		t.Fatalf("requests beyond the first stored replies: %v; want two ahead of each while the push lasts", got)
	}
	if gaps != 0 || res.RateLimited != 0 {
		t.Fatalf("%d seq gaps, %d rate-limited rounds on a clean link", gaps, res.RateLimited)
	}
	if res.PushedOps != 3*2*len(refs) {
		t.Fatalf("pushed %d ops, want %d", res.PushedOps, 3*2*len(refs))
	}
	bea := e.device("bea", "", pipeSmall)
	sdkMustSync(t, bea)
	sdkAssertConverged(t, ann, bea)
	pipeAssertHistoryOnce(t, e, refs, 4+3*2)
}
