package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
)

func openSynced(t *testing.T, f *fakeServer, mod func(*Options)) *Replica {
	t.Helper()
	r := openTest(t, t.TempDir(), func(o *Options) {
		o.ServerURL = f.srv.URL
		if mod != nil {
			mod(o)
		}
	})
	if _, err := r.Login(context.Background(), "ann", "pw"); err != nil {
		t.Fatalf("login: %v", err)
	}
	return r
}

func mustSync(t *testing.T, r *Replica) SyncResult {
	t.Helper()
	res, err := r.Sync(context.Background())
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	return res
}

func TestSyncConvergesThroughServer(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, nil)
	bea := openSynced(t, f, nil)
	ref := Ref{Team: "wigan", Collection: "people", ID: "jones"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "Mrs Jones", "mobility": "stick"}); err != nil {
		t.Fatal(err)
	}
	res := mustSync(t, ann)
	if res.Pushed != 1 || res.PushedOps != 2 || ann.Status().Pending != 0 {
		t.Fatalf("ann first sync: %+v, pending %d", res, ann.Status().Pending)
	}
	// Her own ops came back in the pull and changed nothing.
	if res.Snapshot != 1 || res.Changed != 0 {
		t.Fatalf("ann's own record came back as a change: %+v", res)
	}
	res = mustSync(t, bea)
	if !res.Bootstrapped || res.Snapshot != 1 {
		t.Fatalf("bea bootstrap: %+v", res)
	}
	if err := ann.Set(ctx, ref, "mobility", "frame"); err != nil {
		t.Fatal(err)
	}
	if err := bea.Set(ctx, ref, "mobility", "wheelchair"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		mustSync(t, bea)
		mustSync(t, ann)
	}
	for _, r := range []*Replica{ann, bea} {
		got, err := r.Get(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Fields["mobility"].Conflict {
			t.Fatalf("no conflict on %s", r.ID())
		}
		assertSameState(t, got.State, f.state(ref))
	}
	if err := bea.Resolve(ctx, ref, "mobility", "frame"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, bea)
	mustSync(t, ann)
	got, _ := ann.Get(ctx, ref)
	if f := got.Fields["mobility"]; f.Conflict || f.Value != "frame" {
		t.Fatalf("after resolve: %+v", f)
	}
}

func TestSyncSurvivesCutReplies(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, func(o *Options) { o.MaxOpsPerChange = 10; o.MaxChangesPerRequest = 2 })
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "P"}); err != nil {
		t.Fatal(err)
	}
	const n = 95
	for i := range n {
		// Writes of a few ops each: the outbox seals them into many changes.
		err := ann.Batch(ctx, func(b *Batch) error { return b.Append(ref, "notes", i) })
		if err != nil {
			t.Fatal(err)
		}
	}
	failures := 0
	for attempt := 0; ; attempt++ {
		f.mu.Lock()
		f.dropNext = 1 // every other attempt loses its reply after commit
		if attempt%2 == 1 {
			f.dropNext = 0
		}
		f.mu.Unlock()
		if _, err := ann.Sync(ctx); err == nil {
			break
		}
		failures++
		if attempt > 50 {
			t.Fatal("sync never completed")
		}
	}
	if failures == 0 {
		t.Fatal("no reply was cut: the test tested nothing")
	}
	if st := ann.Status(); st.Pending != 0 || st.LastError != nil {
		t.Fatalf("status after sync: %+v", st)
	}
	_, ops := f.stats()
	if ops != n+1 {
		t.Fatalf("server log holds %d ops, want %d (lost or doubled)", ops, n+1)
	}
	got, _ := ann.Get(ctx, ref)
	if e := got.Fields["notes"].Entries; len(e) != n {
		t.Fatalf("local notes %d, want %d", len(e), n)
	}
	assertSameState(t, got.State, f.state(ref))
}

