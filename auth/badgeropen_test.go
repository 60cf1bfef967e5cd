package auth

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/bcrypt"
)

// TestOpenAfterEmptyMemFile: a kill can leave a zero-length .mem file
// (dgraph-io/badger#2207); the auth store must still open, with its data.
func TestOpenAfterEmptyMemFile(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "auth")
	s, err := Open(ctx, dir, Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTeam(ctx, "wigan", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "00042.mem"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, dir, Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatalf("open after an empty .mem file: %v", err)
	}
	defer s.Close()
	teams, err := s.Teams(ctx)
	if err != nil || len(teams) != 1 {
		t.Fatalf("teams after reopen: %v, %v", teams, err)
	}
}

// TestLayoutVersion: the auth store carries its layout version; one written
// before the version key existed is migrated, one from a newer build is
// refused.
func TestLayoutVersion(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "auth")
	s, err := Open(ctx, dir, Config{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateTeam(ctx, "wigan", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	read := func() []byte {
		var v []byte
		err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get([]byte(kLayout))
			if err != nil {
				return err
			}
			v, err = item.ValueCopy(nil)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := read(); !bytes.Equal(v, []byte{0, 0, 0, byte(CurrentLayout)}) {
		t.Fatalf("layout %x", v)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete([]byte(kLayout)) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, dir, Config{BcryptCost: bcrypt.MinCost}); err != nil {
		t.Fatalf("open an unversioned auth store: %v", err)
	}
	if v := read(); !bytes.Equal(v, []byte{0, 0, 0, byte(CurrentLayout)}) {
		t.Fatalf("layout after migrating %x", v)
	}
	if teams, err := s.Teams(ctx); err != nil || len(teams) != 1 {
		t.Fatalf("teams after migrating: %v %v", teams, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(kLayout), []byte{0, 0, 0, 99}) }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(ctx, dir, Config{BcryptCost: bcrypt.MinCost}); !errors.Is(err, ErrNewerLayout) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("open a newer auth store: %v", err)
	}
}
