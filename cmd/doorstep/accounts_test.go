package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/server"
	"golang.org/x/crypto/bcrypt"
)

// serveFor runs `doorstep serve` with args on a free loopback port until
// the test ends and returns its URL.
func serveFor(t *testing.T, data string, args ...string) (url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--log-format", "text", "--data", data, "--addr", addr}, args...), env(nil), nil, io.Discard, io.Discard)
	}()
	url = "http://" + addr
	for i := 0; ; i++ {
		res, err := http.Get(url + "/healthz")
		if err == nil {
			res.Body.Close()
			break
		}
		if i == 500 {
			cancel()
			t.Fatalf("server never came up: %v (%v)", err, <-done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return url, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

func loginStatus(t *testing.T, url, user, pw string) (int, api.Code) {
	t.Helper()
	body, _ := json.Marshal(api.LoginRequest{Username: user, Password: pw, DeviceID: crdt.NewReplicaID().String()})
	res, err := http.Post(url+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var p api.Problem
	_ = json.NewDecoder(res.Body).Decode(&p)
	return res.StatusCode, p.Code
}

// TestDemoPasswordRefusedWithoutDemo: a data directory whose demo users
// (seeded before demo users were marked) still have the published demo
// password refuses it when served without --demo, and accepts it with
// --demo.
func TestDemoPasswordRefusedWithoutDemo(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	srv, err := server.New(ctx, server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, SmallMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	a := srv.Auth()
	if _, err := a.CreateTeam(ctx, demo.TeamWigan, "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	// As an older --demo left them: not marked.
	for _, name := range []string{"amara", "diane"} {
		if _, err := a.CreateUser(ctx, auth.NewUser{Username: name, Password: demo.DemoPassword, Role: api.RoleLinkWorker, Teams: []string{demo.TeamWigan}}); err != nil {
			t.Fatal(err)
		}
	}
	// diane changed hers: she is not a demo login any more.
	us, _ := a.Users(ctx)
	for _, u := range us {
		if u.Username == "diane" {
			if _, err := a.ResetPassword(ctx, u.ID, "diane's own password"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	url, stop := serveFor(t, data)
	if st, code := loginStatus(t, url, "amara", demo.DemoPassword); st != http.StatusForbidden || code != api.CodeDemoAccount {
		t.Errorf("demo password without --demo: %d %s", st, code)
	}
	if st, _ := loginStatus(t, url, "diane", "diane's own password"); st != http.StatusOK {
		t.Errorf("own password: %d", st)
	}
	stop()
	url, stop = serveFor(t, data, "--demo")
	defer stop()
	if st, code := loginStatus(t, url, "amara", demo.DemoPassword); st != http.StatusOK {
		t.Errorf("demo password with --demo: %d %s", st, code)
	}
}

// TestSeededDemoUsersAreMarked: seedDemo marks every demo user.
func TestSeededDemoUsersAreMarked(t *testing.T) {
	ctx := context.Background()
	srv, err := server.New(ctx, server.Config{DataDir: t.TempDir(), BcryptCost: bcrypt.MinCost, SmallMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	if _, err := seedDemo(ctx, srv, 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	us, err := srv.Auth().Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		if !u.Demo {
			t.Errorf("demo user %s not marked", u.Username)
		}
	}
	if _, err := srv.Auth().Login(ctx, "amara", demo.DemoPassword, crdt.NewReplicaID().String(), ""); err == nil {
		t.Error("a server without Demo let a demo user in")
	}
}

// TestUserCommands: the service admin's lifecycle commands and the audit
// listing.
func TestUserCommands(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	e := env(map[string]string{"DOORSTEP_DATA": data})
	var out, errb bytes.Buffer
	must := func(args []string, e func(string) string, stdin io.Reader) {
		t.Helper()
		if err := run(ctx, args, e, stdin, &out, &errb); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
	}
	must([]string{"team", "add", "--id", "wigan", "--name", "Wigan"}, e, nil)
	must([]string{"user", "add", "--username", "ann", "--role", "link_worker", "--teams", "wigan"}, e, strings.NewReader("first password\n"))
	if err := run(ctx, []string{"user", "passwd", "--username", "ann"}, e, strings.NewReader("password\n"), &out, &errb); err == nil {
		t.Fatal("common password accepted")
	}
	must([]string{"user", "passwd", "--username", "ann"}, e, strings.NewReader("second password\n"))
	must([]string{"user", "disable", "--username", "ann"}, e, nil)
	out.Reset()
	must([]string{"user", "list"}, e, nil)
	if !strings.Contains(out.String(), "disabled") {
		t.Fatalf("user list:\n%s", out.String())
	}
	must([]string{"user", "enable", "--username", "ann"}, e, nil)
	must([]string{"user", "delete", "--username", "ann"}, e, nil)
	out.Reset()
	must([]string{"audit", "list", "--format", "csv"}, e, nil)
	for _, action := range []string{"team.create", "user.create", "user.password_reset", "user.disable", "user.enable", "user.delete"} {
		if !strings.Contains(out.String(), ","+action+",") {
			t.Errorf("audit has no %s:\n%s", action, out.String())
		}
	}
	if !strings.Contains(out.String(), ",service,doorstep user delete,") {
		t.Errorf("audit actor is not the service admin:\n%s", out.String())
	}
}

// TestDemoDirServedWithoutDemo: a directory seeded by serve --demo, served
// again without --demo, refuses the demo password.
func TestDemoDirServedWithoutDemo(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
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
	url, stop := serveFor(t, data)
	defer stop()
	for _, u := range demo.Usernames() {
		if st, code := loginStatus(t, url, u, demo.DemoPassword); st != http.StatusForbidden || code != api.CodeDemoAccount {
			t.Errorf("%s with the demo password, served without --demo: %d %s", u, st, code)
		}
	}
}
