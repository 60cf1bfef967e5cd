package auth

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/store"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// ExternalIssuer configures an OpenID Connect issuer (NHS CIS2, say) whose
// ID tokens Exchange accepts in place of a password. Its signing keys come
// from its JWKS document; its tokens must name the user's Doorstep role and
// teams in two claims, which the issuer is trusted to assert.
type ExternalIssuer struct {
	// Issuer is the iss the ID tokens must carry.
	Issuer string
	// Audience is the aud the ID tokens must carry: Doorstep's client ID
	// at the issuer.
	Audience string
	// JWKSURL is where the issuer publishes its public keys. Empty means
	// OpenID Connect discovery: the jwks_uri of the issuer's
	// /.well-known/openid-configuration, fetched once at New. It must be
	// https, except on a loopback host (tests, a sidecar).
	JWKSURL string
	// Algorithms accepted; default RS256, PS256, ES256 and EdDSA. HMAC
	// algorithms are never accepted.
	Algorithms []string
	// RoleClaim and TeamsClaim name the claims holding the role (a string)
	// and the teams (an array of team IDs); defaults "doorstep_role" and
	// "doorstep_teams".
	RoleClaim, TeamsClaim string
	// HTTPClient fetches the discovery document and the JWKS; default a
	// client with a 10 s timeout.
	HTTPClient *http.Client
	// MinRefetch is the least time between JWKS fetches prompted by an
	// unknown kid; default 1 minute. A token whose kid is unknown within
	// that time is refused at once, without waiting.
	MinRefetch time.Duration
	// RefreshInterval is how often the JWKS is refetched in the
	// background, so that rotated keys are known before tokens use them;
	// default 1 hour.
	RefreshInterval time.Duration
	// Logger receives background refresh failures; default slog.Default().
	Logger *slog.Logger
}

// jwks holds an external issuer's keys: a keyfunc.Keyfunc over a jwkset
// HTTP storage that refreshes in the background (its goroutine is owned by
// the jwks and stopped by close) and refetches on an unknown kid at most
// once per MinRefetch, without holding any lock of ours across the fetch.
type jwks struct {
	cfg    ExternalIssuer
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc
}

func newJWKS(ctx context.Context, cfg ExternalIssuer) (*jwks, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, fmt.Errorf("%w: external issuer needs Issuer and Audience", ErrInvalid)
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}
	}
	for _, a := range cfg.Algorithms {
		if strings.HasPrefix(a, "HS") || a == "none" {
			return nil, fmt.Errorf("%w: algorithm %s is not allowed for an external issuer", ErrInvalid, a)
		}
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = "doorstep_role"
	}
	if cfg.TeamsClaim == "" {
		cfg.TeamsClaim = "doorstep_teams"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = time.Minute
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.JWKSURL == "" {
		u, err := discoverJWKS(ctx, cfg)
		if err != nil {
			return nil, err
		}
		cfg.JWKSURL = u
	}
	if err := checkKeyURL("JWKS URL", cfg.JWKSURL); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	logger := cfg.Logger
	kf, err := keyfunc.NewDefaultOverrideCtx(bg, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:          cfg.HTTPClient,
		RefreshInterval: cfg.RefreshInterval,
		// One refetch per MinRefetch on an unknown kid; a token that finds
		// the limiter empty is refused at once rather than queued.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cfg.MinRefetch), 1),
		RateLimitWaitMax:  time.Millisecond,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.WarnContext(ctx, "external issuer: JWKS refresh failed", "url", u, "err", err)
			}
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: external issuer JWKS: %v", ErrInvalid, err)
	}
	return &jwks{cfg: cfg, kf: kf, cancel: cancel}, nil
}

// close stops the background refresh.
func (j *jwks) close() { j.cancel() }

// discoverJWKS reads the issuer's OpenID Connect discovery document (with
// go-oidc, which also checks that it names the same issuer) and returns
// its jwks_uri.
func discoverJWKS(ctx context.Context, cfg ExternalIssuer) (string, error) {
	if err := checkKeyURL("issuer", cfg.Issuer); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, cfg.HTTPClient), 30*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return "", fmt.Errorf("%w: OpenID Connect discovery for %s: %v", ErrInvalid, cfg.Issuer, err)
	}
	var doc struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKSURL == "" {
		return "", fmt.Errorf("%w: OpenID Connect discovery for %s: no jwks_uri", ErrInvalid, cfg.Issuer)
	}
	return doc.JWKSURL, nil
}

// checkKeyURL refuses a URL keys are fetched from unless it is https, or
// http to a loopback host (127.0.0.0/8, ::1, localhost).
func checkKeyURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: external issuer %s %q is not an absolute URL", ErrInvalid, what, raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("%w: external issuer %s %q must be https (http only on a loopback host)", ErrInvalid, what, raw)
}

// key returns the verification key for an ID token: the JWKS key named by
// its kid, refused if it is an RSA key shorter than 2048 bits.
func (j *jwks) key(ctx context.Context, t *jwt.Token) (any, error) {
	k, err := j.kf.KeyfuncCtx(ctx)(t)
	if err != nil {
		kid, _ := t.Header["kid"].(string)
		return nil, fmt.Errorf("key id %q: %w", kid, err)
	}
	short := func(k any) bool { rk, ok := k.(*rsa.PublicKey); return ok && rk.N.BitLen() < 2048 }
	if set, ok := k.(jwt.VerificationKeySet); ok { // a token without kid: every key is tried
		set.Keys = slices.DeleteFunc(slices.Clone(set.Keys), func(k jwt.VerificationKey) bool { return short(k) })
		return set, nil
	}
	if short(k) {
		return nil, errors.New("RSA key shorter than 2048 bits")
	}
	return k, nil
}