func TestTokenRefreshAndRevoke(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, nil)
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "P"}); err != nil {
		t.Fatal(err)
	}
	f.expireAll()
	mustSync(t, ann) // refreshes transparently

	if err := ann.Set(ctx, ref, "name", "Q"); err != nil {
		t.Fatal(err)
	}
	f.revoke(ann.ID().String())
	_, err := ann.Sync(ctx)
	var p *api.Problem
	if !errors.Is(err, ErrSignedOut) || !errors.As(err, &p) || p.Code != api.CodeDeviceRevoked {
		t.Fatalf("sync after revoke: %v", err)
	}
	st := ann.Status()
	if !st.SignedOut || st.LastErrorCode != api.CodeDeviceRevoked || st.Pending != 1 {
		t.Fatalf("status after revoke: %+v", st)
	}
	if _, err := ann.Sync(ctx); !errors.Is(err, ErrSignedOut) {
		t.Fatalf("second sync after revoke: %v", err)
	}
	if ops := pendingOps(t, ann); len(ops) != 1 {
		t.Fatalf("outbox after revoke holds %d ops", len(ops))
	}
	// Signing in again resumes with the outbox intact.
	if _, err := ann.Login(ctx, "ann", "wrong"); problemCode(err) != api.CodeInvalidCredentials {
		t.Fatalf("bad login: %v", err)
	}
	if _, err := ann.Login(ctx, "ann", "pw"); err != nil {
		t.Fatal(err)
	}
	res := mustSync(t, ann)
	if res.PushedOps != 1 || ann.Status().SignedOut {
		t.Fatalf("sync after login: %+v", res)
	}
	if got := f.state(ref); got == nil {
		t.Fatal("server lacks record")
	}
}

func TestRefreshReuseSignsOut(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, nil)
	// Spend the stored refresh token behind the replica's back.
	tok, err := ann.loadTokens()
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	delete(f.refresh, tok.Refresh)
	f.spent[tok.Refresh] = true
	f.mu.Unlock()
	f.expireAll()
	_, err = ann.Sync(ctx)
	if !errors.Is(err, ErrSignedOut) || problemCode(err) != api.CodeRefreshReused {
		t.Fatalf("sync with reused refresh token: %v", err)
	}
}

func TestRejectedOpsAreKept(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, nil)
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "P", "quarantine_me": 1}); err != nil {
		t.Fatal(err)
	}
	res := mustSync(t, ann)
	if len(res.Rejected) != 1 || res.Rejected[0].Code != api.CodeInvalidValue || res.Rejected[0].Op.Field != "quarantine_me" {
		t.Fatalf("rejected in result: %+v", res.Rejected)
	}
	rj, err := ann.Rejected(ctx)
	if err != nil || len(rj) != 1 || !rj[0].Quarantined {
		t.Fatalf("Rejected() = %+v, %v", rj, err)
	}
	if ann.Status().Pending != 0 {
		t.Fatal("change with a quarantined op stayed in the outbox")
	}
	if err := ann.DismissRejected(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if rj, _ := ann.Rejected(ctx); len(rj) != 0 {
		t.Fatalf("after dismiss: %v", rj)
	}
}

func TestClockOffsetFromServer(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	// The tablet's clock runs three hours fast.
	fast := func() time.Time { return time.Now().Add(3 * time.Hour) }
	ann := openSynced(t, f, func(o *Options) { o.Wall = fast })
	mustSync(t, ann)
	off := ann.ClockOffset()
	if off > -170*time.Minute || off < -190*time.Minute {
		t.Fatalf("offset = %s, want about -3h", off)
	}
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "P"}); err != nil {
		t.Fatal(err)
	}
	op := pendingOps(t, ann)[0]
	if d := time.Until(op.ID.Time.Time()); d > time.Minute || d < -time.Minute {
		t.Fatalf("op stamped %s from server time despite offset", d)
	}
}

