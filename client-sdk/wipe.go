package client

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/doorstep-health/doorstep/api"
)

// ErrWiped: an admin revoked this device and asked for a remote wipe, and
// the replica has carried it out: every record, outbox entry, rejection,
// cursor and token is deleted (Badger's DropAll, which removes the data
// files). It wraps ErrSignedOut. The replica can never sync again; the app
// should Close it, delete Options.Dir and forget its encryption key.
var ErrWiped = errors.New("client: device wiped by its administrator")

// keyWiped marks a replica that has wiped itself; keyWipeReport holds the
// access token to report the wipe with until the server has seen it.
var (
	keyWiped      = []byte("m/wiped")
	keyWipeReport = []byte("m/wipereport")
)

// Wiped reports whether the replica has carried out a remote wipe.
func (r *Replica) Wiped() bool {
	wiped := false
	_ = r.view(func(txn *badger.Txn) error {
		v, err := get(txn, keyWiped)
		wiped = v != nil
		return err
	})
	return wiped
}

// wipe carries out a wipe the server ordered (api.SyncResponse.Wipe):
// first the data goes, then the device reports back (api.SyncRequest.Wiped)
// with its last access token, which the server accepts for that purpose
// only. If the report fails it is retried on the next Sync. It returns an
// error wrapping ErrWiped and ErrSignedOut.
func (r *Replica) wipe(ctx context.Context) error {
	t, err := r.loadTokens()
	if err != nil {
		return err
	}
	access := ""
	if t != nil {
		access = t.Access
	}
	var layoutVersion []byte
	if err := r.view(func(txn *badger.Txn) (err error) { layoutVersion, err = get(txn, keyLayout); return err }); err != nil {
		return fmt.Errorf("client: wipe: %w", err)
	}
	r.wmu.Lock()
	r.rmu.Lock()
	err = r.db.DropAll()
	if err == nil {
		err = r.db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(keyReplica, r.id[:]); err != nil {
				return err
			}
			if layoutVersion != nil {
				// The empty store keeps its layout version, so that it
				// reopens as what it is rather than as an old layout.
				if err := txn.Set(keyLayout, layoutVersion); err != nil {
					return err
				}
			}
			if err := txn.Set(keyWiped, []byte{1}); err != nil {
				return err
			}
			if access == "" {
				return nil
			}
			return txn.Set(keyWipeReport, []byte(access))
		})
	}
	r.rmu.Unlock()
	r.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("client: wipe: %w", err)
	}
	r.log.Warn("device wiped on the server's order")
	r.setStatus(func(s *Status) { s.Pending, s.SignedOut = 0, true })
	return r.reportWipe(ctx)
}

// reportWipe tells the server the wipe is done, once; then forgets the
// token it used.
func (r *Replica) reportWipe(ctx context.Context) error {
	var access []byte
	if err := r.view(func(txn *badger.Txn) (err error) { access, err = get(txn, keyWipeReport); return err }); err != nil {
		return fmt.Errorf("client: wipe report: %w", err)
	}
	wiped := fmt.Errorf("%w: %w", ErrWiped, ErrSignedOut)
	if access == nil {
		return wiped
	}
	body, err := encodeRequest(&api.SyncRequest{Protocol: api.ProtocolVersion, Replica: r.id, Clock: r.reading(), Wiped: true})
	if err != nil {
		return err
	}
	resp, _, err := r.postSync(ctx, body, string(access), 0)
	if err != nil {
		return fmt.Errorf("%w (report not yet delivered: %w)", wiped, err)
	}
	if !resp.Wipe {
		r.log.Warn("server did not acknowledge the wipe report")
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if err := r.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyWipeReport) }); err != nil {
		return fmt.Errorf("client: wipe report: %w", err)
	}
	return wiped
}
