package badger

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/store"
)

func openOverlapTest(t *testing.T) *Store {
	t.Helper()
	kv, err := Open(Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	// The store's first CommitOverlapped declines: its transactions keep
	// their writes for a follower only from then on.
	txn := begin(t, kv)
	if err := txn.Set([]byte("first"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.(store.Overlapper).CommitOverlapped(func(error) { t.Error("callback of a declined commit ran") }); !errors.Is(err, store.ErrUnsupported) {
		t.Fatalf("first CommitOverlapped = %v, want ErrUnsupported", err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	return kv
}

func begin(t *testing.T, kv *Store) store.Txn {
	t.Helper()
	txn, err := kv.Begin(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	return txn
}

func readKey(t *testing.T, kv *Store, key string) (string, bool) {
	t.Helper()
	var v []byte
	err := kv.View(context.Background(), func(tx store.Tx) (err error) { v, err = tx.Get([]byte(key)); return err })
	if errors.Is(err, store.ErrNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(v), true
}

// TestOverlappedCommitFails: when the commit ahead fails, its callback
// gets the error, the transaction built behind it cannot commit
// (ErrPrevFailed) and nothing of either is stored; the store takes the
// next writer as usual.
func TestOverlappedCommitFails(t *testing.T) {
	kv := openOverlapTest(t)
	boom := errors.New("injected write failure")
	kv.FailCommits(func() error { return boom })
	n := begin(t, kv)
	if err := n.Set([]byte("n"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	next, err := n.(store.Overlapper).CommitOverlapped(func(err error) { got <- err })
	if err != nil {
		t.Fatal(err)
	}
	kv.FailCommits(nil)
	// Built on n's writes, which it reads through the overlay.
	if v, err := next.Get([]byte("n")); err != nil || string(v) != "1" {
		t.Fatalf("next reads n = %q, %v", v, err)
	}
	if err := next.Set([]byte("next"), []byte("2")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, boom) {
		t.Fatalf("callback got %v, want the injected failure", err)
	}
	if err := next.Commit(); !errors.Is(err, store.ErrPrevFailed) {
		t.Fatalf("next.Commit = %v, want ErrPrevFailed", err)
	}
	for _, k := range []string{"n", "next"} {
		if v, ok := readKey(t, kv, k); ok {
			t.Errorf("%s = %q stored after the failed commit", k, v)
		}
	}
	again := begin(t, kv)
	if err := again.Set([]byte("again"), []byte("3")); err != nil {
		t.Fatal(err)
	}
	if err := again.Commit(); err != nil {
		t.Fatal(err)
	}
	if v, _ := readKey(t, kv, "again"); v != "3" {
		t.Fatalf("again = %q after a later commit", v)
	}
}

// TestOverlappedDeclines: CommitOverlapped commits nothing and returns
// ErrUnsupported for a transaction that wrote a value in chunks, and
// while another writer waits for the store (which then gets it once the
// serial commit ends, not after a chain of overlapped ones).
func TestOverlappedDeclines(t *testing.T) {
	kv := openOverlapTest(t)
	big := begin(t, kv)
	if err := big.Set([]byte("big"), []byte(strings.Repeat("x", ChunkSize))); err != nil {
		t.Fatal(err)
	}
	if _, err := big.(store.Overlapper).CommitOverlapped(func(error) { t.Error("callback of a declined commit ran") }); !errors.Is(err, store.ErrUnsupported) {
		t.Fatalf("CommitOverlapped with a chunked value = %v, want ErrUnsupported", err)
	}
	if err := big.Commit(); err != nil {
		t.Fatal(err)
	}
	if v, _ := readKey(t, kv, "big"); len(v) != ChunkSize {
		t.Fatalf("big value of %d bytes after Commit", len(v))
	}

	txn := begin(t, kv)
	if err := txn.Set([]byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	var waited atomic.Bool
	updated := make(chan error, 1)
	go func() {
		updated <- kv.Update(context.Background(), func(tx store.Tx) error {
			waited.Store(true)
			return tx.Set([]byte("ping"), []byte("1"))
		})
	}()
	for kv.waiting.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := txn.(store.Overlapper).CommitOverlapped(func(error) { t.Error("callback of a declined commit ran") }); !errors.Is(err, store.ErrUnsupported) {
		t.Fatalf("CommitOverlapped with a writer waiting = %v, want ErrUnsupported", err)
	}
	if waited.Load() {
		t.Fatal("the waiting writer ran inside the open transaction")
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-updated; err != nil {
		t.Fatal(err)
	}
}
