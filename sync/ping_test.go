package sync

import (
	"context"
	"errors"
	"testing"

	"github.com/doorstep-health/doorstep/store"
)

// TestPing: Ping writes its meta key durably (it survives a reopen) and
// fails once the engine is closed or the context is done.
func TestPing(t *testing.T) {
	wall := newFakeWall()
	dir := t.TempDir()
	e := openTestAt(t, dir, Options{Wall: wall.Now})
	before := uint64(wall.Now().UnixMilli())
	if err := e.Ping(bg); err != nil {
		t.Fatal(err)
	}
	after := uint64(wall.Now().UnixMilli())
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if err := e.Ping(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ping with a done context: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Ping(bg); !errors.Is(err, ErrClosed) {
		t.Fatalf("ping after close: %v", err)
	}
	e2 := openTestAt(t, dir, Options{Wall: wall.Now})
	var got uint64
	err := e2.kv.View(context.Background(), func(txn store.Tx) (err error) {
		got, err = store.GetU64Key(txn, store.KeyPing)
		return err
	})
	if err != nil || got <= before || got >= after {
		t.Fatalf("ping key after reopen: %d, want between %d and %d (%v)", got, before, after, err)
	}
}
