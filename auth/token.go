package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/doorstep-health/doorstep/auth/identity"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a Doorstep access token; Subject is the user ID
// (see identity.Claims).
type Claims = identity.Claims

// ValidRole reports whether role is one of the roles Doorstep knows.
func ValidRole(role string) bool { return identity.ValidRole(role) }

// RoleAtLeast reports whether role has the rights of min: admin ⊇
// coordinator ⊇ link_worker.
func RoleAtLeast(role, min string) bool { return identity.RoleAtLeast(role, min) }

// SigningMethod is the only JWT algorithm Doorstep issues or accepts.
const SigningMethod = "EdDSA"

func (s *Service) issueAccess(u *userRecord, device string, gen uint64, now time.Time) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("token id: %w", err)
	}
	teams := u.Teams
	if teams == nil {
		teams = []string{}
	}
	c := &Claims{
		Role:   u.Role,
		Teams:  teams,
		Device: device,
		Gen:    gen,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    s.cfg.Issuer,
			Subject:   u.ID,
			Audience:  jwt.ClaimStrings{s.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.cfg.AccessTTL)),
			ID:        hex.EncodeToString(jti[:]),
		},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	k := s.keys.Load().signing
	t.Header["kid"] = k.kid
	signed, err := t.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// Verify checks an access token and returns its claims. The algorithm must
// be EdDSA, the key is looked up by the header's kid, and exp, iss and aud
// are required and checked. It does not check whether the device has been
// revoked since; see CheckDevice.
//
// It returns an error wrapping ErrTokenExpired for a token past its expiry
// and ErrUnauthorized for every other failure.
func (s *Service) Verify(token string) (*Claims, error) {
	c := &Claims{}
	_, err := jwt.ParseWithClaims(token, c, s.verifyKey,
		jwt.WithValidMethods([]string{SigningMethod}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithAudience(s.cfg.Audience),
		jwt.WithTimeFunc(s.cfg.Now),
		jwt.WithLeeway(5*time.Second),
	)
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return nil, fmt.Errorf("%w: %v", ErrTokenExpired, err)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnauthorized, err)
	}
	if c.Subject == "" || !ValidRole(c.Role) {
		return nil, fmt.Errorf("%w: token lacks subject or role", ErrUnauthorized)
	}
	if r, err := crdt.ParseReplicaID(c.Device); err != nil || r.IsZero() {
		return nil, fmt.Errorf("%w: token device: %v", ErrUnauthorized, err)
	}
	return c, nil
}

// verifyKey finds the public key that verifies a token by the kid in its
// header (the jwt.Keyfunc of Verify and VerifySignature).
func (s *Service) verifyKey(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	pub, ok := s.keys.Load().byKID[kid]
	if !ok {
		// A shared store's key added through another server.
		pub, ok = s.reloadKeys().byKID[kid]
	}
	if !ok {
		return nil, fmt.Errorf("unknown key id %q", kid)
	}
	return ed25519.PublicKey(pub), nil
}
