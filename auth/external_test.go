package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

func TestExchange(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	ecb, err := ec.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{
			{"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig", "x": b64(ecb[1:33]), "y": b64(ecb[33:])},
			{"kty": "RSA", "kid": "rsa1", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		}})
	}))
	defer jwksSrv.Close()

	clk := &fakeClock{t: time.Now()}
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "auth"), Config{BcryptCost: bcrypt.MinCost, Now: clk.Now,
		External: &ExternalIssuer{Issuer: "https://cis2.example", Audience: "doorstep-client", JWKSURL: jwksSrv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateTeam(ctx, "wigan", "Wigan Frailty"); err != nil {
		t.Fatal(err)
	}
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "https://cis2.example", "aud": "doorstep-client", "sub": "555123",
			"iat": clk.Now().Unix(), "exp": clk.Now().Add(5 * time.Minute).Unix(), "name": "Ann Smith",
			"doorstep_role": "coordinator", "doorstep_teams": []string{"wigan"}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(m, c)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dev := crdt.NewReplicaID().String()
	tr, err := s.Exchange(ctx, sign(jwt.SigningMethodES256, "ec1", ec, claims(nil)), dev, "tab")
	if err != nil {
		t.Fatal(err)
	}
	if tr.User.Role != api.RoleCoordinator || tr.User.Name != "Ann Smith" || len(tr.User.Teams) != 1 {
		t.Fatalf("user %+v", tr.User)
	}
	c, err := s.Verify(tr.AccessToken)
	if err != nil || c.Subject != tr.User.ID {
		t.Fatalf("verify: %+v %v", c, err)
	}
	// The issuer is the source of truth: a later token with another role
	// updates the same user.
	tr2, err := s.Exchange(ctx, sign(jwt.SigningMethodRS256, "rsa1", rk, claims(func(c jwt.MapClaims) { c["doorstep_role"] = "link_worker" })), dev, "tab")
	if err != nil {
		t.Fatal(err)
	}
	if tr2.User.ID != tr.User.ID || tr2.User.Role != api.RoleLinkWorker {
		t.Fatalf("second exchange %+v, first %+v", tr2.User, tr.User)
	}
	// Both the provisioning and the change are in the audit trail.
	if es, _, _, err := s.AuditLog(ctx, AuditQuery{Action: "user.", Actor: "system"}); err != nil || len(es) != 2 ||
		es[0].Action != ActionUserCreate || es[1].Action != "user.external_update" || es[1].Detail["role"] != api.RoleLinkWorker {
		t.Fatalf("audit of exchanges: %+v %v", es, err)
	}
	// An external user has no password.
	if _, err := s.Login(ctx, "ext/https://cis2.example/555123", "", dev, "tab"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("password login of external user: %v", err)
	}

	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	bad := map[string]struct {
		tok  string
		want error
	}{
		"alg none":        {none, ErrInvalidCredentials},
		"HS256":           {sign(jwt.SigningMethodHS256, "ec1", ecb, claims(nil)), ErrInvalidCredentials},
		"wrong key":       {sign(jwt.SigningMethodES256, "ec1", otherEC, claims(nil)), ErrInvalidCredentials},
		"unknown kid":     {sign(jwt.SigningMethodES256, "nope", ec, claims(nil)), ErrInvalidCredentials},
		"wrong issuer":    {sign(jwt.SigningMethodES256, "ec1", ec, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), ErrInvalidCredentials},
		"wrong audience":  {sign(jwt.SigningMethodES256, "ec1", ec, claims(func(c jwt.MapClaims) { c["aud"] = "other" })), ErrInvalidCredentials},
		"no exp":          {sign(jwt.SigningMethodES256, "ec1", ec, claims(func(c jwt.MapClaims) { delete(c, "exp") })), ErrInvalidCredentials},
		"expired":         {sign(jwt.SigningMethodES256, "ec1", ec, claims(func(c jwt.MapClaims) { c["exp"] = clk.Now().Add(-time.Hour).Unix() })), ErrTokenExpired},
		"bad role":        {sign(jwt.SigningMethodES256, "ec1", ec, claims(func(c jwt.MapClaims) { c["doorstep_role"] = "root" })), ErrInvalidCredentials},
		"unknown team":    {sign(jwt.SigningMethodES256, "ec1", ec, claims(func(c jwt.MapClaims) { c["doorstep_teams"] = []string{"nope"} })), ErrInvalid},
		"teams not array": {sign(jwt.SigningMethodES256, "ec1", ec, claims(func(c jwt.MapClaims) { c["doorstep_teams"] = []int{1} })), ErrInvalidCredentials},
	}
	for name, b := range bad {
		if _, err := s.Exchange(ctx, b.tok, dev, "tab"); !errors.Is(err, b.want) {
			t.Errorf("%s: %v, want %v", name, err, b.want)
		}
	}
	// Unknown kids do not make the server hammer the issuer.
	if n := fetches.Load(); n > 2 {
		t.Errorf("%d JWKS fetches, want at most 2", n)
	}
}
