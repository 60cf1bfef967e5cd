package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/backup"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/internal/restore"
	"github.com/doorstep-health/doorstep/server"
)

// TestRestatePurgesErasedRecords: two tablets hold a person, a visit for
// them with a photo, and another person. A backup is taken; the person is
// then erased (with cascade) while neither tablet syncs; the server is lost
// and the backup restored with the erasure journal, which erases the
// person again in the restored store. Both tablets see the new epoch and
// re-send their records; the server refuses the erased ones and must tell
// the tablets to purge them: a bootstrap does not list erasures, so
// otherwise a tablet that never pulled the erasure keeps the person's data
// for ever. Ann had nothing pending; Bea had an offline edit of the person
// in her outbox, which must go too (no residue in Rejected or the outbox).
func TestRestatePurgesErasedRecords(t *testing.T) {
	ctx := context.Background()
	var cfg *server.Config
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1; cfg = c })
	base := *cfg
	if _, err := env.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "ada", Name: "ada", Password: "ada-password", Role: api.RoleAdmin, Teams: []string{sdkTeam}}); err != nil {
		t.Fatal(err)
	}
	var sw switchProxy
	sw.point(t, env.http.Listener.Addr().String())
	front := httptest.NewServer(&sw)
	t.Cleanup(front.Close)
	env.url = front.URL

	person := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-restate-erased"}
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-restate-erased"}
	kept := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-restate-kept"}
	ann := env.device("ann", "", nil)
	bea := env.device("bea", "", nil)
	for _, c := range []struct {
		ref    client.Ref
		fields map[string]any
	}{
		{person, sdkPerson("Erased")},
		{visit, map[string]any{"person_id": person.ID, "contact_type": "home_visit"}},
		{kept, sdkPerson("Kept")},
	} {
		if err := ann.CreateWithID(ctx, c.ref, c.fields); err != nil {
			t.Fatal(err)
		}
	}
	photo := make([]byte, 300<<10)
	if _, err := rand.Read(photo); err != nil {
		t.Fatal(err)
	}
	copy(photo, []byte{0xff, 0xd8, 0xff, 0xe0})
	att, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo), "hazard.jpg")
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
		t.Fatalf("upload: %d %v", n, err)
	}
	sdkMustSync(t, bea)
	if _, err := bea.Get(ctx, person); err != nil {
		t.Fatalf("bea before the backup: %v", err)
	}

	bk := filepath.Join(t.TempDir(), "b.dsbak")
	if err := backup.WriteFile(bk, func(w io.Writer) error { _, err := env.srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}

	// Bea edits the person offline; then the person is erased. Neither
	// tablet syncs before the server is lost.
	if err := bea.Set(ctx, person, "phone", "0161 496 0123"); err != nil {
		t.Fatal(err)
	}
	admin := sdkLogin(t, env, "ada", "ada-password")
	var rep server.ErasureReport
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", map[string]any{"team": sdkTeam, "collection": "people", "id": person.ID, "cascade": true}, &rep); st != http.StatusOK || len(rep.Records) != 2 {
		t.Fatalf("erasure: %d %+v", st, rep)
	}

	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "restored")
	var log bytes.Buffer
	res, err := restore.Run(ctx, restore.Options{In: bk, Data: data, Erasures: filepath.Join(base.DataDir, "erasures.jsonl"), Log: &log})
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, log.String())
	}
	if res.Reapplied == 0 {
		t.Fatalf("the restore re-applied no erasure: the tablets' restate proves nothing\n%s", log.String())
	}
	rcfg := base
	rcfg.DataDir, rcfg.ErasureJournal = data, ""
	srv2, err := server.New(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	hs2 := httptest.NewServer(openAPIChecked(t, srv2.Handler()))
	t.Cleanup(func() { hs2.Close(); srv2.Shutdown(context.Background()) })
	sw.point(t, hs2.Listener.Addr().String())
	env.http = hs2 // coordinatorGET and logins go to the restored server

	for _, d := range []struct {
		name string
		r    *client.Replica
	}{{"ann", ann}, {"bea", bea}} {
		// Twice: nothing left could bring the person back.
		for range 2 {
			if _, err := d.r.Sync(ctx); err != nil {
				t.Fatalf("%s sync after the restore: %v", d.name, err)
			}
		}
		if st := d.r.Status(); st.ServerRestored.IsZero() || st.LastError != nil {
			t.Fatalf("%s status after the restore: %+v", d.name, st)
		}
		for _, ref := range []client.Ref{person, visit} {
			if _, err := d.r.Get(ctx, ref); !errors.Is(err, client.ErrNotFound) {
				t.Fatalf("%s still holds the erased %v after restating to the restored server: %v", d.name, ref, err)
			}
		}
		if _, err := d.r.Get(ctx, kept); err != nil {
			t.Fatalf("%s lost the other person: %v", d.name, err)
		}
		if ops, err := d.r.PendingOps(ctx); err != nil || len(ops) != 0 {
			t.Fatalf("%s outbox after the restore: %+v %v", d.name, ops, err)
		}
		if rj, err := d.r.Rejected(ctx); err != nil || len(rj) != 0 {
			t.Fatalf("%s keeps rejections after the purge: %+v %v", d.name, rj, err)
		}
	}
	if _, err := ann.ReadAttachment(ctx, sdkTeam, att.SHA256); !errors.Is(err, client.ErrAttachmentNotLocal) {
		t.Fatalf("ann still holds the erased visit's photo: %v", err)
	}
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 0 {
		t.Fatalf("upload after the restore: %d %v", n, err)
	}
	// The restates brought nothing back on the server.
	if st := env.coordinatorGET("/v1/teams/"+sdkTeam+"/records/people/"+person.ID, nil); st != http.StatusNotFound {
		t.Fatalf("restored server's erased person: status %d", st)
	}
	sdkAssertConverged(t, ann, bea)
}
