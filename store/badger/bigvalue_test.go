package badger

import (
	"bytes"
	"context"
	"strings"
	"testing"

	dgbadger "github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/internal/rawgrep"
	"github.com/doorstep-health/doorstep/store"
)

// A value over Badger's value threshold (1 MiB) never reaches the value
// log: after it is deleted and its key dropped (what an erasure's scrub
// does), no file of the directory holds it, in the memtable's log or in
// tables after a reopen. Before chunk form 1 it stayed in 000001.vlog.
func TestBigValueDroppedFromDisk(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		dir := t.TempDir()
		opts := Options{Dir: dir, Logger: quiet(), SmallMemory: true}
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		const secret = "Zebedee Quartermaine"
		big := []byte(strings.Repeat(secret+" visited on Tuesday. ", 40000)) // 1.6 MB
		err = s.Update(context.Background(), func(tx store.Tx) error {
			if err := tx.Set([]byte("r/erased"), big); err != nil {
				return err
			}
			return tx.Set([]byte("r/kept"), []byte("Neighbour Norah"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if reopen {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = Open(opts); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.View(context.Background(), func(tx store.Tx) error {
			v, err := tx.Get([]byte("r/erased"))
			if err == nil && !bytes.Equal(v, big) {
				t.Errorf("read back %d bytes, want %d", len(v), len(big))
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if _, vlog := s.db.Size(); vlog > 0 {
			// Size is refreshed about once a minute; a positive figure
			// is still worth a look.
			t.Logf("value log %d bytes", vlog)
		}
		if f, _ := rawgrep.Files(dir, secret); len(f) == 0 {
			t.Fatal("secret not on disk before the drop: the test proves nothing")
		}
		if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Delete([]byte("r/erased")) }); err != nil {
			t.Fatal(err)
		}
		if err := s.DropPrefix(context.Background(), []byte("r/erased")); err != nil {
			t.Fatal(err)
		}
		if f, err := rawgrep.Files(dir, secret); err != nil || len(f) > 0 {
			t.Errorf("reopen=%v: secret still in %v after delete and DropPrefix (%v)", reopen, f, err)
		}
		if f, _ := rawgrep.Files(dir, "Neighbour Norah"); len(f) == 0 {
			t.Error("the kept key is gone from disk")
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// A value written before chunk form 1 (a plain value in the value log,
// no user meta) still reads, and an overwrite stores it in chunks.
func TestPlainBigValueStillReads(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), Logger: quiet(), SmallMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := bytes.Repeat([]byte("legacy "), 200<<10) // 1.4 MiB, into the value log
	if err := s.db.Update(func(txn *dgbadgerTxn) error { return txn.Set([]byte("r/old"), old) }); err != nil {
		t.Fatal(err)
	}
	get := func() []byte {
		var v []byte
		if err := s.View(context.Background(), func(tx store.Tx) error { v, err = tx.Get([]byte("r/old")); return err }); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if !bytes.Equal(get(), old) {
		t.Fatal("plain big value not read back")
	}
	nu := bytes.Repeat([]byte("chunked "), 200<<10)
	if err := s.Update(context.Background(), func(tx store.Tx) error { return tx.Set([]byte("r/old"), nu) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(get(), nu) || s.chunked["r/old"] != 4 {
		t.Fatalf("overwrite: chunks %d", s.chunked["r/old"])
	}
}

type dgbadgerTxn = dgbadger.Txn
