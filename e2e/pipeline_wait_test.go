package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/server"
)

// heldSync starts a sync request of d whose body is held back: the server
// has its headers (and the request counts against the device's syncs in
// flight) but not its body until release is called. The reply comes on
// the returned channel.
func heldSync(t *testing.T, e *env, d *device, req *api.SyncRequest) (release func(), reply <-chan *http.Response) {
	t.Helper()
	body := encode(t, req)
	pr, pw := io.Pipe()
	hr, err := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/sync", pr)
	if err != nil {
		t.Fatal(err)
	}
	hr.ContentLength = int64(len(body))
	hr.Header.Set("Content-Type", api.ContentType)
	hr.Header.Set("Authorization", "Bearer "+d.access)
	ch := make(chan *http.Response, 1)
	go func() {
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			ch <- nil
			return
		}
		ch <- res
	}()
	go pw.Write(body[:1])                                        // the request is in the handler, its body not all there
	t.Cleanup(func() { pw.CloseWithError(io.ErrUnexpectedEOF) }) // a failed test must not hang the server's shutdown
	return func() { go func() { pw.Write(body[1:]); pw.Close() }() }, ch
}

// pipelinedSync sends d's sync request req as a pipelined one, naming after
// as the seq it follows, and returns its status and reply.
func pipelinedSync(t *testing.T, e *env, d *device, req *api.SyncRequest, after uint64) (int, *api.SyncResponse, *api.Problem) {
	t.Helper()
	return e.postSync(d.access, encode(t, req), map[string]string{api.HeaderAfterSeq: fmt.Sprint(after)})
}

func readSyncReply(t *testing.T, res *http.Response) *api.SyncResponse {
	t.Helper()
	if res == nil {
		t.Fatal("request failed")
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	var resp api.SyncResponse
	if err := msgpack.Unmarshal(b, &resp); err != nil {
		t.Fatal(err)
	}
	return &resp
}

// TestPipelinedPushWaitsForTheOneBefore: a pipelined push (seq 2, naming
// seq 1 as the one it follows) that reaches the server while the request
// carrying seq 1 is still arriving is held until seq 1 is applied, then
// applied itself: no seq_gap. It is push-only: its reply holds no page and
// gives its cursor back. The reply says the server orders pipelined
// pushes.
func TestPipelinedPushWaitsForTheOneBefore(t *testing.T) {
	e := newEnv(t)
	ann := e.login("ann")
	bea := e.login("bea")
	bea.sync(bea.change(bea.write("wigan", "people", "p0", "given_name", "Pat"))) // something to pull
	first := ann.request(ann.change(ann.write("wigan", "people", "p1", "given_name", "Ann")))
	release, firstReply := heldSync(t, e, ann, first)
	second := ann.request(ann.change(ann.write("wigan", "people", "p2", "given_name", "Bo")))
	second.PushOnly = true
	second.Cursor = []byte("not a cursor: never read")
	type answer struct {
		st   int
		resp *api.SyncResponse
		p    *api.Problem
	}
	secondReply := make(chan answer, 1)
	go func() {
		st, resp, p := pipelinedSync(t, e, ann, second, 1)
		secondReply <- answer{st, resp, p}
	}()
	select {
	case a := <-secondReply:
		t.Fatalf("the pipelined push was answered before the one it follows arrived: %d %+v %+v", a.st, a.resp, a.p)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	r1 := readSyncReply(t, <-firstReply)
	a := <-secondReply
	if a.st != http.StatusOK {
		t.Fatalf("pipelined push: %d %+v", a.st, a.p)
	}
	if len(r1.Results) != 1 || r1.Results[0].Status != api.ChangeApplied {
		t.Fatalf("first push: %+v", r1.Results)
	}
	if len(a.resp.Results) != 1 || a.resp.Results[0].Status != api.ChangeApplied || a.resp.HighWater != 2 {
		t.Fatalf("pipelined push: results %+v, high-water %d; want seq 2 applied", a.resp.Results, a.resp.HighWater)
	}
	if !r1.Pipelines || !a.resp.Pipelines {
		t.Fatal("the replies do not say the server orders pipelined pushes")
	}
	if len(a.resp.Changes)+len(a.resp.Packed)+len(a.resp.Snapshot) != 0 || a.resp.More || !bytes.Equal(a.resp.Cursor, second.Cursor) {
		t.Fatalf("push-only reply pulled: %d changes, %d snapshot, more %v, cursor %q", len(a.resp.Changes), len(a.resp.Snapshot), a.resp.More, a.resp.Cursor)
	}
	if len(r1.Snapshot) == 0 {
		t.Fatal("the first request, not push-only, pulled nothing")
	}
}

// TestAbusePipelineWait: a device that names a seq it never sends holds,
// while another of its requests is in flight, one request for at most
// BudgetWait, and nothing of anyone else's: another team syncs meanwhile,
// the device's third request is refused at once (its own limit), the held
// one is then answered (seq_gap, nothing applied), and a pipelined request
// with nothing in flight before it is not held at all.
func TestAbusePipelineWait(t *testing.T) {
	const wait = time.Second
	e := newEnv(t, func(c *server.Config) { c.BudgetWait = wait })
	bad := e.login("ann")
	eve := e.login("eve")
	release, heldReply := heldSync(t, e, bad, bad.request())
	held := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		req := bad.request(api.Change{Seq: 1_000_000, Ops: nil})
		st, resp, p := pipelinedSync(t, e, bad, req, 999_999)
		if st != http.StatusOK || len(resp.Results) != 1 || resp.Results[0].Code != api.CodeSeqGap {
			t.Errorf("held request: %d %+v %+v", st, resp, p)
		}
		held <- time.Since(start)
	}()
	time.Sleep(100 * time.Millisecond)
	if st, _, p := pipelinedSync(t, e, bad, bad.request(), 999_999); st != http.StatusTooManyRequests {
		t.Fatalf("third request of the device: %d %+v, want 429", st, p)
	}
	eve.sync(eve.change(eve.write("ashton", "people", "e1", "given_name", "Eve")))
	select {
	case d := <-held:
		t.Fatalf("the held request was answered after %s, before another team's sync had gone through and BudgetWait passed", d)
	default:
	}
	d := <-held
	if d < wait || d > 10*wait {
		t.Fatalf("held request answered after %s, want about %s", d, wait)
	}
	release()
	readSyncReply(t, <-heldReply)
	start = time.Now()
	if st, resp, p := pipelinedSync(t, e, bad, bad.request(api.Change{Seq: 1_000_000}), 999_999); st != http.StatusOK || resp.Results[0].Code != api.CodeSeqGap {
		t.Fatalf("pipelined request alone: %d %+v", st, p)
	}
	if d := time.Since(start); d >= wait {
		t.Fatalf("a pipelined request with nothing before it in flight was held %s", d)
	}
	if st, _, p := pipelinedSync(t, e, bad, bad.request(), 0); st != http.StatusOK {
		t.Fatalf("after 0: %d %+v", st, p)
	}
	if st, _, p := e.postSync(bad.access, encode(t, bad.request()), map[string]string{api.HeaderAfterSeq: "x"}); st != http.StatusBadRequest {
		t.Fatalf("malformed header: %d %+v", st, p)
	}
}
