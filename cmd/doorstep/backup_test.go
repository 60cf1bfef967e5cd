package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
	"golang.org/x/crypto/bcrypt"
)

// seededServer starts an in-process server with a service admin, a
// wigan-only admin and a few records.
func seededServer(t *testing.T, data string, mods ...func(*server.Config)) (*server.Server, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	cfg := server.Config{DataDir: data, BcryptCost: bcrypt.MinCost, SmallMemory: true, DeviceRate: -1, AuthRate: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Shutdown(context.Background()) })
	return srv, ts
}

func seedAccounts(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx := context.Background()
	a := srv.Auth()
	for _, tm := range []string{"wigan", "ashton"} {
		if _, err := a.CreateTeam(ctx, tm, tm); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []auth.NewUser{
		{Username: "root", Password: "long enough pw", Role: api.RoleAdmin, Teams: []string{"wigan", "ashton"}},
		{Username: "dan", Password: "long enough pw", Role: api.RoleAdmin, Teams: []string{"wigan"}},
	} {
		if _, err := a.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
}

func pushPeople(t *testing.T, eng *dsync.Engine, from, n int) {
	t.Helper()
	rep := crdt.NewReplicaID()
	clk := crdt.NewClock(time.Now, time.Minute)
	c := dsync.Caller{User: "u", Replica: rep, Teams: []string{"wigan"}}
	var changes []api.Change
	for i := from; i < from+n; i++ {
		id := "p" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		changes = append(changes, api.Change{Seq: uint64(i - from + 1), Ops: []crdt.Op{{ID: crdt.OpID{Time: clk.Now(), Replica: rep},
			Team: "wigan", Collection: "people", Record: id, Field: "given_name", Kind: crdt.KindWrite, Value: crdt.MustValue("Name " + id)}}})
	}
	if _, err := eng.Push(context.Background(), c, changes); err != nil {
		t.Fatal(err)
	}
}

func TestBackupRestoreCommands(t *testing.T) {
	ctx := context.Background()
	srv, ts := seededServer(t, t.TempDir(), func(c *server.Config) { c.NoSchema = true })
	seedAccounts(t, srv)
	pushPeople(t, srv.Engine(), 0, 40)

	dir := t.TempDir()
	out := filepath.Join(dir, "b.dsbak")
	var stdout, stderr bytes.Buffer
	pw := env(map[string]string{"DOORSTEP_PASSWORD": "long enough pw"})
	// A team-scoped admin may not take a whole-server backup.
	if err := run(ctx, []string{"backup", "--out", out, "--server", ts.URL, "--username", "dan"}, pw, nil, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("team admin backup: %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("refused backup left a file: %v", err)
	}
	if err := run(ctx, []string{"backup", "--out", out, "--server", ts.URL, "--username", "root"}, pw, nil, &stdout, &stderr); err != nil {
		t.Fatalf("backup: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "log position") {
		t.Fatalf("backup output: %s", stdout.String())
	}

	// Restore into a new directory; the restored server holds the records.
	data := filepath.Join(t.TempDir(), "restored")
	if err := run(ctx, []string{"restore", "--in", out, "--data", data}, env(nil), nil, &stdout, &stderr); err != nil {
		t.Fatalf("restore: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "verified records") {
		t.Fatalf("no verify step in:\n%s", stderr.String())
	}
	// A non-empty target is refused.
	if err := run(ctx, []string{"restore", "--in", out, "--data", data}, env(nil), nil, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("non-empty target: %v", err)
	}
	// One flipped byte is refused, and nothing is created.
	b, _ := os.ReadFile(out)
	b[len(b)/2] ^= 0x40
	bad := filepath.Join(dir, "bad.dsbak")
	os.WriteFile(bad, b, 0o600)
	d2 := filepath.Join(t.TempDir(), "x")
	if err := run(ctx, []string{"restore", "--in", bad, "--data", d2}, env(nil), nil, &stdout, &stderr); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt file: %v", err)
	}
	if _, err := os.Stat(d2); !os.IsNotExist(err) {
		t.Fatalf("refused restore created %s", d2)
	}

	srv2, _ := seededServer(t, data, func(c *server.Config) { c.NoSchema = true })
	if srv2.Engine().Epoch() == srv.Engine().Epoch() {
		t.Fatal("restored server kept the old epoch")
	}
	r, err := srv2.Engine().Record(ctx, dsync.Caller{User: "x", Teams: []string{"wigan"}}, api.RecordRef{Team: "wigan", Collection: "people", ID: "pa"})
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := r.Field("given_name").Winner(); !bytes.Equal(w.Value, crdt.MustValue("Name pa")) {
		t.Fatalf("restored record %+v", r)
	}
	// Logins work on the restored server (auth store and keys restored).
	if _, err := srv2.Auth().Login(ctx, "root", "long enough pw", crdt.NewReplicaID().String(), "t"); err != nil {
		t.Fatalf("login on restored server: %v", err)
	}
}
