package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
)

// TestOpenAfterEmptyMemFile: a kill can leave a zero-length .mem file
// (dgraph-io/badger#2207); the store must still open, with its data.
func TestOpenAfterEmptyMemFile(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), Options{Dir: dir, Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DB().Update(func(txn *badger.Txn) error { return txn.Set([]byte("x/kept"), []byte("yes")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "00042.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(context.Background(), Options{Dir: dir, Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatalf("open after an empty .mem file: %v", err)
	}
	defer s.Close()
	if err := s.DB().View(func(txn *badger.Txn) error { _, err := txn.Get([]byte("x/kept")); return err }); err != nil {
		t.Fatalf("data before the crash: %v", err)
	}
}
