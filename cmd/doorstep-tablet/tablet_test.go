package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
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

const testPassword = "tablet test password"

// tab runs one doorstep-tablet command line and returns its stdout.
func tab(t *testing.T, wantErr bool, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "DOORSTEP_PASSWORD" {
			return testPassword
		}
		return ""
	}
	err := run(context.Background(), args, env, &out, &errb)
	if (err != nil) != wantErr {
		t.Fatalf("doorstep-tablet %s: err %v (want error %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, wantErr, out.String(), errb.String())
	}
	return out.String()
}

// TestTwoTabletsConflictAndResolve drives two simulated tablets against a
// real server on loopback through the command line: both edit one person
// offline, both sync, both show the conflict with both values, one
// resolves, and the other sees it clear.
func TestTwoTabletsConflictAndResolve(t *testing.T) {
	ctx := context.Background()
	srv, err := server.New(ctx, server.Config{DataDir: t.TempDir(), BcryptCost: bcrypt.MinCost, SmallMemory: true,
		AuthRate: -1, DeviceRate: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	a := srv.Auth()
	if _, err := a.CreateTeam(ctx, "wigan-frailty", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, u := range []string{"amara", "ben"} {
		nu, err := a.CreateUser(ctx, auth.NewUser{Username: u, Name: u, Password: testPassword, Role: api.RoleLinkWorker, Teams: []string{"wigan-frailty"}})
		if err != nil {
			t.Fatal(err)
		}
		ids[u] = nu.ID
	}
	// One person on the server, as an earlier visit would have left.
	rep := crdt.NewReplicaID()
	rec := crdt.NewRecord("wigan-frailty", "people", "p1")
	clk := crdt.NewClock(time.Now, time.Minute)
	var ops []crdt.Op
	for f, v := range map[string]any{"given_name": "Edna", "family_name": "Hart", "date_of_birth": "1941-03-02", "address": "3 Mill Lane, Wigan"} {
		op := rec.Write(crdt.OpID{Time: clk.Now(), Replica: rep}, f, crdt.MustValue(v))
		if err := rec.Apply(&op); err != nil {
			t.Fatal(err)
		}
		ops = append(ops, op)
	}
	res, err := srv.Engine().Push(ctx, dsync.Caller{User: ids["amara"], Replica: rep, Teams: []string{"wigan-frailty"}}, []api.Change{{Seq: 1, Ops: ops}})
	if err != nil || res[0].Status != api.ChangeApplied || len(res[0].Ops) != 0 {
		t.Fatalf("seed person: %v %+v", err, res)
	}

	root := t.TempDir()
	dirA, dirB := filepath.Join(root, "a"), filepath.Join(root, "b")
	A := func(wantErr bool, args ...string) string { return tab(t, wantErr, append(args, "--dir", dirA)...) }
	B := func(wantErr bool, args ...string) string { return tab(t, wantErr, append(args, "--dir", dirB)...) }

	A(true, "people") // not signed in yet
	if out := A(false, "login", "--server", ts.URL, "--user", "amara"); !strings.Contains(out, "signed in as amara") {
		t.Fatalf("login: %s", out)
	}
	B(false, "login", "--server", ts.URL+"/", "--user", "ben")
	A(false, "sync")
	B(false, "sync")
	if out := A(false, "people"); !strings.Contains(out, "p1") || !strings.Contains(out, "Edna Hart") {
		t.Fatalf("people: %s", out)
	}

	// Offline edits: stored on the tablet, waiting in the outbox.
	if out := A(false, "set", "--id", "p1", "--field", "preferred_name", "--value", "Eddie"); !strings.Contains(out, "1 op(s) waiting") {
		t.Fatalf("set: %s", out)
	}
	B(false, "set", "--collection", "people", "--id", "p1", "--field", "preferred_name", "--value", `"Ed"`)
	A(true, "set", "--id", "p1", "--field", "cfs", "--value", "42") // the SDK validates: CFS is 1–9
	if out := A(false, "status"); !strings.Contains(out, "1 op(s) waiting") {
		t.Fatalf("status: %s", out)
	}
	A(true, "set", "--id", "p1", "--field", "phone", "--value", "null")                                        // clearing is explicit…
	if out := A(false, "clear", "--id", "p1", "--field", "phone"); !strings.Contains(out, "2 op(s) waiting") { // …with clear
		t.Fatalf("clear: %s", out)
	}
	A(false, "sync")
	if out := B(false, "sync"); !strings.Contains(out, "pushed 1 change") || !strings.Contains(out, "people/p1  preferred_name") {
		t.Fatalf("ben's sync: %s", out)
	}
	A(false, "sync")
	for name, run := range map[string]func(bool, ...string) string{"amara": A, "ben": B} {
		out := run(false, "show", "--id", "p1")
		if !strings.Contains(out, "CONFLICT") || !strings.Contains(out, `"Eddie"`) || !strings.Contains(out, `"Ed"`) {
			t.Fatalf("%s shows:\n%s", name, out)
		}
		if out := run(false, "conflicts"); !strings.Contains(out, "people/p1  preferred_name") {
			t.Fatalf("%s conflicts: %s", name, out)
		}
	}

	// Amara settles it; after both sync, neither has a conflict.
	A(false, "resolve", "--id", "p1", "--field", "preferred_name", "--value", "Edna")
	A(false, "sync")
	B(false, "sync")
	for name, run := range map[string]func(bool, ...string) string{"amara": A, "ben": B} {
		out := run(false, "show", "--id", "p1")
		if strings.Contains(out, "CONFLICT") || !strings.Contains(out, `preferred_name  "Edna"`) {
			t.Fatalf("%s after resolve:\n%s", name, out)
		}
		if out := run(false, "conflicts"); !strings.Contains(out, "no conflicts") {
			t.Fatalf("%s conflicts after resolve: %s", name, out)
		}
	}

	// The replica is encrypted with the key file: another key cannot open it.
	key, err := os.ReadFile(filepath.Join(dirA, "replica.key"))
	if err != nil || len(key) != 32 {
		t.Fatalf("key file: %d bytes, %v", len(key), err)
	}
	key[0] ^= 0xff
	if err := os.WriteFile(filepath.Join(dirA, "replica.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	A(true, "status")

	tab(t, true, "bogus")
	tab(t, true, "people") // neither --user nor --dir
	B(true, "show")        // no --id
	if out := tab(t, false, "help"); !strings.Contains(out, "platform keystore") {
		t.Fatalf("help: %s", out)
	}
}

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		in   string
		want any
	}{
		{"6", int64(6)},
		{"-3", int64(-3)},
		{"2.5", 2.5},
		{"true", true},
		{`"6"`, "6"},
		{"Bill", "Bill"},
		{"2026-01-02", "2026-01-02"},
		{"3 Mill Lane", "3 Mill Lane"},
		{"1 2", "1 2"},
		{`["a",1]`, []any{"a", int64(1)}},
		{"", ""},
	} {
		got, err := parseValue(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseValue(%q) = %#v, %v; want %#v", c.in, got, err, c.want)
		}
	}
}
