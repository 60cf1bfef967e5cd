package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/badger"
	"github.com/doorstep-health/doorstep/store/memory"
)

// TestVersionAndMigration runs store.Migrate over each backend: a new store
// is stamped, an older layout runs its migration once, a newer one is
// refused.
func TestVersionAndMigration(t *testing.T) {
	for _, b := range []struct {
		name string
		open func(t *testing.T) store.KV
	}{
		{"memory", func(*testing.T) store.KV { return memory.New(memory.Options{}) }},
		{"badger", func(t *testing.T) store.KV {
			kv, err := badger.Open(badger.Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true})
			if err != nil {
				t.Fatal(err)
			}
			return kv
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			kv := b.open(t)
			defer kv.Close()
			if err := store.Migrate(ctx, kv, quiet()); err != nil {
				t.Fatal(err)
			}
			// Pretend the store was written by layout 0 and register a migration.
			if err := kv.Update(ctx, func(txn store.Tx) error { return txn.Set(store.KeyVersion, store.VersionBytes(0)) }); err != nil {
				t.Fatal(err)
			}
			ran := 0
			store.Migrations[0] = func(txn store.Tx) error { ran++; return txn.Set([]byte("m/migrated"), nil) }
			defer delete(store.Migrations, 0)
			if err := store.Migrate(ctx, kv, quiet()); err != nil {
				t.Fatal(err)
			}
			if err := store.Migrate(ctx, kv, quiet()); err != nil {
				t.Fatal(err)
			}
			if ran != 1 {
				t.Fatalf("migration ran %d times, want 1", ran)
			}
			err := kv.View(ctx, func(txn store.Tx) error {
				if _, err := txn.Get([]byte("m/migrated")); err != nil {
					return err
				}
				v, err := txn.Get(store.KeyVersion)
				if err != nil {
					return err
				}
				if !bytes.Equal(v, store.VersionBytes(store.CurrentVersion)) {
					t.Fatalf("version after migration %v", v)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// A newer layout refuses to open.
			if err := kv.Update(ctx, func(txn store.Tx) error {
				return txn.Set(store.KeyVersion, store.VersionBytes(store.CurrentVersion+1))
			}); err != nil {
				t.Fatal(err)
			}
			if err := store.Migrate(ctx, kv, quiet()); !errors.Is(err, store.ErrNewerVersion) {
				t.Fatalf("migrate of a newer layout: %v", err)
			}
		})
	}
}
