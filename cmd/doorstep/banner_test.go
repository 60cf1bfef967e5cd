package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/server"
	"golang.org/x/crypto/bcrypt"
)

// shellWords splits one banner line the way sh would for the simple
// quoting the banner uses: '…' literal, "…" and bare words with $NAME
// expanded from vars. It stops at a | outside quotes and returns the rest
// of the line after it.
func shellWords(t *testing.T, line string, vars map[string]string) (words []string, pipe string) {
	t.Helper()
	expand := func(s string) string {
		return regexp.MustCompile(`\$[A-Z]+`).ReplaceAllStringFunc(s, func(v string) string {
			x, ok := vars[v[1:]]
			if !ok {
				t.Fatalf("line %q uses unset $%s", line, v[1:])
			}
			return x
		})
	}
	var cur strings.Builder
	in := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				t.Fatalf("unterminated ' in %q", line)
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			j := strings.IndexByte(line[i+1:], '"')
			if j < 0 {
				t.Fatalf("unterminated \" in %q", line)
			}
			cur.WriteString(expand(line[i+1 : i+1+j]))
			i += j + 1
			in = true
		case c == ' ':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '|':
			return words, strings.TrimSpace(line[i+1:])
		default:
			j := strings.IndexAny(line[i:], ` '"|`)
			if j < 0 {
				j = len(line) - i
			}
			cur.WriteString(expand(line[i : i+j]))
			i += j - 1
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, ""
}

