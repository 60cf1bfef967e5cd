package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/doorstep-health/doorstep/api"
)

// TestIntegersReadAsInt64 is issue 16 item 6: Get after Set(…, 4) returned
// int8(4), whatever width msgpack used. Integers read as int64, also inside
// lists and maps.
func TestIntegersReadAsInt64(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{
		"small": 4, "neg": -5, "wide": int64(1) << 40, "u16": uint16(300), "f": 1.5,
		"list": []any{1, 200, -70000}, "map": map[string]any{"n": 7},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := r.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]any{
		"small": int64(4), "neg": int64(-5), "wide": int64(1) << 40, "u16": int64(300), "f": 1.5,
		"list": []any{int64(1), int64(200), int64(-70000)}, "map": map[string]any{"n": int64(7)},
	} {
		if got := rec.Fields[name].Value; !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v (%T), want %#v", name, got, got, want)
		}
	}
}

// TestClearIsExplicit is issue 16 item 6: Set(…, nil) left a field holding
// one nil entry. Set refuses nil; Clear clears, and a cleared field reads
// as unset.
func TestClearIsExplicit(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"phone": "0161", "name": "A"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Set(ctx, ref, "phone", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Set(nil): %v, want ErrInvalid pointing at Clear", err)
	}
	if err := r.Clear(ctx, ref, "phone"); err != nil {
		t.Fatal(err)
	}
	rec, err := r.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := rec.Fields["phone"]; ok {
		t.Fatalf("cleared field still listed: %+v", f)
	}
	if rec.Fields["name"].Value != "A" {
		t.Fatalf("other field: %+v", rec.Fields["name"])
	}
	if err := r.Set(ctx, ref, "phone", "0161 2"); err != nil {
		t.Fatal(err)
	}
	if rec, _ := r.Get(ctx, ref); rec.Fields["phone"].Value != "0161 2" {
		t.Fatalf("set after clear: %+v", rec.Fields["phone"])
	}
}

// TestCreateTakesARef is issue 16 item 6: Create(ctx, collection, team, …)
// took its strings in the reverse order of Ref, and swapping them failed
// with "unknown collection: <team>". Create takes a Ref, so team and
// collection are named.
func TestCreateTakesARef(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "A"})
	if err != nil || ref.Team != "wigan" || ref.Collection != "people" || len(ref.ID) != 32 {
		t.Fatalf("Create: %+v, %v", ref, err)
	}
	fixed, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people", ID: "p-7"}, map[string]any{"name": "B"})
	if err != nil || fixed.ID != "p-7" {
		t.Fatalf("Create with an ID: %+v, %v", fixed, err)
	}
	if _, err := r.Create(ctx, Ref{Collection: "people"}, map[string]any{"name": "C"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Create without a team: %v", err)
	}
}

// TestErrUnavailable is issue 16 item 6: an app could not tell "offline"
// from "refused". A network failure matches ErrUnavailable; a refusal does
// not.
func TestErrUnavailable(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, nil)
	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	ann.SetServerURL(url)
	_, err := ann.Sync(ctx)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("sync to a closed port: %v, want ErrUnavailable", err)
	}
	ann.SetServerURL(f.srv.URL)
	f.revoke(ann.ID().String())
	_, err = ann.Sync(ctx)
	if err == nil || errors.Is(err, ErrUnavailable) || problemCode(err) != api.CodeDeviceRevoked {
		t.Fatalf("sync when revoked: %v, want a refusal, not ErrUnavailable", err)
	}
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer busy.Close()
	bea := openTest(t, t.TempDir(), func(o *Options) { o.ServerURL = busy.URL })
	if _, err := bea.Login(ctx, "bea", "pw"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("login through a failing proxy: %v, want ErrUnavailable", err)
	}
}

// TestServerURLAndSizesAfterOpen is issue 16 item 6: ServerURL and the
// request sizes were fixed at Open.
func TestServerURLAndSizesAfterOpen(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	seed := openSynced(t, f, nil)
	for range 6 {
		if _, err := seed.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "x"}); err != nil {
			t.Fatal(err)
		}
	}
	mustSync(t, seed)
	r := openTest(t, t.TempDir(), nil) // offline at first
	if _, err := r.Sync(ctx); !errors.Is(err, ErrNoServer) {
		t.Fatalf("sync without a server: %v", err)
	}
	r.SetServerURL(f.srv.URL + "/")
	if _, err := r.Login(ctx, "ann", "pw"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, r) // bootstrap
	for i := range 6 {
		if _, err := seed.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": i}); err != nil {
			t.Fatal(err)
		}
		mustSync(t, seed) // one change each
	}
	r.SetRequestSizes(RequestSizes{PullLimit: 2})
	if s := r.RequestSizes(); s.PullLimit != 2 || s.MaxChangesPerRequest != 8 {
		t.Fatalf("sizes %+v", s)
	}
	if res := mustSync(t, r); res.Rounds != 3 || res.Pulled != 6 {
		t.Fatalf("pull of 6 changes at 2 a page: %+v", res)
	}
}
