package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/server"
)

// TestPackedPullSameAsPlain: a device pulling in the packed encoding
// (docs/PROTOCOL.md "Packed pull encoding", the SDK's default) ends with
// exactly the records of a device pulling the plain form from the same
// server, over log pages of every op kind and several authors, and
// receives fewer bytes.
func TestPackedPullSameAsPlain(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	ann := e.device("ann", "", nil)
	bea := e.device("bea", "", nil)
	plain := e.device("cal", "", func(o *client.Options) { o.PlainPull = true })
	packed := e.device("dee", "", nil)
	refs := sdkSeedPeople(t, ann, 30)
	for _, r := range []*client.Replica{ann, bea, plain, packed} {
		if _, err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Log entries after the readers' cursors: writes over others' values
	// (preds), concurrent writes (a conflict), set adds and removes,
	// appends, a delete, by two authors.
	for i, ref := range refs {
		w := ann
		if i%2 == 1 {
			w = bea
		}
		err := w.Batch(ctx, func(b *client.Batch) error {
			if err := b.Append(ref, "case_notes", fmt.Sprintf("note %d", i)); err != nil {
				return err
			}
			if err := b.Set(ref, "phone", fmt.Sprintf("0161 %06d", i)); err != nil {
				return err
			}
			return b.Add(ref, "risk_flags", "dog")
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := bea.Set(ctx, refs[0], "phone", "concurrent"); err != nil {
		t.Fatal(err)
	}
	if err := ann.Remove(ctx, refs[0], "risk_flags", "dog"); err != nil {
		t.Fatal(err)
	}
	if err := bea.Delete(ctx, refs[3]); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*client.Replica{ann, bea} {
		if _, err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pr, err := plain.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := packed.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pr.PulledOps == 0 || kr.PulledOps != pr.PulledOps || kr.Pulled != pr.Pulled {
		t.Fatalf("plain pulled %d changes, %d ops; packed %d, %d", pr.Pulled, pr.PulledOps, kr.Pulled, kr.PulledOps)
	}
	a, err := plain.List(ctx, sdkTeam, "people")
	if err != nil {
		t.Fatal(err)
	}
	b, err := packed.List(ctx, sdkTeam, "people")
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != len(refs) || !reflect.DeepEqual(a, b) {
		t.Fatalf("plain and packed replicas differ (%d and %d records)", len(a), len(b))
	}
	t.Logf("pulled %d ops: plain %d bytes, packed %d bytes", pr.PulledOps, pr.BytesReceived, kr.BytesReceived)
	if kr.BytesReceived >= pr.BytesReceived {
		t.Errorf("packed pull received %d bytes, plain %d", kr.BytesReceived, pr.BytesReceived)
	}
}

// TestPackedPushSameAsPlain: a device pushing in the packed form (7q, sent
// once the server said it reads it) and one pushing plain msgpack make the
// same edits to their own records; a third device pulls both and sees
// exactly what each writer sees locally, and the packed pusher sent fewer
// bytes.
func TestPackedPushSameAsPlain(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	packed := e.device("ann", "", nil)
	plain := e.device("bea", "", func(o *client.Options) { o.PlainPush = true })
	reader := e.device("cal", "", nil)
	var refs [2][]client.Ref
	for w, r := range []*client.Replica{packed, plain} {
		refs[w] = sdkSeedPeople(t, r, 20)
		if _, err := r.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var sent [2]int64
	for w, r := range []*client.Replica{packed, plain} {
		for i, ref := range refs[w] {
			err := r.Batch(ctx, func(b *client.Batch) error {
				if err := b.Append(ref, "case_notes", fmt.Sprintf("note %d", i)); err != nil {
					return err
				}
				if err := b.Set(ref, "phone", fmt.Sprintf("0161 %06d", i)); err != nil {
					return err
				}
				if err := b.Add(ref, "risk_flags", "dog"); err != nil {
					return err
				}
				return b.Remove(ref, "risk_flags", "dog")
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		res, err := r.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.PushedOps != 4*len(refs[w]) {
			t.Fatalf("writer %d: %d ops acknowledged, want %d", w, res.PushedOps, 4*len(refs[w]))
		}
		sent[w] = res.BytesSent
	}
	if _, err := reader.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for w, r := range []*client.Replica{packed, plain} {
		for _, ref := range refs[w] {
			want, err := r.Get(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			got, err := reader.Get(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("writer %d, %s: the reader sees\n%+v\nthe writer\n%+v", w, ref.ID, got, want)
			}
		}
	}
	t.Logf("pushed %d ops each: packed %d bytes, plain %d bytes", 4*len(refs[0]), sent[0], sent[1])
	if sent[0] >= sent[1] {
		t.Errorf("packed push sent %d bytes, plain %d", sent[0], sent[1])
	}
}

// TestPackedPushLargeOutbox: a large outbox pushed packed takes no more
// round trips than plain and is never refused as too large: each packed
// block stays within the server's bound on one bin (a first version sent
// one block per request, which the server refused past 64 KiB, and the
// SDK then split changes down to a round trip per 1,500 ops).
func TestPackedPushLargeOutbox(t *testing.T) {
	ctx := context.Background()
	sc := pushPullSchema(t)
	e := newSDKEnv(t, nil, func(c *server.Config) { c.Schema, c.PageBytes, c.DeviceRate = sc, 0, -1 })
	var rounds [2]int
	var sent [2]int64
	var writers [2]*client.Replica
	for w, user := range []string{"ann", "bea"} {
		r := e.device(user, "", func(o *client.Options) { o.Validator, o.PullLimit, o.PlainPush = sc, 0, w == 1 })
		writers[w] = r
		if _, err := r.Sync(ctx); err != nil { // learns that the server reads packed pushes
			t.Fatal(err)
		}
		for n := 0; n < 1000; n += 100 {
			err := r.Batch(ctx, func(bt *client.Batch) error {
				for k := n; k < n+100; k++ {
					fields := map[string]any{}
					for f := range pushPullFields {
						fields[fmt.Sprintf("f%02d", f)] = fmt.Sprintf("%s %06d vvvvvvvvvv", user, k)
					}
					if _, err := bt.Create(client.Ref{Team: sdkTeam, Collection: "bench_rows"}, fields); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		res, err := r.Sync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.PushedOps != 1000*pushPullFields {
			t.Fatalf("%s pushed %d ops", user, res.PushedOps)
		}
		rounds[w], sent[w] = res.Rounds, res.BytesSent
		t.Logf("%s (plain %v): %d round trips, %d bytes sent", user, w == 1, res.Rounds, res.BytesSent)
	}
	if rounds[0] > rounds[1] {
		t.Fatalf("packed push took %d round trips, plain %d", rounds[0], rounds[1])
	}
	// Each write of 3,000 ops is one change, too big for one block: its
	// ops go in pieces over several blocks, which the server joins.
	if sent[0]*2 > sent[1] {
		t.Fatalf("packed push sent %d bytes, plain %d: not packed?", sent[0], sent[1])
	}
	reader := e.device("cal", "", func(o *client.Options) { o.Validator, o.PullLimit = sc, 0 })
	if _, err := reader.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for _, w := range writers {
		want, err := w.List(ctx, sdkTeam, "bench_rows")
		if err != nil {
			t.Fatal(err)
		}
		got, err := reader.List(ctx, sdkTeam, "bench_rows")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 2000 || len(want) < 1000 {
			t.Fatalf("reader holds %d records, writer %d", len(got), len(want))
		}
		byID := map[string]*client.Record{}
		for _, g := range got {
			byID[g.Ref.ID] = g
		}
		for _, x := range want {
			if !reflect.DeepEqual(byID[x.Ref.ID], x) {
				t.Fatalf("record %s differs between writer and reader", x.Ref.ID)
			}
		}
	}
}

// olderServer is a proxy that makes the server look like one from before
// packed pushes: it drops 7q from requests (an older server ignores the
// key, so it applies nothing of a packed push) and 7p from replies.
func olderServer(t *testing.T, target string) *httptest.Server {
	strip := func(b []byte, key string) []byte {
		var m map[string]any
		if err := msgpack.Unmarshal(b, &m); err != nil {
			return b
		}
		delete(m, key)
		out, err := msgpack.Marshal(m)
		if err != nil {
			t.Error(err)
		}
		return out
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			sdkHangUp(w)
			return
		}
		if r.Header.Get("Content-Encoding") != "" {
			t.Error("older-server proxy: the test's pushes must stay under the gzip threshold")
		}
		if r.URL.Path == "/v1/sync" {
			body = strip(body, "7q")
		}
		req, _ := http.NewRequest(r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		req.Header.Del("Accept-Encoding") // plain replies, to edit them
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			sdkHangUp(w)
			return
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if r.URL.Path == "/v1/sync" && resp.StatusCode == http.StatusOK {
			out = strip(out, "7p")
		}
		for k, v := range resp.Header {
			if k != "Content-Length" {
				w.Header()[k] = v
			}
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(out)
	}))
	t.Cleanup(hs.Close)
	return hs
}

// TestPackedPushSurvivesRestartAndOlderServer: a device that learnt the
// server reads packed pushes still packs after a restart (the flag is
// stored with the reply); sent to a server that no longer reads them,
// the packed push applies nothing, the reply turns packing off, and the
// same Sync sends the changes plain: all acknowledged, nothing lost.
func TestPackedPushSurvivesRestartAndOlderServer(t *testing.T) {
	ctx := context.Background()
	e := newSDKEnv(t, nil)
	dir := t.TempDir()
	ann := e.device("ann", dir, nil)
	refs := sdkSeedPeople(t, ann, 5)
	if _, err := ann.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	write := func(r *client.Replica, note string) {
		for _, ref := range refs {
			if err := r.Append(ctx, ref, "case_notes", note); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Restarted: the first push is packed (a plain one of these 5 appends
	// is ~650 bytes).
	if err := ann.Close(); err != nil {
		t.Fatal(err)
	}
	ann = e.open(dir, nil)
	write(ann, "after restart")
	res, err := ann.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	packedBytes := res.BytesSent
	// An older server.
	old := olderServer(t, e.http.URL)
	ann.SetServerURL(old.URL)
	write(ann, "to an older server")
	res, err = ann.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.PushedOps != len(refs) {
		t.Fatalf("%d ops acknowledged by the older server, want %d", res.PushedOps, len(refs))
	}
	if res.Rounds < 2 {
		t.Fatalf("%d round trips: the packed push to the older server should have been ignored, then sent plain", res.Rounds)
	}
	if ops, _ := ann.PendingOps(ctx); len(ops) != 0 {
		t.Fatalf("%d ops pending", len(ops))
	}
	t.Logf("packed push after restart: %d bytes; to the older server: %d rounds, %d bytes", packedBytes, res.Rounds, res.BytesSent)
	// The older server got the packed push (about packedBytes) and then
	// the plain one: the plain part is the bigger by far, unless the push
	// after the restart was plain too.
	if plain := res.BytesSent - packedBytes; packedBytes >= plain*2/3 {
		t.Fatalf("the push after a restart sent %d bytes, the plain push about %d: not packed", packedBytes, plain)
	}
	reader := e.device("bea", "", nil)
	if _, err := reader.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := reader.Get(ctx, refs[0])
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Fields["case_notes"].Entries); n != 2 {
		t.Fatalf("the reader sees %d case notes, want 2", n)
	}
}
