package auth

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/doorstep-health/doorstep/internal/badgeropen"
	"github.com/doorstep-health/doorstep/store"
)

// kvBackends are the stores the auth tests run over, each opened empty in
// a temp dir and closed at the end of the test.
func kvBackends() map[string]func(t *testing.T) store.KV {
	return map[string]func(t *testing.T) store.KV{
		"badger": func(t *testing.T) store.KV {
			db, err := badgeropen.Open(BadgerOptions(filepath.Join(t.TempDir(), "auth"), nil), quietLogger())
			if err != nil {
				t.Fatal(err)
			}
			kv := &badgerKV{db: db}
			t.Cleanup(func() { kv.Close() })
			return kv
		},
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
