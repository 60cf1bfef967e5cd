package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/auth/identity"
)

// Cookie names.
const (
	cookieSession = "ds_console"        // session token
	cookieDevice  = "ds_console_device" // this browser's replica ID (the console is a device of its user)
	cookieLogin   = "ds_console_login"  // CSRF token of the sign-in form, before there is a session
)

// session is one signed-in browser. The token itself is never stored: the
// map is keyed by its SHA-256.
type session struct {
	claims  *identity.Claims // from the access token issued at sign-in; re-checked (device, role, teams) on every request
	user    identity.User
	csrf    string
	created time.Time
	seen    time.Time
	// prevVisit is, per team, when this user last opened the team's home
	// before this session: the "changed since your last visit" mark.
	prevVisit map[string]time.Time
}

// sessions is the in-memory session table, bounded: when full, expired
// sessions are dropped, and if none are expired the oldest goes. Sessions
// do not survive a restart (coordinators sign in again).
type sessions struct {
	idle, absolute time.Duration
	max            int

	mu     gosync.Mutex
	byHash map[[32]byte]*session
	visits map[string]time.Time // user/team → last team home view
}

func newSessions(idle, absolute time.Duration, max int) *sessions {
	return &sessions{idle: idle, absolute: absolute, max: max, byHash: map[[32]byte]*session{}, visits: map[string]time.Time{}}
}

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails: crypto/rand crashes the program itself if the OS source does
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func tokenHash(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// create stores a new session and returns its token.
func (ss *sessions) create(now time.Time, cl *identity.Claims, u identity.User) (string, *session) {
	tok := randomToken()
	s := &session{claims: cl, user: u, csrf: randomToken(), created: now, seen: now, prevVisit: map[string]time.Time{}}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for _, t := range u.Teams {
		s.prevVisit[t] = ss.visits[u.ID+"/"+t]
	}
	if len(ss.byHash) >= ss.max {
		ss.evict(now)
	}
	ss.byHash[tokenHash(tok)] = s
	return tok, s
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	return now.Sub(s.seen) > ss.idle || now.Sub(s.created) > ss.absolute
}

func (ss *sessions) evict(now time.Time) {
	var oldest [32]byte
	var oldestSeen time.Time
	for h, s := range ss.byHash {
		if ss.expired(s, now) {
			delete(ss.byHash, h)
			continue
		}
		if oldestSeen.IsZero() || s.seen.Before(oldestSeen) {
			oldest, oldestSeen = h, s.seen
		}
	}
	if len(ss.byHash) >= ss.max {
		delete(ss.byHash, oldest)
	}
}

// get returns the live session of tok and marks it seen; an expired one is
// dropped.
func (ss *sessions) get(tok string, now time.Time) *session {
	if tok == "" || len(tok) > 100 {
		return nil
	}
	h := tokenHash(tok)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byHash[h]
	if s == nil {
		return nil
	}
	if ss.expired(s, now) {
		delete(ss.byHash, h)
		return nil
	}
	s.seen = now
	return s
}

func (ss *sessions) drop(tok string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byHash, tokenHash(tok))
}

// visit records that user opened team's home now.
func (ss *sessions) visit(user, team string, now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.visits) >= 100*ss.max {
		clear(ss.visits)
	}
	ss.visits[user+"/"+team] = now
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
