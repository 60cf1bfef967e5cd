package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/doorstep-health/doorstep/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The account commands with --store postgres work on the shared auth
// table: a user added with one data directory is listed with another (as
// by a second server), and the flags are checked.
func TestAccountsOnPostgres(t *testing.T) {
	url := pgtest.NewDB(t)
	ctx := context.Background()
	must := func(args []string, e map[string]string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(ctx, args, env(e), strings.NewReader("long enough password\n"), &out, &errb); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		return out.String()
	}
	one := map[string]string{"DOORSTEP_DATA": t.TempDir(), "DOORSTEP_STORE": "postgres", "DOORSTEP_PG_URL": url}
	must([]string{"team", "add", "--id", "wigan", "--name", "Wigan Frailty"}, one)
	must([]string{"user", "add", "--username", "ann", "--role", "link_worker", "--teams", "wigan"}, one)
	two := map[string]string{"DOORSTEP_DATA": t.TempDir()}
	if out := must([]string{"user", "list", "--store", "postgres", "--pg-url", url}, two); !strings.Contains(out, "ann") {
		t.Fatalf("user list through a second data directory:\n%s", out)
	}
	// The Badger default under the second directory knows nobody.
	if out := must([]string{"user", "list"}, two); strings.Contains(out, "ann") {
		t.Fatalf("the Badger store under --data lists a PostgreSQL user:\n%s", out)
	}
	for _, bad := range []map[string]string{
		{"DOORSTEP_DATA": t.TempDir(), "DOORSTEP_STORE": "postgres"},
		{"DOORSTEP_DATA": t.TempDir(), "DOORSTEP_STORE": "mysql", "DOORSTEP_PG_URL": url},
		{"DOORSTEP_DATA": t.TempDir(), "DOORSTEP_PG_URL": url},
	} {
		if err := run(ctx, []string{"user", "list"}, env(bad), nil, io.Discard, io.Discard); err == nil {
			t.Errorf("user list with %v: no error", bad)
		}
		if err := run(ctx, []string{"serve"}, env(bad), nil, io.Discard, io.Discard); err == nil {
			t.Errorf("serve with %v: no error", bad)
		}
	}
}
