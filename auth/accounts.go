package auth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/doorstep-health/doorstep/store"
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
func (s *Service) checkDeviceBound(txn store.Tx, userID string) error {
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
	err := s.view(ctx, func(txn store.Tx) error {
		b, err := getString(txn, kLayout)
		if errors.Is(err, ErrNotFound) {
			v = 1
			return nil
		}
		if err != nil {
			return err
		}
		v, err = strconv.Atoi(b)
		return err
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
	err = s.update(ctx, func(txn store.Tx) error {
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
func (s *Service) endSessions(txn store.Tx, userID, except, revokeReason string) ([]Device, error) {
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
	return s.modifyUser(ctx, id, ActionUserName, true, func(_ store.Tx, u *userRecord) (map[string]string, error) {
		u.Name = name
		return nil, nil
	})
}

// SetDisabled disables or enables a user; the actor must manage the user
// and cannot disable themselves. A disabled user's logins, refreshes and
// access tokens are refused (ErrAccountDisabled) from their next request,
// and their console sessions are ended; enabling lets their devices carry
// on where they were.
func (s *Service) SetDisabled(ctx context.Context, id string, disabled bool) (User, error) {
	if disabled && ActorFrom(ctx).UserID == id {
		return User{}, fmt.Errorf("disable user: %w: you cannot disable yourself", ErrInvalid)
	}
	action := ActionUserEnable
	if disabled {
		action = ActionUserDisable
	}
	return s.modifyUser(ctx, id, action, true, func(txn store.Tx, u *userRecord) (map[string]string, error) {
		u.Disabled = disabled
		u.DisabledAt = time.Time{}
		if disabled {
			u.DisabledAt = s.cfg.Now().UTC()
			// Console sessions end at once (enabling does not revive them).
			if err := deleteUserConsoleSessions(txn, u.ID); err != nil {
				return nil, err
			}
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
	u, err := s.modifyUser(ctx, id, ActionUserDelete, true, func(txn store.Tx, u *userRecord) (map[string]string, error) {
		ds, err := s.endSessions(txn, u.ID, "", RevokedByUserDeleted)
		if err != nil {
			return nil, err
		}
		if err := deleteUserConsoleSessions(txn, u.ID); err != nil {
			return nil, err
		}
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
	return u, nil
}

// ResetPassword sets a user's password as an admin who manages the user
// (after a forgotten password, or to take an account back): the password
// rule applies, every device's session ends (the user logs in again with
// the new password) and the username's failed-login lock is lifted.
func (s *Service) ResetPassword(ctx context.Context, id, password string) (User, error) {
	return s.setPassword(ctx, id, password, ActionPasswordReset, true, func(txn store.Tx, u *userRecord) error {
		if _, err := s.endSessions(txn, u.ID, "", ""); err != nil {
			return err
		}
		return clearFailures(txn, strings.ToLower(u.Username))
	})
}

func (s *Service) setPassword(ctx context.Context, id, password, action string, covers bool, also func(store.Tx, *userRecord) error) (User, error) {
	u, err := s.User(ctx, id)
	if err != nil {
		return User{}, fmt.Errorf("set password: %w", err)
	}
	if err := checkCovers(ActorFrom(ctx), u); covers && err != nil {
		return User{}, fmt.Errorf("set password: %w", err)
	}
	if err := CheckPassword(u.Username, password); err != nil {
		return User{}, fmt.Errorf("set password: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cfg.BcryptCost)
	if err != nil {
		return User{}, fmt.Errorf("set password: hash: %w", err)
	}
	return s.modifyUser(ctx, id, action, covers, func(txn store.Tx, u *userRecord) (map[string]string, error) {
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
	var (
		rec    userRecord
		locked time.Duration
	)
	err = s.view(ctx, func(txn store.Tx) (err error) {
		if locked, err = s.lockedFor(txn, key, now); err != nil || locked > 0 {
			return err
		}
		return getJSON(txn, pUser+u.ID, &rec)
	})
	if err != nil {
		return fmt.Errorf("change password: %w", err)
	}
	if locked > 0 {
		return fmt.Errorf("change password: %w", &LockedError{RetryAfter: locked})
	}
	if len(rec.Hash) == 0 || bcrypt.CompareHashAndPassword(rec.Hash, []byte(current)) != nil {
		if _, err := s.countFailure(ctx, key, now); err != nil {
			s.cfg.Logger.Error("failed password check not counted", "username", key, "err", err)
		}
		s.cfg.Logger.Warn("password change: wrong current password", "username", key)
		return fmt.Errorf("change password: %w", ErrWrongPassword)
	}
	ctx = WithActor(ctx, Actor{UserID: u.ID, Name: u.Name, Role: u.Role, Device: c.Device, Teams: u.Teams})
	_, err = s.setPassword(ctx, u.ID, password, ActionPasswordChange, false, func(txn store.Tx, u *userRecord) error {
		_, err := s.endSessions(txn, u.ID, c.Device, "")
		return err
	})
	return err
}

// Logout ends the session of the claims' device: its refresh chain ends
// and its access tokens are refused from now (a new generation starts). The
// device stays registered; a login on it starts a fresh chain.
func (s *Service) Logout(ctx context.Context, c *Claims) error {
	var d Device
	err := s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
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
	return nil
}

// MarkDemo marks users as demo users (see Config.AllowDemo), for a data
// directory seeded by --demo before demo users were marked.
func (s *Service) MarkDemo(ctx context.Context, ids ...string) error {
	for _, id := range ids {
		_, err := s.modifyUser(ctx, id, "user.demo", false, func(_ store.Tx, u *userRecord) (map[string]string, error) {
			u.Demo = true
			return nil, nil
		})
		if err != nil {
			return fmt.Errorf("mark demo: %w", err)
		}
	}
	return nil
}

// CheckPasswordOf reports whether password is the user's password, without
// counting a failure: for the command line's check of demo passwords.
func (s *Service) CheckPasswordOf(ctx context.Context, username, password string) (User, bool, error) {
	var u userRecord
	err := s.view(ctx, func(txn store.Tx) error {
		id, err := getString(txn, pUsername+strings.ToLower(strings.TrimSpace(username)))
		if err != nil {
			return err
		}
		return getJSON(txn, pUser+id, &u)
	})
	if err != nil {
		return User{}, false, err
	}
	return u.User, len(u.Hash) > 0 && bcrypt.CompareHashAndPassword(u.Hash, []byte(password)) == nil, nil
}

// ActorFor returns the actor of verified, narrowed claims: the user's ID,
// display name (read from the store), role and teams, and the device.
func (s *Service) ActorFor(ctx context.Context, c *Claims) Actor {
	u, _ := s.User(ctx, c.Subject)
	teams := make([]string, len(c.Teams)) // never nil: a nil scope would mean every team
	copy(teams, c.Teams)
	return Actor{UserID: c.Subject, Name: u.Name, Role: c.Role, Device: c.Device, Teams: teams}
}
