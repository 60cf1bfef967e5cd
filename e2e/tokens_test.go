package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/golang-jwt/jwt/v5"
)

// serverKey reads the server's signing key from its data directory, as an
// attacker who somehow could not would not; tests use it to sign tokens that
// are valid in every respect but one.
func serverKey(t *testing.T, e *env) (string, ed25519.PrivateKey) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(e.data, "keys", "*.pem"))
	if err != nil || len(files) != 1 {
		t.Fatalf("key files %v %v", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(files[0]); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(filepath.Base(files[0]), ".pem"), k.(ed25519.PrivateKey)
}

func sign(t *testing.T, m jwt.SigningMethod, claims jwt.Claims, kid string, key any) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenAttacks(t *testing.T) {
	e := newEnv(t)
	ann := e.login("ann")
	kid, key := serverKey(t, e)
	pub := key.Public().(ed25519.PublicKey)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)

	// The claims of ann's real token, to vary one thing at a time.
	real, err := e.srv.Auth().Verify(ann.access)
	if err != nil {
		t.Fatal(err)
	}
	claims := func(mod func(c *auth.Claims)) *auth.Claims {
		c := &auth.Claims{Role: real.Role, Teams: real.Teams, Device: real.Device, Gen: real.Gen, RegisteredClaims: real.RegisteredClaims}
		c.IssuedAt = jwt.NewNumericDate(time.Now())
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(10 * time.Minute))
		if mod != nil {
			mod(c)
		}
		return c
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(pub))})
	noneTok := sign(t, jwt.SigningMethodNone, claims(nil), kid, jwt.UnsafeAllowNoneSignatureType)
	parts := strings.Split(ann.access, ".")
	tampered := parts[0] + "." + strings.Split(sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Role = api.RoleAdmin }), kid, key), ".")[1] + "." + parts[2]

	cases := []struct {
		name  string
		token string
		code  api.Code
	}{
		{"control: forged with the real key and real claims", sign(t, jwt.SigningMethodEdDSA, claims(nil), kid, key), ""},
		{"alg none", noneTok, api.CodeUnauthorized},
		{"alg none, signature stripped from a real token", parts[0] + "." + parts[1] + ".", api.CodeUnauthorized},
		{"HS256 keyed with the public key bytes", sign(t, jwt.SigningMethodHS256, claims(nil), kid, []byte(pub)), api.CodeUnauthorized},
		{"HS256 keyed with the public key PEM", sign(t, jwt.SigningMethodHS256, claims(nil), kid, pubPEM), api.CodeUnauthorized},
		{"wrong key, real kid", sign(t, jwt.SigningMethodEdDSA, claims(nil), kid, otherKey), api.CodeUnauthorized},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, claims(nil), "0000000000000000", key), api.CodeUnauthorized},
		{"no kid", sign(t, jwt.SigningMethodEdDSA, claims(nil), "", key), api.CodeUnauthorized},
		{"expired", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute)) }), kid, key), api.CodeTokenExpired},
		{"missing exp", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.ExpiresAt = nil }), kid, key), api.CodeUnauthorized},
		{"wrong audience", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Audience = jwt.ClaimStrings{"someone-else"} }), kid, key), api.CodeUnauthorized},
		{"no audience", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Audience = nil }), kid, key), api.CodeUnauthorized},
		{"wrong issuer", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Issuer = "https://evil.example" }), kid, key), api.CodeUnauthorized},
		{"issued in the future", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.IssuedAt = jwt.NewNumericDate(time.Now().Add(time.Hour)) }), kid, key), api.CodeUnauthorized},
		{"payload tampered (role admin) under the real signature", tampered, api.CodeUnauthorized},
		{"unknown device", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Device = "0123456789abcdef0123456789abcdef" }), kid, key), api.CodeUnauthorized},
		{"another user's device", sign(t, jwt.SigningMethodEdDSA, claims(func(c *auth.Claims) { c.Subject = e.users["bea"] }), kid, key), api.CodeUnauthorized},
		{"garbage", "not.a.jwt", api.CodeUnauthorized},
		{"empty", "", api.CodeUnauthorized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The sync route answers in msgpack…
			st, _, p := e.postSync(tc.token, encode(t, ann.request()), nil)
			// …and a JSON route in JSON.
			st2, p2 := e.doJSON(http.MethodGet, "/v1/admin/teams", tc.token, nil, nil)
			if tc.code == "" {
				if st != http.StatusOK {
					t.Fatalf("sync: %d %+v", st, p)
				}
				if st2 != http.StatusForbidden { // ann is a link worker
					t.Fatalf("admin route: %d %+v", st2, p2)
				}
				return
			}
			if st != http.StatusUnauthorized || p.Code != tc.code {
				t.Errorf("sync: %d %+v, want 401 %s", st, p, tc.code)
			}
			if st2 != http.StatusUnauthorized || p2.Code != tc.code {
				t.Errorf("admin route: %d %+v, want 401 %s", st2, p2, tc.code)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
