package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIDescribesEveryRoute: api/openapi.yaml is a valid OpenAPI 3.1
// document, every route registered on the echo app (with an external
// issuer configured, so /v1/auth/exchange is there too) has an operation
// in it, and it describes no route the server does not have.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1", doc.OpenAPI)
	}
	s := newTestServer(t, func(c *Config) {
		c.External = &auth.ExternalIssuer{Issuer: "https://idp.example", Audience: "doorstep", JWKSURL: "https://idp.example/jwks"}
	})
	param := regexp.MustCompile(`:([a-z_]+)`)
	registered := map[string]bool{}
	for _, r := range s.echo.Routes() {
		if r.Method == "echo_route_not_found" || strings.HasSuffix(r.Path, "/*") {
			continue
		}
		path := param.ReplaceAllString(r.Path, "{$1}")
		registered[r.Method+" "+path] = true
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("%s %s is not described in api/openapi.yaml", r.Method, path)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if !registered[method+" "+path] {
				t.Errorf("api/openapi.yaml describes %s %s, which the server does not have", method, path)
			}
		}
	}
	// And it is served.
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	res, err := http.Get(ts.URL + "/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != api.OpenAPIContentType || string(b) != string(api.OpenAPI) {
		t.Fatalf("GET /v1/openapi.yaml: %d %q, %d bytes", res.StatusCode, res.Header.Get("Content-Type"), len(b))
	}
}
