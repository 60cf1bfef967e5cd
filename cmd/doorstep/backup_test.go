package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/backup"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/internal/rawgrep"
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

// A backup taken before an erasure does not resurrect the person: restore
// re-applies the erasure journal given with --erasures (the live server's,
// or a newer backup), and the restored data files do not hold the name.
func TestRestoreReappliesErasures(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	srv, ts := seededServer(t, data, func(c *server.Config) { c.NoSchema = true })
	seedAccounts(t, srv)
	pushPeople(t, srv.Engine(), 0, 5) // pa … pe, "Name pa" …
	dir := t.TempDir()
	old := filepath.Join(dir, "old.dsbak")
	if err := backup.WriteFile(old, func(w io.Writer) error { _, err := srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}
	// Erase pb through the admin route (which journals it).
	tok, err := srv.Auth().Login(ctx, "root", "long enough pw", crdt.NewReplicaID().String(), "ops")
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/v1/admin/erasures", strings.NewReader(`{"team":"wigan","collection":"people","id":"pb"}`))
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rep server.ErasureReport
	json.NewDecoder(res.Body).Decode(&rep)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !rep.Scrubbed {
		t.Fatalf("erase: %d %+v", res.StatusCode, rep)
	}
	newer := filepath.Join(dir, "newer.dsbak")
	if err := backup.WriteFile(newer, func(w io.Writer) error { _, err := srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{filepath.Join(data, "erasures.jsonl"), newer} {
		target := filepath.Join(t.TempDir(), "r")
		var out, errb bytes.Buffer
		if err := run(ctx, []string{"restore", "--in", old, "--data", target, "--erasures", from}, env(nil), nil, &out, &errb); err != nil {
			t.Fatalf("restore: %v\n%s", err, errb.String())
		}
		if !strings.Contains(errb.String(), "re-applied 1 erasures") {
			t.Fatalf("--erasures %s: %s", from, errb.String())
		}
		if f, _ := rawgrep.Files(target, "Name pb"); len(f) > 0 {
			t.Fatalf("erased name in restored files %v", f)
		}
		if f, _ := rawgrep.Files(target, "Name pc"); len(f) == 0 {
			t.Fatal("a kept name is not in the restored files: the grep proves nothing")
		}
		s2, _ := seededServer(t, target, func(c *server.Config) { c.NoSchema = true })
		if _, err := s2.Engine().Record(ctx, dsync.Caller{User: "x", Teams: []string{"wigan"}}, api.RecordRef{Team: "wigan", Collection: "people", ID: "pb"}); err == nil {
			t.Fatal("erased person resurrected by the restore")
		}
		// The journal travels on: the restored server's own journal has it.
		if es, _ := backup.ReadErasures(filepath.Join(target, "erasures.jsonl")); len(es) != 1 {
			t.Fatalf("restored journal %+v", es)
		}
		s2.Shutdown(ctx)
	}
}
