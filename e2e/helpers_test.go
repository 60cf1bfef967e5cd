package e2e

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/doorstep-health/doorstep/auth"
	"github.com/doorstep-health/doorstep/server"
	dsync "github.com/doorstep-health/doorstep/sync"
)

func authNewUser(name, role, team string) auth.NewUser {
	return auth.NewUser{Username: name, Name: name, Password: password, Role: role, Teams: []string{team}}
}

func callerOf(e *env, user string) dsync.Caller {
	return dsync.Caller{User: e.users[user], Teams: []string{"wigan"}}
}

// httptestServer serves s on loopback, every exchange checked against the
// OpenAPI description.
func httptestServer(t testing.TB, s *server.Server) *httptest.Server {
	return httptest.NewServer(openAPIChecked(t, s.Handler()))
}

// scrape returns the server's /metrics text.
func (e *env) scrape() string {
	e.t.Helper()
	res, err := http.Get(e.ts.URL + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}
