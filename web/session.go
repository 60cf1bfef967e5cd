package web

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/doorstep-health/doorstep/auth/identity"
)

// Cookie names.
const (
	cookieSession = "ds_console"        // session token
	cookieDevice  = "ds_console_device" // this browser's replica ID (the console is a device of its user)
	cookieLogin   = "ds_console_login"  // CSRF token of the sign-in form, before there is a session
)

// SessionStore keeps the console's sessions where every server sharing
// the auth store sees them (*auth.Service), so any server serves any
// session and a restart signs nobody out. Tokens are the store's to make;
// it keeps only their SHA-256.
type SessionStore interface {
	// CreateConsoleSession stores a new session ending lifetime after
	// cs.Created, ends the user's oldest past maxPerUser, and returns its
	// token and the session as stored (PrevVisit filled in).
	CreateConsoleSession(ctx context.Context, cs identity.ConsoleSession, lifetime time.Duration, maxPerUser int) (string, identity.ConsoleSession, error)
	// ConsoleSession returns token's session, or identity.ErrNotFound.
	ConsoleSession(ctx context.Context, token string) (identity.ConsoleSession, error)
	// TouchConsoleSession records the session's last use.
	TouchConsoleSession(ctx context.Context, token string, seen time.Time) error
	// DeleteConsoleSession ends token's session on every server.
	DeleteConsoleSession(ctx context.Context, token string) error
	// RecordConsoleVisit records a user's view of a team's home.
	RecordConsoleVisit(ctx context.Context, userID, team string, at time.Time) error
}

// session is one signed-in browser, as read from the SessionStore for
// this request.
type session struct {
	claims  *identity.Claims // from the access token issued at sign-in; re-checked (device, role, teams) on every request
	user    identity.User    // ID and Name, at sign-in
	csrf    string
	created time.Time
	seen    time.Time
	// prevVisit is, per team, when this user last opened the team's home
	// before this session: the "changed since your last visit" mark.
	prevVisit map[string]time.Time
}

// touchEvery is how far a session's stored last use may lag: a request
// rewrites it only when it has moved on by more, so most requests only
// read the store. The idle expiry may therefore come up to this much
// early, never late.
const touchEvery = time.Minute

// sessions applies the console's session rules (idle and absolute
// expiry, a bounded number per user) over the SessionStore.
type sessions struct {
	idle, absolute time.Duration
	maxPerUser     int
	store          SessionStore
	log            *slog.Logger
}

func newSessions(st SessionStore, log *slog.Logger, idle, absolute time.Duration, maxPerUser int) *sessions {
	return &sessions{store: st, log: log, idle: idle, absolute: absolute, maxPerUser: maxPerUser}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand crashes the program itself if the OS source does
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create stores a new session and returns its token.
func (ss *sessions) create(ctx context.Context, now time.Time, cl *identity.Claims, u identity.User) (string, *session, error) {
	tok, cs, err := ss.store.CreateConsoleSession(ctx, identity.ConsoleSession{Claims: cl, UserID: u.ID, Name: u.Name, CSRF: randomToken(), Created: now}, ss.absolute, ss.maxPerUser)
	if err != nil {
		return "", nil, err
	}
	return tok, sessionOf(cs), nil
}

func sessionOf(cs identity.ConsoleSession) *session {
	return &session{claims: cs.Claims, user: identity.User{ID: cs.UserID, Name: cs.Name}, csrf: cs.CSRF, created: cs.Created, seen: cs.Seen, prevVisit: cs.PrevVisit}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > ss.idle || now.Sub(s.created) > ss.absolute
}

// get returns the live session of tok and marks it seen; an expired one is
// dropped. A store that fails counts as no session (logged): the browser
// is asked to sign in and keeps its cookie.
func (ss *sessions) get(ctx context.Context, tok string, now time.Time) *session {
	if tok == "" || len(tok) > 100 {
		return nil
	}
	cs, err := ss.store.ConsoleSession(ctx, tok)
	if err != nil {
		if !errors.Is(err, identity.ErrNotFound) {
			ss.log.Warn("console: read session", "err", err)
		}
		return nil
	}
	s := sessionOf(cs)
	if ss.expired(s, now) {
		ss.drop(ctx, tok)
		return nil
	}
	if now.Sub(s.seen) > touchEvery {
		if err := ss.store.TouchConsoleSession(ctx, tok, now); errors.Is(err, identity.ErrNotFound) {
			return nil // signed out elsewhere meanwhile
		} else if err != nil {
			ss.log.Warn("console: record session use", "err", err)
		}
	}
	s.seen = now
	return s
}

// drop ends tok's session on every server.
func (ss *sessions) drop(ctx context.Context, tok string) {
	if err := ss.store.DeleteConsoleSession(ctx, tok); err != nil {
		ss.log.Warn("console: end session", "err", err)
	}
}

// visit records that user opened team's home now.
func (ss *sessions) visit(ctx context.Context, user, team string, now time.Time) {
	if err := ss.store.RecordConsoleVisit(ctx, user, team, now); err != nil {
		ss.log.Warn("console: record team visit", "team", team, "err", err)
	}
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// cookie builds one of the console's cookies: HttpOnly, SameSite=Strict,
// path /console/, Secure when the request came over TLS.
func (c *Console) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: name, Value: value, Path: "/console/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r),
	}
}

// secure reports whether r reached us over TLS, directly or (when the
// server trusts its proxy) through a TLS-terminating proxy.
func (c *Console) secure(r *http.Request) bool {
	return r.TLS != nil || (c.cfg.TrustProxy && r.Header.Get("X-Forwarded-Proto") == "https")
}
