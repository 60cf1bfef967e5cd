package e2e

import (
	"net/http/httptest"

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

func httptestServer(s *server.Server) *httptest.Server { return httptest.NewServer(s.Handler()) }
