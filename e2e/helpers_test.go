package e2e

import "github.com/doorstep-health/doorstep/auth"

func authNewUser(name, role, team string) auth.NewUser {
	return auth.NewUser{Username: name, Name: name, Password: password, Role: role, Teams: []string{team}}
}
