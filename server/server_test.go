package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/labstack/echo/v4"
	"golang.org/x/crypto/bcrypt"
)

func newTestServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	cfg := Config{DataDir: t.TempDir(), BcryptCost: bcrypt.MinCost, SmallMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

func problemOf(t *testing.T, res *http.Response) api.Problem {
	t.Helper()
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != api.ProblemContentType {
		t.Fatalf("Content-Type %q", ct)
	}
	var p api.Problem
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if p.Status != res.StatusCode || p.Type != "urn:doorstep:error:"+string(p.Code) {
		t.Fatalf("problem %+v for status %d", p, res.StatusCode)
	}
	return p
}

func TestPanicBecomesProblem(t *testing.T) {
	s := newTestServer(t, nil)
	s.echo.GET("/boom", func(echo.Context) error { panic("boom") })
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	res, err := http.Get(ts.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	if p := problemOf(t, res); p.Code != api.CodeInternal || res.StatusCode != 500 || p.Detail != "internal error" {
		t.Fatalf("panic: %d %+v", res.StatusCode, p)
	}
	// Still serving.
	res, err = http.Get(ts.URL + "/healthz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz after panic: %v %v", res, err)
	}
	res.Body.Close()
	res, err = http.Get(ts.URL + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	if p := problemOf(t, res); p.Code != api.CodeNotFound {
		t.Fatalf("404: %+v", p)
	}
	if id := res.Header.Get("X-Request-Id"); len(id) != 16 {
		t.Fatalf("X-Request-Id %q", id)
	}
}

func TestRateLimits(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.AuthRate, c.AuthBurst = 0.001, 2 })
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	var codes []int
	for i := 0; i < 3; i++ {
		res, err := http.Post(ts.URL+"/v1/auth/login", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		p := problemOf(t, res)
		codes = append(codes, res.StatusCode)
		if i == 2 && (p.Code != api.CodeRateLimited || res.Header.Get("Retry-After") == "") {
			t.Fatalf("third login: %+v", p)
		}
	}
	if codes[0] != 400 || codes[1] != 400 || codes[2] != 429 {
		t.Fatalf("statuses %v, want 400 400 429", codes)
	}
}

func TestReadyz(t *testing.T) {
	s := newTestServer(t, nil)
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	res, err := http.Get(ts.URL + "/readyz")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", res, err)
	}
	res.Body.Close()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	res, err = http.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	if p := problemOf(t, res); p.Code != api.CodeUnavailable {
		t.Fatalf("readyz after shutdown: %+v", p)
	}
}
