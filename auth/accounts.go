package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/crypto/bcrypt"
)

// mayHoldTokens refuses tokens to a user who is deleted, disabled, a demo
// user outside demo mode, or in no team.
func (s *Service) mayHoldTokens(u *User) error {
	switch {
	case u.Deleted:
		return fmt.Errorf("%w: user deleted", ErrUnauthorized)
	case u.Disabled:
		return fmt.Errorf("%w: user %s", ErrAccountDisabled, u.ID)
	case u.Demo && !s.cfg.AllowDemo:
		return fmt.Errorf("%w: user %s was seeded by --demo; serve with --demo to use it", ErrDemoAccount, u.Username)
	case len(u.Teams) == 0:
		return fmt.Errorf("%w: user %s", ErrNoTeams, u.ID)
	}
	return nil
}

// checkDeviceBound refuses one more device for a user who has
// MaxDevicesPerUser devices not revoked by an admin.
func (s *Service) checkDeviceBound(txn *badger.Txn, userID string) error {
	if s.cfg.MaxDevicesPerUser < 0 {
		return nil
	}
	ds, err := userDevices(txn, userID)
	if err != nil {
		return err
	}
	n := 0
	for _, d := range ds {
		if !d.Revoked || d.RevokedReason == RevokedByReuse {
			n++
		}
	}
	if n >= s.cfg.MaxDevicesPerUser {
		return fmt.Errorf("%w: %d devices already (at most %d); an admin can revoke old ones", ErrTooManyDevices, n, s.cfg.MaxDevicesPerUser)
	}
	return nil
}

// migrate brings a store of an older layout to layoutVersion: layout 1
// had no userdev/ index.
func (s *Service) migrate(ctx context.Context) error {
	var v int
	err := s.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(kLayout))
		if errors.Is(err, badger.ErrKeyNotFound) {
			v = 1
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) (err error) { v, err = strconv.Atoi(string(b)); return err })
	})
	if err != nil {
		return fmt.Errorf("read layout: %w", err)
	}
	switch {
	case v == layoutVersion:
		return nil
	case v > layoutVersion:
		return fmt.Errorf("auth store layout %d is newer than this binary's %d", v, layoutVersion)
	}
	err = s.update(ctx, func(txn *badger.Txn) error {
		ds, err := listJSON[Device](txn, pDevice)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if err := txn.Set([]byte(pUserDev+d.User+"/"+d.ID), nil); err != nil {
				return err
			}
		}
		return txn.Set([]byte(kLayout), []byte(strconv.Itoa(layoutVersion)))
	})
	if err != nil {
		return fmt.Errorf("migrate auth store to layout %d: %w", layoutVersion, err)
	}
	return nil
}

func firstOr(ts []string) string {
	if len(ts) == 0 {
		return ""
	}
	return ts[0]
}

func restOf(ts []string) []string {
	if len(ts) < 2 {
		return nil
	}
	return ts[1:]
}

// endSessions starts a new generation on every device of the user except
// one (""), so that their refresh chains and access tokens end; with
// revoke it also revokes them. It returns the devices changed.
func (s *Service) endSessions(txn *badger.Txn, userID, except, revokeReason string) ([]Device, error) {
	ds, err := userDevices(txn, userID)
	if err != nil {
		return nil, err
	}
	var changed []Device
	now := s.cfg.Now().UTC()
	for _, d := range ds {
		if d.ID == except {
			continue
		}
		d.Gen++
		if revokeReason != "" && !d.Revoked {
			d.Revoked, d.RevokedAt, d.RevokedReason = true, now, revokeReason
		}
		if err := setJSON(txn, pDevice+d.ID, d); err != nil {
			return nil, err
		}
		changed = append(changed, d)
	}
	return changed, nil
}

// SetName changes a user's display name; the actor must manage the user.
func (s *Service) SetName(ctx context.Context, id, name string) (User, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return User{}, fmt.Errorf("set name: %w: name must be 1–200 bytes", ErrInvalid)
	}
	return s.modifyUser(ctx, id, ActionUserName, true, func(_ *badger.Txn, u *userRecord) (map[string]string, error) {
		u.Name = name
		return nil, nil
	})
}

