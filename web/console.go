package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/schema"
	"github.com/doorstep-health/doorstep/sync/review"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures a Console. Engine and Auth are required.
type Config struct {
	Engine Engine
	Auth   Auth
	// Schema gives collection and field descriptions and clinical flags;
	// nil means the default home-visit schema.
	Schema *schema.Schema
	Logger *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // nil: time.Now
	// TrustProxy makes X-Forwarded-Proto: https count as TLS (Secure
	// cookies), as the server trusts X-Forwarded-For.
	TrustProxy bool
	// LoginAllowed is the sign-in rate limit, shared with the API's login
	// route; nil allows every attempt.
	LoginAllowed func(r *http.Request) bool
	// SessionIdle and SessionMax are a session's idle and absolute
	// lifetimes; defaults 30 minutes and 12 hours.
	SessionIdle, SessionMax time.Duration
	// MaxSessions bounds one user's console sessions (signing in once
	// more ends the oldest); default 20.
	MaxSessions int
	// Sessions keeps the console sessions (see SessionStore); nil: Auth,
	// which must then be one.
	Sessions SessionStore
	// Blobs, if set, is the attachment store: the record page shows
	// thumbnails and links for attachment fields, served through a
	// team-scoped console route. Nil: attachments show as pending.
	Blobs Blobs
}

// Console is the coordinator console, an http.Handler for the paths under
// /console/.
type Console struct {
	cfg   Config
	log   *slog.Logger
	sch   *schema.Schema
	ss    *sessions
	pages map[string]*template.Template
	mux   *http.ServeMux

	outMu    gosync.Mutex
	outCache map[string]cachedOutcomes // by team

	warmOnce gosync.Once
	warmStop context.CancelFunc
	warmDone chan struct{}
}

// New builds the console. It parses every template once and fails if one
// does not parse.
func New(cfg Config) (*Console, error) {
	if cfg.Engine == nil || cfg.Auth == nil {
		return nil, errors.New("web: Engine and Auth are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionIdle <= 0 {
		cfg.SessionIdle = 30 * time.Minute
	}
	if cfg.SessionMax <= 0 {
		cfg.SessionMax = 12 * time.Hour
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 20
	}
	if cfg.Sessions == nil {
		st, ok := any(cfg.Auth).(SessionStore)
		if !ok {
			return nil, errors.New("web: Sessions is required")
		}
		cfg.Sessions = st
	}
	c := &Console{cfg: cfg, log: cfg.Logger, sch: cfg.Schema, outCache: map[string]cachedOutcomes{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.ss = newSessions(cfg.Sessions, c.log, cfg.SessionIdle, cfg.SessionMax, cfg.MaxSessions)
	if c.sch == nil {
		c.sch = schema.Default()
	}
	if err := c.parse(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

// pageNames are the templates, each executed inside layout.html.
var pageNames = []string{"login", "refused", "error", "teams", "home", "conflicts", "conflict", "record", "changes", "search", "outcomes", "devices", "quarantine", "users"}

func (c *Console) parse() error {
	c.pages = map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("web: template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// Route is one console route: a method and a path pattern with {name}
// segments, as the server registers it.
type Route struct{ Method, Path string }

type routeHandler struct {
	Route
	h http.HandlerFunc
}

func (c *Console) table() []routeHandler {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/console/static/", http.FileServerFS(static))
	return []routeHandler{
		{Route{"GET", "/console/static/{file}"}, files.ServeHTTP},
		{Route{"GET", "/console/"}, c.signedIn(c.teams)},
		{Route{"GET", "/console/login"}, c.loginPage},
		{Route{"POST", "/console/login"}, c.login},
		{Route{"POST", "/console/logout"}, c.signedIn(c.logout)},
		{Route{"GET", "/console/teams/{team}"}, c.team(c.home)},
		{Route{"GET", "/console/teams/{team}/conflicts"}, c.team(c.conflicts)},
		{Route{"GET", "/console/teams/{team}/conflicts/{collection}/{id}/{field}"}, c.team(c.conflict)},
		{Route{"POST", "/console/teams/{team}/conflicts/{collection}/{id}/{field}"}, c.team(c.resolve)},
		{Route{"GET", "/console/teams/{team}/records/{collection}/{id}"}, c.team(c.record)},
		{Route{"GET", "/console/teams/{team}/records/{collection}/{id}/attachments/{field}/{sha256}"}, c.team(c.attachment)},
		{Route{"GET", "/console/teams/{team}/changes"}, c.team(c.changes)},
		{Route{"GET", "/console/teams/{team}/search"}, c.team(c.search)},
		{Route{"GET", "/console/teams/{team}/outcomes"}, c.team(c.outcomes)},
		{Route{"GET", "/console/teams/{team}/outcomes.csv"}, c.team(c.outcomesCSV)},
		{Route{"GET", "/console/admin/devices"}, c.admin(c.devices)},
		{Route{"POST", "/console/admin/devices/{device}/revoke"}, c.admin(c.revoke)},
		{Route{"GET", "/console/admin/quarantine"}, c.admin(c.quarantine)},
		{Route{"POST", "/console/admin/quarantine/{qid}/reapply"}, c.admin(c.reapply)},
		{Route{"POST", "/console/admin/quarantine/{qid}/dismiss"}, c.admin(c.dismiss)},
		{Route{"GET", "/console/admin/users"}, c.admin(c.users)},
	}
}

// Routes lists every console route, for the server to register (and its
// OpenAPI test to check against api/openapi.yaml).
func (c *Console) Routes() []Route {
	var out []Route
	for _, r := range c.table() {
		out = append(out, r.Route)
	}
	return out
}

func (c *Console) routes() {
	m := http.NewServeMux()
	for _, r := range c.table() {
		pattern := r.Path
		if pattern == "/console/" {
			pattern = "/console/{$}"
		}
		m.HandleFunc(r.Method+" "+pattern, r.h)
	}
	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, nil, http.StatusNotFound, "There is no such page.")
	})
	c.mux = m
}

// maxForm bounds a console form body.
const maxForm = 64 << 10

// ServeHTTP serves the console's pages, with security headers on every
// answer.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	if !strings.HasPrefix(r.URL.Path, "/console/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	}
	c.mux.ServeHTTP(w, r)
}

// viewer is the signed-in user as this request sees them: role and teams
// as they stand now (never more than at sign-in).
type viewer struct {
	s      *session
	token  string
	Name   string
	Role   string
	Teams  []string
	CSRF   string
	Admin  bool
	caller review.Caller
}

type handler func(w http.ResponseWriter, r *http.Request, v *viewer)

// current returns the request's viewer, or nil when it has no live
// session (expired, signed out, device revoked, demoted below
// coordinator).
func (c *Console) current(r *http.Request) *viewer {
	ck, err := r.Cookie(cookieSession)
	if err != nil {
		return nil
	}
	ctx := r.Context()
	s := c.ss.get(ctx, ck.Value, c.cfg.Now())
	if s == nil {
		return nil
	}
	if err := c.cfg.Auth.CheckDevice(ctx, s.claims); err != nil {
		c.ss.drop(ctx, ck.Value)
		return nil
	}
	role, teams, err := c.cfg.Auth.Narrow(ctx, s.claims)
	if err != nil || !identity.RoleAtLeast(role, api.RoleCoordinator) {
		c.ss.drop(ctx, ck.Value)
		return nil
	}
	return &viewer{
		s: s, token: ck.Value, Name: s.user.Name, Role: role, Teams: teams, CSRF: s.csrf,
		Admin:  role == api.RoleAdmin,
		caller: review.Caller{User: s.user.ID, Replica: s.claims.Replica(), Teams: teams, Role: role},
	}
}

// signedIn requires a session (else sends the browser to sign in) and, on
// a POST, the session's CSRF token.
func (c *Console) signedIn(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v := c.current(r)
		if v == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/console/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.fail(w, r, nil, http.StatusForbidden, "Your session has ended. Sign in again and repeat the action.")
			return
		}
		if r.Method == http.MethodPost && !sameToken(r.PostFormValue("csrf"), v.CSRF) {
			c.fail(w, r, v, http.StatusForbidden, "This form was refused: its security token is missing or out of date. Go back, reload the page and try again.")
			return
		}
		// The auth service attributes what it records (revocations) to
		// the context's actor, as for the JSON API.
		r = r.WithContext(identity.WithActor(r.Context(), identity.Actor{UserID: v.s.user.ID, Name: v.Name, Role: v.Role, Device: v.caller.Replica.String(), Teams: v.Teams}))
		h(w, r, v)
	}
}

// team additionally requires the path's team to be one of the viewer's,
// answering the same whether or not the team exists.
func (c *Console) team(h handler) http.HandlerFunc {
	return c.signedIn(func(w http.ResponseWriter, r *http.Request, v *viewer) {
		if !slices.Contains(v.Teams, r.PathValue("team")) {
			c.fail(w, r, v, http.StatusForbidden, "You are not a member of this team.")
			return
		}
		h(w, r, v)
	})
}

// admin additionally requires the admin role.
func (c *Console) admin(h handler) http.HandlerFunc {
	return c.signedIn(func(w http.ResponseWriter, r *http.Request, v *viewer) {
		if !v.Admin {
			c.fail(w, r, v, http.StatusForbidden, "This page is for admins.")
			return
		}
		h(w, r, v)
	})
}

// page is what every template gets.
type page struct {
	Title  string
	Viewer *viewer
	Team   string // current team, for the navigation
	Flash  string
	Data   any
	Nav    string // the navigation entry of this page, marked aria-current
}

// navOf names the navigation entry a console path belongs to.
func navOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 3 && parts[1] == "teams":
		return "home"
	case len(parts) >= 4 && parts[1] == "teams":
		if parts[3] == "outcomes.csv" {
			return "outcomes"
		}
		return parts[3]
	case len(parts) >= 3 && parts[1] == "admin":
		return parts[2]
	case len(parts) == 1:
		return "teams"
	}
	return ""
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t := c.pages[name]
	p.Nav = navOf(r.URL.Path)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("console template", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders the error page.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, v *viewer, status int, msg string) {
	c.render(w, r, status, "error", page{Title: http.StatusText(status), Viewer: v, Team: r.PathValue("team"), Data: msg})
}

// failErr maps an engine or auth error to a page.
func (c *Console) failErr(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	switch {
	case errors.Is(err, review.ErrNotFound), errors.Is(err, identity.ErrNotFound):
		c.fail(w, r, v, http.StatusNotFound, "Not found: it may have been erased, or the address is wrong.")
	case errors.Is(err, review.ErrForbidden):
		c.fail(w, r, v, http.StatusForbidden, "You are not a member of this team.")
	case errors.Is(err, review.ErrInvalid), errors.Is(err, identity.ErrInvalid), errors.Is(err, review.ErrBadCursor):
		c.fail(w, r, v, http.StatusBadRequest, "Not accepted: "+err.Error())
	case errors.Is(err, context.Canceled):
		c.fail(w, r, v, http.StatusServiceUnavailable, "The request was cancelled.")
	default:
		c.log.Error("console", "path", r.URL.Path, "err", err)
		c.fail(w, r, v, http.StatusInternalServerError, "Something went wrong on the server; it has been logged.")
	}
}

// audit records an action in the auth service's audit trail, attributed
// to the request's actor. A read whose entry cannot be written is refused
// (the caller shows an error), as the JSON API does.
func (c *Console) audit(r *http.Request, e api.AuditEntry) error {
	if err := c.cfg.Auth.Audit(r.Context(), e); err != nil {
		c.log.Error("console: audit entry not recorded", "action", e.Action, "team", e.Team, "target", e.TargetID, "err", err)
		return err
	}
	return nil
}

// auditRead records that the viewer opened a record (its fields or one
// conflicted field) before the page is sent.
func (c *Console) auditRead(r *http.Request, ref api.RecordRef) error {
	return c.audit(r, api.AuditEntry{Action: "record.read", Team: ref.Team, TargetKind: "record", TargetID: ref.Collection + "/" + ref.ID, Detail: map[string]string{"via": "console"}})
}

// names maps user IDs to users, for attribution.
func (c *Console) names(ctx context.Context) map[string]identity.User {
	us, err := c.cfg.Auth.Users(ctx)
	m := make(map[string]identity.User, len(us))
	if err != nil {
		c.log.Warn("console: users", "err", err)
		return m
	}
	for _, u := range us {
		m[u.ID] = u
	}
	return m
}

// teamName is the display name of a team, or its ID.
func (c *Console) teamNames(ctx context.Context) map[string]string {
	ts, err := c.cfg.Auth.Teams(ctx)
	m := make(map[string]string, len(ts))
	if err != nil {
		return m
	}
	for _, t := range ts {
		m[t.ID] = t.Name
	}
	return m
}

// replicaOf parses a replica ID from a path.
func replicaOf(s string) (crdt.ReplicaID, bool) {
	id, err := crdt.ParseReplicaID(strings.ToLower(s))
	return id, err == nil && !id.IsZero()
}
