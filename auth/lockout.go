package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/store"
)

// LockedError is returned (wrapping ErrAccountLocked) for a login to a
// username locked after failed logins (see identity.LockedError).
type LockedError = identity.LockedError

// Failed logins are counted per username (whether or not the user exists,
// so a lock tells nothing about existence) in the store, so that a lock
// holds on every server sharing the store and across restarts:
//
//	lockout/<lower(username)> → failState as JSON, with a TTL
//
// After threshold consecutive failures the username is locked for
// LockoutBase, doubling with each further failure up to LockoutMax. A
// success clears the count (in the login's own transaction); a quiet day
// forgives earlier failures. The value says all of this itself (the TTL
// only reclaims the space), so a backend or a restored backup that keeps
// the key longer changes nothing. Counting a failure is a read and a write
// in one write transaction, which the store serializes, so failures
// through several servers at once are all counted.
const pLockout = "lockout/"

// forgiveAfter is the quiet time after which earlier failures are forgotten.
const forgiveAfter = 24 * time.Hour

type failState struct {
	Fails  int       `json:"fails"`
	Last   time.Time `json:"last"`
	Locked time.Time `json:"locked_until,omitzero"`
}

func lockoutKey(username string) []byte { return []byte(pLockout + username) }

// lockedFor returns how long username stays locked, or 0, as txn reads it.
func (s *Service) lockedFor(txn store.Tx, username string, now time.Time) (time.Duration, error) {
	if s.cfg.LockoutThreshold <= 0 {
		return 0, nil
	}
	var f failState
	switch err := getJSON(txn, string(lockoutKey(username)), &f); {
	case errors.Is(err, ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("read lockout: %w", err)
	}
	if now.Before(f.Locked) {
		return f.Locked.Sub(now), nil
	}
	return 0, nil
}

// checkLocked is lockedFor in a read-only transaction of its own.
func (s *Service) checkLocked(ctx context.Context, username string, now time.Time) (d time.Duration, err error) {
	err = s.view(ctx, func(txn store.Tx) (err error) {
		d, err = s.lockedFor(txn, username, now)
		return err
	})
	return d, err
}

// countFailure counts a failed login for username and returns the lock it
// starts, or 0.
func (s *Service) countFailure(ctx context.Context, username string, now time.Time) (time.Duration, error) {
	if s.cfg.LockoutThreshold <= 0 {
		return 0, nil
	}
	var d time.Duration
	err := s.update(ctx, func(txn store.Tx) error {
		d = 0
		var f failState
		if err := getJSON(txn, string(lockoutKey(username)), &f); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if now.Sub(f.Last) > forgiveAfter {
			f = failState{}
		}
		f.Fails++
		f.Last = now.UTC()
		if f.Fails >= s.cfg.LockoutThreshold {
			d = s.cfg.LockoutBase
			for i := s.cfg.LockoutThreshold; i < f.Fails && d < s.cfg.LockoutMax; i++ {
				d *= 2
			}
			d = min(d, s.cfg.LockoutMax)
			f.Locked = f.Last.Add(d)
		}
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("encode lockout: %w", err)
		}
		return txn.SetWithTTL(lockoutKey(username), b, max(forgiveAfter, d)+time.Minute)
	})
	if err != nil {
		return 0, fmt.Errorf("count failed login: %w", err)
	}
	return d, nil
}

// clearFailures forgets username's failures within txn; it writes only if
// there are some.
func clearFailures(txn store.Tx, username string) error {
	switch _, err := txn.Get(lockoutKey(username)); {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("read lockout: %w", err)
	}
	return txn.Delete(lockoutKey(username))
}
