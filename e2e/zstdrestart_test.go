package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	gosync "sync"
	"testing"

	client "github.com/doorstep-health/doorstep/client-sdk"
)

// TestSDKZstdAfterRestart: the device stores the server's word that it
// reads zstd requests with each reply (m/zstdpush), so a restarted
// device's first large push goes in zstd, not gzip, and the server
// applies it.
func TestSDKZstdAfterRestart(t *testing.T) {
	e := newSDKEnv(t, nil)
	target, _ := url.Parse(e.url)
	rp := httputil.NewSingleHostReverseProxy(target)
	var mu gosync.Mutex
	var codings []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/sync" {
			mu.Lock()
			codings = append(codings, r.Header.Get("Content-Encoding"))
			mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	e.url = proxy.URL
	ctx := context.Background()
	dir := t.TempDir()
	ann := e.device("ann", dir, nil)
	// One sync learns what the server reads.
	if _, err := ann.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	ann = e.open(dir, nil)
	err := ann.Batch(ctx, func(b *client.Batch) error {
		for i := range 300 {
			if _, err := b.Create(client.Ref{Team: sdkTeam, Collection: "people"}, sdkPerson(fmt.Sprintf("Person %d %x", i, i*7919))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	codings = nil
	mu.Unlock()
	res, err := ann.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.PushedOps != 300*4 {
		t.Fatalf("pushed %d ops, want 1,200", res.PushedOps)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(codings) == 0 || codings[0] != "zstd" {
		t.Fatalf("request codings after the restart: %q, want the first in zstd", codings)
	}
}
