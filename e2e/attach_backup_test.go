package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/backup"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/internal/rawgrep"
	"github.com/doorstep-health/doorstep/internal/restore"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/server"
)

// TestAttachmentsInBackup: backups carry the attachment files. Two photos
// are uploaded and a backup taken; one person is then erased (deleting
// their photo) and the server's data directory is lost. The backup is
// restored with the live erasure journal: a new tablet downloads the kept
// photo from the restored server and its hash verifies, while the erased
// person's photo, though in the backup, is not brought back (not on the
// restored disk, not served).
func TestAttachmentsInBackup(t *testing.T) {
	ctx := context.Background()
	var cfg *server.Config
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1; cfg = c })
	base := *cfg
	if _, err := env.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "ada", Name: "ada", Password: "ada-password", Role: api.RoleAdmin, Teams: []string{sdkTeam}}); err != nil {
		t.Fatal(err)
	}
	// Devices reach the server through a switch, so they keep one URL
	// across the restore.
	var sw switchProxy
	sw.point(t, env.http.Listener.Addr().String())
	front := httptest.NewServer(&sw)
	t.Cleanup(front.Close)
	env.url = front.URL

	ann := env.device("ann", "", nil)
	photo := func(tag byte) []byte {
		b := make([]byte, 3<<20+12345)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		copy(b, []byte{0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0, tag})
		return b
	}
	kept, gone := photo(1), photo(2)
	var atts []schema.Attachment
	for i, p := range [][]byte{kept, gone} {
		person := client.Ref{Team: sdkTeam, Collection: "people", ID: []string{"p-kept", "p-gone"}[i]}
		visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: []string{"c-kept", "c-gone"}[i]}
		if err := ann.CreateWithID(ctx, person, sdkPerson("Edna")); err != nil {
			t.Fatal(err)
		}
		if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": person.ID, "contact_type": "home_visit"}); err != nil {
			t.Fatal(err)
		}
		a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(p), "hazard.jpg")
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, a)
	}
	sdkMustSync(t, ann)
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 2 {
		t.Fatalf("upload: %d %v", n, err)
	}

	bk := filepath.Join(t.TempDir(), "b.dsbak")
	if err := backup.WriteFile(bk, func(w io.Writer) error { _, err := env.srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}
	if files, _ := rawgrep.Files(filepath.Dir(bk), string(gone[2<<20:2<<20+64])); len(files) != 1 {
		t.Fatalf("the photo to be erased is not in the backup file (%v): the check below proves nothing", files)
	}

	// A photo uploaded after the backup: not in it, but still on Ann's
	// tablet, which re-sends it when it sees the restored server's epoch.
	late := photo(3)
	lateAtt, err := ann.Attach(ctx, client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-kept"}, "photos", bytes.NewReader(late), "late.jpg")
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
		t.Fatalf("upload after the backup: %d %v", n, err)
	}

	admin := sdkLogin(t, env, "ada", "ada-password")
	var rep server.ErasureReport
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", map[string]any{"team": sdkTeam, "collection": "people", "id": "p-gone", "cascade": true}, &rep); st != http.StatusOK || len(rep.BlobsDeleted) != 1 {
		t.Fatalf("erasure: %d %+v", st, rep)
	}
	// Ann's tablet does not hear of the erasure before the server is lost.

	// The data directory is lost; restore the backup into a new one, with
	// the journal of erasures made since (kept off the data disk).
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "restored")
	var log bytes.Buffer
	if _, err := restore.Run(ctx, restore.Options{In: bk, Data: data, Erasures: filepath.Join(base.DataDir, "erasures.jsonl"), Log: &log}); err != nil {
		t.Fatalf("restore: %v\n%s", err, log.String())
	}
	t.Logf("restore:\n%s", log.String())
	if files, err := rawgrep.Files(data, string(gone[2<<20:2<<20+64])); err != nil || len(files) != 0 {
		t.Fatalf("the erased person's photo came back with the restore: %v %v", files, err)
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

	// Ann's tablet sees the new epoch, re-sends its records and requeues
	// its files; only the one the restored server lacks is sent again.
	// The erased person's records are refused in the restate and purged
	// from the tablet (restate reply Purged), and so is their photo after
	// the sync (PurgeAttachments): it is never sent again.
	sdkMustSync(t, ann)
	if s := ann.Status(); s.UploadsPending == 0 {
		t.Fatalf("after the restate nothing is queued for upload: %+v", s)
	}
	sentBefore := ann.Status().UploadBytesSent
	if _, err := ann.UploadAttachments(ctx); err != nil {
		t.Fatalf("re-upload after restore: %v", err)
	}
	if s := ann.Status(); s.UploadsPending != 0 || s.UploadBytesSent-sentBefore != int64(len(late)) {
		t.Fatalf("re-upload sent %d bytes (the late photo is %d): %+v", s.UploadBytesSent-sentBefore, len(late), s)
	}
	if files, _ := rawgrep.Files(data, string(gone[2<<20:2<<20+64])); len(files) != 0 {
		t.Fatalf("the erased person's photo was uploaded again: %v", files)
	}
	if _, err := ann.ReadAttachment(ctx, sdkTeam, atts[1].SHA256); !errors.Is(err, client.ErrAttachmentNotLocal) {
		t.Fatalf("ann still holds the erased photo: %v", err)
	}

	bea := env.device("bea", "", nil)
	sdkMustSync(t, bea)
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-kept"}
	rec, err := bea.Get(ctx, visit)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Fields["photos"].Entries) != 2 {
		t.Fatalf("photos on the restored record: %+v", rec.Fields["photos"])
	}
	got, err := schema.ParseAttachment(rec.Fields["photos"].Entries[0].Value)
	if err != nil || got.SHA256 != atts[0].SHA256 {
		t.Fatalf("attachment %+v %v", got, err)
	}
	if err := bea.FetchAttachment(ctx, visit, got); err != nil {
		t.Fatalf("download from the restored server: %v", err)
	}
	if b, err := bea.ReadAttachment(ctx, sdkTeam, got.SHA256); err != nil || !bytes.Equal(b, kept) {
		t.Fatalf("restored photo: %d bytes, %v", len(b), err)
	}
	if err := bea.FetchAttachment(ctx, visit, lateAtt); err != nil {
		t.Fatalf("download of the photo re-sent after the restore: %v", err)
	}
	if b, _ := bea.ReadAttachment(ctx, sdkTeam, lateAtt.SHA256); !bytes.Equal(b, late) {
		t.Fatal("re-sent photo differs")
	}
	err = bea.FetchAttachment(ctx, client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-gone"}, atts[1])
	var p *api.Problem
	if !errors.As(err, &p) || p.Code != api.CodeNotFound {
		t.Fatalf("erased photo after restore: %v, want not_found", err)
	}
}

