package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	gosync "sync"
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

// TestRequestLogLines: one JSON line per request, the duration in
// milliseconds, WARN for a refused login, ERROR for a 500, INFO for an
// ordinary 404, and the refusal's code and detail on the line.
func TestRequestLogLines(t *testing.T) {
	var buf syncBuffer
	s := newTestServer(t, func(c *Config) { c.Logger = slog.New(slog.NewJSONHandler(&buf, nil)) })
	s.echo.GET("/boom", func(echo.Context) error { panic("boom") })
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, req := range []func() (*http.Response, error){
		func() (*http.Response, error) {
			return http.Post(ts.URL+"/v1/auth/login", "application/json", strings.NewReader(`{"username":"nobody","password":"wrong-password","device_id":"0123456789abcdef0123456789abcdef"}`))
		},
		func() (*http.Response, error) { return http.Get(ts.URL + "/boom") },
		func() (*http.Response, error) { return http.Get(ts.URL + "/nowhere") },
	} {
		res, err := req()
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	want := map[string]string{"/v1/auth/login": "WARN", "/boom": "ERROR", "/nowhere": "INFO"}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if l["msg"] != "http request" {
			continue
		}
		path, _ := l["path"].(string)
		if lv, ok := want[path]; ok {
			seen++
			if l["level"] != lv {
				t.Errorf("%s logged at %v, want %s", path, l["level"], lv)
			}
			if _, ok := l["duration_ms"].(float64); !ok || l["duration"] != nil {
				t.Errorf("%s: duration not in ms: %v", path, line)
			}
		}
		if path == "/v1/auth/login" && (l["code"] != string(api.CodeInvalidCredentials) || l["detail"] == "") {
			t.Errorf("refused login line lacks code/detail: %s", line)
		}
	}
	if seen != 3 {
		t.Fatalf("%d request lines, want 3:\n%s", seen, buf.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }
