package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"regexp"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/store"
	"golang.org/x/crypto/bcrypt"
)

// Config configures a Service. Zero fields take the documented defaults.
type Config struct {
	// Issuer is the iss claim issued and required; default "doorstep".
	Issuer string
	// Audience is the aud claim issued and required; default "doorstep".
	Audience string
	// AccessTTL is the access token lifetime; default 15 minutes.
	AccessTTL time.Duration
	// RefreshTTL is the refresh token lifetime; default 30 days. Each
	// refresh returns a token with a fresh lifetime.
	RefreshTTL time.Duration
	// ReuseGrace is how long after a refresh the spent token may be
	// presented again without counting as reuse, for a device that never
	// received the reply (the successor is then cancelled). Default 30 s;
	// negative disables the grace.
	ReuseGrace time.Duration
	// BcryptCost is the bcrypt cost of new password hashes; default
	// bcrypt.DefaultCost. Tests use bcrypt.MinCost.
	BcryptCost int
	// KeyDir holds the signing keys; required.
	KeyDir string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// External, if set, lets Exchange accept ID tokens of an OpenID Connect
	// issuer in place of passwords.
	External *ExternalIssuer
	// MaxDevicesPerUser bounds the devices registered to one user, not
	// counting those an admin revoked; a login from one more is refused
	// with ErrTooManyDevices. Default DefaultMaxDevicesPerUser; negative
	// means no bound.
	MaxDevicesPerUser int
	// LockoutThreshold is how many consecutive failed logins lock a
	// username; default 5, negative disables the lockout. The lock lasts
	// LockoutBase (default 1 minute), doubling with each further failure
	// up to LockoutMax (default 15 minutes). The counts are kept in the
	// store, so a lock holds across restarts and on every Service sharing
	// the store.
	LockoutThreshold int
	LockoutBase      time.Duration
	LockoutMax       time.Duration
	// AllowDemo lets users seeded as demo users (NewUser.Demo) log in.
	// Without it their login is refused with ErrDemoAccount, so a data
	// directory once seeded by --demo does not keep accepting the
	// published demo password.
	AllowDemo bool
}

// DefaultMaxDevicesPerUser is the default of Config.MaxDevicesPerUser.
const DefaultMaxDevicesPerUser = 10

