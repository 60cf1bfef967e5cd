package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"golang.org/x/crypto/bcrypt"
)

// sharedKV lets several Services use one store.KV (only the test closes
// it) and reports it shared, as PostgreSQL is (memory serializes every
// writer, so it is one in a test).
type sharedKV struct{ store.KV }

func (sharedKV) Close() error { return nil }
func (sharedKV) Shared() bool { return true }

// twoServers returns a Service over each of two handles on one store,
// each with a key directory of its own, as two server processes on one
// shared store are.
func twoServers(t *testing.T, kvs [2]store.KV, clk *fakeClock) (*Service, *Service) {
	t.Helper()
	var out [2]*Service
	for i, kv := range kvs {
		cfg := Config{BcryptCost: bcrypt.MinCost, KeyDir: filepath.Join(t.TempDir(), "keys"), Now: clk.Now, LockoutThreshold: 3, Logger: quietLogger()}
		s, err := New(context.Background(), sharedKV{kv}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out[i] = s
	}
	return out[0], out[1]
}

// TestSharedStoreTwoServers: two Services over one store act as one. A
// device revoked, a user disabled or demoted, a refresh token reused
// through one is refused or narrowed by the other at once, the failed
// logins through both add up to one lockout, and their audit entries take
// distinct seqs.
func TestSharedStoreTwoServers(t *testing.T) {
	for name, open := range sharedBackends() {
		t.Run(name, func(t *testing.T) {
			kv1, kv2 := open(t)
			clk := &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
			a, b := twoServers(t, [2]store.KV{kv1, kv2}, clk)
			seed(t, a)
			ctx := context.Background()

			// A token issued by a is good on b, and b's check reads the
			// store (it is warmed first, as a cache would be).
			dev := crdt.NewReplicaID()
			tr, err := a.Login(ctx, "ann", "correct horse", dev.String(), "tab")
			if err != nil {
				t.Fatal(err)
			}
			authorize := func(s *Service, tok string) (*Claims, Actor, error) {
				t.Helper()
				c, err := s.Verify(tok)
				if err != nil {
					t.Fatal(err)
				}
				act, err := s.Authorize(ctx, c)
				return c, act, err
			}
			for _, s := range []*Service{a, b} {
				if _, act, err := authorize(s, tr.AccessToken); err != nil || act.Name != "Ann" || len(act.Teams) != 1 {
					t.Fatalf("token from a: %+v %v", act, err)
				}
			}
			tr, err = b.Refresh(ctx, tr.RefreshToken, dev.String())
			if err != nil {
				t.Fatal(err)
			}

			// Demoted and moved through b: a narrows the next request.
			if _, err := a.CreateTeam(ctx, "ashton", "Ashton"); err != nil {
				t.Fatal(err)
			}
			bea, err := a.CreateUser(ctx, NewUser{Username: "bea", Password: "another pass", Role: api.RoleCoordinator, Teams: []string{"wigan", "ashton"}})
			if err != nil {
				t.Fatal(err)
			}
			bdev := crdt.NewReplicaID()
			btr, err := a.Login(ctx, "bea", "another pass", bdev.String(), "")
			if err != nil {
				t.Fatal(err)
			}
			if c, _, err := authorize(a, btr.AccessToken); err != nil || c.Role != api.RoleCoordinator || len(c.Teams) != 2 {
				t.Fatalf("bea before: %+v %v", c, err)
			}
			if _, err := b.SetRole(ctx, bea.ID, api.RoleLinkWorker); err != nil {
				t.Fatal(err)
			}
			if _, err := b.SetTeams(ctx, bea.ID, []string{"ashton"}); err != nil {
				t.Fatal(err)
			}
			if c, _, err := authorize(a, btr.AccessToken); err != nil || c.Role != api.RoleLinkWorker || len(c.Teams) != 1 || c.Teams[0] != "ashton" {
				t.Fatalf("bea after demotion through b, on a: %+v %v", c, err)
			}
			role, teams, err := a.Narrow(ctx, mustVerify(t, a, btr.AccessToken))
			if err != nil || role != api.RoleLinkWorker || len(teams) != 1 {
				t.Fatalf("Narrow on a: %s %v %v", role, teams, err)
			}
			// Disabled through b: refused by a at once.
			if _, err := b.SetDisabled(ctx, bea.ID, true); err != nil {
				t.Fatal(err)
			}
			if _, _, err := authorize(a, btr.AccessToken); !errors.Is(err, ErrAccountDisabled) {
				t.Fatalf("disabled through b, on a: %v", err)
			}
			if _, err := a.Refresh(ctx, btr.RefreshToken, bdev.String()); !errors.Is(err, ErrAccountDisabled) {
				t.Fatalf("disabled through b, refresh on a: %v", err)
			}

			// Revoked through a: b refuses its access and refresh tokens.
			if _, err := a.RevokeDevice(ctx, dev); err != nil {
				t.Fatal(err)
			}
			if _, _, err := authorize(b, tr.AccessToken); !errors.Is(err, ErrDeviceRevoked) {
				t.Fatalf("revoked through a, on b: %v", err)
			}
			if err := b.CheckDevice(ctx, mustVerify(t, b, tr.AccessToken)); !errors.Is(err, ErrDeviceRevoked) {
				t.Fatalf("CheckDevice on b: %v", err)
			}
			if r, err := b.DeviceRevoked(ctx, dev); err != nil || !r {
				t.Fatalf("DeviceRevoked on b: %v %v", r, err)
			}
			if _, err := b.Refresh(ctx, tr.RefreshToken, dev.String()); !errors.Is(err, ErrDeviceRevoked) {
				t.Fatalf("refresh on b after revocation through a: %v", err)
			}

			// Refresh reuse: spent on a, presented again on b past the
			// grace: revoked on both.
			dev2 := crdt.NewReplicaID()
			t0, err := a.Login(ctx, "ann", "correct horse", dev2.String(), "")
			if err != nil {
				t.Fatal(err)
			}
			t1, err := a.Refresh(ctx, t0.RefreshToken, dev2.String())
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := authorize(b, t1.AccessToken); err != nil {
				t.Fatal(err)
			}
			clk.Add(time.Minute)
			if _, err := b.Refresh(ctx, t0.RefreshToken, dev2.String()); !errors.Is(err, ErrRefreshReused) {
				t.Fatalf("reuse on b: %v", err)
			}
			if _, _, err := authorize(a, t1.AccessToken); !errors.Is(err, ErrDeviceRevoked) {
				t.Fatalf("after reuse on b, on a: %v", err)
			}
			if _, err := a.Refresh(ctx, t1.RefreshToken, dev2.String()); !errors.Is(err, ErrDeviceRevoked) {
				t.Fatalf("after reuse on b, refresh on a: %v", err)
			}

			// Lockout counted across both: 2 failures on a, 1 on b locks
			// the username on both; a success elsewhere is not possible
			// meanwhile.
			for i, s := range []*Service{a, a, b} {
				if _, err := s.Login(ctx, "ann", "wrong password", dev.String(), ""); !errors.Is(err, ErrInvalidCredentials) {
					t.Fatalf("failure %d: %v", i+1, err)
				}
			}
			for _, s := range []*Service{a, b} {
				var le *LockedError
				if _, err := s.Login(ctx, "ann", "correct horse", dev2.String(), ""); !errors.As(err, &le) || le.RetryAfter <= 0 {
					t.Fatalf("after 3 failures across two servers: %v", err)
				}
			}
			// The lock ends, and a success through b clears the count for a.
			clk.Add(2 * time.Minute)
			if _, err := b.Login(ctx, "ann", "correct horse", dev2.String(), ""); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Login(ctx, "ann", "wrong password", dev2.String(), ""); !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("one failure after a success: %v", err)
			}
			if _, err := a.Login(ctx, "ann", "correct horse", dev2.String(), ""); err != nil {
				t.Fatalf("count not cleared by the success through b: %v", err)
			}

			// Audit entries from both, concurrently: distinct seqs, none lost.
			var wg gosync.WaitGroup
			for g, s := range []*Service{a, b, a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 20; i++ {
						if err := s.Audit(ctx, AuditEntry{ActorID: "u", Action: "record.read", Team: "wigan", TargetID: fmt.Sprint(g, "/", i)}); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			es, _, more, err := b.AuditLog(ctx, AuditQuery{Action: "record.read", Limit: 1000})
			if err != nil || more {
				t.Fatal(err, more)
			}
			seen := map[string]bool{}
			for i, e := range es {
				if i > 0 && e.Seq <= es[i-1].Seq {
					t.Fatalf("seq %d after %d", e.Seq, es[i-1].Seq)
				}
				seen[e.TargetID] = true
			}
			if len(es) != 80 || len(seen) != 80 {
				t.Fatalf("%d entries (%d distinct) of 80", len(es), len(seen))
			}
		})
	}
}

func mustVerify(t *testing.T, s *Service, tok string) *Claims {
	t.Helper()
	c, err := s.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSharedStoreSigningKeys: servers on a shared store with key
// directories of their own sign with the same key, and a key a third
// server brings in its directory (newer, so it signs there) is taken up by
// the others when they first meet one of its tokens.
func TestSharedStoreSigningKeys(t *testing.T) {
	for name, open := range sharedBackends() {
		t.Run(name, func(t *testing.T) {
			kv, kv2 := open(t)
			clk := &fakeClock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)}
			a, b := twoServers(t, [2]store.KV{kv, kv2}, clk)
			if a.KeyID() != b.KeyID() {
				t.Fatalf("two servers sign with %s and %s", a.KeyID(), b.KeyID())
			}
			for _, s := range []*Service{a, b} {
				if _, err := os.Stat(filepath.Join(s.cfg.KeyDir, a.KeyID()+".pem")); err != nil {
					t.Fatalf("key not in %s: %v", s.cfg.KeyDir, err)
				}
			}
			seed(t, a)
			ctx := context.Background()
			// A third server with a newer key of its own in its directory.
			dir := filepath.Join(t.TempDir(), "keys")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			k, err := generateKey(dir)
			if err != nil {
				t.Fatal(err)
			}
			future := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(dir, k.kid+".pem"), future, future); err != nil {
				t.Fatal(err)
			}
			c, err := New(ctx, sharedKV{kv}, Config{BcryptCost: bcrypt.MinCost, KeyDir: dir, Now: clk.Now, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if c.KeyID() != k.kid {
				t.Fatalf("c signs with %s, not its newer key %s", c.KeyID(), k.kid)
			}
			tr, err := c.Login(ctx, "ann", "correct horse", crdt.NewReplicaID().String(), "")
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []*Service{a, b} {
				cl, err := s.Verify(tr.AccessToken)
				if err != nil {
					t.Fatalf("token signed by c's key: %v", err)
				}
				if _, err := s.Authorize(ctx, cl); err != nil {
					t.Fatal(err)
				}
			}
			// c's directory also got the key the others sign with.
			if _, err := os.Stat(filepath.Join(dir, a.KeyID()+".pem")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSharedStoreConcurrentFirstStart: servers starting at the same moment
// on an empty shared store, each with an empty key directory, end up with
// one signing key: the first generates it in the serialized transaction,
// the others find it there.
func TestSharedStoreConcurrentFirstStart(t *testing.T) {
	for name, open := range sharedBackends() {
		t.Run(name, func(t *testing.T) {
			kv1, kv2 := open(t)
			kvs := []store.KV{kv1, kv2, kv1, kv2}
			svcs := make([]*Service, len(kvs))
			errs := make([]error, len(kvs))
			var wg gosync.WaitGroup
			for i, kv := range kvs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					svcs[i], errs[i] = New(context.Background(), sharedKV{kv}, Config{BcryptCost: bcrypt.MinCost,
						KeyDir: filepath.Join(t.TempDir(), "keys"), Logger: quietLogger()})
				}()
			}
			wg.Wait()
			for i, s := range svcs {
				if errs[i] != nil {
					t.Fatal(errs[i])
				}
				defer s.Close()
				if s.KeyID() != svcs[0].KeyID() {
					t.Fatalf("server %d signs with %s, server 0 with %s", i, s.KeyID(), svcs[0].KeyID())
				}
			}
		})
	}
}
