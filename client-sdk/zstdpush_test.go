package client

import (
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
)

// TestZstdWordStored: a stored reply keeps the server's word on zstd
// requests (m/zstdpush) for the next Open; a replica without the key (its
// last reply stored by a build before it, layout 3) opens gzipping, and
// keeps the word from its next reply on.
func TestZstdWordStored(t *testing.T) {
	dir := t.TempDir()
	r := openTest(t, dir, nil)
	store := func(r *Replica, zstdOK bool) {
		t.Helper()
		r.zstdRequests.Store(zstdOK)
		if _, err := r.storeReply(nil, &api.SyncResponse{Cursor: []byte("c1")}); err != nil {
			t.Fatal(err)
		}
	}
	reopen := func() *Replica {
		t.Helper()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		return openTest(t, dir, nil)
	}
	if r.zstdRequests.Load() {
		t.Fatal("a new replica starts with zstd requests")
	}
	store(r, true)
	if r = reopen(); !r.zstdRequests.Load() {
		t.Fatal("reopened: the stored word on zstd was lost")
	}
	store(r, false)
	if r = reopen(); r.zstdRequests.Load() {
		t.Fatal("reopened: zstd though the last reply did not name it")
	}
	// As a build before m/zstdpush left it.
	store(r, true)
	if err := r.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyZstd) }); err != nil {
		t.Fatal(err)
	}
	if r = reopen(); r.zstdRequests.Load() {
		t.Fatal("a replica without m/zstdpush opens with zstd requests")
	}
	store(r, true)
	if r = reopen(); !r.zstdRequests.Load() {
		t.Fatal("the word was not stored after the upgrade")
	}
}