// SetDisabled disables or enables a user; the actor must manage the user
// and cannot disable themselves. A disabled user's logins, refreshes and
// access tokens are refused (ErrAccountDisabled) from their next request;
// enabling lets their devices carry on where they were.
func (s *Service) SetDisabled(ctx context.Context, id string, disabled bool) (User, error) {
	if disabled && ActorFrom(ctx).UserID == id {
		return User{}, fmt.Errorf("disable user: %w: you cannot disable yourself", ErrInvalid)
	}
	action := ActionUserEnable
	if disabled {
		action = ActionUserDisable
	}
	return s.modifyUser(ctx, id, action, true, func(_ *badger.Txn, u *userRecord) (map[string]string, error) {
		u.Disabled = disabled
		u.DisabledAt = time.Time{}
		if disabled {
			u.DisabledAt = s.cfg.Now().UTC()
		}
		return nil, nil
	})
}

// DeleteUser deletes a user who has left: the account is kept as a
// tombstone (Deleted, no password, no teams, FormerTeams set) so that the
// records they wrote stay attributed and untouched, the username is freed,
// and every device of theirs is revoked, which ends its refresh chain and
// access tokens at once. The actor must manage the user and cannot delete
// themselves.
func (s *Service) DeleteUser(ctx context.Context, id string) (User, error) {
	if ActorFrom(ctx).UserID == id {
		return User{}, fmt.Errorf("delete user: %w: you cannot delete yourself", ErrInvalid)
	}
	var devices []Device
	u, err := s.modifyUser(ctx, id, ActionUserDelete, true, func(txn *badger.Txn, u *userRecord) (map[string]string, error) {
		ds, err := s.endSessions(txn, u.ID, "", RevokedByUserDeleted)
		if err != nil {
			return nil, err
		}
		devices = ds
		if err := txn.Delete([]byte(pUsername + strings.ToLower(u.Username))); err != nil {
			return nil, err
		}
		if len(u.Teams) > 0 {
			u.FormerTeams = u.Teams
		}
		u.Teams, u.Hash = []string{}, nil
		u.Deleted, u.DeletedAt = true, s.cfg.Now().UTC()
		return map[string]string{"devices_revoked": strconv.Itoa(len(ds))}, nil
	})
	if err != nil {
		return User{}, err
	}
	for _, d := range devices {
		s.cacheDevice(d)
	}
	return u, nil
}

// ResetPassword sets a user's password as an admin who manages the user
// (after a forgotten password, or to take an account back): the password
// rule applies, every device's session ends (the user logs in again with
// the new password) and the username's failed-login lock is lifted.
func (s *Service) ResetPassword(ctx context.Context, id, password string) (User, error) {
	var devices []Device
	u, err := s.setPassword(ctx, id, password, ActionPasswordReset, true, func(txn *badger.Txn, u *userRecord) error {
		ds, err := s.endSessions(txn, u.ID, "", "")
		devices = ds
		return err
	})
	if err != nil {
		return User{}, err
	}
	for _, d := range devices {
		s.cacheDevice(d)
	}
	s.lock.reset(strings.ToLower(u.Username))
	return u, nil
}