func (c *Config) defaults() {
	if c.Issuer == "" {
		c.Issuer = "doorstep"
	}
	if c.Audience == "" {
		c.Audience = "doorstep"
	}
	if c.AccessTTL <= 0 {
		c.AccessTTL = 15 * time.Minute
	}
	if c.RefreshTTL <= 0 {
		c.RefreshTTL = 30 * 24 * time.Hour
	}
	if c.ReuseGrace == 0 {
		c.ReuseGrace = 30 * time.Second
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = bcrypt.DefaultCost
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxDevicesPerUser == 0 {
		c.MaxDevicesPerUser = DefaultMaxDevicesPerUser
	}
	if c.LockoutThreshold == 0 {
		c.LockoutThreshold = 5
	}
	if c.LockoutBase <= 0 {
		c.LockoutBase = time.Minute
	}
	if c.LockoutMax <= 0 {
		c.LockoutMax = 15 * time.Minute
	}
}

// Team is a team: the scope of records and of the users who work on them
// (see identity.Team).
type Team = identity.Team

// User is a user account as callers see it, never the password hash (see
// identity.User).
type User = identity.User

// NewUser is the input of CreateUser.
type NewUser struct {
	Username string
	Name     string
	Password string
	Role     string
	Teams    []string
	// Demo marks a user seeded by --demo (see Config.AllowDemo).
	Demo bool
}

// Device is a replica registered to a user (see identity.Device).
type Device = identity.Device

// Revocation reasons.
const (
	RevokedByAdmin       = "admin"
	RevokedByReuse       = "refresh_reuse"
	RevokedByUserDeleted = "user_deleted"
)

type userRecord struct {
	User
	Hash []byte `json:"hash"`
}

type refreshRecord struct {
	Device    string    `json:"device"`
	User      string    `json:"user"`
	Gen       uint64    `json:"gen"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	SpentAt   time.Time `json:"spent_at,omitzero"`
	Successor string    `json:"successor,omitempty"` // hex hash of the token that replaced it
}

// Key layout of the auth Badger: one prefix per kind, values JSON.
const (
	pTeam     = "team/"     // team/<id> → Team
	pUser     = "user/"     // user/<id> → userRecord
	pUsername = "username/" // username/<lower(username)> → user id
	pDevice   = "device/"   // device/<replica hex> → Device
	pRefresh  = "refresh/"  // refresh/<sha256 hex> → refreshRecord
	pUserDev  = "userdev/"  // userdev/<user id>/<replica hex> → "" (devices by user)
	kReady    = "ready"     // written by Ping
	kLayout   = "layout"    // layout version, decimal; absent means 1
	// pAudit: see audit.go. pLockout: lockout.go. pSignKey: sharedkeys.go.
	// pConsoleSession, pConsoleUser, pConsoleVisit: consolesession.go.
)

// layoutVersion is the auth store's layout: 2 added the userdev/ index
// and the audit trail (built at New from a layout 1 store).
const layoutVersion = 2

// Service is the built-in issuer. It is safe for concurrent use, and
// several Services (in several processes) may share one store.KV: every
// check a request depends on (device revocation and generation, the user's
// role, teams and disabled state, refresh chains, login lockout) is read
// from the store in the request's own transaction, never from a cache a
// write through another Service could leave stale.
type Service struct {
	cfg  Config
	kv   store.KV
	keys atomic.Pointer[keyring] // replaced when a shared store's keys are reloaded

	keyMu       gosync.Mutex // serialises reloadKeys
	keyReloaded time.Time

	ext       *jwks // nil without an external issuer
	dummyOnce gosync.Once
	dummyHash []byte // compared against for unknown users, so timing does not tell

	writing  chan struct{} // held by this Service's one open write transaction (see update)
	pendMu   gosync.Mutex  // guards pending and flushing (Audit's group commit)
	pending  []auditReq
	flushing bool

	mu     gosync.Mutex
	closed bool
}

// New returns the Service over kv, the auth store (its own KV instance,
// not the records store's), with the signing keys in cfg.KeyDir, which is
// required. It migrates an older layout. The Service owns kv from then on:
// Close closes it, and New closes it when it fails.
//
// kv may be shared with other Services, in other processes (see
// store.KV.Shared): they then serve the same users, devices and audit
// trail, and a device revoked through one is refused by all at once. On a
// shared store the signing keys are shared through it too (see pSignKey),
// so each server may keep a key directory of its own.
func New(ctx context.Context, kv store.KV, cfg Config) (*Service, error) {
	s, err := newService(ctx, kv, cfg)
	if err != nil {
		kv.Close()
		return nil, err
	}
	return s, nil
}

func newService(ctx context.Context, kv store.KV, cfg Config) (*Service, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.KeyDir == "" {
		return nil, errors.New("open auth: Config.KeyDir is required")
	}
	cfg.defaults()
	s := &Service{cfg: cfg, kv: kv, writing: make(chan struct{}, 1)}
	if err := s.migrate(ctx); err != nil {
		return nil, fmt.Errorf("open auth: %w", err)
	}
	var keys *keyring
	var err error
	if kv.Shared() {
		keys, err = s.shareKeys(ctx)
	} else {
		keys, err = loadKeys(cfg.KeyDir)
	}
	if err != nil {
		return nil, fmt.Errorf("open auth: %w", err)
	}
	s.keys.Store(keys)
	if cfg.External != nil {
		ext := *cfg.External
		if ext.Logger == nil {
			ext.Logger = cfg.Logger
		}
		if s.ext, err = newJWKS(ctx, ext); err != nil {
			return nil, fmt.Errorf("open auth: %w", err)
		}
	}
	return s, nil
}

// Close closes the store. Calls after Close return ErrClosed.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	if s.ext != nil {
		s.ext.close()
	}
	if err := s.kv.Close(); err != nil {
		return fmt.Errorf("close auth store: %w", err)
	}
	return nil
}

// Config returns the effective configuration (defaults filled in).
func (s *Service) Config() Config { return s.cfg }

// KeyID returns the kid of the current signing key.
func (s *Service) KeyID() string { return s.keys.Load().signing.kid }

func (s *Service) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// update runs fn in a write transaction, retrying when a concurrent
// transaction conflicts (fn must then start afresh), after a short random
// pause that grows with each attempt so that two writers that keep
// colliding (two Services on one optimistic store) fall out of step.
//
// A Service runs one write transaction at a time. Auth writes are few
// (logins, refreshes, account changes, audit batches) and mostly
// read-modify-write (a refresh reads the device and writes it back), and
// every store serializes writers anyway (see store.KV); the Service's own
// slot keeps them correct even on a store that serialized less within a
// process, and lets a caller whose context ends stop waiting. Across
// processes the shared store serializes write transactions.
func (s *Service) update(ctx context.Context, fn func(txn store.Tx) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	select {
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writing }()
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := s.kv.Update(ctx, fn)
		if !errors.Is(err, store.ErrConflict) || attempt >= maxConflictRetries {
			return err
		}
		pause := time.Duration(mrand.Int64N(int64(min(100*time.Microsecond<<attempt, 20*time.Millisecond))))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// maxConflictRetries bounds update's retries of a conflicting transaction.
const maxConflictRetries = 16

func (s *Service) view(ctx context.Context, fn func(txn store.Tx) error) error {
	if s.isClosed() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.kv.View(ctx, fn)
}

func getJSON(txn store.Tx, key string, v any) error {
	b, err := txn.Get([]byte(key))
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// getString returns the value under key as a string, or ErrNotFound.
func getString(txn store.Tx, key string) (string, error) {
	b, err := txn.Get([]byte(key))
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("get %s: %w", key, err)
	}
	return string(b), nil
}

func setJSON(txn store.Tx, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return txn.Set([]byte(key), b)
}

// setRefresh stores a refresh token record with a TTL at its expiry, so
// spent and expired tokens do not pile up: after expiry a token is refused
// as unknown, which is what it is worth. (The record's Expires is checked
// too, for a backend or a restored backup that keeps it longer.)
func setRefresh(txn store.Tx, key string, rt refreshRecord, now time.Time) error {
	b, err := json.Marshal(rt)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	ttl := rt.Expires.Sub(now)
	if ttl < time.Second {
		ttl = time.Second
	}
	return txn.SetWithTTL([]byte(key), b, ttl)
}

func listJSON[T any](txn store.Tx, prefix string) ([]T, error) {
	it := txn.Iterate(store.IterOptions{Prefix: []byte(prefix), Batch: 64})
	defer it.Close()
	var out []T
	for it.Rewind(); it.Valid(); it.Next() {
		b, err := it.Value()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", it.Key(), err)
		}
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("decode %s: %w", it.Key(), err)
		}
		out = append(out, v)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return out, nil
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidTeamID reports whether id is a valid team ID: 1–64 of a–z, 0–9, '_'
// and '-', starting with a letter or digit.
func ValidTeamID(id string) bool { return idPattern.MatchString(id) }

// CreateTeam creates a team.
func (s *Service) CreateTeam(ctx context.Context, id, name string) (Team, error) {
	if !ValidTeamID(id) {
		return Team{}, fmt.Errorf("%w: team id %q", ErrInvalid, id)
	}
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return Team{}, fmt.Errorf("%w: team name must be 1–200 bytes", ErrInvalid)
	}
	t := Team{ID: id, Name: name, Created: s.cfg.Now().UTC()}
	actor := ActorFrom(ctx)
	err := s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
		var old Team
		switch err := getJSON(txn, pTeam+id, &old); {
		case err == nil:
			return fmt.Errorf("%w: team %q", ErrExists, id)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		if err := setJSON(txn, pTeam+id, t); err != nil {
			return err
		}
		if actor.Scoped() {
			// A team admin becomes a member of the team they create, so
			// that no team is left without an admin (from their next
			// refresh, as for any new team).
			var u userRecord
			if err := getJSON(txn, pUser+actor.UserID, &u); err != nil {
				return err
			}
			u.Teams = append(slices.Clone(u.Teams), id)
			slices.Sort(u.Teams)
			if err := setJSON(txn, pUser+u.ID, u); err != nil {
				return err
			}
		}
		return audit(AuditEntry{Action: ActionTeamCreate, Team: id, TargetKind: "team", TargetID: id})
	})
	if err != nil {
		return Team{}, fmt.Errorf("create team: %w", err)
	}
	return t, nil
}

// Teams lists the teams, by ID.
func (s *Service) Teams(ctx context.Context) ([]Team, error) {
	var out []Team
	err := s.view(ctx, func(txn store.Tx) (err error) {
		out, err = listJSON[Team](txn, pTeam)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	return out, nil
}

func (s *Service) checkTeams(txn store.Tx, teams []string) ([]string, error) {
	out := slices.Clone(teams)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, id := range out {
		var t Team
		if err := getJSON(txn, pTeam+id, &t); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("%w: no team %q", ErrInvalid, id)
			}
			return nil, err
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never returns an error: it crashes the program itself if the OS source fails
	return hex.EncodeToString(b)
}

// CreateUser creates a user with a bcrypt hash of the password. The role
// must be valid and every team must exist.
func (s *Service) CreateUser(ctx context.Context, nu NewUser) (User, error) {
	username := strings.TrimSpace(nu.Username)
	switch {
	case username == "" || len(username) > 100 || strings.ContainsAny(username, " \t\r\n/"):
		return User{}, fmt.Errorf("%w: username must be 1–100 bytes without spaces or '/'", ErrInvalid)
	case !ValidRole(nu.Role):
		return User{}, fmt.Errorf("%w: role %q", ErrInvalid, nu.Role)
	case len(nu.Name) > 200:
		return User{}, fmt.Errorf("%w: name must be at most 200 bytes", ErrInvalid)
	}
	if err := CheckPassword(username, nu.Password); err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	actor := ActorFrom(ctx)
	if actor.Scoped() {
		if len(nu.Teams) == 0 {
			return User{}, fmt.Errorf("create user: %w: a new user needs at least one of your teams", ErrInvalid)
		}
		if err := checkTeamChange(actor, nil, nu.Teams); err != nil {
			return User{}, fmt.Errorf("create user: %w", err)
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(nu.Password), s.cfg.BcryptCost)
	if err != nil {
		return User{}, fmt.Errorf("create user: hash password: %w", err)
	}
	name := strings.TrimSpace(nu.Name)
	if name == "" {
		name = username
	}
	now := s.cfg.Now().UTC()
	u := userRecord{User: User{ID: randomHex(8), Username: username, Name: name, Role: nu.Role, Created: now, Demo: nu.Demo, PasswordChanged: now}, Hash: hash}
	err = s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
		teams, err := s.checkTeams(txn, nu.Teams)
		if err != nil {
			return err
		}
		u.Teams = teams
		key := pUsername + strings.ToLower(username)
		switch _, err := txn.Get([]byte(key)); {
		case err == nil:
			return fmt.Errorf("%w: username %q", ErrExists, username)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if err := txn.Set([]byte(key), []byte(u.ID)); err != nil {
			return err
		}
		if err := setJSON(txn, pUser+u.ID, u); err != nil {
			return err
		}
		return audit(userAudit(ActionUserCreate, &u.User, nil, map[string]string{"role": u.Role, "teams": strings.Join(u.Teams, ",")}))
	})
	if err != nil {
		return User{}, fmt.Errorf("create user: %w", err)
	}
	return u.User, nil
}

// User returns one user.
func (s *Service) User(ctx context.Context, id string) (User, error) {
	var u userRecord
	err := s.view(ctx, func(txn store.Tx) error { return getJSON(txn, pUser+id, &u) })
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w", id, err)
	}
	return u.User, nil
}

// Users lists the users, by ID.
func (s *Service) Users(ctx context.Context) ([]User, error) {
	var recs []userRecord
	err := s.view(ctx, func(txn store.Tx) (err error) {
		recs, err = listJSON[userRecord](txn, pUser)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := make([]User, len(recs))
	for i := range recs {
		out[i] = recs[i].User
	}
	return out, nil
}

// SetRole changes a user's role. Access tokens already issued keep at most
// the old role (see Narrow): a demotion applies at once, a promotion from
// the next refresh.
func (s *Service) SetRole(ctx context.Context, id, role string) (User, error) {
	if !ValidRole(role) {
		return User{}, fmt.Errorf("set role: %w: role %q", ErrInvalid, role)
	}
	return s.modifyUser(ctx, id, ActionUserRole, true, func(_ store.Tx, u *userRecord) (map[string]string, error) {
		old := u.Role
		u.Role = role
		return map[string]string{"role": role, "old_role": old}, nil
	})
}

// SetTeams replaces a user's teams; every team must exist. Like SetRole, a
// removal applies at once (Narrow) and an addition from the next refresh.
func (s *Service) SetTeams(ctx context.Context, id string, teams []string) (User, error) {
	return s.modifyUser(ctx, id, ActionUserTeams, false, func(txn store.Tx, u *userRecord) (map[string]string, error) {
		t, err := s.checkTeams(txn, teams)
		if err != nil {
			return nil, err
		}
		if err := checkTeamChange(ActorFrom(ctx), u.Teams, t); err != nil {
			return nil, err
		}
		old := u.Teams
		if len(t) == 0 && len(old) > 0 {
			u.FormerTeams = old
		}
		if len(t) > 0 {
			u.FormerTeams = nil
		}
		u.Teams = t
		return map[string]string{"teams": strings.Join(t, ","), "old_teams": strings.Join(old, ",")}, nil
	})
}

// userAudit builds the audit entry of a change to u; old, if not nil, is
// u before the change, so the entry concerns the teams of both.
func userAudit(action string, u *User, old *User, detail map[string]string) AuditEntry {
	teams := slices.Clone(u.ScopeTeams())
	if old != nil {
		teams = append(teams, old.ScopeTeams()...)
	}
	slices.Sort(teams)
	teams = slices.Compact(teams)
	e := AuditEntry{Action: action, Teams: teams, TargetKind: "user", TargetID: u.ID, Detail: map[string]string{"username": u.Username}}
	if len(teams) > 0 {
		e.Team, e.Teams = teams[0], teams[1:]
	}
	for k, v := range detail {
		e.Detail[k] = v
	}
	return e
}

// modifyUser changes a live user in one transaction with its audit entry.
// The context's actor must cover the user (manage) when covers is set, and
// see the user otherwise; fn checks anything further and returns the
// entry's detail.
func (s *Service) modifyUser(ctx context.Context, id, action string, covers bool, fn func(store.Tx, *userRecord) (map[string]string, error)) (User, error) {
	var u userRecord
	actor := ActorFrom(ctx)
	err := s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
		u = userRecord{}
		if err := getJSON(txn, pUser+id, &u); err != nil {
			return err
		}
		if u.Deleted {
			return fmt.Errorf("%w: user %q was deleted", ErrNotFound, id)
		}
		check := checkSees
		if covers {
			check = checkCovers
		}
		if err := check(actor, u.User); err != nil {
			return err
		}
		old := u.User
		detail, err := fn(txn, &u)
		if err != nil {
			return err
		}
		if err := setJSON(txn, pUser+id, u); err != nil {
			return err
		}
		return audit(userAudit(action, &u.User, &old, detail))
	})
	if err != nil {
		return User{}, fmt.Errorf("update user %q: %w", id, err)
	}
	return u.User, nil
}

// Narrow returns the rights of verified claims as they stand now: the lower
// of the token's role and the user's current role, and the token's teams
// that the user still belongs to. A demotion or a removal from a team so
// takes effect on the user's next request, while a promotion or a new team
// waits for the next refresh (a token never grants more than it says). It
// reads the user from the store on every call, so a change made through
// any Service sharing the store applies at once.
func (s *Service) Narrow(ctx context.Context, c *Claims) (role string, teams []string, err error) {
	var u userRecord
	err = s.view(ctx, func(txn store.Tx) error { return getJSON(txn, pUser+c.Subject, &u) })
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", nil, fmt.Errorf("narrow: %w", err)
	}
	return narrow(&u.User, err == nil, c)
}

// narrow is Narrow over the user as read (found false: no such user).
func narrow(u *User, found bool, c *Claims) (role string, teams []string, err error) {
	switch {
	case !found:
		return "", nil, fmt.Errorf("%w: unknown user", ErrUnauthorized)
	case u.Deleted:
		return "", nil, fmt.Errorf("%w: user deleted", ErrUnauthorized)
	case u.Disabled:
		return "", nil, fmt.Errorf("%w: user %s", ErrAccountDisabled, u.ID)
	}
	role = c.Role
	if RoleAtLeast(role, u.Role) && role != u.Role {
		role = u.Role
	}
	teams = make([]string, 0, len(c.Teams)) // never nil: a nil scope would mean every team
	for _, t := range c.Teams {
		if slices.Contains(u.Teams, t) {
			teams = append(teams, t)
		}
	}
	return role, teams, nil
}

// Authorize is the check of an authenticated request, in one read-only
// transaction: CheckDevice, then Narrow, whose role and teams it sets on
// c, and the request's Actor (as ActorFor). Everything is read from the
// store, so a revocation, disabling, demotion or team removal made
// through any Service sharing the store is seen by the next request.
func (s *Service) Authorize(ctx context.Context, c *Claims) (Actor, error) {
	var (
		d               Device
		u               userRecord
		devErr, userErr error
	)
	err := s.view(ctx, func(txn store.Tx) error {
		d, u = Device{}, userRecord{}
		devErr = getJSON(txn, pDevice+c.Replica().String(), &d)
		if devErr != nil {
			return nil
		}
		userErr = getJSON(txn, pUser+c.Subject, &u)
		return nil
	})
	if err != nil {
		return Actor{}, fmt.Errorf("authorize: %w", err)
	}
	if err := checkDevice(&d, devErr, c); err != nil {
		return Actor{}, err
	}
	if userErr != nil && !errors.Is(userErr, ErrNotFound) {
		return Actor{}, fmt.Errorf("authorize: %w", userErr)
	}
	role, teams, err := narrow(&u.User, userErr == nil, c)
	if err != nil {
		return Actor{}, err
	}
	c.Role, c.Teams = role, teams
	return Actor{UserID: c.Subject, Name: u.Name, Role: role, Device: c.Device, Teams: slices.Clone(teams)}, nil
}

// Devices lists a user's devices, by replica ID. An admin lists those of
// users the admin sees (ErrNotFound otherwise).
func (s *Service) Devices(ctx context.Context, userID string) ([]Device, error) {
	var out []Device
	err := s.view(ctx, func(txn store.Tx) (err error) {
		var u userRecord
		if err := getJSON(txn, pUser+userID, &u); err != nil {
			return err
		}
		if err := checkSees(ActorFrom(ctx), u.User); err != nil {
			return err
		}
		out, err = userDevices(txn, userID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("devices of %q: %w", userID, err)
	}
	return out, nil
}

// Device returns one device by replica ID.
func (s *Service) Device(ctx context.Context, replica crdt.ReplicaID) (Device, error) {
	var d Device
	err := s.view(ctx, func(txn store.Tx) error { return getJSON(txn, pDevice+replica.String(), &d) })
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", replica, err)
	}
	return d, nil
}

// userDevices lists the devices of a user through the userdev/ index.
func userDevices(txn store.Tx, userID string) ([]Device, error) {
	prefix := []byte(pUserDev + userID + "/")
	var ids []string
	it := txn.Iterate(store.IterOptions{Prefix: prefix, KeysOnly: true})
	for it.Rewind(); it.Valid(); it.Next() {
		ids = append(ids, string(it.Key()[len(prefix):]))
	}
	err := it.Err()
	it.Close()
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", userID, err)
	}
	out := make([]Device, 0, len(ids))
	for _, id := range ids {
		var d Device
		if err := getJSON(txn, pDevice+id, &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// RevokeDevice revokes a device for good: its refresh fails at once and its
// access tokens are refused by CheckDevice. An admin revokes devices of
// users the admin sees (ErrNotFound otherwise).
func (s *Service) RevokeDevice(ctx context.Context, replica crdt.ReplicaID) (Device, error) {
	return s.revoke(ctx, replica, false)
}

// revoke is RevokeDevice and, with wipe, RevokeAndWipe: one audited
// transaction that revokes the device (keeping the time of an earlier admin
// revocation) and, with wipe, records the first wipe request.
func (s *Service) revoke(ctx context.Context, replica crdt.ReplicaID, wipe bool) (Device, error) {
	var d Device
	err := s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
		d = Device{}
		if err := getJSON(txn, pDevice+replica.String(), &d); err != nil {
			return err
		}
		var u userRecord
		if err := getJSON(txn, pUser+d.User, &u); err != nil {
			return err
		}
		if err := checkSees(ActorFrom(ctx), u.User); err != nil {
			return fmt.Errorf("%w: device %s", ErrNotFound, replica)
		}
		now := s.cfg.Now().UTC()
		if !d.Revoked || d.RevokedReason != RevokedByAdmin {
			d.Revoked, d.RevokedAt, d.RevokedReason = true, now, RevokedByAdmin
		}
		action := ActionDeviceRevoke
		if wipe {
			action = ActionDeviceWipeRequest
			if d.WipeRequestedAt.IsZero() {
				d.WipeRequestedAt = now
			}
		}
		if err := setJSON(txn, pDevice+d.ID, d); err != nil {
			return err
		}
		e := userAudit(action, &u.User, nil, map[string]string{"user": u.ID})
		e.TargetKind, e.TargetID = "device", d.ID
		return audit(e)
	})
	if err != nil {
		return Device{}, fmt.Errorf("revoke device %s: %w", replica, err)
	}
	s.cfg.Logger.Info("device revoked", "device", d.ID, "user", d.User, "reason", RevokedByAdmin, "wipe", wipe)
	return d, nil
}

// DeviceRevoked reports whether the device has been revoked, as the store
// holds it now.
func (s *Service) DeviceRevoked(ctx context.Context, replica crdt.ReplicaID) (bool, error) {
	d, err := s.Device(ctx, replica)
	if err != nil {
		return false, err
	}
	return d.Revoked, nil
}

// CheckDevice checks verified claims against the device's current state: it
// returns an error wrapping ErrDeviceRevoked for a revoked device and
// ErrUnauthorized for an unknown device, a device of another user, or a
// token superseded by a later login. It reads the device from the store on
// every call, so a revocation through any Service sharing the store is
// seen at once.
func (s *Service) CheckDevice(ctx context.Context, c *Claims) error {
	var d Device
	err := s.view(ctx, func(txn store.Tx) error { return getJSON(txn, pDevice+c.Replica().String(), &d) })
	return checkDevice(&d, err, c)
}

// checkDevice is CheckDevice over the device as read (err from the read).
func checkDevice(d *Device, err error, c *Claims) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w: unknown device", ErrUnauthorized)
	case err != nil:
		return fmt.Errorf("check device: %w", err)
	case d.Revoked:
		return fmt.Errorf("%w: device %s", ErrDeviceRevoked, c.Device)
	case d.User != c.Subject:
		return fmt.Errorf("%w: device is not the token subject's", ErrUnauthorized)
	case c.Gen != d.Gen:
		return fmt.Errorf("%w: token superseded by a later login", ErrUnauthorized)
	}
	return nil
}

func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

func newRefreshToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never returns an error: it crashes the program itself if the OS source fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (s *Service) tokenResponse(u *userRecord, access, refresh string) *api.TokenResponse {
	return &api.TokenResponse{
		AccessToken:  access,
		TokenType:    "Bearer",
		ExpiresIn:    int(s.cfg.AccessTTL / time.Second),
		RefreshToken: refresh,
		User:         api.User{ID: u.ID, Name: u.Name, Role: u.Role, Teams: slices.Clone(u.Teams)},
	}
}

// Login checks a username and password and returns an access token and a
// refresh token bound to the device, registering the device to the user on
// first login. A login starts a new generation for the device: earlier
// refresh and access tokens of the device are superseded. A device revoked
// after refresh token reuse is reinstated by a login; one revoked by an admin
// is not (ErrDeviceRevoked).
//
// Failed logins are counted per username (see Config.LockoutThreshold):
// past the threshold the username is locked for a while and Login returns
// a *LockedError without checking the password. Every failure is logged
// with the username, never the password.
func (s *Service) Login(ctx context.Context, username, password, deviceID, deviceName string) (*api.TokenResponse, error) {
	var (
		u      userRecord
		userID string
		locked time.Duration
	)
	key := strings.ToLower(strings.TrimSpace(username))
	if len(key) > 100 {
		key = key[:100]
	}
	now := s.cfg.Now()
	failed := func(reason string) error {
		lockedFor, err := s.countFailure(ctx, key, now)
		if err != nil {
			s.cfg.Logger.Error("failed login not counted", "username", key, "err", err)
		}
		s.cfg.Logger.Warn("login failed", "username", key, "reason", reason, "locked_for", lockedFor.String())
		if lockedFor > 0 && userID != "" {
			_ = s.Audit(ctx, AuditEntry{ActorID: "system", Action: ActionUserLocked,
				Team: firstOr(u.Teams), Teams: restOf(u.Teams), TargetKind: "user", TargetID: u.ID,
				Detail: map[string]string{"username": u.Username, "locked_for": lockedFor.String()}})
		}
		return fmt.Errorf("login: %w", ErrInvalidCredentials)
	}
	// One read: the username's lock, then the user.
	err := s.view(ctx, func(txn store.Tx) (err error) {
		u, userID = userRecord{}, ""
		if locked, err = s.lockedFor(txn, key, now); err != nil || locked > 0 {
			return err
		}
		if userID, err = getString(txn, pUsername+key); err != nil {
			return err
		}
		return getJSON(txn, pUser+userID, &u)
	})
	if err == nil && locked > 0 {
		s.cfg.Logger.Warn("login refused: username locked", "username", key, "retry_after", locked.Round(time.Second).String())
		return nil, fmt.Errorf("login: %w", &LockedError{RetryAfter: locked})
	}
	if errors.Is(err, ErrNotFound) || (err == nil && len(u.Hash) == 0) {
		// Spend the same time as a real check so that timing does not
		// reveal which usernames exist. Users from an external issuer have
		// no password and cannot log in with one.
		s.dummyOnce.Do(func() {
			s.dummyHash, _ = bcrypt.GenerateFromPassword([]byte(randomHex(16)), s.cfg.BcryptCost)
		})
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		if err == nil {
			return nil, failed("no password (external user)")
		}
		userID = ""
		return nil, failed("unknown username")
	}
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	if bcrypt.CompareHashAndPassword(u.Hash, []byte(password)) != nil {
		return nil, failed("wrong password")
	}
	tr, err := s.startSession(ctx, &u, deviceID, deviceName, key)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return tr, nil
}

// startSession binds the device to an authenticated user (registering it,
// or reinstating it after a reuse revocation), starts a new generation and
// issues the first tokens of its chain. A password login names the
// username key (lockoutKey) whose failed logins it clears, in the same
// transaction.
func (s *Service) startSession(ctx context.Context, u *userRecord, deviceID, deviceName, clearLock string) (*api.TokenResponse, error) {
	replica, err := crdt.ParseReplicaID(strings.ToLower(deviceID))
	if err != nil || replica.IsZero() {
		return nil, fmt.Errorf("%w: device_id must be 32 hex digits, not zero", ErrInvalid)
	}
	if len(deviceName) > 200 {
		return nil, fmt.Errorf("%w: device_name longer than 200 bytes", ErrInvalid)
	}
	if err := s.mayHoldTokens(&u.User); err != nil {
		return nil, err
	}
	now := s.cfg.Now().UTC()
	refresh := newRefreshToken()
	var d Device
	err = s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
		d = Device{}
		switch err := getJSON(txn, pDevice+replica.String(), &d); {
		case errors.Is(err, ErrNotFound):
			if err := s.checkDeviceBound(txn, u.ID); err != nil {
				return err
			}
			d = Device{ID: replica.String(), Name: deviceName, User: u.ID, Created: now}
			if err := txn.Set([]byte(pUserDev+u.ID+"/"+d.ID), nil); err != nil {
				return err
			}
			e := userAudit(ActionDeviceRegister, &u.User, nil, map[string]string{"user": u.ID})
			e.ActorID, e.ActorName, e.ActorRole, e.Device = u.ID, u.Name, u.Role, d.ID
			e.TargetKind, e.TargetID = "device", d.ID
			if err := audit(e); err != nil {
				return err
			}
		case err != nil:
			return err
		case d.User != u.ID:
			return fmt.Errorf("%w: device %s", ErrDeviceMismatch, d.ID)
		case d.Revoked && d.RevokedReason != RevokedByReuse:
			return fmt.Errorf("%w: device %s", ErrDeviceRevoked, d.ID)
		}
		d.Revoked, d.RevokedAt, d.RevokedReason = false, time.Time{}, ""
		d.Gen++
		d.LastSeen = now
		if deviceName != "" {
			d.Name = deviceName
		}
		if err := setJSON(txn, pDevice+d.ID, d); err != nil {
			return err
		}
		if clearLock != "" {
			if err := clearFailures(txn, clearLock); err != nil {
				return err
			}
		}
		return setRefresh(txn, pRefresh+hashToken(refresh), refreshRecord{
			Device: d.ID, User: u.ID, Gen: d.Gen, Created: now, Expires: now.Add(s.cfg.RefreshTTL),
		}, now)
	})
	if err != nil {
		return nil, err
	}
	access, err := s.issueAccess(u, d.ID, d.Gen, now)
	if err != nil {
		return nil, err
	}
	return s.tokenResponse(u, access, refresh), nil
}

// Refresh spends a refresh token and returns a new access token and the
// refresh token that succeeds it. The token must be bound to deviceID.
//
// Presenting a spent token revokes the device and returns ErrRefreshReused,
// except within ReuseGrace of the refresh that spent it while its successor
// is still unused: then the successor is cancelled and a new one issued, so a
// device that lost the reply can retry.
func (s *Service) Refresh(ctx context.Context, token, deviceID string) (*api.TokenResponse, error) {
	if token == "" || len(token) > 256 {
		return nil, fmt.Errorf("refresh: %w: malformed refresh token", ErrUnauthorized)
	}
	replica, err := crdt.ParseReplicaID(strings.ToLower(deviceID))
	if err != nil {
		return nil, fmt.Errorf("refresh: %w: device_id must be 32 hex digits", ErrUnauthorized)
	}
	now := s.cfg.Now().UTC()
	key := pRefresh + hashToken(token)
	next := newRefreshToken()
	nextKey := pRefresh + hashToken(next)
	var (
		u      userRecord
		d      Device
		reused bool
	)
	err = s.update(ctx, func(txn store.Tx) error {
		reused, d, u = false, Device{}, userRecord{} // fresh on a conflict retry
		var rt refreshRecord
		if err := getJSON(txn, key, &rt); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w: unknown refresh token", ErrUnauthorized)
			}
			return err
		}
		if subtle.ConstantTimeCompare([]byte(rt.Device), []byte(replica.String())) != 1 {
			return fmt.Errorf("%w: refresh token bound to another device", ErrUnauthorized)
		}
		if err := getJSON(txn, pDevice+rt.Device, &d); err != nil {
			return err
		}
		switch {
		case d.Revoked:
			return fmt.Errorf("%w: device %s", ErrDeviceRevoked, d.ID)
		case rt.Gen != d.Gen:
			return fmt.Errorf("%w: refresh token superseded by a later login", ErrUnauthorized)
		case !now.Before(rt.Expires):
			return fmt.Errorf("%w: refresh token expired", ErrUnauthorized)
		}
		if !rt.SpentAt.IsZero() {
			var succ refreshRecord
			succKey := pRefresh + rt.Successor
			succErr := getJSON(txn, succKey, &succ)
			inGrace := s.cfg.ReuseGrace > 0 && now.Sub(rt.SpentAt) <= s.cfg.ReuseGrace
			if !inGrace || succErr != nil || !succ.SpentAt.IsZero() {
				reused = true
				d.Revoked, d.RevokedAt, d.RevokedReason = true, now, RevokedByReuse
				return setJSON(txn, pDevice+d.ID, d)
			}
			// The device most likely never got the reply: cancel the
			// successor and issue another.
			if err := txn.Delete([]byte(succKey)); err != nil {
				return err
			}
		}
		if err := getJSON(txn, pUser+rt.User, &u); err != nil {
			return err
		}
		if err := s.mayHoldTokens(&u.User); err != nil {
			return err
		}
		rt.SpentAt, rt.Successor = now, hashToken(next)
		if err := setRefresh(txn, key, rt, now); err != nil {
			return err
		}
		d.LastSeen = now
		if err := setJSON(txn, pDevice+d.ID, d); err != nil {
			return err
		}
		return setRefresh(txn, nextKey, refreshRecord{
			Device: d.ID, User: u.ID, Gen: d.Gen, Created: now, Expires: now.Add(s.cfg.RefreshTTL),
		}, now)
	})
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	if reused {
		s.cfg.Logger.Warn("refresh token reused; device revoked", "device", d.ID, "user", d.User)
		owner, _ := s.User(ctx, d.User) // for the teams the entry concerns
		owner.ID = d.User
		e := userAudit(ActionDeviceRevoke, &owner, nil, map[string]string{"user": d.User, "reason": RevokedByReuse})
		e.ActorID, e.Device, e.TargetKind, e.TargetID = "system", d.ID, "device", d.ID
		if err := s.Audit(ctx, e); err != nil {
			s.cfg.Logger.Error("audit entry not recorded", "action", e.Action, "device", d.ID, "err", err)
		}
		return nil, fmt.Errorf("refresh: %w: device %s revoked", ErrRefreshReused, d.ID)
	}
	access, err := s.issueAccess(&u, d.ID, d.Gen, now)
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	return s.tokenResponse(&u, access, next), nil
}

// Ping checks that the store is open and writable, by a durable write.
func (s *Service) Ping(ctx context.Context) error {
	err := s.update(ctx, func(txn store.Tx) error {
		return txn.Set([]byte(kReady), []byte(s.cfg.Now().UTC().Format(time.RFC3339Nano)))
	})
	if err != nil {
		return fmt.Errorf("auth ping: %w", err)
	}
	return nil
}