func TestBackgroundAndSubscribe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFakeServer(t)
	ann := openSynced(t, f, func(o *Options) { o.PollInterval = time.Hour; o.MinBackoff = time.Millisecond })
	bea := openSynced(t, f, func(o *Options) { o.PollInterval = time.Hour })
	events, stop := bea.Subscribe()
	defer stop()
	if err := ann.Background(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ann.Background(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Background: %v", err)
	}
	if err := bea.Background(ctx); err != nil {
		t.Fatal(err)
	}
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "P"}); err != nil {
		t.Fatal(err)
	}
	// Ann's background loop pushes after the write; Bea pulls when told
	// the network is back. Wait for Bea's event naming the record.
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case ev := <-events:
			if slices.Contains(ev.Records, ref) {
				got, err := bea.Get(ctx, ref)
				if err != nil || got.Fields["name"].Value != "P" {
					t.Fatalf("after event: %v %v", got, err)
				}
				return
			}
		case <-tick.C:
			bea.NetworkUp()
		case <-deadline:
			t.Fatalf("no event; ann %+v, bea %+v", ann.Status(), bea.Status())
		}
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	ctx := context.Background()
	r := openTest(t, t.TempDir(), nil)
	events, stop := r.Subscribe()
	var refs []Ref
	for i := range 50 {
		ref := Ref{Team: "wigan", Collection: "people", ID: fmt.Sprint(i)}
		refs = append(refs, ref)
		if err := r.CreateWithID(ctx, ref, map[string]any{"name": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Nobody read while writing: writes did not block, and every record
	// arrives in at most a few coalesced events.
	seen := map[Ref]bool{}
	for len(seen) < len(refs) {
		select {
		case ev := <-events:
			for _, ref := range ev.Records {
				seen[ref] = true
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("saw %d of %d records", len(seen), len(refs))
		}
	}
	stop()
	for range events {
	}
}

func TestUnknownFieldsAndPurges(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	// A newer app version writes a field this device's schema lacks.
	newer := openSynced(t, f, nil)
	old := openSynced(t, f, func(o *Options) { o.NoValidation = false })
	ref := Ref{Team: "wigan", Collection: "people", ID: "p1"}
	gone := Ref{Team: "wigan", Collection: "people", ID: "p2"}
	if err := newer.CreateWithID(ctx, ref, map[string]any{"given_name": "Ann", "shoe_size": 6}); err != nil {
		t.Fatal(err)
	}
	if err := newer.CreateWithID(ctx, gone, map[string]any{"given_name": "Erased"}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, newer)
	events, stop := old.Subscribe()
	defer stop()
	mustSync(t, old)
	got, err := old.Get(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Fields["shoe_size"].Value) != "6" {
		t.Fatalf("unknown field not kept: %+v", got.Fields)
	}
	// The old device edits a field it knows; the unknown one is untouched.
	if err := old.Set(ctx, ref, "phone", "01942 1"); err != nil {
		t.Fatal(err)
	}
	mustSync(t, old)
	mustSync(t, newer)
	a, _ := old.GetState(ctx, ref)
	b, _ := newer.GetState(ctx, ref)
	assertSameState(t, a, b)

	f.purge(gone)
	res := mustSync(t, old)
	if res.Purged != 1 {
		t.Fatalf("purged %d", res.Purged)
	}
	if _, err := old.Get(ctx, gone); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged record still readable: %v", err)
	}
	seen := map[Ref]bool{}
	timeout := time.After(10 * time.Second)
	for !seen[gone] {
		select {
		case ev := <-events:
			for _, r := range ev.Records {
				seen[r] = true
			}
		case <-timeout:
			t.Fatalf("no event for the purge; saw %v", seen)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	for n := 1; n < 40; n++ {
		step := time.Second << min(n-1, 20)
		step = min(step, time.Minute)
		for range 20 {
			d := backoff(time.Second, time.Minute, n)
			if d < step/2 || d > step {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", n, d, step/2, step)
			}
		}
	}
}

func TestCloseStopsEverything(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, func(o *Options) { o.PollInterval = time.Millisecond })
	events, _ := ann.Subscribe()
	if err := ann.Background(ctx); err != nil {
		t.Fatal(err)
	}
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "P"}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		for range 50 {
			if _, err := ann.Get(ctx, ref); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	for range events { // closed by Close
	}
	if _, err := ann.Get(ctx, ref); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := ann.Set(ctx, ref, "name", "Q"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Close: %v", err)
	}
	if _, err := ann.Sync(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close: %v", err)
	}
}

func TestBigValuesSplitIntoBoundedChanges(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, nil)
	ref := Ref{Team: "wigan", Collection: "people", ID: "p"}
	if err := ann.CreateWithID(ctx, ref, map[string]any{"name": "P"}); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("long assessment narrative ", 2000) // ~52 KB, under MaxValueBytes
	for i := range 28 {
		if err := ann.Append(ctx, ref, "notes", fmt.Sprint(i, big)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ann.seal(); err != nil {
		t.Fatal(err)
	}
	changes, _, err := ann.OutboxChanges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) < 2 {
		t.Fatalf("1.4 MB of ops sealed into %d changes", len(changes))
	}
	for _, c := range changes {
		if n := opsSize(c.Ops); n > maxChangeBytes && len(c.Ops) > 1 {
			t.Fatalf("change %d holds %d bytes", c.Seq, n)
		}
	}
	res := mustSync(t, ann)
	if res.PushedOps != 29 {
		t.Fatalf("pushed %d ops", res.PushedOps)
	}
	bea := openSynced(t, f, nil)
	mustSync(t, bea)
	got, err := bea.Get(ctx, ref)
	if err != nil || len(got.Fields["notes"].Entries) != 28 {
		t.Fatalf("bea: %v %v", got, err)
	}
}

// On a link too slow for the configured page size, failed requests shrink
// the pages until one crosses in time; then sizes grow back.
func TestTimeoutsShrinkRequests(t *testing.T) {
	ctx := context.Background()
	f := newFakeServer(t)
	ann := openSynced(t, f, func(o *Options) {
		o.HTTPClient = &http.Client{Timeout: time.Second}
		o.PullLimit = 400
	})
	f.mu.Lock()
	f.slowAbove = 60 // bigger pages never arrive
	f.mu.Unlock()
	fails := 0
	for {
		_, err := ann.Sync(ctx)
		if err == nil {
			break
		}
		if fails++; fails > 8 {
			t.Fatalf("still failing after %d attempts: %v", fails, err)
		}
	}
	// 400 → 200 → 100 → 50 takes at least three failures (more only if
	// the loaded machine also timed out a small request).
	if fails < 3 {
		t.Fatalf("%d failures before a small enough page, want at least 3", fails)
	}
	if p, _ := ann.requestSize(); p > 2*60 {
		t.Fatalf("pull limit after one success = %d, want at most twice the page that worked", p)
	}
}

// A background loop that cannot reach the server backs off and says when it
// will try again; NetworkUp makes it try at once.
func TestBackgroundBacksOffVisibly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newFakeServer(t)
	ann := openSynced(t, f, func(o *Options) { o.MinBackoff, o.MaxBackoff = time.Hour, 2*time.Hour })
	f.srv.Close() // the network is gone
	if err := ann.Background(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for ann.Status().Failures < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no failure recorded: %+v", ann.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := ann.Status()
	if st.LastError == nil || st.NextSync.Before(time.Now().Add(29*time.Minute)) {
		t.Fatalf("after a failure with a 1 h minimum backoff: %+v", st)
	}
	// NetworkUp forgets the backoff and tries at once; it fails again and
	// a new backoff starts from the minimum.
	ann.NetworkUp()
	for s := ann.Status(); s.NextSync.IsZero() || s.NextSync.Equal(st.NextSync) || s.Failures != 1; s = ann.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("NetworkUp did not cut the backoff short: %+v", ann.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
}
