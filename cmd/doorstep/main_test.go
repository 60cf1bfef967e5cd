package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/demo"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/crypto/bcrypt"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestBootstrapAndServe(t *testing.T) {
	data := t.TempDir()
	ctx := context.Background()
	var out, errb bytes.Buffer
	e := env(map[string]string{"DOORSTEP_DATA": data})
	if err := run(ctx, []string{"team", "add", "--id", "wigan", "--name", "Wigan Frailty"}, e, nil, &out, &errb); err != nil {
		t.Fatalf("team add: %v\n%s", err, errb.String())
	}
	// Password from standard input.
	err := run(ctx, []string{"user", "add", "--username", "root", "--role", "admin", "--teams", "wigan"}, e, strings.NewReader("s3cret-enough\n"), &out, &errb)
	if err != nil {
		t.Fatalf("user add: %v\n%s", err, errb.String())
	}
	if err := run(ctx, []string{"user", "add", "--username", "x", "--role", "root"}, env(map[string]string{"DOORSTEP_DATA": data, "DOORSTEP_PASSWORD": "long enough"}), nil, &out, &errb); err == nil {
		t.Fatal("bad role accepted")
	}
	out.Reset()
	if err := run(ctx, []string{"user", "list", "--data", data}, env(nil), nil, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "root") || !strings.Contains(out.String(), "admin") {
		t.Fatalf("user list:\n%s", out.String())
	}
	if err := run(ctx, []string{"bogus"}, e, nil, &out, &errb); err == nil {
		t.Fatal("unknown command accepted")
	}

	// A bad schema extension stops the server from starting.
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"version": 2, "collections": [{"name": "people", "fields": [{"name": "x", "type": "float"}]}]}`), 0o600)
	if err := run(ctx, []string{"serve", "--schema-extension", bad, "--addr", "127.0.0.1:0"}, e, nil, io.Discard, io.Discard); err == nil {
		t.Fatal("bad schema extension accepted")
	}
	ext := filepath.Join(t.TempDir(), "ext.json")
	os.WriteFile(ext, []byte(`{"version": 2, "collections": [{"name": "people", "fields": [{"name": "allotment_plot", "type": "string", "max_length": 10}]}]}`), 0o600)

	// Serve on a free loopback port until cancelled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(sctx, []string{"serve", "--log-format", "text", "--schema-extension", ext}, env(map[string]string{"DOORSTEP_DATA": data, "DOORSTEP_ADDR": addr,
			"DOORSTEP_ACCESS_TTL": "7m", "DOORSTEP_MAX_JSON_BODY": "2048"}), nil, io.Discard, io.Discard)
	}()
	url := "http://" + addr
	var res *http.Response
	for i := 0; i < 200; i++ {
		if res, err = http.Get(url + "/healthz"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		cancel()
		t.Fatalf("server never came up: %v (%v)", err, <-done)
	}
	res.Body.Close()
	dev := crdt.NewReplicaID()
	body, _ := json.Marshal(api.LoginRequest{Username: "root", Password: "s3cret-enough", DeviceID: dev.String()})
	res, err = http.Post(url+"/v1/auth/login", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var tr api.TokenResponse
	json.NewDecoder(res.Body).Decode(&tr)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("login: %d", res.StatusCode)
	}
	// Limits and lifetimes from the environment took effect.
	if tr.ExpiresIn != 420 {
		t.Errorf("DOORSTEP_ACCESS_TTL=7m: expires_in %d", tr.ExpiresIn)
	}
	big, _ := json.Marshal(api.LoginRequest{Username: "root", Password: strings.Repeat("x", 3000), DeviceID: dev.String()})
	if res, err := http.Post(url+"/v1/auth/login", "application/json", bytes.NewReader(big)); err != nil || res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("DOORSTEP_MAX_JSON_BODY=2048, 3 KB login: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	// The extension's field is accepted, not quarantined.
	op := crdt.NewRecord("wigan", "people", "p1").Write(crdt.OpID{Time: crdt.MakeTimestamp(time.Now().UnixMilli(), 0), Replica: dev}, "allotment_plot", crdt.MustValue("14b"))
	sb, _ := msgpack.Marshal(&api.SyncRequest{Protocol: api.ProtocolVersion, Replica: dev, Clock: op.ID.Time, Changes: []api.Change{{Seq: 1, Ops: []crdt.Op{op}}}})
	hr, _ := http.NewRequest(http.MethodPost, url+"/v1/sync", bytes.NewReader(sb))
	hr.Header.Set("Content-Type", api.ContentType)
	hr.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	if res, err = http.DefaultClient.Do(hr); err != nil {
		t.Fatal(err)
	}
	var sr api.SyncResponse
	err = msgpack.NewDecoder(res.Body).Decode(&sr)
	res.Body.Close()
	if err != nil || len(sr.Results) != 1 || sr.Results[0].Status != api.ChangeApplied || len(sr.Results[0].Ops) != 0 {
		t.Fatalf("push to the extension's field: %v %+v", err, sr.Results)
	}
	if res, err = http.Get(url + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %v %v", res, err)
	}
	res.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop")
	}
	// The stores were closed cleanly: an admin command can open them.
	if err := run(ctx, []string{"team", "list", "--data", data}, env(nil), nil, io.Discard, &errb); err != nil {
		t.Fatalf("after shutdown: %v", err)
	}
}

func TestSeedDemo(t *testing.T) {
	ctx := context.Background()
	srv, err := server.New(ctx, server.Config{DataDir: t.TempDir(), BcryptCost: bcrypt.MinCost, SmallMemory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(ctx)
	now := time.Now()
	n, err := seedDemo(ctx, srv, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	ds := demo.Build(1, now)
	if n != len(ds.Pushes) || n == 0 {
		t.Fatalf("seeded %d changes, dataset has %d", n, len(ds.Pushes))
	}
	// Seeding again is a no-op.
	if n, err := seedDemo(ctx, srv, 1, now); err != nil || n != 0 {
		t.Fatalf("second seed: %d %v", n, err)
	}
	// The coordinators find the demo's conflicts.
	users, err := srv.Auth().Users(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ds.Conflicts {
		var found bool
		for _, u := range users {
			if u.Role != api.RoleCoordinator || len(u.Teams) == 0 || u.Teams[0] != c.Team {
				continue
			}
			refs, err := srv.Engine().Conflicts(ctx, callerFor(u.ID, u.Teams), c.Team)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range refs {
				found = found || (r.Collection == c.Collection && r.ID == c.Record)
			}
		}
		if !found {
			t.Errorf("demo conflict %+v not listed", c)
		}
	}
}

func callerFor(user string, teams []string) dsync.Caller {
	return dsync.Caller{User: user, Teams: teams}
}
