package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
)

// Console sessions: a coordinator's signed-in browser, kept in the auth
// store so that every server sharing it serves every session (behind a
// proxy without affinity, and across restarts). The console (package web)
// owns the rules (idle and absolute expiry, CSRF); this file only keeps
// the sessions.
//
// Key layout (values JSON):
//
//	consess/<sha256 hex of the token>                → consoleSessionRecord, TTL to its absolute expiry
//	consessuser/<user id>/<created, 16 hex ns>/<hash> → "" (a user's sessions, oldest first), same TTL
//	consvisit/<user id>/<team id>                    → time of the user's last view of the team's home
//
// The token itself is never stored. Sessions are not backed up (BackupTxn
// leaves these prefixes out): after a restore coordinators sign in again.
const (
	pConsoleSession = "consess/"
	pConsoleUser    = "consessuser/"
	pConsoleVisit   = "consvisit/"
)

// consoleVisitTTL is how long a "last visit" time is kept: a coordinator
// away longer sees nothing marked as changed since.
const consoleVisitTTL = 400 * 24 * time.Hour

// consoleVisitEvery is how far a visit time may lag: a visit within it of
// the stored one is not written.
const consoleVisitEvery = time.Minute

// MaxConsoleTokenLen bounds a presented session token (ours are 43 bytes);
// a longer one is not looked up.
const MaxConsoleTokenLen = 100

// ConsoleSession is one signed-in console browser (see identity).
type ConsoleSession = identity.ConsoleSession

type consoleSessionRecord struct {
	Claims    *Claims              `json:"claims"`
	UserID    string               `json:"user"`
	Name      string               `json:"name"`
	CSRF      string               `json:"csrf"`
	Created   time.Time            `json:"created"`
	Seen      time.Time            `json:"seen"`
	Expires   time.Time            `json:"expires"`
	PrevVisit map[string]time.Time `json:"prev_visit,omitempty"`
}

func consoleKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return pConsoleSession + hex.EncodeToString(sum[:])
}

func consoleUserKey(userID string, created time.Time, key string) string {
	return fmt.Sprintf("%s%s/%016x/%s", pConsoleUser, userID, uint64(created.UnixNano()), key[len(pConsoleSession):])
}

// CreateConsoleSession stores a new session for cs.Claims (verified, with
// Replica set) and returns its token, which only the caller holds, and
// the session as stored. cs.Created is the start (Seen is set to it);
// lifetime is the absolute lifetime (the key's TTL). PrevVisit is filled
// from the user's visits. If the user then has more than maxPerUser live
// sessions, the oldest are ended, so the store holds a bounded number per
// user.
func (s *Service) CreateConsoleSession(ctx context.Context, cs ConsoleSession, lifetime time.Duration, maxPerUser int) (string, ConsoleSession, error) {
	if cs.Claims == nil || cs.UserID == "" || cs.UserID != cs.Claims.Subject || lifetime <= 0 || maxPerUser <= 0 {
		return "", ConsoleSession{}, fmt.Errorf("create console session: %w: claims, user, lifetime and bound are required", ErrInvalid)
	}
	token := newRefreshToken()
	key := consoleKey(token)
	cs.Seen = cs.Created
	cs.Expires = cs.Created.Add(lifetime)
	err := s.update(ctx, func(txn store.Tx) error {
		cs.PrevVisit = map[string]time.Time{}
		for _, t := range cs.Claims.Teams {
			var at time.Time
			err := getJSON(txn, pConsoleVisit+cs.UserID+"/"+t, &at)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			cs.PrevVisit[t] = at
		}
		b, err := json.Marshal(consoleSessionRecord(cs))
		if err != nil {
			return fmt.Errorf("encode console session: %w", err)
		}
		if err := txn.SetWithTTL([]byte(key), b, lifetime); err != nil {
			return err
		}
		if err := txn.SetWithTTL([]byte(consoleUserKey(cs.UserID, cs.Created, key)), []byte{}, lifetime); err != nil {
			return err
		}
		return boundConsoleSessions(txn, cs.UserID, maxPerUser)
	})
	if err != nil {
		return "", ConsoleSession{}, fmt.Errorf("create console session: %w", err)
	}
	return token, cs, nil
}

// boundConsoleSessions drops index entries whose session is gone (expired
// or deleted) and ends the oldest sessions past max.
func boundConsoleSessions(txn store.Tx, userID string, max int) error {
	live, err := userConsoleSessions(txn, userID, true)
	if err != nil {
		return err
	}
	for len(live) > max {
		if err := deleteConsoleEntry(txn, live[0]); err != nil {
			return err
		}
		live = live[1:]
	}
	return nil
}

// consoleEntry is one consessuser/ index entry.
type consoleEntry struct{ index, session string }

// userConsoleSessions lists a user's index entries, oldest first; with
// prune, entries whose session is gone are deleted and left out.
func userConsoleSessions(txn store.Tx, userID string, prune bool) ([]consoleEntry, error) {
	prefix := pConsoleUser + userID + "/"
	it := txn.Iterate(store.IterOptions{Prefix: []byte(prefix), KeysOnly: true, Batch: 32})
	var out []consoleEntry
	for it.Rewind(); it.Valid(); it.Next() {
		k := string(it.Key())
		i := len(k) - 64
		if i < len(prefix) {
			continue
		}
		out = append(out, consoleEntry{index: k, session: pConsoleSession + k[i:]})
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return nil, fmt.Errorf("list console sessions of %s: %w", userID, err)
	}
	if !prune {
		return out, nil
	}
	live := out[:0]
	for _, e := range out {
		_, err := txn.Get([]byte(e.session))
		switch {
		case errors.Is(err, store.ErrNotFound):
			if err := txn.Delete([]byte(e.index)); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, fmt.Errorf("get console session: %w", err)
		default:
			live = append(live, e)
		}
	}
	return live, nil
}

