package layout

import (
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func openDB(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithMemTableSize(4 << 20).WithValueThreshold(1 << 10))
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestMigrate(t *testing.T) {
	key := []byte("m/layout")
	dir := t.TempDir()
	db := openDB(t, dir)
	// A new store is stamped with the current version; nothing runs.
	ran := 0
	spec := Spec{Key: key, Current: 2, Migrations: map[uint32]Migration{
		0: func(txn *badger.Txn) error { ran++; return txn.Set([]byte("x/zero"), nil) },
		1: func(txn *badger.Txn) error { ran++; return txn.Set([]byte("x/one"), nil) },
	}}
	if v, err := Migrate(db, spec); err != nil || v != 2 || ran != 0 {
		t.Fatalf("new store: v=%d ran=%d err=%v", v, ran, err)
	}
	// A store with keys but no version is at 0 and goes through both.
	if err := db.Update(func(txn *badger.Txn) error {
		if err := txn.Delete(key); err != nil {
			return err
		}
		return txn.Set([]byte("r/old"), []byte("data"))
	}); err != nil {
		t.Fatal(err)
	}
	if v, err := Migrate(db, spec); err != nil || v != 0 || ran != 2 {
		t.Fatalf("unversioned store: from=%d ran=%d err=%v", v, ran, err)
	}
	if v, err := read(db, key); err != nil || v != 2 {
		t.Fatalf("version after migrating: %d %v", v, err)
	}
	// A newer store is refused and left alone.
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, bytesOf(3)) }); err != nil {
		t.Fatal(err)
	}
	if _, err := Migrate(db, spec); !errors.Is(err, ErrNewer) {
		t.Fatalf("newer store: %v", err)
	}
	// A failing migration leaves the version where it was.
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, bytesOf(1)) }); err != nil {
		t.Fatal(err)
	}
	spec.Migrations[1] = func(txn *badger.Txn) error { return errors.New("boom") }
	if _, err := Migrate(db, spec); err == nil {
		t.Fatal("failing migration succeeded")
	}
	if v, _ := read(db, key); v != 1 {
		t.Fatalf("version after a failed migration: %d", v)
	}
	db.Close()
}