// ExternalTokenError is why an ID token was refused by Exchange, in words
// fit for the client (the issuer signed what it says, so nothing secret is
// revealed). It wraps ErrInvalidCredentials, or ErrTokenExpired.
type ExternalTokenError struct {
	Reason string
	err    error
}

// Error implements error.
func (e *ExternalTokenError) Error() string { return "exchange: ID token refused: " + e.Reason }

// Unwrap returns the sentinel the error wraps.
func (e *ExternalTokenError) Unwrap() error { return e.err }

func refused(sentinel error, format string, args ...any) error {
	return &ExternalTokenError{Reason: fmt.Sprintf(format, args...), err: sentinel}
}

// externalUsername is the username an external subject is stored under; it
// cannot collide with a local username, which may not contain '/'.
func externalUsername(issuer, sub string) string { return "ext/" + issuer + "/" + sub }

// Exchange checks an ID token from the configured external issuer and
// returns Doorstep tokens bound to the device, as Login does for a
// password. The user is created on first exchange and their role and teams
// are updated from the token's claims each time (the issuer is the source
// of truth). Every team named must exist in Doorstep.
func (s *Service) Exchange(ctx context.Context, idToken, deviceID, deviceName string) (*api.TokenResponse, error) {
	if s.ext == nil {
		return nil, fmt.Errorf("exchange: %w: no external issuer configured", ErrNotFound)
	}
	j := s.ext
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(idToken, claims, func(t *jwt.Token) (any, error) {
		return j.key(ctx, t)
	},
		jwt.WithValidMethods(j.cfg.Algorithms),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(j.cfg.Issuer),
		jwt.WithAudience(j.cfg.Audience),
		jwt.WithTimeFunc(s.cfg.Now),
		jwt.WithLeeway(30*time.Second),
	)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return nil, refused(ErrTokenExpired, "expired")
		}
		return nil, refused(ErrInvalidCredentials, "%v", err)
	}
	sub, _ := claims["sub"].(string)
	role, _ := claims[j.cfg.RoleClaim].(string)
	rawTeams, teamsOK := claims[j.cfg.TeamsClaim].([]any)
	switch {
	case sub == "" || len(sub) > 200:
		return nil, refused(ErrInvalidCredentials, "the sub claim is missing or longer than 200 bytes")
	case claims[j.cfg.RoleClaim] == nil:
		return nil, refused(ErrInvalidCredentials, "the %s claim is missing", j.cfg.RoleClaim)
	case !ValidRole(role):
		return nil, refused(ErrInvalidCredentials, "the %s claim is not link_worker, coordinator or admin", j.cfg.RoleClaim)
	case claims[j.cfg.TeamsClaim] == nil:
		return nil, refused(ErrInvalidCredentials, "the %s claim is missing", j.cfg.TeamsClaim)
	}
	if !teamsOK {
		return nil, refused(ErrInvalidCredentials, "the %s claim must be an array of strings", j.cfg.TeamsClaim)
	}
	var teams []string
	for _, t := range rawTeams {
		id, ok := t.(string)
		if !ok {
			return nil, refused(ErrInvalidCredentials, "the %s claim must be an array of strings", j.cfg.TeamsClaim)
		}
		teams = append(teams, id)
	}
	name, _ := claims["name"].(string)
	if len(name) > 200 {
		name = name[:200]
	}
	username := externalUsername(j.cfg.Issuer, sub)
	var u userRecord
	err = s.auditUpdate(ctx, func(txn store.Tx, audit func(AuditEntry) error) error {
		u = userRecord{} // fresh on a conflict retry
		var old *User
		ts, err := s.checkTeams(txn, teams)
		if err != nil {
			return err
		}
		key := pUsername + strings.ToLower(username)
		id, err := getString(txn, key)
		switch {
		case errors.Is(err, ErrNotFound):
			u = userRecord{User: User{ID: randomHex(8), Username: username, Name: name, Created: s.cfg.Now().UTC()}}
			if u.Name == "" {
				u.Name = sub
			}
			if err := txn.Set([]byte(key), []byte(u.ID)); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if err := getJSON(txn, pUser+id, &u); err != nil {
				return err
			}
			if name != "" {
				u.Name = name
			}
			prev := u.User
			old = &prev
		}
		u.Role, u.Teams = role, ts
		if err := setJSON(txn, pUser+u.ID, u); err != nil {
			return err
		}
		// The issuer is the source of truth: record what it changed.
		var e AuditEntry
		switch {
		case old == nil:
			e = userAudit(ActionUserCreate, &u.User, nil, map[string]string{"role": role, "teams": strings.Join(ts, ","), "issuer": j.cfg.Issuer})
		case old.Role != role || !slices.Equal(old.Teams, ts):
			e = userAudit("user.external_update", &u.User, old, map[string]string{"role": role, "old_role": old.Role,
				"teams": strings.Join(ts, ","), "old_teams": strings.Join(old.Teams, ","), "issuer": j.cfg.Issuer})
		default:
			return nil
		}
		e.ActorID, e.ActorName, e.ActorRole = "system", "external issuer", ""
		return audit(e)
	})
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	tr, err := s.startSession(ctx, &u, deviceID, deviceName, "")
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	return tr, nil
}

// HasExternalIssuer reports whether Exchange is configured.
func (s *Service) HasExternalIssuer() bool { return s.ext != nil }
