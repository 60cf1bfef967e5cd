package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/doorstep-health/doorstep/api"
	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/crdt"
	"github.com/doorstep-health/doorstep/server"
	"github.com/golang-jwt/jwt/v5"
)

// TestOIDCExchange: a tablet whose user signed in with an external OpenID
// Connect issuer exchanges the ID token for Doorstep tokens and syncs.
func TestOIDCExchange(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := key.PublicKey.Bytes()
	b64 := base64.RawURLEncoding.EncodeToString
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{
			{"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(pub[1:33]), "y": b64(pub[33:])}}})
	}))
	defer idp.Close()
	e := newEnv(t, func(c *server.Config) {
		c.External = &auth.ExternalIssuer{Issuer: "https://idp.example", Audience: "doorstep", JWKSURL: idp.URL}
	})
	idToken := func(iss string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": iss, "aud": "doorstep", "sub": "worker-17",
			"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
			"doorstep_role": "link_worker", "doorstep_teams": []string{"wigan"}})
		tok.Header["kid"] = "k1"
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	dev := crdt.NewReplicaID()
	var tr api.TokenResponse
	st, p := e.doJSON(http.MethodPost, "/v1/auth/exchange", "", server.ExchangeRequest{IDToken: idToken("https://idp.example"), DeviceID: dev.String()}, &tr)
	if st != http.StatusOK {
		t.Fatalf("exchange: %d %+v", st, p)
	}
	d := &device{e: e, user: "worker-17", id: dev, access: tr.AccessToken, refresh: tr.RefreshToken, clock: crdt.NewClock(time.Now, time.Minute), records: map[string]*crdt.Record{}}
	resp := d.sync(d.change(d.write("wigan", "people", "p9", "given_name", "Ida")))
	if r := resp.Results[0]; r.Status != api.ChangeApplied || len(r.Ops) != 0 {
		t.Fatalf("push with exchanged token: %+v", r)
	}
	st, p = e.doJSON(http.MethodPost, "/v1/auth/exchange", "", server.ExchangeRequest{IDToken: idToken("https://evil.example"), DeviceID: dev.String()}, nil)
	if st != http.StatusUnauthorized || p.Code != api.CodeInvalidCredentials {
		t.Fatalf("foreign issuer: %d %+v", st, p)
	}
	// A token refused for a missing claim says which, not "wrong password".
	noRole := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": "https://idp.example", "aud": "doorstep", "sub": "worker-18",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "doorstep_teams": []string{"wigan"}})
	noRole.Header["kid"] = "k1"
	noRoleTok, err := noRole.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	st, p = e.doJSON(http.MethodPost, "/v1/auth/exchange", "", server.ExchangeRequest{IDToken: noRoleTok, DeviceID: dev.String()}, nil)
	if st != http.StatusUnauthorized || p.Code != api.CodeInvalidCredentials || !strings.Contains(p.Detail, "doorstep_role claim is missing") {
		t.Fatalf("token without a role claim: %d %+v", st, p)
	}
	// Without an external issuer the route does not exist.
	plain := newEnv(t)
	if st, p := plain.doJSON(http.MethodPost, "/v1/auth/exchange", "", server.ExchangeRequest{}, nil); st != http.StatusNotFound {
		t.Fatalf("exchange without issuer: %d %+v", st, p)
	}
}
