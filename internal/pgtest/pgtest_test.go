package pgtest_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/doorstep-health/doorstep/internal/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// A database from NewDB is reachable, empty, private to the test, and on
// a server with the durable defaults.
func TestNewDB(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDB(t)
	other := pgtest.NewDB(t)
	if url == other {
		t.Fatalf("two NewDB calls gave one URL %s", url)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	for setting, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "listen_addresses": ""} {
		var got string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", setting).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s = %q, want %q", setting, got, want)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a new database holds %d tables", n)
	}
	fi, err := os.Stat(pgtest.Shared(t).SocketDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("socket directory mode %v: other users could connect", fi.Mode().Perm())
	}
}

// Data committed before an immediate (crash-like) stop is there after the
// restart: the cluster really is durable.
func TestOwnRestartKeepsCommits(t *testing.T) {
	ctx := context.Background()
	c := pgtest.Own(t)
	name, err := c.CreateDB("restart")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL(name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE k (v int); INSERT INTO k VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	if err := c.Restart(true); err != nil {
		t.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, c.URL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(ctx) }()
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM k").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after crash restart: v=%d err=%v", v, err)
	}
}
