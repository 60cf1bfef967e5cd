package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"golang.org/x/crypto/bcrypt"
)

func TestCheckPassword(t *testing.T) {
	for _, pw := range []string{"password", "12345678", "PASSWORD", "qwertyuiop", "short", "ann", "1234567890", string([]byte{0xff, 0xfe, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'})} {
		if err := CheckPassword("ann", pw); !errors.Is(err, ErrWeakPassword) {
			t.Errorf("%q accepted: %v", pw, err)
		}
	}
	if err := CheckPassword("annabelle1", "Annabelle1"); !errors.Is(err, ErrWeakPassword) {
		t.Errorf("username as password accepted: %v", err)
	}
	for _, pw := range []string{"correct horse battery", "doorstep-demo", "a fresh start 2026"} {
		if err := CheckPassword("ann", pw); err != nil {
			t.Errorf("%q refused: %v", pw, err)
		}
	}
	if n := len(commonSet); n < 3000 {
		t.Errorf("common password list holds %d entries", n)
	}
}

func testLockoutBackoff(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	s, _ := openTest(t, clk)
	s.cfg.LockoutThreshold, s.cfg.LockoutBase, s.cfg.LockoutMax = 3, time.Minute, 10*time.Minute
	ctx := context.Background()
	now := clk.Now()
	fail := func() time.Duration {
		t.Helper()
		d, err := s.countFailure(ctx, "ann", now)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	check := func(user string, at time.Time) time.Duration {
		t.Helper()
		d, err := s.checkLocked(ctx, user, at)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for i := 1; i <= 2; i++ {
		if d := fail(); d != 0 {
			t.Fatalf("failure %d locks for %v", i, d)
		}
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 10 * time.Minute, 10 * time.Minute}
	for i, w := range want {
		if d := fail(); d != w {
			t.Fatalf("failure %d locks for %v, want %v", i+3, d, w)
		}
	}
	if d := check("ann", now.Add(9*time.Minute)); d != time.Minute {
		t.Fatalf("check: %v", d)
	}
	if d := check("bea", now); d != 0 {
		t.Fatalf("bea locked: %v", d)
	}
	if err := s.update(ctx, func(txn store.Tx) error { return clearFailures(txn, "ann") }); err != nil {
		t.Fatal(err)
	}
	if d := check("ann", now); d != 0 {
		t.Fatalf("after reset: %v", d)
	}
	// A lock survives a restart (it was in memory once).
	for i := 0; i < 3; i++ {
		fail()
	}
	s = reopenTest(t, s)
	if d := check("ann", now); d != time.Minute {
		t.Fatalf("after a restart, locked for %v, want 1m", d)
	}
	// A quiet day forgives: after it, one failure does not lock again.
	now = now.Add(25 * time.Hour)
	if d := fail(); d != 0 {
		t.Fatalf("first failure after a quiet day locks for %v", d)
	}
}

// TestAuditOrderUnderConcurrency: entries appended from many goroutines
// get distinct, increasing seqs, and a reader paging by cursor sees every
// one exactly once.
func testAuditOrderUnderConcurrency(t *testing.T) {
	s, _ := openTest(t, nil)
	ctx := WithActor(context.Background(), Actor{UserID: "u1", Name: "Ann", Role: api.RoleAdmin, Teams: []string{"wigan"}})
	var wg gosync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if err := s.Audit(ctx, AuditEntry{Action: "record.read", Team: "wigan", TargetKind: "record", TargetID: fmt.Sprintf("people/p%d-%d", g, i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	var cursor, last uint64
	for {
		es, next, more, err := s.AuditLog(context.Background(), AuditQuery{After: cursor, Limit: 7, Scope: []string{"wigan"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Seq <= last || seen[e.TargetID] || e.ActorID != "u1" || e.ActorName != "Ann" {
				t.Fatalf("entry %+v after seq %d", e, last)
			}
			last, seen[e.TargetID] = e.Seq, true
		}
		if !more {
			break
		}
		cursor = next
	}
	if len(seen) != 200 {
		t.Fatalf("read %d entries of 200", len(seen))
	}
	// Another team's scope reads none; an empty scope reads none.
	for _, scope := range [][]string{{"ashton"}, {}} {
		if es, _, _, _ := s.AuditLog(context.Background(), AuditQuery{Scope: scope}); len(es) != 0 {
			t.Fatalf("scope %v reads %d entries", scope, len(es))
		}
	}
	// Bad entries are refused.
	for _, e := range []AuditEntry{{Action: "Bad Action"}, {Action: ""}, {Action: "x", Detail: map[string]string{"": "v"}}} {
		if err := s.Audit(ctx, e); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", e, err)
		}
	}
	// The position survives a reopen: seqs keep increasing.
	s2 := reopenTest(t, s)
	if err := s2.Audit(ctx, AuditEntry{Action: "record.read", Team: "wigan"}); err != nil {
		t.Fatal(err)
	}
	es, _, _, _ := s2.AuditLog(context.Background(), AuditQuery{After: last})
	if len(es) != 1 || es[0].Seq != last+1 {
		t.Fatalf("after reopen: %+v (last %d)", es, last)
	}
}

// TestMigrateDeviceIndex: a layout 1 store (no userdev/ index) gets its
// index at Open, so the device bound and Devices see old devices.
func testMigrateDeviceIndex(t *testing.T) {
	s, err := openWith(t, Config{BcryptCost: bcrypt.MinCost, MaxDevicesPerUser: 2})
	if err != nil {
		t.Fatal(err)
	}
	seed(t, s)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if _, err := s.Login(ctx, "ann", "correct horse", crdt.NewReplicaID().String(), ""); err != nil {
			t.Fatal(err)
		}
	}
	// Back to layout 1.
	err = s.kv.Update(ctx, func(txn store.Tx) error { return txn.Delete([]byte(kLayout)) })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.kv.DropPrefix(ctx, []byte(pUserDev)); err != nil {
		t.Fatal(err)
	}
	s = reopenTest(t, s)
	us, _ := s.Users(ctx)
	ds, err := s.Devices(ctx, us[0].ID)
	if err != nil || len(ds) != 2 {
		t.Fatalf("devices after migration: %d %v", len(ds), err)
	}
	if _, err := s.Login(ctx, "ann", "correct horse", crdt.NewReplicaID().String(), ""); !errors.Is(err, ErrTooManyDevices) {
		t.Fatalf("third device after migration: %v", err)
	}
}

// TestAuditReuseRevocation: a device revoked for refresh token reuse is a
// device change, recorded with the server as actor.
func testAuditReuseRevocation(t *testing.T) {
	s, _ := openTest(t, nil)
	u := seed(t, s)
	ctx := context.Background()
	dev := crdt.NewReplicaID()
	tr, err := s.Login(ctx, "ann", "correct horse", dev.String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(ctx, tr.RefreshToken, dev.String()); err != nil {
		t.Fatal(err)
	}
	s.cfg.ReuseGrace = -1
	if _, err := s.Refresh(ctx, tr.RefreshToken, dev.String()); !errors.Is(err, ErrRefreshReused) {
		t.Fatalf("reuse: %v", err)
	}
	es, _, _, err := s.AuditLog(ctx, AuditQuery{Action: ActionDeviceRevoke, Scope: []string{"wigan"}})
	if err != nil || len(es) != 1 || es[0].TargetID != dev.String() || es[0].Detail["reason"] != RevokedByReuse || es[0].Detail["user"] != u.ID {
		t.Fatalf("reuse revocation entries %+v %v", es, err)
	}
}

// TestAuditLargeEntriesConcurrently: entries with the largest details,
// appended at once, are all stored even when together they are too big for
// one transaction.
func testAuditLargeEntriesConcurrently(t *testing.T) {
	s, _ := openTest(t, nil)
	ctx := WithActor(context.Background(), Actor{UserID: "u1", Teams: []string{"wigan"}})
	big := map[string]string{}
	for k := 0; k < 32; k++ {
		big[fmt.Sprint("k", k)] = strings.Repeat("a", 1024) // inline in the LSM tree (under the value threshold), so a batch counts in full
	}
	var wg gosync.WaitGroup
	for g := 0; g < 32; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Audit(ctx, AuditEntry{Action: "test.big", Team: "wigan", Detail: big}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// And one batch of them, too big for one transaction, directly.
	var batch []auditReq
	for i := 0; i < 32; i++ {
		batch = append(batch, auditReq{e: AuditEntry{ActorID: "u1", Action: "test.big", Team: "wigan", Detail: big}, done: make(chan error, 1)})
	}
	s.writeAuditBatch(ctx, batch)
	for _, r := range batch {
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
	}
	es, _, _, err := s.AuditLog(context.Background(), AuditQuery{Action: "test.big", Limit: 1000})
	if err != nil || len(es) != 64 {
		t.Fatalf("%d entries stored of 64: %v", len(es), err)
	}
}
