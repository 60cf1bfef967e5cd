package client

import (
	"context"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestLayoutVersion: a replica carries its layout version; one written
// before the version key existed is migrated on Open, and one written by a
// newer build is refused.
func TestLayoutVersion(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := r.Create(ctx, Ref{Team: "wigan", Collection: "people"}, map[string]any{"name": "A"})
	if err != nil {
		t.Fatal(err)
	}
	version := func() []byte {
		var v []byte
		if err := r.view(func(txn *badger.Txn) error { v, err = get(txn, keyLayout); return err }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := version(); u32(v) != CurrentLayout {
		t.Fatalf("new replica layout %x, want %d", v, CurrentLayout)
	}
	// As written before versioning: no layout key.
	if err := r.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyLayout) }); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err = Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true})
	if err != nil {
		t.Fatalf("open an unversioned replica: %v", err)
	}
	if v := version(); u32(v) != CurrentLayout {
		t.Fatalf("layout after migrating %x", v)
	}
	if _, err := r.Get(ctx, ref); err != nil {
		t.Fatalf("record after migrating: %v", err)
	}
	// Written by a newer build.
	if err := r.db.Update(func(txn *badger.Txn) error { return txn.Set(keyLayout, []byte{0, 0, 0, 99}) }); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if r2, err := Open(ctx, Options{Dir: dir, EncryptionKey: testKey, NoValidation: true}); !errors.Is(err, ErrNewerLayout) {
		if err == nil {
			r2.Close()
		}
		t.Fatalf("open a newer replica: %v, want ErrNewerLayout", err)
	}
}

func u32(b []byte) uint32 {
	if len(b) != 4 {
		return 0
	}
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