// curl runs the words of a curl command line (only the flags the banner
// uses: -s, -X, -H, -d) with net/http and returns status and body.
func curl(t *testing.T, words []string) (int, []byte) {
	t.Helper()
	if len(words) == 0 || words[0] != "curl" {
		t.Fatalf("not a curl line: %q", words)
	}
	method, url, hdr := "", "", http.Header{}
	var body io.Reader
	for i := 1; i < len(words); i++ {
		switch w := words[i]; w {
		case "-s":
		case "-X":
			i++
			method = words[i]
		case "-H":
			i++
			k, v, ok := strings.Cut(words[i], ": ")
			if !ok {
				t.Fatalf("header %q", words[i])
			}
			hdr.Add(k, v)
		case "-d":
			i++
			body = strings.NewReader(words[i])
			method = cmpOr(method, http.MethodPost)
		default:
			if strings.HasPrefix(w, "-") || url != "" {
				t.Fatalf("curl word %q not understood in %q", w, words)
			}
			url = w
		}
	}
	req, err := http.NewRequest(cmpOr(method, http.MethodGet), url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, b
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestBannerLinesWork seeds the demo, prints the banner for a real server
// on loopback and runs every printed curl line against it, in order, as a
// person pasting them would: the login's token captured by the printed sed
// snippet, the conflict listed, the record showing both values as
// clinical, the resolve clearing it.
func TestBannerLinesWork(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	srv, err := server.New(ctx, server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, SmallMemory: true, Demo: true,
		AuthRate: -1, DeviceRate: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	if _, err := seedDemo(ctx, srv, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	g, err := newGuide(ctx, srv, ts.Listener.Addr().String(), data)
	if err != nil {
		t.Fatal(err)
	}
	if g.Conflict == nil || g.Field != "cfs" {
		t.Fatalf("guide found no seeded conflict: %+v", g)
	}
	var out bytes.Buffer
	g.writeBanner(&out)
	banner := out.String()
	t.Logf("banner:\n%s", banner)

	// Usernames the banner names exist with the roles it claims.
	byName := map[string]string{}
	for _, u := range g.Users {
		byName[u.Username] = u.Role + " " + strings.Join(u.Teams, ",")
	}
	if byName[guideUser] != api.RoleCoordinator+" "+demo.TeamWigan || byName[guideTablet] != api.RoleLinkWorker+" "+demo.TeamWigan {
		t.Fatalf("guide users: %v", byName)
	}
	if !strings.Contains(banner, demo.DemoPassword) || !strings.Contains(banner, ts.URL) {
		t.Fatal("banner lacks password or address")
	}
	for _, u := range g.Users {
		if !regexp.MustCompile(`(?m)^  ` + u.Username + ` +` + u.Role).MatchString(banner) {
			t.Errorf("user %s not listed with role %s", u.Username, u.Role)
		}
	}

	vars := map[string]string{}
	var ran []string
	for _, line := range strings.Split(banner, "\n") {
		line = strings.TrimPrefix(line, "  ")
		switch {
		case strings.HasPrefix(line, "U="):
			vars["U"] = strings.TrimPrefix(line, "U=")
		case strings.HasPrefix(line, "TOKEN=$("):
			inner := strings.TrimSuffix(strings.TrimPrefix(line, "TOKEN=$("), ")")
			words, pipe := shellWords(t, inner, vars)
			st, body := curl(t, words)
			if st != http.StatusOK {
				t.Fatalf("login line: %d %s", st, body)
			}
			vars["TOKEN"] = extractToken(t, pipe, body)
			ran = append(ran, "login")
		case strings.HasPrefix(line, "curl "):
			words, _ := shellWords(t, line, vars)
			st, body := curl(t, words)
			if st != http.StatusOK {
				t.Fatalf("%s: %d %s", line, st, body)
			}
			u := words[len(words)-1]
			for _, w := range words {
				if strings.HasPrefix(w, "http") {
					u = w
				}
			}
			switch {
			case strings.HasSuffix(u, "/conflicts"):
				var got struct{ Records []api.RecordRef }
				json.Unmarshal(body, &got)
				if len(got.Records) == 0 || !strings.Contains(string(body), g.Conflict.ID) {
					t.Fatalf("conflicts line: %s", body)
				}
				ran = append(ran, "conflicts")
			case strings.HasSuffix(u, "/resolve"):
				var rec server.RecordJSON
				if err := json.Unmarshal(body, &rec); err != nil {
					t.Fatal(err)
				}
				if f := rec.Fields[g.Field]; f == nil || f.Conflict {
					t.Fatalf("after resolve %s: %+v", g.Field, f)
				}
				ran = append(ran, "resolve")
			default:
				var rec server.RecordJSON
				if err := json.Unmarshal(body, &rec); err != nil {
					t.Fatal(err)
				}
				if f := rec.Fields[g.Field]; f == nil || !f.Conflict || !f.Clinical || len(f.Values) != 2 {
					t.Fatalf("record line: %s is %+v", g.Field, f)
				}
				ran = append(ran, "record")
			}
		}
	}
	if got := strings.Join(ran, " "); got != "login conflicts record resolve" {
		t.Fatalf("banner lines run: %q", got)
	}
	// Resolved: a banner printed now says nothing is waiting.
	if g, err := newGuide(ctx, srv, ts.Listener.Addr().String(), data); err != nil || g.Conflict != nil {
		t.Fatalf("guide after resolve: %+v %v", g, err)
	}

	// The tablet lines name subcommands cmd/doorstep-tablet has.
	src, err := os.ReadFile(filepath.Join("..", "doorstep-tablet", "tablet.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range g.tabletLines() {
		f := strings.Fields(l)
		if len(f) < 4 || f[2] != "./cmd/doorstep-tablet" || !bytes.Contains(src, []byte(`case "`+f[3]+`"`)) {
			t.Errorf("tablet line %q: no such subcommand", l)
		}
	}
}

// extractToken applies the login line's pipe (the sed snippet) to the
// login reply: with the real sed when there is one, so the printed
// expression itself is tested.
func extractToken(t *testing.T, pipe string, body []byte) string {
	t.Helper()
	m := regexp.MustCompile(`^sed -n '(.*)'$`).FindStringSubmatch(pipe)
	if m == nil {
		t.Fatalf("login pipe %q is not a sed -n line", pipe)
	}
	var tr api.TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("login reply %s: %v", body, err)
	}
	if _, err := exec.LookPath("sed"); err != nil {
		t.Log("no sed on this machine: not running the snippet")
		return tr.AccessToken
	}
	cmd := exec.Command("sed", "-n", m[1])
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sed: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != tr.AccessToken {
		t.Fatalf("sed snippet extracted %q, want the access token", got)
	}
	return tr.AccessToken
}

// syncBuffer is a bytes.Buffer safe for the server goroutine to write while
// the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeDemoRestart seeds a data directory (at bcrypt's lowest cost, to
// keep the test fast), then runs serve --demo on it as make run does after
// a restart: nothing is seeded again, and the banner on stderr still shows
// the waiting conflict.
func TestServeDemoRestart(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	srv, err := server.New(ctx, server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, SmallMemory: true, Demo: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seedDemo(ctx, srv, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stderr syncBuffer
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(sctx, []string{"serve", "--demo", "--data", data, "--addr", addr}, env(nil), nil, io.Discard, &stderr)
	}()
	for j := 0; j < 1500 && !strings.Contains(stderr.String(), "Stop with Ctrl-C"); j++ {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "Doorstep demo: serving on http://"+addr) || !strings.Contains(out, "/records/people/") ||
		!strings.Contains(out, `"field":"cfs"`) || !strings.Contains(out, "not seeding") || strings.Contains(out, "demo data seeded") {
		t.Fatalf("restart banner:\n%s", out)
	}
}