func deleteConsoleEntry(txn store.Tx, e consoleEntry) error {
	if err := txn.Delete([]byte(e.session)); err != nil {
		return err
	}
	return txn.Delete([]byte(e.index))
}

// ConsoleSession returns the session of token as stored, or ErrNotFound
// (never created, signed out, ended, or past its absolute expiry).
func (s *Service) ConsoleSession(ctx context.Context, token string) (ConsoleSession, error) {
	if token == "" || len(token) > MaxConsoleTokenLen {
		return ConsoleSession{}, ErrNotFound
	}
	var rec consoleSessionRecord
	err := s.view(ctx, func(txn store.Tx) error { return getJSON(txn, consoleKey(token), &rec) })
	if errors.Is(err, ErrNotFound) {
		return ConsoleSession{}, ErrNotFound
	}
	if err != nil {
		return ConsoleSession{}, fmt.Errorf("console session: %w", err)
	}
	return rec.session()
}

func (rec *consoleSessionRecord) session() (ConsoleSession, error) {
	if rec.Claims == nil || rec.Claims.Subject != rec.UserID {
		return ConsoleSession{}, fmt.Errorf("console session: %w: stored claims do not match", ErrUnauthorized)
	}
	if r, err := crdt.ParseReplicaID(rec.Claims.Device); err != nil || r.IsZero() {
		return ConsoleSession{}, fmt.Errorf("console session: %w: stored device: %v", ErrUnauthorized, err)
	}
	if rec.PrevVisit == nil {
		rec.PrevVisit = map[string]time.Time{}
	}
	return ConsoleSession(*rec), nil
}

// TouchConsoleSession records that token's session was used at seen (a
// write: callers do it only when seen has moved on enough to matter, see
// package web). It returns ErrNotFound if the session has ended meanwhile;
// an earlier seen than the stored one is ignored.
func (s *Service) TouchConsoleSession(ctx context.Context, token string, seen time.Time) error {
	if token == "" || len(token) > MaxConsoleTokenLen {
		return ErrNotFound
	}
	key := consoleKey(token)
	err := s.update(ctx, func(txn store.Tx) error {
		var rec consoleSessionRecord
		if err := getJSON(txn, key, &rec); err != nil {
			return err
		}
		if !seen.After(rec.Seen) {
			return nil
		}
		ttl := rec.Expires.Sub(seen)
		if ttl <= 0 {
			return txn.Delete([]byte(key))
		}
		rec.Seen = seen
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode console session: %w", err)
		}
		return txn.SetWithTTL([]byte(key), b, ttl)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("touch console session: %w", err)
	}
	return err
}

// DeleteConsoleSession ends token's session on every server (signing
// out); ending one already gone is not an error.
func (s *Service) DeleteConsoleSession(ctx context.Context, token string) error {
	if token == "" || len(token) > MaxConsoleTokenLen {
		return nil
	}
	key := consoleKey(token)
	err := s.update(ctx, func(txn store.Tx) error {
		var rec consoleSessionRecord
		err := getJSON(txn, key, &rec)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return deleteConsoleEntry(txn, consoleEntry{session: key, index: consoleUserKey(rec.UserID, rec.Created, key)})
	})
	if err != nil {
		return fmt.Errorf("delete console session: %w", err)
	}
	return nil
}

// DeleteConsoleSessions ends every console session of userID.
func (s *Service) DeleteConsoleSessions(ctx context.Context, userID string) error {
	if err := s.update(ctx, func(txn store.Tx) error { return deleteUserConsoleSessions(txn, userID) }); err != nil {
		return fmt.Errorf("delete console sessions of %s: %w", userID, err)
	}
	return nil
}

func deleteUserConsoleSessions(txn store.Tx, userID string) error {
	es, err := userConsoleSessions(txn, userID, false)
	if err != nil {
		return err
	}
	for _, e := range es {
		if err := deleteConsoleEntry(txn, e); err != nil {
			return err
		}
	}
	return nil
}

// ConsoleSessionCount reports how many console sessions userID has live.
func (s *Service) ConsoleSessionCount(ctx context.Context, userID string) (int, error) {
	n := 0
	err := s.view(ctx, func(txn store.Tx) error {
		es, err := userConsoleSessions(txn, userID, false)
		for _, e := range es {
			if _, err := txn.Get([]byte(e.session)); err == nil {
				n++
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count console sessions of %s: %w", userID, err)
	}
	return n, nil
}

// RecordConsoleVisit records that userID opened team's home at at: the
// PrevVisit of the user's next sessions. It writes only when the stored
// time is more than consoleVisitEvery older, so a coordinator going back
// and forth costs reads only.
func (s *Service) RecordConsoleVisit(ctx context.Context, userID, team string, at time.Time) error {
	if userID == "" || !ValidTeamID(team) {
		return fmt.Errorf("record console visit: %w: user and team are required", ErrInvalid)
	}
	key := pConsoleVisit + userID + "/" + team
	var last time.Time
	err := s.view(ctx, func(txn store.Tx) error { return getJSON(txn, key, &last) })
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("record console visit: %w", err)
	}
	if err == nil && at.Sub(last) >= 0 && at.Sub(last) <= consoleVisitEvery {
		return nil
	}
	b, err := json.Marshal(at)
	if err != nil {
		return fmt.Errorf("record console visit: %w", err)
	}
	err = s.update(ctx, func(txn store.Tx) error {
		return txn.SetWithTTL([]byte(key), b, consoleVisitTTL)
	})
	if err != nil {
		return fmt.Errorf("record console visit: %w", err)
	}
	return nil
}
