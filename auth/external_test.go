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
	"strings"
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
	s, err := openWith(t, Config{BcryptCost: bcrypt.MinCost, Now: clk.Now,
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

func TestKeyURLMustBeHTTPS(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://idp.example/jwks":      true,
		"http://127.0.0.1:9999/jwks":    true,
		"http://127.9.9.9/jwks":         true,
		"http://[::1]:80/jwks":          true,
		"http://localhost:8080/jwks":    true,
		"http://idp.example/jwks":       false,
		"http://10.0.0.1/jwks":          false,
		"http://localhost.evil.example": false,
		"ftp://idp.example/jwks":        false,
		"/jwks":                         false,
	} {
		if err := checkKeyURL("JWKS URL", u); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", u, err, ok)
		}
	}
	_, err := openWith(t, Config{BcryptCost: bcrypt.MinCost,
		External: &ExternalIssuer{Issuer: "https://cis2.example", Audience: "a", JWKSURL: "http://idp.example/jwks"}})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("plain-http JWKS URL accepted: %v", err)
	}
}

// idp is a loopback OpenID Connect issuer: discovery, a JWKS with one EC
// key whose kid can be rotated, and a switch that makes JWKS fetches hang.
type idp struct {
	srv     *httptest.Server
	key     *ecdsa.PrivateKey
	kid     atomic.Value // string
	fetches atomic.Int32
	slow    atomic.Bool
	release chan struct{}
}

func newIDP(t *testing.T) *idp {
	p := &idp{release: make(chan struct{})}
	p.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.kid.Store("k1")
	b64 := base64.RawURLEncoding.EncodeToString
	pub, _ := p.key.PublicKey.Bytes()
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			json.NewEncoder(w).Encode(map[string]string{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/keys"})
		case "/keys":
			p.fetches.Add(1)
			if p.slow.Load() {
				select {
				case <-p.release:
				case <-r.Context().Done():
				}
			}
			json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{
				{"kty": "EC", "crv": "P-256", "kid": p.kid.Load().(string), "x": b64(pub[1:33]), "y": b64(pub[33:])}}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(func() {
		if p.slow.Load() {
			close(p.release)
		}
		p.srv.Close()
	})
	return p
}

func (p *idp) token(t *testing.T, kid string, mod func(jwt.MapClaims)) string {
	c := jwt.MapClaims{"iss": p.srv.URL, "aud": "doorstep", "sub": "w1", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
		"doorstep_role": "link_worker", "doorstep_teams": []string{"wigan"}}
	if mod != nil {
		mod(c)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(p.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestExternalDiscoveryRefreshAndRefusals: the JWKS URL is discovered from
// the issuer; keys are refreshed in the background (a rotated kid is known
// without a request asking for it); a refetch on an unknown kid that hangs
// does not hold up tokens with a known kid; and a token refused for a
// missing claim says which.
func TestExternalDiscoveryRefreshAndRefusals(t *testing.T) {
	p := newIDP(t)
	ctx := context.Background()
	s, err := openWith(t, Config{BcryptCost: bcrypt.MinCost,
		External: &ExternalIssuer{Issuer: p.srv.URL, Audience: "doorstep", RefreshInterval: 50 * time.Millisecond, MinRefetch: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		t.Fatal(err)
	}
	dev := crdt.NewReplicaID().String()
	if _, err := s.Exchange(ctx, p.token(t, "k1", nil), dev, "tab"); err != nil {
		t.Fatalf("exchange with a discovered JWKS: %v", err)
	}

	// Background refresh picks up a rotated kid.
	p.kid.Store("k2")
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := s.Exchange(ctx, p.token(t, "k2", nil), dev, "tab")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated key never picked up: %v (%d fetches)", err, p.fetches.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Missing claims are named.
	for claim, mod := range map[string]func(jwt.MapClaims){
		"doorstep_role":  func(c jwt.MapClaims) { delete(c, "doorstep_role") },
		"doorstep_teams": func(c jwt.MapClaims) { delete(c, "doorstep_teams") },
		"sub":            func(c jwt.MapClaims) { delete(c, "sub") },
	} {
		_, err := s.Exchange(ctx, p.token(t, "k2", mod), dev, "tab")
		var xe *ExternalTokenError
		if !errors.As(err, &xe) || !errors.Is(err, ErrInvalidCredentials) || !strings.Contains(xe.Reason, claim) || !strings.Contains(xe.Reason, "missing") {
			t.Errorf("no %s: %v", claim, err)
		}
	}
}

// TestUnknownKidFetchDoesNotBlock: while a refetch prompted by an unknown
// kid hangs on the issuer, tokens with a known kid still verify, and
// another unknown kid is refused at once (rate-limited) rather than
// queueing behind it.
func TestUnknownKidFetchDoesNotBlock(t *testing.T) {
	p := newIDP(t)
	ctx := context.Background()
	s, err := openWith(t, Config{BcryptCost: bcrypt.MinCost,
		External: &ExternalIssuer{Issuer: p.srv.URL, Audience: "doorstep", JWKSURL: p.srv.URL + "/keys", MinRefetch: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateTeam(ctx, "wigan", "Wigan"); err != nil {
		t.Fatal(err)
	}
	dev := crdt.NewReplicaID().String()
	if _, err := s.Exchange(ctx, p.token(t, "k1", nil), dev, "tab"); err != nil {
		t.Fatal(err)
	}
	p.slow.Store(true)
	hung := make(chan error, 1)
	go func() {
		_, err := s.Exchange(ctx, p.token(t, "unknown-1", nil), dev, "tab")
		hung <- err
	}()
	for p.fetches.Load() < 2 { // the refetch has reached the issuer
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	if _, err := s.Exchange(ctx, p.token(t, "k1", nil), dev, "tab"); err != nil {
		t.Fatalf("known kid during a hung refetch: %v", err)
	}
	if _, err := s.Exchange(ctx, p.token(t, "unknown-2", nil), dev, "tab"); !errors.Is(err, ErrInvalidCredentials) {
		t.Fatalf("second unknown kid: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("verifications waited %v behind the hung fetch", d)
	}
	if n := p.fetches.Load(); n != 2 {
		t.Errorf("%d JWKS fetches, want 2 (initial + one unknown-kid refetch)", n)
	}
	p.slow.Store(false)
	close(p.release)
	if err := <-hung; err == nil {
		t.Error("unknown kid accepted")
	}
}
