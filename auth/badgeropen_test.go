package auth

import (
	"context"
	"os"
	"path/filepath"
	"testing"

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
