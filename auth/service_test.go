package auth

import (
	"context"
	"errors"
	"path/filepath"
	gosync "sync"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"golang.org/x/crypto/bcrypt"
)

type fakeClock struct {
	mu gosync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openTest opens a Service over a new store of the test's backend (see
// eachBackend), with its keys in a temp dir, which it returns.
func openTest(t testing.TB, clk *fakeClock) (*Service, string) {
	t.Helper()
	data := t.TempDir()
	cfg := Config{BcryptCost: bcrypt.MinCost, KeyDir: filepath.Join(data, "keys")}
	if clk != nil {
		cfg.Now = clk.Now
	}
	s, err := openWith(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, data
}

func seed(t *testing.T, s *Service) User {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateTeam(ctx, "wigan", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	u, err := s.CreateUser(ctx, NewUser{Username: "ann", Name: "Ann", Password: "correct horse", Role: api.RoleLinkWorker, Teams: []string{"wigan"}})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func testLoginVerify(t *testing.T) {
	s, _ := openTest(t, nil)
	u := seed(t, s)
	ctx := context.Background()
	dev := crdt.NewReplicaID()
	if _, err := s.Login(ctx, "ann", "wrong password", dev.String(), "tab"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := s.Login(ctx, "nobody", "correct horse", dev.String(), "tab"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := s.Login(ctx, "ann", "correct horse", "xyz", "tab"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad device: %v", err)
	}
	tr, err := s.Login(ctx, "ANN", "correct horse", dev.String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	if tr.User.ID != u.ID || tr.TokenType != "Bearer" || tr.ExpiresIn != 900 || tr.RefreshToken == "" {
		t.Fatalf("token response %+v", tr)
	}
	c, err := s.Verify(tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != u.ID || c.Role != api.RoleLinkWorker || !c.InTeam("wigan") || c.Replica() != dev {
		t.Fatalf("claims %+v", c)
	}
	if err := s.CheckDevice(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Another user cannot take over the device.
	if _, err := s.CreateUser(ctx, NewUser{Username: "bea", Password: "another pass", Role: api.RoleLinkWorker, Teams: []string{"wigan"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Login(ctx, "bea", "another pass", dev.String(), "tab"); !errors.Is(err, ErrDeviceMismatch) {
		t.Fatalf("device of another user: %v", err)
	}
	// A second login supersedes the first token.
	tr2, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckDevice(ctx, c); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("superseded token: %v", err)
	}
	if _, err := s.Refresh(ctx, tr.RefreshToken, dev.String()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("superseded refresh: %v", err)
	}
	if _, err := s.Refresh(ctx, tr2.RefreshToken, dev.String()); err != nil {
		t.Fatal(err)
	}
}

func testValidation(t *testing.T) {
	s, _ := openTest(t, nil)
	seed(t, s)
	ctx := context.Background()
	cases := []NewUser{
		{Username: "x", Password: "long enough", Role: "root"},
		{Username: "x", Password: "long enough", Role: api.RoleAdmin, Teams: []string{"nope"}},
		{Username: "a b", Password: "long enough", Role: api.RoleAdmin},
	}
	for _, nu := range cases {
		if _, err := s.CreateUser(ctx, nu); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", nu, err)
		}
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "x", Password: "short", Role: api.RoleAdmin}); !errors.Is(err, ErrWeakPassword) {
		t.Errorf("short password: %v", err)
	}
	if _, err := s.CreateUser(ctx, NewUser{Username: "Ann", Password: "long enough", Role: api.RoleAdmin}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate username: %v", err)
	}
	if _, err := s.CreateTeam(ctx, "wigan", "again"); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate team: %v", err)
	}
	if _, err := s.CreateTeam(ctx, "Bad Team", "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad team id: %v", err)
	}
}

func testRefreshRotationAndReuse(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	s, _ := openTest(t, clk)
	seed(t, s)
	ctx := context.Background()
	dev := crdt.NewReplicaID()
	t0, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(ctx, t0.RefreshToken, crdt.NewReplicaID().String()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("other device: %v", err)
	}
	t1, err := s.Refresh(ctx, t0.RefreshToken, dev.String())
	if err != nil {
		t.Fatal(err)
	}
	if t1.RefreshToken == t0.RefreshToken {
		t.Fatal("refresh token not rotated")
	}
	// Within the grace window the spent token may be retried once its
	// successor is unused: the successor is cancelled.
	t1b, err := s.Refresh(ctx, t0.RefreshToken, dev.String())
	if err != nil {
		t.Fatalf("retry within grace: %v", err)
	}
	if _, err := s.Refresh(ctx, t1.RefreshToken, dev.String()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("cancelled successor: %v", err)
	}
	t2, err := s.Refresh(ctx, t1b.RefreshToken, dev.String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s.Verify(t2.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	// Past the grace window, reuse revokes the device.
	clk.Add(time.Minute)
	if _, err := s.Refresh(ctx, t1b.RefreshToken, dev.String()); !errors.Is(err, ErrRefreshReused) {
		t.Fatalf("reuse: %v", err)
	}
	if _, err := s.Refresh(ctx, t2.RefreshToken, dev.String()); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("refresh after reuse: %v", err)
	}
	if err := s.CheckDevice(ctx, c2); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("access after reuse: %v", err)
	}
	// The user's password reinstates the device with a new generation; the
	// old access token stays refused.
	t3, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckDevice(ctx, c2); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("old generation after reinstatement: %v", err)
	}
	c3, err := s.Verify(t3.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckDevice(ctx, c3); err != nil {
		t.Fatal(err)
	}
	// Expired access token.
	clk.Add(16 * time.Minute)
	if _, err := s.Verify(t3.AccessToken); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	// Expired refresh token.
	clk.Add(31 * 24 * time.Hour)
	if _, err := s.Refresh(ctx, t3.RefreshToken, dev.String()); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("expired refresh: %v", err)
	}
}

func testRevokeDevicePersists(t *testing.T) {
	ctx := context.Background()
	s, _ := openTest(t, nil)
	u := seed(t, s)
	dev := crdt.NewReplicaID()
	tr, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	if revoked, err := s.DeviceRevoked(ctx, dev); err != nil || revoked {
		t.Fatalf("before revoke: %v %v", revoked, err)
	}
	if _, err := s.RevokeDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refresh(ctx, tr.RefreshToken, dev.String()); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("refresh of revoked device: %v", err)
	}
	if _, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab"); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("login on admin-revoked device: %v", err)
	}
	kid := s.KeyID()
	// Reopen: the revocation, the user and the signing key survive.
	s2 := reopenTest(t, s)
	if s2.KeyID() != kid {
		t.Fatalf("signing key changed across restart: %s → %s", kid, s2.KeyID())
	}
	c, err := s2.Verify(tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.CheckDevice(ctx, c); !errors.Is(err, ErrDeviceRevoked) {
		t.Fatalf("after restart: %v", err)
	}
	devs, err := s2.Devices(ctx, u.ID)
	if err != nil || len(devs) != 1 || !devs[0].Revoked || devs[0].RevokedReason != RevokedByAdmin {
		t.Fatalf("devices %+v %v", devs, err)
	}
	users, err := s2.Users(ctx)
	if err != nil || len(users) != 1 {
		t.Fatalf("users %+v %v", users, err)
	}
	if _, err := s2.SetRole(ctx, u.ID, api.RoleCoordinator); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.User(ctx, u.ID); got.Role != api.RoleCoordinator {
		t.Fatalf("role %q", got.Role)
	}
}

func testConcurrentRefreshOneWins(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)}
	s, _ := openTest(t, clk)
	s.cfg.ReuseGrace = -1
	seed(t, s)
	ctx := context.Background()
	dev := crdt.NewReplicaID()
	t0, err := s.Login(ctx, "ann", "correct horse", dev.String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	var wg gosync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Refresh(ctx, t0.RefreshToken, dev.String())
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrRefreshReused), errors.Is(err, ErrDeviceRevoked):
		default:
			t.Errorf("unexpected error %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent refreshes of one token succeeded, want 1", ok)
	}
}

func testNarrow(t *testing.T) {
	s, _ := openTest(t, nil)
	u := seed(t, s)
	ctx := context.Background()
	if _, err := s.CreateTeam(ctx, "ashton", "Ashton PCN"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTeams(ctx, u.ID, []string{"wigan", "ashton"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetRole(ctx, u.ID, api.RoleCoordinator); err != nil {
		t.Fatal(err)
	}
	tr, err := s.Login(ctx, "ann", "correct horse", crdt.NewReplicaID().String(), "tab")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Verify(tr.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	role, teams, err := s.Narrow(ctx, c)
	if err != nil || role != api.RoleCoordinator || len(teams) != 2 {
		t.Fatalf("before: %s %v %v", role, teams, err)
	}
	// Demoted and removed from a team: the same token now carries less.
	if _, err := s.SetRole(ctx, u.ID, api.RoleLinkWorker); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTeams(ctx, u.ID, []string{"ashton"}); err != nil {
		t.Fatal(err)
	}
	role, teams, err = s.Narrow(ctx, c)
	if err != nil || role != api.RoleLinkWorker || len(teams) != 1 || teams[0] != "ashton" {
		t.Fatalf("after demotion: %s %v %v", role, teams, err)
	}
	// Promoted and given a team: not before the next refresh.
	if _, err := s.SetRole(ctx, u.ID, api.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetTeams(ctx, u.ID, []string{"ashton", "wigan"}); err != nil {
		t.Fatal(err)
	}
	role, teams, err = s.Narrow(ctx, c)
	if err != nil || role != api.RoleCoordinator || len(teams) != 2 {
		t.Fatalf("after promotion: %s %v %v", role, teams, err)
	}
}
