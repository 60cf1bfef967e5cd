package client

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	gosync "sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
)

// epochProxy puts epochs in front of the fake server: epoch 1 until
// restore is called, then epoch 2, answering requests of epoch 1 as a
// restored server does (docs/PROTOCOL.md §13).
type epochProxy struct {
	f   *fakeServer
	srv *httptest.Server

	mu       gosync.Mutex
	restored bool
	failNext bool   // fail the next restate page (a crash mid-restate)
	maxPage  int    // refuse restate pages of more records (body_too_large)
	pages    int    // restate pages accepted
	states   int    // record states received
	rebase   uint64 // Rebase of the done page
	done     bool
}

var epoch1, epoch2 = bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)

func newEpochProxy(t *testing.T, f *fakeServer) *epochProxy {
	p := &epochProxy{f: f}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *epochProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/sync" {
		p.f.srv.Config.Handler.ServeHTTP(w, r)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	plain := raw
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err == nil {
			plain, _ = io.ReadAll(zr)
		}
	}
	var req api.SyncRequest
	if err := msgpack.Unmarshal(plain, &req); err != nil {
		http.Error(w, "bad", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	cur := epoch1
	if p.restored {
		cur = epoch2
	}
	if p.restored && bytes.Equal(req.Epoch, epoch1) {
		if (len(req.Restate) > 0 || req.RestateDone) && p.failNext {
			p.failNext = false
			p.mu.Unlock()
			p.f.problemMsgpack(w, api.CodeInternal)
			return
		}
		if p.maxPage > 0 && len(req.Restate) > p.maxPage {
			p.mu.Unlock()
			p.f.problemMsgpack(w, api.CodeBodyTooLarge)
			return
		}
		if len(req.Restate) > 0 || req.RestateDone {
			p.pages++
			p.states += len(req.Restate)
			if req.RestateDone {
				p.done, p.rebase = true, req.Rebase
				p.f.mu.Lock()
				if req.Rebase > p.f.hwm[req.Replica] {
					p.f.hwm[req.Replica] = req.Rebase
				}
				p.f.mu.Unlock()
			}
		}
		p.mu.Unlock()
		b, _ := msgpack.Marshal(&api.SyncResponse{Protocol: api.ProtocolVersion, Epoch: epoch2, Clock: p.f.clock.Now()})
		w.Header().Set("Content-Type", api.ContentType)
		w.Write(b)
		return
	}
	p.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(raw))
	r2.Header.Del("Accept-Encoding")
	rec := httptest.NewRecorder()
	p.f.srv.Config.Handler.ServeHTTP(rec, r2)
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	if rec.Code != http.StatusOK {
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	var resp api.SyncResponse
	if err := msgpack.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		http.Error(w, "fake reply", http.StatusInternalServerError)
		return
	}
	resp.Epoch = cur
	b, _ := msgpack.Marshal(&resp)
	w.Header().Del("Content-Length")
	w.Write(b)
}

// restore makes the fake server a restored one: a new epoch, and the
// replica's high-water set back to what the backup held.
func (p *epochProxy) restore(r *Replica, hwm uint64) {
	p.mu.Lock()
	p.restored, p.failNext = true, true
	p.mu.Unlock()
	p.f.mu.Lock()
	p.f.hwm[r.ID()] = hwm
	p.f.mu.Unlock()
}

// After a restore the device re-sends its records before anything else,
// survives being interrupted half way (the pending restate is durable
// across a reopen), re-bases with the highest seq it had acknowledged,
// then pushes its outbox without seq_gap; Status tells the app.
func TestRestateAfterNewEpoch(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	p := newEpochProxy(t, f)
	dir := t.TempDir()
	ann := openTest(t, dir, func(o *Options) { o.ServerURL = p.srv.URL })
	if _, err := ann.Login(ctx, "ann", "pw"); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if err := ann.CreateWithID(ctx, Ref{Team: "wigan", Collection: "people", ID: id}, map[string]any{"name": id}); err != nil {
			t.Fatal(err)
		}
		mustSync(t, ann) // seq 1, then seq 2, acknowledged in epoch 1
	}
	if err := ann.CreateWithID(ctx, Ref{Team: "wigan", Collection: "people", ID: "c"}, map[string]any{"name": "c"}); err != nil {
		t.Fatal(err)
	}
	p.restore(ann, 1) // the backup held seq 1 only
	p.mu.Lock()
	p.maxPage = 1 // every page of more than one record is too big: split
	p.mu.Unlock()

	if _, err := ann.Sync(ctx); err == nil {
		t.Fatal("sync succeeded although the restate page failed")
	}
	if !ann.Status().ServerRestored.IsZero() {
		t.Fatal("restate reported done after a failure")
	}
	ann.Close()
	ann = openTest(t, dir, func(o *Options) { o.ServerURL = p.srv.URL })
	res := mustSync(t, ann)
	p.mu.Lock()
	done, rebase, states := p.done, p.rebase, p.states
	p.mu.Unlock()
	if !done || rebase != 2 || states < 3 {
		t.Fatalf("restate: done %v rebase %d states %d", done, rebase, states)
	}
	if res.Pushed != 1 || ann.Status().Pending != 0 {
		t.Fatalf("outbox after the restate: %+v pending %d", res, ann.Status().Pending)
	}
	if st := ann.Status(); st.ServerRestored.IsZero() {
		t.Fatalf("status does not say the server was restored: %+v", st)
	}
	// Settled: the next sync is ordinary, no restate again.
	mustSync(t, ann)
	p.mu.Lock()
	pages := p.pages
	p.mu.Unlock()
	mustSync(t, ann)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pages != pages {
		t.Fatal("restated again in the same epoch")
	}
}
