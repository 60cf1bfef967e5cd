package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/doorstep-health/doorstep/api"
	"github.com/golang-jwt/jwt/v5"
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
	// JWKSURL is where the issuer publishes its public keys.
	JWKSURL string
	// Algorithms accepted; default RS256, PS256, ES256 and EdDSA. HMAC
	// algorithms are never accepted.
	Algorithms []string
	// RoleClaim and TeamsClaim name the claims holding the role (a string)
	// and the teams (an array of team IDs); defaults "doorstep_role" and
	// "doorstep_teams".
	RoleClaim, TeamsClaim string
	// HTTPClient fetches the JWKS; default a client with a 10 s timeout.
	HTTPClient *http.Client
	// MinRefetch is the least time between JWKS fetches prompted by an
	// unknown kid; default 1 minute.
	MinRefetch time.Duration
}

type jwks struct {
	cfg ExternalIssuer
	now func() time.Time

	mu      gosync.Mutex
	keys    map[string]any // kid → *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	fetched time.Time
}

func newJWKS(cfg ExternalIssuer, now func() time.Time) (*jwks, error) {
	if cfg.Issuer == "" || cfg.Audience == "" || cfg.JWKSURL == "" {
		return nil, fmt.Errorf("%w: external issuer needs Issuer, Audience and JWKSURL", ErrInvalid)
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
	return &jwks{cfg: cfg, now: now, keys: map[string]any{}}, nil
}

// key returns the public key for kid, fetching the JWKS if the kid is
// unknown and the last fetch is older than MinRefetch.
func (j *jwks) key(ctx context.Context, kid string) (any, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if k, ok := j.keys[kid]; ok {
		return k, nil
	}
	if !j.fetched.IsZero() && j.now().Sub(j.fetched) < j.cfg.MinRefetch {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	keys, err := j.fetch(ctx)
	j.fetched = j.now()
	if err != nil {
		return nil, err
	}
	j.keys = keys
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

func (j *jwks) fetch(ctx context.Context) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	res, err := j.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: %s", res.Status)
	}
	var doc struct {
		Keys []struct {
			Kty, Kid, Use, Alg, Crv string
			N, E, X, Y              string
		} `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	b64 := func(s string) (*big.Int, error) {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
		if err != nil || len(b) == 0 {
			return nil, fmt.Errorf("bad base64url %q", s)
		}
		return new(big.Int).SetBytes(b), nil
	}
	keys := map[string]any{}
	for _, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch {
		case k.Kty == "RSA":
			n, err := b64(k.N)
			if err != nil {
				return nil, fmt.Errorf("jwks key %q: %w", k.Kid, err)
			}
			e, err := b64(k.E)
			if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
				return nil, fmt.Errorf("jwks key %q: bad exponent", k.Kid)
			}
			if n.BitLen() < 2048 {
				return nil, fmt.Errorf("jwks key %q: RSA key of %d bits is too short", k.Kid, n.BitLen())
			}
			keys[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case k.Kty == "EC" && k.Crv == "P-256":
			x, err1 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
			y, err2 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.Y, "="))
			if err := errors.Join(err1, err2); err != nil || len(x) != 32 || len(y) != 32 {
				return nil, fmt.Errorf("jwks key %q: bad P-256 coordinates", k.Kid)
			}
			pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
			if err != nil { // also refuses a point off the curve
				return nil, fmt.Errorf("jwks key %q: %w", k.Kid, err)
			}
			keys[k.Kid] = pub
		case k.Kty == "OKP" && k.Crv == "Ed25519":
			b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
			if err != nil || len(b) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("jwks key %q: bad Ed25519 key", k.Kid)
			}
			keys[k.Kid] = ed25519.PublicKey(b)
		}
	}
	return keys, nil
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
		kid, _ := t.Header["kid"].(string)
		return j.key(ctx, kid)
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
			return nil, fmt.Errorf("exchange: %w: %v", ErrTokenExpired, err)
		}
		return nil, fmt.Errorf("exchange: %w: %v", ErrInvalidCredentials, err)
	}
	sub, _ := claims["sub"].(string)
	role, _ := claims[j.cfg.RoleClaim].(string)
	rawTeams, _ := claims[j.cfg.TeamsClaim].([]any)
	if sub == "" || len(sub) > 200 || !ValidRole(role) {
		return nil, fmt.Errorf("exchange: %w: token lacks sub or a valid %s", ErrInvalidCredentials, j.cfg.RoleClaim)
	}
	var teams []string
	for _, t := range rawTeams {
		id, ok := t.(string)
		if !ok {
			return nil, fmt.Errorf("exchange: %w: %s must be an array of strings", ErrInvalidCredentials, j.cfg.TeamsClaim)
		}
		teams = append(teams, id)
	}
	name, _ := claims["name"].(string)
	if len(name) > 200 {
		name = name[:200]
	}
	username := externalUsername(j.cfg.Issuer, sub)
	var u userRecord
	err = s.auditUpdate(ctx, func(txn *badger.Txn, audit func(AuditEntry) error) error {
		u = userRecord{} // fresh on a conflict retry
		var old *User
		ts, err := s.checkTeams(txn, teams)
		if err != nil {
			return err
		}
		key := pUsername + strings.ToLower(username)
		item, err := txn.Get([]byte(key))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
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
			id, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := getJSON(txn, pUser+string(id), &u); err != nil {
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
	s.cacheUser(u.User)
	tr, err := s.startSession(ctx, &u, deviceID, deviceName)
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	return tr, nil
}

// HasExternalIssuer reports whether Exchange is configured.
func (s *Service) HasExternalIssuer() bool { return s.ext != nil }