// withoutSection rewrites a backup file without one section, as a build
// from before that section existed wrote it.
func withoutSection(t *testing.T, in, out, drop string) {
	t.Helper()
	raw, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	items := map[string][]backup.Item{}
	m, err := backup.Read(bytes.NewReader(raw), func(sec string, it *backup.Item) error {
		items[sec] = append(items[sec], backup.Item{Key: bytes.Clone(it.Key), Value: bytes.Clone(it.Value), UserMeta: it.UserMeta, ExpiresAt: it.ExpiresAt})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var secs []backup.Section
	for _, name := range m.Header.Sections {
		if name != drop {
			secs = append(secs, backup.Section{Name: name, Items: items[name]})
		}
	}
	h := m.Header
	delete(h.Layouts, drop)
	if err := backup.WriteFile(out, func(w io.Writer) error {
		_, err := backup.Write(context.Background(), w, h, secs, backup.WriteOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// A backup from before blob sections still restores (records, accounts,
// keys), and the restore says the files must be copied by hand.
func TestRestoreBackupWithoutBlobs(t *testing.T) {
	ctx := context.Background()
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1 })
	ann := env.device("ann", "", nil)
	if err := ann.CreateWithID(ctx, client.Ref{Team: sdkTeam, Collection: "people", ID: "p1"}, sdkPerson("Edna")); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	dir := t.TempDir()
	full, old := filepath.Join(dir, "full.dsbak"), filepath.Join(dir, "old.dsbak")
	if err := backup.WriteFile(full, func(w io.Writer) error { _, err := env.srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}
	withoutSection(t, full, old, "blobs")
	var log bytes.Buffer
	res, err := restore.Run(ctx, restore.Options{In: old, Data: filepath.Join(dir, "r"), Log: &log})
	if err != nil {
		t.Fatalf("restore of a backup without blobs: %v\n%s", err, log.String())
	}
	if _, ok := res.Manifest.Section("blobs"); ok || !strings.Contains(log.String(), "no attachment files") {
		t.Fatalf("restore log:\n%s", log.String())
	}
}

// On a server whose stores are encrypted at rest, attachment files are
// too: no byte run of an uploaded photo is in the data directory, the
// photo still downloads and verifies, and a backup restored with a new
// key (key rotation) re-encrypts it and serves it.
func TestAttachmentsEncryptedAtRest(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{0x5a}, 32)
	var cfg *server.Config
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate, c.EncryptionKey = -1, key; cfg = c })
	base := *cfg
	var sw switchProxy
	sw.point(t, env.http.Listener.Addr().String())
	front := httptest.NewServer(&sw)
	t.Cleanup(front.Close)
	env.url = front.URL
	ann := env.device("ann", "", nil)
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-enc"}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": "p-enc", "contact_type": "home_visit"}); err != nil {
		t.Fatal(err)
	}
	photo := make([]byte, 1<<20+3)
	rand.Read(photo)
	copy(photo, []byte{0xff, 0xd8, 0xff, 0xe0})
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo), "enc.jpg")
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 1 {
		t.Fatalf("upload %d %v", n, err)
	}
	markers := []string{string(photo[4096 : 4096+48]), string(photo[700_000 : 700_000+48])}
	for _, m := range markers {
		if files, err := rawgrep.Files(base.DataDir, m); err != nil || len(files) != 0 {
			t.Fatalf("photo bytes in the clear in the encrypted data directory: %v %v", files, err)
		}
	}
	if err := env.device("bea", "", nil).FetchAttachment(ctx, visit, a); err != nil {
		t.Fatalf("download from the encrypted store: %v", err)
	}

	bk := filepath.Join(t.TempDir(), "enc.dsbak")
	if err := backup.WriteFile(bk, func(w io.Writer) error { _, err := env.srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}
	newKey := bytes.Repeat([]byte{0xa5}, 32)
	data := filepath.Join(t.TempDir(), "rotated")
	var log bytes.Buffer
	if _, err := restore.Run(ctx, restore.Options{In: bk, Data: data, Key: newKey, Log: &log}); err != nil {
		t.Fatalf("restore with a new key: %v\n%s", err, log.String())
	}
	for _, m := range markers {
		if files, _ := rawgrep.Files(data, m); len(files) != 0 {
			t.Fatalf("photo bytes in the clear after the restore: %v", files)
		}
	}
	rcfg := base
	rcfg.DataDir, rcfg.EncryptionKey = data, newKey
	srv2, err := server.New(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	hs2 := httptest.NewServer(openAPIChecked(t, srv2.Handler()))
	t.Cleanup(func() { hs2.Close(); srv2.Shutdown(context.Background()) })
	sw.point(t, hs2.Listener.Addr().String())
	cal := env.device("cal", "", nil)
	if err := cal.FetchAttachment(ctx, visit, a); err != nil {
		t.Fatalf("download after the key rotation: %v", err)
	}
	if b, _ := cal.ReadAttachment(ctx, sdkTeam, a.SHA256); !bytes.Equal(b, photo) {
		t.Fatal("photo differs after the key rotation")
	}
}

// A tablet that attached a photo before hearing that its person was
// erased cannot put it on the server: the upload is refused
// (blob_record_erased) before any byte is stored, and the tablet drops
// its copy instead of retrying for ever.
func TestAttachmentForErasedRecordRefused(t *testing.T) {
	ctx := context.Background()
	var dataDir string
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1; dataDir = c.DataDir })
	if _, err := env.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "ada", Name: "ada", Password: "ada-password", Role: api.RoleAdmin, Teams: []string{sdkTeam}}); err != nil {
		t.Fatal(err)
	}
	ann := env.device("ann", "", nil)
	person := client.Ref{Team: sdkTeam, Collection: "people", ID: "p-erased"}
	visit := client.Ref{Team: sdkTeam, Collection: "contacts", ID: "c-erased"}
	if err := ann.CreateWithID(ctx, person, sdkPerson("Edna")); err != nil {
		t.Fatal(err)
	}
	if err := ann.CreateWithID(ctx, visit, map[string]any{"person_id": person.ID, "contact_type": "home_visit"}); err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	photo := make([]byte, 300_000)
	rand.Read(photo)
	copy(photo, []byte{0xff, 0xd8, 0xff, 0xe0})
	a, err := ann.Attach(ctx, visit, "photos", bytes.NewReader(photo), "p.jpg")
	if err != nil {
		t.Fatal(err)
	}
	admin := sdkLogin(t, env, "ada", "ada-password")
	var rep server.ErasureReport
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", map[string]any{"team": sdkTeam, "collection": "people", "id": person.ID, "cascade": true}, &rep); st != http.StatusOK {
		t.Fatalf("erasure: %d", st)
	}
	// Upload before the next sync (which would purge the record).
	if n, err := ann.UploadAttachments(ctx); err != nil || n != 0 {
		t.Fatalf("upload for an erased record: %d %v, want 0 and no error", n, err)
	}
	if files, err := rawgrep.Files(dataDir, string(photo[100_000:100_064])); err != nil || len(files) != 0 {
		t.Fatalf("the erased record's photo is on the server's disk: %v %v", files, err)
	}
	if _, err := ann.ReadAttachment(ctx, sdkTeam, a.SHA256); !errors.Is(err, client.ErrAttachmentNotLocal) {
		t.Fatalf("the tablet kept the photo: %v", err)
	}
	if s := ann.Status(); s.UploadsPending != 0 || s.UploadBytesSent != 0 {
		t.Fatalf("status %+v", s)
	}
}
