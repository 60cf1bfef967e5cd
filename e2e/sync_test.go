package e2e

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	gosync "sync"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/vmihailenco/msgpack/v5"
)

func TestLoginAndSyncBetweenTwoDevices(t *testing.T) {
	e := newEnv(t)
	// Wrong password.
	st, p := e.doJSON(http.MethodPost, "/v1/auth/login", "", api.LoginRequest{Username: "ann", Password: "nope", DeviceID: "0123456789abcdef0123456789abcdef"}, nil)
	if st != http.StatusUnauthorized || p.Code != api.CodeInvalidCredentials {
		t.Fatalf("bad password: %d %+v", st, p)
	}
	ann, bea := e.login("ann"), e.login("bea")
	ann.sync()
	bea.sync()

	resp := ann.sync(ann.change(
		ann.write("wigan", "people", "p1", "given_name", "Edna"),
		ann.write("wigan", "people", "p1", "family_name", "Jones"),
	))
	if len(resp.Results) != 1 || resp.Results[0].Status != api.ChangeApplied || len(resp.Results[0].Ops) != 0 {
		t.Fatalf("push results %+v", resp.Results)
	}
	// Retrying the same change is a duplicate, applied once.
	st2, resp2, p2 := ann.e.postSync(ann.access, encode(t, ann.request(api.Change{Seq: 1, Ops: nil})), nil)
	if st2 != http.StatusOK || resp2.Results[0].Status != api.ChangeDuplicate {
		t.Fatalf("duplicate: %d %+v %+v", st2, resp2, p2)
	}

	authors := map[string]bool{}
	for i := 0; i < 5 && bea.value("people", "p1", "family_name") == nil; i++ {
		for _, pc := range bea.sync().Changes {
			authors[pc.Author] = true
		}
	}
	// The author is the pusher's user ID, from the token.
	if len(authors) != 1 || !authors[e.users["ann"]] {
		t.Fatalf("pulled authors %v, want ann's user ID %s", authors, e.users["ann"])
	}
	if got := bea.value("people", "p1", "family_name"); got != "Jones" {
		t.Fatalf("bea sees family_name %v", got)
	}
	// Bea edits; Ann pulls it.
	bea.sync(bea.change(bea.write("wigan", "people", "p1", "preferred_name", "Eddie")))
	for i := 0; i < 5 && ann.value("people", "p1", "preferred_name") == nil; i++ {
		ann.sync()
	}
	if got := ann.value("people", "p1", "preferred_name"); got != "Eddie" {
		t.Fatalf("ann sees preferred_name %v", got)
	}
	// A device of another team sees none of it.
	eve := e.login("eve")
	eve.sync()
	if len(eve.records) != 0 {
		t.Fatalf("ashton device pulled wigan records: %v", eve.records)
	}
	// A push into another team's record is refused per op.
	resp = eve.sync(eve.change(eve.write("wigan", "people", "p1", "given_name", "Mallory")))
	if r := resp.Results[0]; len(r.Ops) != 1 || r.Ops[0].Code != api.CodeForbiddenTeam {
		t.Fatalf("cross-team push: %+v", resp.Results)
	}
	// The sync request replica must be the token's device.
	req := ann.request()
	req.Replica = bea.id
	st, _, p = e.postSync(ann.access, encode(t, req), nil)
	if st != http.StatusForbidden || p.Code != api.CodeDeviceMismatch {
		t.Fatalf("replica mismatch: %d %+v", st, p)
	}
}

func TestGzipBothWays(t *testing.T) {
	e := newEnv(t)
	ann, bea := e.login("ann"), e.login("bea")
	ann.sync()
	var ops []crdt.Op
	for i := 0; i < 50; i++ {
		ops = append(ops, ann.write("wigan", "people", fmt.Sprintf("p%d", i), "given_name", strings.Repeat("x", 40)))
	}
	// A gzipped request body.
	body := gzipBytes(t, func(w *gzip.Writer) { w.Write(encode(t, ann.request(ann.change(ops...)))) })
	st, resp, p := e.postSync(ann.access, body, map[string]string{"Content-Encoding": "gzip"})
	if st != http.StatusOK || resp.Results[0].Status != api.ChangeApplied {
		t.Fatalf("gzipped push: %d %+v %+v", st, resp, p)
	}
	// A gzipped reply for a client that accepts one.
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/v1/sync", bytes.NewReader(encode(t, bea.request())))
	req.Header.Set("Content-Type", api.ContentType)
	req.Header.Set("Authorization", "Bearer "+bea.access)
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("reply %d, Content-Encoding %q", res.StatusCode, res.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	var pulled api.SyncResponse
	if err := msgpack.NewDecoder(zr).Decode(&pulled); err != nil {
		t.Fatal(err)
	}
	n := len(pulled.Snapshot)
	for _, c := range pulled.Changes {
		n += c.Ops.Len()
	}
	if n < 50 {
		t.Fatalf("pulled %d items, want at least 50", n)
	}
	// The counters saw it.
	mres, err := http.Get(e.ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer mres.Body.Close()
	mb, _ := io.ReadAll(mres.Body)
	for _, want := range []string{
		"doorstep_sync_ops_pushed_total 50\n",
		"doorstep_sync_changes_applied_total 1\n",
		`doorstep_http_requests_total{route="/v1/sync",status="200"} 3` + "\n",
		`doorstep_sync_duration_seconds_count 3` + "\n",
	} {
		if !strings.Contains(string(mb), want) {
			t.Errorf("metrics lack %q:\n%s", want, mb)
		}
	}
}

// TestOneSyncSlot: with room for one sync at a time, concurrent devices
// wait their turn and all get through.
func TestOneSyncSlot(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxConcurrentSyncs = 1 })
	devs := []*device{e.login("ann"), e.login("bea"), e.login("ann"), e.login("bea")}
	var wg gosync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 5; n++ {
				st, resp, p := d.trySync(d.change(d.write("wigan", "people", fmt.Sprintf("s%d-%d", i, n), "given_name", "x")))
				if st != http.StatusOK || resp.Results[0].Status != api.ChangeApplied {
					t.Errorf("device %d: %d %+v", i, st, p)
					return
				}
			}
		}()
	}
	wg.Wait()
}
