package e2e

import (
	"context"
	"net/http"
	"testing"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/server"
)

// TestSchemaRoute: GET /v1/schema serves the active schema with the
// extension merged in and a strong ETag; If-None-Match with it gets 304;
// the SDK's FetchSchema parses it and honours the ETag; no token, no
// schema.
func TestSchemaRoute(t *testing.T) {
	ctx := context.Background()
	ext, err := schema.Default().Extend([]byte(allotmentExtension))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *server.Config) { c.Schema = ext })
	ann := e.login("ann")

	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/schema", nil)
	req.Header.Set("Authorization", "Bearer "+ann.access)
	res, body := e.roundTrip(req)
	etag := res.Header.Get("ETag")
	if res.StatusCode != http.StatusOK || len(etag) < 3 || etag[0] != '"' {
		t.Fatalf("GET /v1/schema: %d, ETag %q", res.StatusCode, etag)
	}
	got, err := schema.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := got.Field("people", "allotment_plot"); !ok || f.MaxLength != 10 || got.Version() != 2 {
		t.Fatalf("served schema lacks the extension: %v %+v v%d", ok, f, got.Version())
	}
	req.Header.Set("If-None-Match", etag)
	if res, _ := e.roundTrip(req); res.StatusCode != http.StatusNotModified || res.Header.Get("ETag") != etag {
		t.Fatalf("If-None-Match: %d %q", res.StatusCode, res.Header.Get("ETag"))
	}
	req.Header.Set("If-None-Match", `"stale"`)
	if res, _ := e.roundTrip(req); res.StatusCode != http.StatusOK {
		t.Fatalf("stale If-None-Match: %d", res.StatusCode)
	}
	req.Header.Del("Authorization")
	if res, _ := e.roundTrip(req); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d", res.StatusCode)
	}

	// The SDK.
	r, err := client.Open(ctx, client.Options{Dir: t.TempDir(), InsecureNoEncryption: true, ServerURL: e.ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, _, err := r.FetchSchema(ctx, ""); err == nil {
		t.Fatal("FetchSchema signed out: no error")
	}
	if _, err := r.Login(ctx, "ann", password); err != nil {
		t.Fatal(err)
	}
	sc, tag, err := r.FetchSchema(ctx, "")
	if err != nil || tag != etag {
		t.Fatalf("FetchSchema: %v, ETag %q want %q", err, tag, etag)
	}
	if _, ok := sc.Field("people", "allotment_plot"); !ok {
		t.Fatal("SDK schema lacks the extension")
	}
	if sc, tag, err := r.FetchSchema(ctx, etag); err != nil || sc != nil || tag != etag {
		t.Fatalf("FetchSchema with current ETag: %v %v %q", sc, err, tag)
	}
}