func (s *Service) setPassword(ctx context.Context, id, password, action string, covers bool, also func(*badger.Txn, *userRecord) error) (User, error) {
	u, err := s.User(ctx, id)
	if err != nil {
		return User{}, fmt.Errorf("set password: %w", err)
	}
	if err := ActorFrom(ctx).checkCovers(u); covers && err != nil {
		return User{}, fmt.Errorf("set password: %w", err)
	}
	if err := CheckPassword(u.Username, password); err != nil {
		return User{}, fmt.Errorf("set password: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cfg.BcryptCost)
	if err != nil {
		return User{}, fmt.Errorf("set password: hash: %w", err)
	}
	return s.modifyUser(ctx, id, action, covers, func(txn *badger.Txn, u *userRecord) (map[string]string, error) {
		if len(u.Hash) == 0 {
			return nil, fmt.Errorf("%w: user %s signs in through the external issuer", ErrInvalid, u.ID)
		}
		u.Hash, u.PasswordChanged = hash, s.cfg.Now().UTC()
		return nil, also(txn, u)
	})
}

// ChangePassword changes the token subject's own password, given the
// current one (a wrong one counts as a failed login and returns
// ErrWrongPassword). The sessions of the user's other devices end; the
// calling device keeps its tokens.
func (s *Service) ChangePassword(ctx context.Context, c *Claims, current, password string) error {
	u, err := s.User(ctx, c.Subject)
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	key := strings.ToLower(u.Username)
	now := s.cfg.Now()
	if d := s.lock.check(key, now); d > 0 {
		return fmt.Errorf("change password: %w", &LockedError{RetryAfter: d})
	}
	var rec userRecord
	if err := s.view(ctx, func(txn *badger.Txn) error { return getJSON(txn, pUser+u.ID, &rec) }); err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if len(rec.Hash) == 0 || bcrypt.CompareHashAndPassword(rec.Hash, []byte(current)) != nil {
		s.lock.fail(key, now)
		s.cfg.Logger.Warn("password change: wrong current password", "username", key)
		return fmt.Errorf("change password: %w", ErrWrongPassword)
	}
	var devices []Device
	ctx = WithActor(ctx, Actor{UserID: u.ID, Name: u.Name, Role: u.Role, Device: c.Device, Teams: u.Teams})
	_, err = s.setPassword(ctx, u.ID, password, ActionPasswordChange, false, func(txn *badger.Txn, u *userRecord) error {
		ds, err := s.endSessions(txn, u.ID, c.Device, "")
		devices = ds
		return err
	})
	if err != nil {
		return err
	}
	for _, d := range devices {
		s.cacheDevice(d)
	}
	return nil
}

// Logout ends the session of the claims' device: its refresh chain ends
// and its access tokens are refused from now (a new generation starts). The
// device stays registered; a login on it starts a fresh chain.
func (s *Service) Logout(ctx context.Context, c *Claims) error {
	var d Device
	err := s.auditUpdate(ctx, func(txn *badger.Txn, audit func(AuditEntry) error) error {
		d = Device{}
		if err := getJSON(txn, pDevice+c.Replica().String(), &d); err != nil {
			return err
		}
		if d.User != c.Subject || d.Gen != c.Gen {
			return fmt.Errorf("%w: token superseded", ErrUnauthorized)
		}
		d.Gen++
		if err := setJSON(txn, pDevice+d.ID, d); err != nil {
			return err
		}
		var u userRecord
		if err := getJSON(txn, pUser+d.User, &u); err != nil {
			return err
		}
		e := userAudit(ActionDeviceLogout, &u.User, nil, map[string]string{"user": u.ID})
		e.ActorID, e.ActorName, e.ActorRole, e.Device = u.ID, u.Name, u.Role, d.ID
		e.TargetKind, e.TargetID = "device", d.ID
		return audit(e)
	})
	if err != nil {
		return fmt.Errorf("logout: %w", err)
	}
	s.cacheDevice(d)
	return nil
}

// MarkDemo marks users as demo users (see Config.AllowDemo), for a data
// directory seeded by --demo before demo users were marked.
func (s *Service) MarkDemo(ctx context.Context, ids ...string) error {
	for _, id := range ids {
		u, err := s.modifyUser(ctx, id, "user.demo", false, func(_ *badger.Txn, u *userRecord) (map[string]string, error) {
			u.Demo = true
			return nil, nil
		})
		if err != nil {
			return fmt.Errorf("mark demo: %w", err)
		}
		s.cacheUser(u)
	}
	return nil
}

// CheckPasswordOf reports whether password is the user's password, without
// counting a failure: for the command line's check of demo passwords.
func (s *Service) CheckPasswordOf(ctx context.Context, username, password string) (User, bool, error) {
	var u userRecord
	err := s.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(pUsername + strings.ToLower(strings.TrimSpace(username))))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		id, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		return getJSON(txn, pUser+string(id), &u)
	})
	if err != nil {
		return User{}, false, err
	}
	return u.User, len(u.Hash) > 0 && bcrypt.CompareHashAndPassword(u.Hash, []byte(password)) == nil, nil
}

// ActorFor returns the actor of verified, narrowed claims: the user's ID,
// display name, role and teams, and the device.
func (s *Service) ActorFor(ctx context.Context, c *Claims) Actor {
	s.mu.Lock()
	u, ok := s.users[c.Subject]
	s.mu.Unlock()
	if !ok {
		if uu, err := s.User(ctx, c.Subject); err == nil {
			u = uu
		}
	}
	teams := make([]string, len(c.Teams)) // never nil: a nil scope would mean every team
	copy(teams, c.Teams)
	return Actor{UserID: c.Subject, Name: u.Name, Role: c.Role, Device: c.Device, Teams: teams}
}
