package auth

import (
	"context"
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/store"
)

// Signing keys on a shared store (store.KV.Shared): every server must
// verify the tokens every other one issues, so the keys live in the store
// as well as in each server's key directory:
//
//	signkey/<kid> → storedKey as JSON
//
// At New, in one write transaction (serialized across servers), the keys
// of the server's key directory that the store lacks are added, and if the
// store then holds none a first key is generated into it; the store's keys
// missing from the directory are then written there. The newest key (by
// Added) signs. A token whose kid a server does not know makes it read the
// store's keys again (at most once per keyReloadEvery), so a key added
// through another server is taken up without a restart.
//
// The store then holds the private keys: whoever can read the database can
// issue tokens, as whoever can read the key directory already could.
const pSignKey = "signkey/"

// keyReloadEvery bounds how often an unknown kid makes a server read the
// store's keys again.
const keyReloadEvery = time.Second

type storedKey struct {
	PEM   string    `json:"pem"`
	Added time.Time `json:"added"`
}

// shareKeys is the key setup of a shared store (see pSignKey).
func (s *Service) shareKeys(ctx context.Context) (*keyring, error) {
	files, err := readKeyDir(s.cfg.KeyDir)
	if err != nil {
		return nil, err
	}
	var stored []datedKey
	err = s.update(ctx, func(txn store.Tx) error {
		var err error
		if stored, err = readStoredKeys(txn); err != nil {
			return err
		}
		have := map[string]bool{}
		for _, d := range stored {
			have[d.k.kid] = true
		}
		add := func(d datedKey) error {
			b, err := pemOf(d.k)
			if err != nil {
				return err
			}
			if err := setJSON(txn, pSignKey+d.k.kid, storedKey{PEM: string(b), Added: time.Unix(0, d.mod).UTC()}); err != nil {
				return err
			}
			stored = append(stored, d)
			have[d.k.kid] = true
			return nil
		}
		for _, d := range files {
			if !have[d.k.kid] {
				if err := add(d); err != nil {
					return err
				}
			}
		}
		if len(stored) == 0 {
			k, err := newSigningKey()
			if err != nil {
				return err
			}
			return add(datedKey{k, s.cfg.Now().UnixNano()})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	onDisk := map[string]bool{}
	for _, d := range files {
		onDisk[d.k.kid] = true
	}
	for _, d := range stored {
		if !onDisk[d.k.kid] {
			if err := writeKey(s.cfg.KeyDir, d.k); err != nil {
				return nil, fmt.Errorf("signing keys: %w", err)
			}
		}
	}
	return newKeyring(stored), nil
}

// readStoredKeys reads the signkey/ keys.
func readStoredKeys(txn store.Tx) ([]datedKey, error) {
	recs, err := listJSON[storedKey](txn, pSignKey)
	if err != nil {
		return nil, err
	}
	out := make([]datedKey, 0, len(recs))
	for _, r := range recs {
		k, err := parseKey("stored key", []byte(r.PEM))
		if err != nil {
			return nil, err
		}
		out = append(out, datedKey{k, r.Added.UnixNano()})
	}
	return out, nil
}

// reloadKeys reads a shared store's keys again after a token named a kid
// this server does not know, at most once per keyReloadEvery; it returns
// the keyring to use (the current one when it did not reload). The signing
// key becomes the store's newest.
func (s *Service) reloadKeys() *keyring {
	kr := s.keys.Load()
	if !s.kv.Shared() || s.isClosed() {
		return kr
	}
	s.keyMu.Lock()
	defer s.keyMu.Unlock()
	if time.Since(s.keyReloaded) < keyReloadEvery {
		return s.keys.Load()
	}
	s.keyReloaded = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var stored []datedKey
	err := s.kv.View(ctx, func(txn store.Tx) (err error) {
		stored, err = readStoredKeys(txn)
		return err
	})
	if err != nil || len(stored) == 0 {
		if err != nil {
			s.cfg.Logger.Warn("signing keys not reloaded", "err", err)
		}
		return kr
	}
	kr = newKeyring(stored)
	s.keys.Store(kr)
	return kr
}
