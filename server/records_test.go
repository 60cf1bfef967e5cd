package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/memory"
	dsync "github.com/doorstep-health/doorstep/sync"
)

// TestRecordsStoreFromConfig: a records store the caller opened
// (Config.Records, as --store flags will do) is the one the engine writes,
// no Badger directory is created for it, and the server closes it; without
// one, Badger in DataDir/records is opened.
func TestRecordsStoreFromConfig(t *testing.T) {
	ctx := context.Background()
	kv := memory.New(memory.Options{})
	s := newTestServer(t, func(c *Config) { c.Records = kv })
	if _, err := os.Stat(filepath.Join(s.cfg.DataDir, "records")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("records dir with Config.Records set: %v", err)
	}
	c := dsync.Caller{User: "ann", Replica: crdt.NewReplicaID(), Teams: []string{"wigan"}}
	rec := crdt.NewRecord("wigan", "people", "p1")
	op := rec.Write(crdt.OpID{Time: crdt.MakeTimestamp(1, 0), Replica: c.Replica}, "given_name", crdt.MustValue("Ann"))
	if _, err := s.Engine().Push(ctx, c, []api.Change{{Seq: 1, Ops: []crdt.Op{op}}}); err != nil {
		t.Fatal(err)
	}
	if err := kv.View(ctx, func(txn store.Tx) error {
		_, err := txn.Get(store.RecordKey("wigan", "people", "p1"))
		return err
	}); err != nil {
		t.Fatalf("the push did not reach Config.Records: %v", err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := kv.View(ctx, func(store.Tx) error { return nil }); !errors.Is(err, memory.ErrClosed) {
		t.Fatalf("Config.Records after Shutdown: %v, want closed", err)
	}

	d := newTestServer(t, nil)
	if _, err := os.Stat(filepath.Join(d.cfg.DataDir, "records")); err != nil {
		t.Fatalf("default records store: %v", err)
	}
}
