package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"reflect"
	"strings"
	gosync "sync"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/klauspost/compress/zstd"
	"github.com/vmihailenco/msgpack/v5"
)

// TestZstdReplies: a client that names zstd gets a zstd reply that
// decodes to what a gzip client gets; clients that predate zstd (gzip,
// "*") keep gzip, and identity gets none (docs/PROTOCOL.md §22).
func TestZstdReplies(t *testing.T) {
	e := newEnv(t)
	ann, bea := e.login("ann"), e.login("bea")
	ann.sync()
	var ops []crdt.Op
	for i := 0; i < 50; i++ {
		ops = append(ops, ann.write("wigan", "people", fmt.Sprintf("p%d", i), "given_name", strings.Repeat("x", 40)))
	}
	if st, resp, p := e.postSync(ann.access, encode(t, ann.request(ann.change(ops...))), nil); st != http.StatusOK || resp.Results[0].Status != api.ChangeApplied {
		t.Fatalf("push: %d %+v %+v", st, resp, p)
	}
	pull := func(accept string) (coding string, resp api.SyncResponse) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/sync", bytes.NewReader(encode(t, bea.request())))
		req.Header.Set("Content-Type", api.ContentType)
		req.Header.Set("Authorization", "Bearer "+bea.access)
		req.Header.Set("Accept-Encoding", accept)
		res, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("%q: status %d", accept, res.StatusCode)
		}
		if !strings.Contains(res.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("%q: Vary %q", accept, res.Header.Get("Vary"))
		}
		coding = res.Header.Get("Content-Encoding")
		var body io.Reader = res.Body
		switch coding {
		case "gzip":
			zr, err := gzip.NewReader(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		case "zstd":
			zr, err := zstd.NewReader(res.Body, zstd.WithDecoderConcurrency(1))
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			body = zr
		}
		if err := msgpack.NewDecoder(body).Decode(&resp); err != nil {
			t.Fatalf("%q (%s): %v", accept, coding, err)
		}
		return coding, resp
	}
	_, want := pull("gzip")
	if len(want.Snapshot) < 50 {
		t.Fatalf("pulled %d records, want 50", len(want.Snapshot))
	}
	for _, tc := range []struct{ accept, coding string }{
		{"zstd, gzip", "zstd"}, {"zstd", "zstd"}, {"gzip, deflate, br, zstd", "zstd"},
		{"gzip", "gzip"}, {"*", "gzip"}, {"gzip, zstd;q=0.5", "gzip"}, {"identity", ""},
	} {
		coding, got := pull(tc.accept)
		if coding != tc.coding {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want %q", tc.accept, coding, tc.coding)
		}
		if !reflect.DeepEqual(got.Snapshot, want.Snapshot) || !bytes.Equal(got.Cursor, want.Cursor) {
			t.Errorf("Accept-Encoding %q: another reply than the gzip client's", tc.accept)
		}
	}
}

// TestSDKWithGzipOnlyServer: the SDK asks for zstd, and still syncs with a
// server that answers gzip only (one that predates zstd replies), here a
// proxy that rewrites its Accept-Encoding to gzip.
func TestSDKWithGzipOnlyServer(t *testing.T) {
	e := newSDKEnv(t, nil)
	target, _ := url.Parse(e.url)
	rp := httputil.NewSingleHostReverseProxy(target)
	var zstdAsked, gzipReplies int
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/sync" {
			if strings.Contains(r.Header.Get("Accept-Encoding"), "zstd") {
				zstdAsked++
			}
			r.Header.Set("Accept-Encoding", "gzip")
		}
		rec := &codingRecorder{ResponseWriter: w}
		rp.ServeHTTP(rec, r)
		if rec.coding == "gzip" {
			gzipReplies++
		}
	}))
	defer proxy.Close()
	e.url = proxy.URL
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)
	ctx := context.Background()
	for i := 0; i < 40; i++ {
		if _, err := ann.Create(ctx, client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("Person %d %s", i, strings.Repeat("g", 40)))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ann.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := bea.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Snapshot + res.PulledOps; got < 40 {
		t.Fatalf("bea pulled %d records/ops, want 40", got)
	}
	if zstdAsked == 0 || gzipReplies == 0 {
		t.Fatalf("%d requests asked for zstd, %d replies were gzip: want both", zstdAsked, gzipReplies)
	}
}

// codingRecorder notes the Content-Encoding of a response it passes on.
type codingRecorder struct {
	http.ResponseWriter
	coding string
}

func (w *codingRecorder) WriteHeader(code int) {
	w.coding = w.Header().Get("Content-Encoding")
	w.ResponseWriter.WriteHeader(code)
}

// TestSDKZstdRequests: once a reply says the server reads zstd
// (Accept-Encoding), the SDK sends large pushes in zstd, which the server
// decodes; when the server is then replaced by one that does not (its
// replies no longer list zstd and it refuses zstd bodies with 415), the
// SDK sends the same request again gzipped, and nothing is lost.
func TestSDKZstdRequests(t *testing.T) {
	e := newSDKEnv(t, nil)
	target, _ := url.Parse(e.url)
	rp := httputil.NewSingleHostReverseProxy(target)
	var mu gosync.Mutex
	var codings []string
	older := false
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sync" {
			rp.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		codings = append(codings, r.Header.Get("Content-Encoding"))
		old := older
		mu.Unlock()
		if !old {
			rp.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Content-Encoding") == "zstd" {
			b, _ := msgpack.Marshal(api.NewProblem(api.CodeUnsupportedMedia, `Content-Encoding "zstd" is not supported; use gzip or none`))
			w.Header().Set("Content-Type", api.ProblemMsgpackContentType)
			w.WriteHeader(http.StatusUnsupportedMediaType)
			w.Write(b)
			return
		}
		rec := &stripAcceptEncoding{ResponseWriter: w}
		rp.ServeHTTP(rec, r)
	}))
	defer proxy.Close()
	e.url = proxy.URL
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)
	ctx := context.Background()
	write := func(n int) {
		t.Helper()
		err := ann.Batch(ctx, func(b *client.Batch) error {
			for i := range n {
				if _, err := b.Create(client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("Person %d %x", i, i*7919))); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(codings, ",")
	}
	// The first sync learns that the server reads zstd; the next large
	// push goes in zstd.
	if _, err := ann.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	write(300)
	if _, err := ann.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(last(), "zstd") {
		t.Fatalf("request codings %s: no zstd push", last())
	}
	// An older server: the zstd push is refused, sent again gzipped.
	mu.Lock()
	older, codings = true, nil
	mu.Unlock()
	write(300)
	if _, err := ann.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := last(); !strings.HasPrefix(got, "zstd,gzip") {
		t.Fatalf("request codings against the older server: %s, want zstd then gzip", got)
	}
	res, err := bea.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Snapshot + res.PulledOps; got < 600 {
		t.Fatalf("bea pulled %d records/ops, want the 600 records", got)
	}
}

// stripAcceptEncoding drops the Accept-Encoding a server lists in its
// response, as a server that predates zstd requests sends none.
type stripAcceptEncoding struct{ http.ResponseWriter }

func (w *stripAcceptEncoding) WriteHeader(code int) {
	w.Header().Del("Accept-Encoding")
	w.ResponseWriter.WriteHeader(code)
}
