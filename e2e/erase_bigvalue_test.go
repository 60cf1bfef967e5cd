package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/backup"
	client "github.com/doorstep-health/doorstep/client-sdk"
	"github.com/doorstep-health/doorstep/internal/rawgrep"
	"github.com/doorstep-health/doorstep/internal/restore"
	"github.com/doorstep-health/doorstep/server"
)

// TestEraseBigLogEntry: a tablet's first sync of 150 people with long case
// notes is one log entry of over 1 MiB (past Badger's value threshold).
// Erasing one of them reports scrubbed and leaves their notes in no file
// of the data directory; and a backup taken before the erasure, restored
// with the erasure journal, holds them in no file either (the restore
// re-applies the erasure) and keeps the kept people's big log entry in
// chunks, not in Badger's value log.
func TestEraseBigLogEntry(t *testing.T) {
	ctx := context.Background()
	var cfg *server.Config
	env := newSDKEnv(t, nil, func(c *server.Config) { c.DeviceRate = -1; cfg = c })
	base := *cfg
	if _, err := env.srv.Auth().CreateUser(ctx, auth.NewUser{Username: "ada", Name: "ada", Password: "ada-password", Role: api.RoleAdmin, Teams: []string{sdkTeam}}); err != nil {
		t.Fatal(err)
	}
	ann := env.device("ann", "", nil)
	const secret = "Zebedee Quartermaine fell on the stairs"
	err := ann.Batch(ctx, func(b *client.Batch) error {
		for i := range 150 {
			p := sdkPerson(fmt.Sprint("P", i))
			p["case_notes"] = fmt.Sprintf("%03d ", i) + strings.Repeat("routine visit, all well. ", 390)
			if i == 7 {
				p["case_notes"] = secret + strings.Repeat(" and is recovering.", 500)
			}
			if err := b.CreateWithID(client.Ref{Team: sdkTeam, Collection: "people", ID: fmt.Sprint("p", i)}, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	// A second big push, untouched by the erasure.
	err = ann.Batch(ctx, func(b *client.Batch) error {
		for i := range 150 {
			p := sdkPerson(fmt.Sprint("Q", i))
			p["case_notes"] = fmt.Sprintf("second batch %03d ", i) + strings.Repeat("routine visit, all well. ", 390)
			if err := b.CreateWithID(client.Ref{Team: sdkTeam, Collection: "people", ID: fmt.Sprint("q", i)}, p); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sdkMustSync(t, ann)
	bk := filepath.Join(t.TempDir(), "b.dsbak")
	if err := backup.WriteFile(bk, func(w io.Writer) error { _, err := env.srv.WriteBackup(ctx, w, nil); return err }); err != nil {
		t.Fatal(err)
	}
	if f, _ := rawgrep.Files(base.DataDir, secret); len(f) == 0 {
		t.Fatal("secret not on disk before the erasure: the test proves nothing")
	}
	admin := sdkLogin(t, env, "ada", "ada-password")
	var rep server.ErasureReport
	if st := sdkPostJSON(t, env, admin, "/v1/admin/erasures", map[string]any{"team": sdkTeam, "collection": "people", "id": "p7"}, &rep); st != http.StatusOK || !rep.Scrubbed {
		t.Fatalf("erasure: %d %+v", st, rep)
	}
	if f, err := rawgrep.Files(filepath.Join(base.DataDir, "records"), secret); err != nil || len(f) > 0 {
		t.Errorf("secret still in %v after the erasure reported scrubbed (%v)", f, err)
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
		t.Fatalf("the restore re-applied no erasure\n%s", log.String())
	}
	if f, err := rawgrep.Files(data, secret); err != nil || len(f) > 0 {
		t.Errorf("secret in the restored %v after the erasure was re-applied (%v)", f, err)
	}
	// The restore wrote the big log entry in chunks (tables), not into a
	// value log file that a later erasure's scrub would not rewrite.
	f, _ := rawgrep.Files(data, "second batch 149 routine visit")
	if len(f) == 0 {
		t.Error("a kept person's notes are not in the restored store")
	}
	for _, name := range f {
		if strings.HasSuffix(name, ".vlog") {
			t.Errorf("restored big value in the value log: %s", name)
		}
	}
}
