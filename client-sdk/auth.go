package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/doorstep-health/doorstep/api"
)

// tokens are the device's credentials, kept inside the encrypted replica.
type tokens struct {
	Access  string   `msgpack:"a"`
	Refresh string   `msgpack:"r"`
	User    api.User `msgpack:"u"`
}

// Login signs the device in: it sends the user's credentials with the
// replica ID as device ID, and stores the returned tokens in the encrypted
// replica. Later syncs refresh them as needed. A bad password returns an
// error wrapping an *api.Problem with code invalid_credentials.
func (r *Replica) Login(ctx context.Context, username, password string) (*api.User, error) {
	if r.serverURL() == "" {
		return nil, ErrNoServer
	}
	if r.closed() {
		return nil, ErrClosed
	}
	r.authMu.Lock()
	defer r.authMu.Unlock()
	var tr api.TokenResponse
	err := r.postJSON(ctx, "/v1/auth/login", api.LoginRequest{
		Username: username, Password: password, DeviceID: r.id.String(), DeviceName: r.opts.DeviceName,
	}, &tr)
	if err != nil {
		return nil, fmt.Errorf("client: login: %w", err)
	}
	if err := r.storeTokens(&tokens{Access: tr.AccessToken, Refresh: tr.RefreshToken, User: tr.User}); err != nil {
		return nil, err
	}
	r.setStatus(func(s *Status) {
		s.SignedOut = false
		if errors.Is(s.LastError, ErrSignedOut) {
			s.LastError, s.LastErrorCode = nil, ""
		}
	})
	u := tr.User
	return &u, nil
}

// User returns the signed-in user, or an error wrapping ErrSignedOut.
func (r *Replica) User(ctx context.Context) (*api.User, error) {
	t, err := r.loadTokens()
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, ErrSignedOut
	}
	return &t.User, nil
}

// Logout ends the device's session on the server (its refresh chain and
// access tokens) and forgets the stored tokens. The outbox and records are
// kept. The tokens are forgotten even when the server cannot be told; the
// error then says so (the chain ends anyway when it expires, or an admin
// revokes the device).
func (r *Replica) Logout(ctx context.Context) error {
	r.authMu.Lock()
	defer r.authMu.Unlock()
	t, err := r.loadTokens()
	if err != nil {
		return err
	}
	var serr error
	if t != nil && t.Access != "" {
		if serr = r.serverLogout(ctx, t); serr != nil {
			serr = fmt.Errorf("client: logout: tokens forgotten, but the server was not told: %w", serr)
		}
	}
	if err := r.storeTokens(nil); err != nil {
		return err
	}
	return serr
}

func (r *Replica) accessToken() (string, error) {
	r.authMu.Lock()
	defer r.authMu.Unlock()
	t, err := r.loadTokens()
	if err != nil {
		return "", err
	}
	if t == nil || t.Access == "" {
		return "", ErrSignedOut
	}
	return t.Access, nil
}

// refresh trades the stored refresh token for new tokens, unless another
// caller already did since the access token old was read.
func (r *Replica) refresh(ctx context.Context, old string) error {
	r.authMu.Lock()
	defer r.authMu.Unlock()
	t, err := r.loadTokens()
	if err != nil {
		return err
	}
	if t == nil || t.Refresh == "" {
		return ErrSignedOut
	}
	if t.Access != old {
		return nil
	}
	var tr api.TokenResponse
	err = r.postJSON(ctx, "/v1/auth/refresh", api.RefreshRequest{RefreshToken: t.Refresh, DeviceID: r.id.String()}, &tr)
	if err != nil {
		var p *api.Problem
		if errors.As(err, &p) && (p.Status == http.StatusUnauthorized || p.Status == http.StatusForbidden) {
			if err := r.storeTokens(nil); err != nil {
				return err
			}
			return fmt.Errorf("%w: refresh: %w", ErrSignedOut, p)
		}
		return fmt.Errorf("client: refresh: %w", err)
	}
	user := tr.User
	if user.ID == "" {
		user = t.User
	}
	return r.storeTokens(&tokens{Access: tr.AccessToken, Refresh: tr.RefreshToken, User: user})
}

// signOut forgets tokens the server will no longer take and returns
// ErrSignedOut wrapping cause. The outbox is untouched.
func (r *Replica) signOut(cause error) error {
	r.authMu.Lock()
	defer r.authMu.Unlock()
	if err := r.storeTokens(nil); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", ErrSignedOut, cause)
}

func (r *Replica) loadTokens() (*tokens, error) {
	var t *tokens
	err := r.view(func(txn *badger.Txn) error {
		v, err := get(txn, keyTokens)
		if err != nil || v == nil {
			return err
		}
		t = new(tokens)
		return msgpack.Unmarshal(v, t)
	})
	if err != nil {
		return nil, fmt.Errorf("client: load tokens: %w", err)
	}
	return t, nil
}

func (r *Replica) storeTokens(t *tokens) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed() {
		return ErrClosed
	}
	err := r.db.Update(func(txn *badger.Txn) error {
		if t == nil {
			return txn.Delete(keyTokens)
		}
		b, err := msgpack.Marshal(t)
		if err != nil {
			return err
		}
		return txn.Set(keyTokens, b)
	})
	if err != nil {
		return fmt.Errorf("client: store tokens: %w", err)
	}
	return nil
}
