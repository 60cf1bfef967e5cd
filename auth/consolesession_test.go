package auth

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"github.com/doorstep-health/doorstep/store/memory"
	"golang.org/x/crypto/bcrypt"
)

func TestConsoleSessions(t *testing.T) { eachBackend(t, testConsoleSessions) }

// consoleClaims logs ann in on a new device and returns the verified
// claims, as the console does at sign-in.
func consoleClaims(t *testing.T, s *Service) *Claims {
	t.Helper()
	tr, err := s.Login(context.Background(), "ann", "correct horse", crdt.NewReplicaID().String(), "console")
	if err != nil {
		t.Fatal(err)
	}
	return mustVerify(t, s, tr.AccessToken)
}

// testConsoleSessions: a session is stored under the hash of its token
// (never the token), read back with its claims usable, touched, ended one
// at a time or all of a user's, bounded per user, ended by disabling the
// user, and left out of backups; visits fill a new session's PrevVisit.
func testConsoleSessions(t *testing.T) {
	s, _ := openTest(t, nil)
	u := seed(t, s)
	ctx := context.Background()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	if err := s.RecordConsoleVisit(ctx, u.ID, "wigan", now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	cl := consoleClaims(t, s)
	tok, cs, err := s.CreateConsoleSession(ctx, ConsoleSession{Claims: cl, UserID: u.ID, Name: "Ann", CSRF: "csrf-1", Created: now}, 12*time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !cs.PrevVisit["wigan"].Equal(now.Add(-time.Hour)) || !cs.Expires.Equal(now.Add(12*time.Hour)) {
		t.Fatalf("created: %+v", cs)
	}
	got, err := s.ConsoleSession(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != u.ID || got.Name != "Ann" || got.CSRF != "csrf-1" || !got.Created.Equal(now) || !got.Seen.Equal(now) ||
		!got.PrevVisit["wigan"].Equal(now.Add(-time.Hour)) || got.Claims.Replica() != cl.Replica() || got.Claims.Gen != cl.Gen {
		t.Fatalf("read back: %+v", got)
	}
	// The claims read back pass the per-request checks.
	if err := s.CheckDevice(ctx, got.Claims); err != nil {
		t.Fatal(err)
	}
	if role, teams, err := s.Narrow(ctx, got.Claims); err != nil || role != cl.Role || len(teams) != 1 {
		t.Fatalf("narrow: %s %v %v", role, teams, err)
	}
	if _, err := s.ConsoleSession(ctx, tok+"x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another token: %v", err)
	}

	// The token is in no key or value; its hash is.
	txn, err := s.kv.Begin(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	it := txn.Iterate(store.IterOptions{})
	keys := 0
	for it.Rewind(); it.Valid(); it.Next() {
		v, _ := it.Value()
		if bytes.Contains(it.Key(), []byte(tok)) || bytes.Contains(v, []byte(tok)) {
			t.Fatalf("token stored under %q", it.Key())
		}
		if bytes.Equal(it.Key(), []byte(consoleKey(tok))) {
			keys++
		}
	}
	it.Close()
	txn.Discard()
	if keys != 1 {
		t.Fatalf("session key found %d times", keys)
	}

	// Touch: later moves seen on, earlier is ignored.
	if err := s.TouchConsoleSession(ctx, tok, now.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchConsoleSession(ctx, tok, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ConsoleSession(ctx, tok); !got.Seen.Equal(now.Add(5 * time.Minute)) {
		t.Fatalf("seen after touches: %v", got.Seen)
	}

	// Visits: a second within a minute is not written; a later one is.
	if err := s.RecordConsoleVisit(ctx, u.ID, "wigan", now); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordConsoleVisit(ctx, u.ID, "wigan", now.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, cs2, err := s.CreateConsoleSession(ctx, ConsoleSession{Claims: consoleClaims(t, s), UserID: u.ID, CSRF: "c2", Created: now.Add(time.Second)}, 12*time.Hour, 3)
	if err != nil || !cs2.PrevVisit["wigan"].Equal(now) {
		t.Fatalf("prev visit: %+v %v", cs2.PrevVisit, err)
	}

	// Bound: a fourth session ends the oldest (tok).
	var toks []string
	for i := range 2 {
		tk, _, err := s.CreateConsoleSession(ctx, ConsoleSession{Claims: consoleClaims(t, s), UserID: u.ID, CSRF: "c", Created: now.Add(time.Duration(2+i) * time.Second)}, 12*time.Hour, 3)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tk)
	}
	if _, err := s.ConsoleSession(ctx, tok); !errors.Is(err, ErrNotFound) {
		t.Fatalf("oldest session past the bound: %v", err)
	}
	if n, err := s.ConsoleSessionCount(ctx, u.ID); err != nil || n != 3 {
		t.Fatalf("sessions: %d %v", n, err)
	}
	if err := s.TouchConsoleSession(ctx, tok, now.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch an ended session: %v", err)
	}

	// Backups leave console keys out, and keep everything else.
	btxn, err := s.BackupTxn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, backed := 0, 0
	for _, tx := range []store.Tx{s.kvTxn(t), btxn} {
		it := tx.Iterate(store.IterOptions{})
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			if tx == btxn && !backedUp(it.Key()) {
				t.Fatalf("backup holds %q", it.Key())
			}
			n++
		}
		it.Close()
		if tx == btxn {
			backed = n
		} else {
			all = n
		}
	}
	btxn.Discard()
	// 3 sessions × (record + index) + 1 visit.
	if all-backed != 7 {
		t.Fatalf("backup left out %d keys of %d, want 7", all-backed, all)
	}

	// Sign out one; end the rest by disabling the user.
	if err := s.DeleteConsoleSession(ctx, toks[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteConsoleSession(ctx, toks[0]); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	if n, _ := s.ConsoleSessionCount(ctx, u.ID); n != 2 {
		t.Fatalf("after sign-out: %d", n)
	}
	if _, err := s.SetDisabled(WithActor(ctx, ServiceActor("test")), u.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsoleSession(ctx, toks[1]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after disable: %v", err)
	}
	if n, _ := s.ConsoleSessionCount(ctx, u.ID); n != 0 {
		t.Fatalf("after disable: %d", n)
	}
}

// kvTxn is a read-only transaction over s's store, discarded at cleanup.
func (s *Service) kvTxn(t *testing.T) store.Txn {
	t.Helper()
	txn, err := s.kv.Begin(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(txn.Discard)
	return txn
}

// TestConsoleSessionExpires: a session is gone from the store once its
// absolute lifetime has passed (the key's TTL), and the per-user index
// forgets it at the next sign-in.
func TestConsoleSessionExpires(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
	kv := memory.New(memory.Options{Now: clk.Now})
	s, err := New(context.Background(), kv, Config{BcryptCost: bcrypt.MinCost, KeyDir: filepath.Join(t.TempDir(), "keys"), Now: clk.Now, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := seed(t, s)
	ctx := context.Background()
	tok, _, err := s.CreateConsoleSession(ctx, ConsoleSession{Claims: consoleClaims(t, s), UserID: u.ID, CSRF: "c", Created: clk.Now()}, time.Hour, 5)
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(59 * time.Minute)
	if _, err := s.ConsoleSession(ctx, tok); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	// A touch keeps the TTL at the absolute expiry, not later.
	if err := s.TouchConsoleSession(ctx, tok, clk.Now()); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	if _, err := s.ConsoleSession(ctx, tok); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after expiry: %v", err)
	}
	if _, _, err := s.CreateConsoleSession(ctx, ConsoleSession{Claims: consoleClaims(t, s), UserID: u.ID, CSRF: "c", Created: clk.Now()}, time.Hour, 5); err != nil {
		t.Fatal(err)
	}
	txn := s.kvTxn(t)
	es, err := userConsoleSessions(txn, u.ID, false)
	if err != nil || len(es) != 1 {
		t.Fatalf("index after expiry and a new sign-in: %v %v", es, err)
	}
}
