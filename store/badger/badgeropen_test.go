package badger

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/doorstep-health/doorstep/store"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestOpenAfterEmptyMemFile: a kill can leave a zero-length .mem file
// (dgraph-io/badger#2207); the store must still open, with its data.
func TestOpenAfterEmptyMemFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir, Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, func(txn store.Tx) error { return txn.Set([]byte("x/kept"), []byte("yes")) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "00042.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir, Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatalf("open after an empty .mem file: %v", err)
	}
	defer s.Close()
	if err := s.View(ctx, func(txn store.Tx) error { _, err := txn.Get([]byte("x/kept")); return err }); err != nil {
		t.Fatalf("data before the crash: %v", err)
	}
}
